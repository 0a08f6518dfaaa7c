"""Tensor basics and NumPy interoperability: constants on either side of every operator,
ndarray <op> Tensor gives a Tensor, NumPy functions work through the graph."""
import operator
import subprocess
import sys

import numpy as np
import pytest

import microgradrnn as mg

OPERATORS = [operator.add, operator.sub, operator.mul, operator.truediv, operator.pow]


@pytest.mark.parametrize("op", OPERATORS, ids=lambda op: op.__name__)
@pytest.mark.parametrize("constant", [2.0, 3, np.array([2.0, 0.5]), np.float64(1.5)],
                         ids=["float", "int", "ndarray", "numpy-scalar"])
def test_constants_on_either_side_of_every_operator(op, constant):
    x0 = np.array([1.5, 2.5])
    for left, right, expected in [(None, constant, op(x0, constant)),
                                  (constant, None, op(constant, x0))]:
        x = mg.tensor(x0, requires_grad=True)
        out = op(x if left is None else left, x if right is None else right)
        assert isinstance(out, mg.Tensor) and out.requires_grad
        np.testing.assert_allclose(out.value, expected, rtol=1e-15)
        out.sum().backward()  # the constant gets nothing; the tensor gets its derivative
        assert x.grad.shape == x0.shape


def test_ndarray_matmul_tensor_is_a_tensor():
    W = mg.Parameter(np.ones((2, 3)))
    out = np.ones((4, 2)) @ W
    assert isinstance(out, mg.Tensor) and out.shape == (4, 3)
    out.sum().backward()
    np.testing.assert_array_equal(W.grad, np.full((2, 3), 4.0))


def test_numpy_functions_work_through_the_graph():
    x = mg.tensor([[1.0, -2.0], [3.0, 0.5]], requires_grad=True)
    y = np.sum(np.exp(x) * np.where(x.value > 0, x, 0.0), axis=1)
    z = np.concatenate([y, np.tanh(np.reshape(x, (4,)))])
    assert isinstance(z, mg.Tensor)
    z.sum().backward()
    e = np.exp(x.value)
    positive = x.value > 0
    expected = np.where(positive, e * x.value + e, 0.0) + (1 - np.tanh(x.value) ** 2)
    np.testing.assert_allclose(x.grad, expected, rtol=1e-14)
    assert np.shape(x) == (2, 2) and np.ndim(x) == 2 and np.size(x) == 4


def test_asarray_gives_the_value():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    np.testing.assert_array_equal(np.asarray(x), [1.0, 2.0])
    assert np.asarray(x, dtype=np.float32).dtype == np.float32
    assert float(mg.tensor(3.0)) == 3.0


def test_comparisons_give_boolean_arrays():
    x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    np.testing.assert_array_equal(x > 1.5, [False, True, True])
    np.testing.assert_array_equal(np.isfinite(x), [True, True, True])
    assert (x == x) is True  # identity: a tensor is a graph node and a dictionary key


def test_defaults_and_dtypes():
    assert mg.tensor([1.0]).dtype == np.float64
    assert mg.tensor([1.0], dtype=np.float32).dtype == np.float32
    x = mg.tensor([1.0, 2.0], dtype=np.float32, requires_grad=True)
    y = (x * 2.0).tanh().sum()
    assert y.dtype == np.float32
    y.backward()
    assert x.grad.dtype == np.float32
    p = mg.Parameter(np.zeros((2, 2)), name="W")
    assert p.requires_grad and p.is_leaf and p.name == "W"


def test_tensor_copies_its_data():
    data = np.array([1.0, 2.0])
    t = mg.tensor(data)
    data[0] = 9.0
    assert t.value[0] == 1.0


def test_iteration_length_and_repr():
    x = mg.tensor(np.arange(6.0).reshape(3, 2), requires_grad=True, name="x")
    rows = list(x)
    assert len(x) == 3 and len(rows) == 3 and rows[1].node.primitive.name == "getitem"
    sum(rows).sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones((3, 2)))
    assert "name='x'" in repr(x) and "requires_grad=True" in repr(x)
    assert "primitive=tanh" in repr(x.tanh())


def test_methods_match_numpy():
    v = np.arange(24.0).reshape(2, 3, 4)
    x = mg.tensor(v)
    np.testing.assert_array_equal(x.T.value, v.T)
    np.testing.assert_array_equal(x.transpose(1, 0, 2).value, v.transpose(1, 0, 2))
    np.testing.assert_array_equal(x.reshape(6, 4).value, v.reshape(6, 4))
    np.testing.assert_array_equal(x.reshape((4, -1)).value, v.reshape(4, -1))
    np.testing.assert_array_equal(x.swapaxes(0, 2).value, v.swapaxes(0, 2))
    np.testing.assert_array_equal(x.sum(axis=(0, 2)).value, v.sum(axis=(0, 2)))
    np.testing.assert_array_equal(x.expand_dims(1).squeeze(1).value, v)


def test_ops_on_raw_arrays_are_plain_numpy():
    a = np.array([0.5, 1.0])
    assert type(mg.tanh(a)) is np.ndarray
    assert type(mg.sum(a)) is not mg.Tensor


def test_the_package_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "microgradrnn", "--version"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.startswith("microgradrnn ")
