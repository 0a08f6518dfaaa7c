"""The strategies in microgradrnn.testing.strategies do what their docstrings promise: the
domains really avoid zeros, kinks and ties, the DAGs really share nodes, and OP_CASES covers
every operation the library offers. A strategy that silently drew easy cases would make every
property test built on it weaker without failing."""
import numpy as np
import pytest
from hypothesis import find, given, strategies as st

import microgradrnn as mg
from microgradrnn.ops import __all__ as OPS_ALL
from microgradrnn.testing.op_cases import OP_CASES
from microgradrnn.testing.strategies import (distinct_arrays, expression_dags,
                                             float_arrays, lattice_arrays, nonzero_arrays,
                                             rnn_configs)


@given(x=float_arrays(low=-1.5, high=2.5, min_magnitude=0.25))
def test_float_arrays_respect_bounds_and_stay_away_from_zero(x):
    assert x.dtype == np.float64
    assert np.all((x >= -1.5) & (x <= 2.5) & (np.abs(x) >= 0.25))


@given(x=nonzero_arrays(min_magnitude=0.5, max_magnitude=3.0))
def test_nonzero_arrays_are_bounded_away_from_zero(x):
    assert np.all((np.abs(x) >= 0.5) & (np.abs(x) <= 3.0))


@given(x=distinct_arrays(gap=0.5))
def test_distinct_arrays_have_no_two_entries_closer_than_the_gap(x):
    values = np.sort(x.ravel())
    assert np.all(np.diff(values) >= 0.5 - 1e-12)


@given(data=st.data())
def test_the_two_lattices_never_come_within_a_tenth(data):
    """What maximum/minimum/clip rely on: integer lattice vs half-integer lattice."""
    on = data.draw(lattice_arrays((5,), offset=0.0))
    between = data.draw(lattice_arrays((5,), offset=0.5))
    assert np.min(np.abs(on[:, None] - between[None, :])) >= 0.1 - 1e-12
    assert np.min(np.abs(between - np.round(between))) >= 0.3 - 1e-12


@given(dag=expression_dags())
def test_every_drawn_dag_uses_some_value_twice(dag):
    assert max(dag.use_counts()) >= 2


def test_dags_share_leaves_and_intermediate_results():
    """Both kinds of fan-out occur: a leaf used twice and an op result used twice."""
    shared_leaf = find(expression_dags(),
                       lambda d: max(d.use_counts()[:len(d.leaves)]) >= 2)
    assert max(shared_leaf.use_counts()[:len(shared_leaf.leaves)]) >= 2
    shared_result = find(expression_dags(),
                         lambda d: max(d.use_counts()[len(d.leaves):], default=0) >= 2)
    assert max(shared_result.use_counts()[len(shared_result.leaves):]) >= 2


@given(dag=expression_dags())
def test_tied_gradient_is_the_sum_over_untied_copies(dag):
    """The chain rule for fan-out: a leaf used n times gets the sum of the n gradients its
    separate copies would get. Also, untying changes no value."""
    tied, leaves = dag.evaluate_tied()
    untied, copies = dag.evaluate_untied()
    np.testing.assert_allclose(tied.value, untied.value, rtol=1e-13, atol=1e-13)
    tied.backward()
    untied.backward()
    for leaf, leaf_copies in zip(leaves, copies):
        assert len(leaf_copies) >= 1
        np.testing.assert_allclose(leaf.grad, sum(c.grad for c in leaf_copies),
                                   rtol=1e-12, atol=1e-12)


@given(dag=expression_dags())
def test_dag_gradients_match_finite_differences(dag):
    assert mg.gradcheck(dag.evaluate, dag.leaves)


@given(config=rnn_configs())
def test_rnn_configs_are_small_and_positive(config):
    assert 1 <= config.T <= 5 and all(1 <= n <= 4 for n in config[1:])


def _offered_operations():
    not_operations = {"AnomalyError", "Primitive", "Declined", "apply",
                      "defprimitive", "value_of"}
    return sorted(set(OPS_ALL) - not_operations) + ["softmax", "log_softmax", "cross_entropy",
                                                    "mse"]


@pytest.mark.parametrize("name", _offered_operations())
def test_op_cases_cover_every_offered_operation(name):
    assert any(case.name == name or case.name.startswith(name + "_") for case in OP_CASES)


def test_op_case_names_are_unique():
    names = [case.name for case in OP_CASES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("case", OP_CASES, ids=lambda case: case.name)
@given(data=st.data())
def test_op_case_inputs_are_finite_float64_arrays(case, data):
    call = data.draw(case.inputs)
    assert call.arrays and all(a.dtype == np.float64 and np.all(np.isfinite(a))
                               for a in call.arrays)
