"""Hessian-free optimization (microgradrnn.optim.HessianFree and microgradrnn.hf_training).

Independent references: Jacobians of a NumPy RNN by the complex step (exact to rounding:
Squire & Trapp 1998), loss Hessians in closed form, least squares by ``np.linalg.lstsq``, and
reduction ratios worked out by hand on one-parameter problems.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import microgradrnn as mg
from microgradrnn.hf_training import (build_model, evaluate, hf_problem, sparse_initialise,
                                      train_hf, using_parameters)
from microgradrnn.optim import HessianFree, HFProblem
from microgradrnn.optim.hessian_free import (Curvature, armijo, backtrack, flatten,
                                             levenberg_marquardt, reduction_ratio,
                                             sigmoid_cross_entropy, softmax_cross_entropy,
                                             squared_error, unflatten)
from microgradrnn.testing.strategies import RNNConfig, rnn_configs

# -- a NumPy RNN and its Jacobians by the complex step ------------------------------------------


def numpy_rnn(theta, shapes, xs):
    """z = h_T W + c and the stacked hidden states, h_t = tanh(x_t W_xh + h_{t-1} W_hh + b),
    in plain NumPy (complex-safe)."""
    W_xh, W_hh, b, W, c = unflatten(theta, [np.empty(s) for s in shapes])
    h = np.zeros((xs.shape[1], W_hh.shape[0]), dtype=theta.dtype)
    hs = []
    for x in xs:
        h = np.tanh(x @ W_xh + h @ W_hh + b)
        hs.append(h)
    return h @ W + c, np.stack(hs)


def complex_step_jacobians(theta, shapes, xs, step=1e-30):
    """(dz/dtheta, ds/dtheta), each (outputs, parameters): column k is Im f(theta + i h e_k) / h."""
    Jz, Js = [], []
    for k in range(theta.size):
        shifted = theta.astype(complex)
        shifted[k] += 1j * step
        z, s = numpy_rnn(shifted, shapes, xs)
        Jz.append(z.imag.ravel() / step)
        Js.append(s.imag.ravel() / step)
    return np.array(Jz).T, np.array(Js).T


def loss_hessian(kind, z, targets):
    """The Hessian of the mean loss over B rows with respect to z (flattened), closed form."""
    B = z.shape[0]
    if kind == "squared_error":
        return np.eye(z.size) / B
    if kind == "sigmoid":
        p = 1 / (1 + np.exp(-z.ravel()))
        return np.diag(p * (1 - p)) / B
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    blocks = [np.diag(row) - np.outer(row, row) for row in p]
    H = np.zeros((z.size, z.size))
    for i, block in enumerate(blocks):
        H[i * z.shape[1]:(i + 1) * z.shape[1], i * z.shape[1]:(i + 1) * z.shape[1]] = block
    return H / B


LOSSES = {"squared_error": squared_error, "softmax": softmax_cross_entropy,
          "sigmoid": sigmoid_cross_entropy}


def small_rnn(config, outputs, seed):
    """A model, its parameters as a flat vector, inputs and targets for each loss kind."""
    rng = np.random.default_rng(seed)
    model = mg.nn.RNNModel(mg.nn.RNNCell(config.input_size, config.hidden_size, rng=rng),
                           mg.nn.Linear(config.hidden_size, outputs, rng=rng))
    xs = rng.standard_normal((config.T, config.batch, config.input_size))
    targets = {"squared_error": rng.standard_normal((config.batch, outputs)),
               "sigmoid": rng.integers(0, 2, (config.batch, outputs)).astype(float),
               "softmax": rng.integers(0, outputs, config.batch)}
    return model, xs, targets


def problem_for(model, loss, with_hidden, batch=None):
    def model_fn(params, batch):
        with using_parameters(model, params):
            hs, _ = model.rnn(batch[0])
            z = model.head(hs[-1])
        return (z, hs) if with_hidden else z
    return HFProblem(model_fn, lambda z, batch: loss(z, batch[1]), batch)


def random_vector(n, seed):
    return np.random.default_rng(seed).standard_normal(n)


# -- the Gauss-Newton products HF uses ----------------------------------------------------------

@given(rnn_configs(max_T=4, max_batch=3, max_input_size=3, max_hidden_size=4),
       st.sampled_from(sorted(LOSSES)), st.integers(0, 2**32 - 1))
def test_gauss_newton_products_are_symmetric_psd_and_equal_explicit_jt_h_j(config, kind,
                                                                           seed):
    outputs = 3 if kind == "softmax" else 2
    model, xs, targets = small_rnn(config, outputs, seed)
    theta = [p.value for p in model.parameters()]
    shapes = [t.shape for t in theta]
    batch = (xs, targets[kind])
    G = Curvature(problem_for(model, LOSSES[kind], False), theta, batch)
    n = sum(t.size for t in theta)
    u, v = random_vector(n, seed), random_vector(n, seed + 1)
    Gu, Gv = G.damped(u), G.damped(v)
    assert u @ Gv == pytest.approx(v @ Gu, rel=1e-10, abs=1e-12)
    assert v @ Gv >= -1e-12 * (v @ v)
    Jz, _ = complex_step_jacobians(flatten(theta), shapes, xs)
    z, _ = numpy_rnn(flatten(theta), shapes, xs)
    explicit = Jz.T @ loss_hessian(kind, z, targets[kind]) @ Jz
    np.testing.assert_allclose(Gv, explicit @ v, rtol=1e-8, atol=1e-12)


@given(rnn_configs(max_T=4, max_batch=3, max_input_size=3, max_hidden_size=4),
       st.floats(0.01, 10.0), st.integers(0, 2**32 - 1))
def test_structural_damping_adds_weight_over_b_times_js_t_js(config, weight, seed):
    model, xs, targets = small_rnn(config, 2, seed)
    theta = [p.value for p in model.parameters()]
    shapes = [t.shape for t in theta]
    batch = (xs, targets["squared_error"])
    products = Curvature(problem_for(model, squared_error, True), theta, batch,
                         weight=weight)
    v = random_vector(sum(t.size for t in theta), seed)
    Jz, Js = complex_step_jacobians(flatten(theta), shapes, xs)
    G = Jz.T @ Jz / config.batch                          # H_L = I / B for squared error
    G_S = Js.T @ Js / config.batch                        # D(s) = 1/(2B) ||s - s(theta)||^2
    np.testing.assert_allclose(products.damped(v), (G + weight * G_S) @ v, rtol=1e-8,
                               atol=1e-12)
    np.testing.assert_allclose(products.plain(v), G @ v, rtol=1e-8, atol=1e-12)


def test_the_exact_hessian_option_matches_finite_differences_of_the_loss():
    model, xs, targets = small_rnn(RNNConfig(T=3, batch=2, input_size=2, hidden_size=3), 2,
                                   seed=4)
    theta = [p.value for p in model.parameters()]
    shapes = [t.shape for t in theta]
    y = targets["squared_error"]
    H = Curvature(problem_for(model, squared_error, False), theta, (xs, y), kind="hessian")
    flat = flatten(theta)

    def f(t):
        z, _ = numpy_rnn(t, shapes, xs)
        return 0.5 * np.sum((z - y) ** 2) / len(y)
    n, h = flat.size, 1e-4
    E = np.eye(n) * h
    explicit = np.array([[(f(flat + E[i] + E[j]) - f(flat + E[i] - E[j])
                           - f(flat - E[i] + E[j]) + f(flat - E[i] - E[j])) / (4 * h * h)
                          for j in range(n)] for i in range(n)])
    v = random_vector(n, 0)
    np.testing.assert_allclose(H.damped(v), explicit @ v, rtol=1e-5, atol=1e-7)


# -- the pieces of an update, on constructed cases ----------------------------------------------

def test_levenberg_marquardt_follows_the_quarter_and_three_quarter_rule():
    assert levenberg_marquardt(2.0, 0.1) == pytest.approx(3.0)       # rho < 1/4: x 3/2
    assert levenberg_marquardt(2.0, -np.inf) == pytest.approx(3.0)
    assert levenberg_marquardt(3.0, 0.9) == pytest.approx(2.0)       # rho > 3/4: x 2/3
    for rho in (0.25, 0.5, 0.75):                                    # in between: unchanged
        assert levenberg_marquardt(2.0, rho) == 2.0


def test_reduction_ratio_is_actual_over_predicted_and_distrusts_no_predicted_decrease():
    assert reduction_ratio(-1.5, -2.0) == 0.75
    assert reduction_ratio(0.5, -2.0) == -0.25
    assert reduction_ratio(-1.0, 0.0) == -np.inf        # the model predicts no decrease
    assert reduction_ratio(np.nan, -1.0) == -np.inf     # the step overflowed


def test_backtracking_walks_back_while_the_objective_improves_and_no_further():
    values = {5: 1.5, 7: 1.0, 9: 2.0, 12: 3.0}
    iterates = [(i, np.array([float(i)])) for i in sorted(values)]
    asked = []

    def f(x):
        asked.append(int(x[0]))
        return values[int(x[0])]
    i, x, value = backtrack(iterates, f)
    assert (i, value) == (7, 1.0) and x[0] == 7.0
    assert asked == [12, 9, 7, 5]            # 5 is worse than 7: the walk stops there
    values = {5: 0.0, 7: 4.0, 9: 3.5, 12: 3.0}   # a better iterate behind a worse one
    asked.clear()
    assert backtrack(iterates, f)[0] == 12 and asked == [12, 9]


def test_armijo_takes_the_first_rate_with_sufficient_decrease_or_none():
    # f(a) = (a - 0.3)^2 from f(0) = 0.09 with slope -0.6: 1, 0.8, 0.64 fail
    # (0.49, 0.25, 0.1156 > 0.09 - 0.006 a); 0.512 gives 0.044944 <= 0.0869.
    rate, value = armijo(lambda a: (a - 0.3) ** 2, 0.09, -0.6)
    assert rate == pytest.approx(0.8 ** 3) and value == pytest.approx((0.8 ** 3 - 0.3) ** 2)
    calls = []
    assert armijo(lambda a: calls.append(a) or 1.0, 0.0, -1.0) == (0.0, 0.0)
    assert len(calls) == 60 and calls[-1] == pytest.approx(0.8 ** 59)


# -- whole updates ------------------------------------------------------------------------------

def square_model(y, theta0):
    """f(theta) = 1/2 (theta^2 - y)^2, one parameter, one example: g = 2 theta (theta^2 - y),
    G = (2 theta)^2."""
    p = mg.Parameter(np.array([theta0]))
    problem = HFProblem(lambda ps, _: ps[0] * ps[0], lambda z, _: squared_error(
        mg.reshape(z, (1, 1)), np.array([[y]])), None)
    return p, problem


def test_a_step_computes_rho_by_hand_and_keeps_lambda_at_rho_three_quarters():
    # theta = 1, y = -1: g = 4, G = 4, lambda = 0: d = -1, f: 2 -> 1/2, q(d) - q(0) = -4 + 2
    # = -2, rho = -1.5 / -2 = 0.75 exactly: lambda unchanged; Armijo takes the full step.
    p, problem = square_model(-1.0, 1.0)
    hf = HessianFree([p], damping=0.0)
    info = hf.step(lambda: problem)
    assert info.rho == 0.75 and hf.hyperparameters["damping"] == 0.0
    assert info.rate == 1.0 and p.value[0] == 0.0 and info.new_loss == 0.5


def test_a_poor_step_raises_lambda_and_the_line_search_shortens_it():
    # theta = 1, y = -3, lambda = 1/2: g = 8, G + lambda = 4.5, d = -16/9; f(1 + d) = 1/2
    # ((7/9)^2 + 3)^2 and rho = (f(1 + d) - 8) / (8 d + 2 d^2) < 1/4, so lambda -> 3/4.
    p, problem = square_model(-3.0, 1.0)
    hf = HessianFree([p], damping=0.5)
    info = hf.step(lambda: problem)
    d = -16 / 9
    expected_rho = (0.5 * ((1 + d) ** 2 + 3) ** 2 - 8) / (8 * d + 2 * d * d)
    assert info.rho == pytest.approx(expected_rho, rel=1e-12) and expected_rho < 0.25
    assert hf.hyperparameters["damping"] == pytest.approx(0.75)
    f = lambda a: 0.5 * ((1 + a * d) ** 2 + 3) ** 2
    rate = next(0.8 ** k for k in range(60) if f(0.8 ** k) <= 8 + 1e-2 * 0.8 ** k * 8 * d)
    assert info.rate == pytest.approx(rate) and p.value[0] == pytest.approx(1 + rate * d)


def test_rho_measures_the_undamped_quadratic_when_hidden_states_are_damped():
    config = RNNConfig(T=3, batch=4, input_size=2, hidden_size=3)
    model, xs, targets = small_rnn(config, 1, seed=7)
    y = targets["squared_error"][:, :1]
    params = model.parameters()
    theta = flatten(params)
    shapes = [p.shape for p in params]
    hf = HessianFree(params, damping=1.0, structural_damping=0.5, line_search=False)
    info = hf.step(lambda: problem_for(model, squared_error, True, (xs, y)))
    d = flatten(params) - theta                          # rate 1: the whole step
    Jz, _ = complex_step_jacobians(theta, shapes, xs)
    z, _ = numpy_rnn(theta, shapes, xs)
    g = Jz.T @ (z - y).ravel() / config.batch
    G = Jz.T @ Jz / config.batch                         # no lambda, no structural term
    assert info.predicted == pytest.approx(g @ d + 0.5 * d @ G @ d, rel=1e-9)
    z_new, _ = numpy_rnn(theta + d, shapes, xs)
    actual = 0.5 * (np.sum((z_new - y) ** 2) - np.sum((z - y) ** 2)) / config.batch
    assert info.rho == pytest.approx(actual / info.predicted, rel=1e-9)


def test_one_update_with_vanishing_damping_reaches_the_minimum_of_a_quadratic():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 5)), rng.standard_normal((40, 1))
    W, b = mg.Parameter(rng.standard_normal((5, 1))), mg.Parameter(np.zeros(1))
    problem = HFProblem(lambda ps, batch: batch[0] @ ps[0] + ps[1],
                        lambda z, batch: squared_error(z, batch[1]), (X, y))
    hf = HessianFree([W, b], damping=1e-12)
    info = hf.step(lambda: problem)
    solution, *_ = np.linalg.lstsq(np.hstack([X, np.ones((40, 1))]), y, rcond=None)
    np.testing.assert_allclose(np.concatenate([W.value.ravel(), b.value]), solution.ravel(),
                               rtol=1e-9, atol=1e-12)
    assert info.rho == pytest.approx(1.0, abs=1e-9)     # f is its own quadratic model
    assert hf.hyperparameters["damping"] == pytest.approx(2 / 3 * 1e-12)


def test_steps_rebind_values_and_never_change_arrays_in_place():
    p, problem = square_model(-1.0, 1.0)
    before = p.value
    HessianFree([p], damping=0.0).step(lambda: problem)
    assert before[0] == 1.0 and p.value is not before


def adding_run(options, updates, T=8, hidden_size=10):
    """HF on the two-channel adding problem from a seeded sparse initialisation: the loss on
    one fixed batch before and after every update."""
    rng = np.random.default_rng(0)
    model = build_model("adding_halves", T=T, hidden_size=hidden_size, rng=rng)
    sparse_initialise(model, rng)
    xs_fixed, ys_fixed = mg.tasks.adding_halves(T, 200, seed=1)
    data = np.random.default_rng(2)
    hf = HessianFree(model.parameters(), **options)

    def fixed_loss():
        with mg.no_grad():
            return squared_error(model.head(model.rnn(xs_fixed)[0][-1]), ys_fixed).item()

    def closure():
        xs, ys = mg.tasks.adding_halves(T, 200, rng=data)
        return hf_problem(model, (xs, ys), (xs[:, :50], ys[:50]))
    losses = [fixed_loss()]
    for _ in range(updates):
        hf.step(closure)
        losses.append(fixed_loss())
    return losses


def test_hf_lowers_the_training_loss_of_a_small_rnn_in_a_few_updates():
    losses = adding_run({}, 10)
    assert losses[-1] < 0.05 * losses[0]
    assert losses[-1] < 0.7 * 0.5 * (1 / 6)   # below the best constant's 1/2 MSE = 1/12


@pytest.mark.parametrize("options", [dict(preconditioner=True), dict(curvature="hessian"),
                                     dict(structural_damping=0.0, line_search=False,
                                          backtracking=False)], ids=str)
def test_every_option_makes_progress(options):
    losses = adding_run(options, 4, T=6, hidden_size=8)
    assert losses[-1] < 0.2 * losses[0]


def test_a_run_stopped_and_resumed_from_its_checkpoint_continues_exactly(tmp_path):
    kwargs = dict(T=6, hidden_size=6, gradient_batch=60, curvature_batch=20, progress=False,
                  eval_every=2, eval_size=50, seed=5)
    straight, straight_history = train_hf("adding_halves", updates=4, **kwargs)
    path = str(tmp_path / "hf.npz")
    train_hf("adding_halves", updates=2, checkpoint=path, **kwargs)
    resumed, resumed_history = train_hf("adding_halves", updates=4, checkpoint=path, **kwargs)
    assert resumed_history == straight_history
    for (name, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters()):
        np.testing.assert_array_equal(a.value, b.value, err_msg=name)


def test_the_state_dict_holds_lambda_and_the_previous_solution():
    p, problem = square_model(-3.0, 1.0)
    hf = HessianFree([p], damping=0.5)
    hf.step(lambda: problem)
    state = hf.state_dict()
    assert state["damping"] == pytest.approx(0.75)
    np.testing.assert_allclose(state["state.0.previous"], [-16 / 9])
    other = HessianFree([mg.Parameter(np.array([1.0]))])
    other.load_state_dict(state)
    assert other.hyperparameters["damping"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="curvature"):
        HessianFree([p], curvature="newton")
    with pytest.raises(TypeError, match="HFProblem"):
        hf.step(lambda: "not a problem")


# -- helpers ------------------------------------------------------------------------------------

@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 3)), min_size=1, max_size=4))
def test_unflatten_inverts_flatten(shapes):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s) for s in shapes]
    back = unflatten(flatten(arrays), arrays)
    assert all(np.array_equal(a, b) for a, b in zip(arrays, back))


def test_sparse_init_gives_15_incoming_weights_per_unit_and_the_spectral_radius_asked():
    rng = np.random.default_rng(0)
    W = mg.nn.sparse_init(rng, (100, 100), spectral_radius=1.2)
    assert np.all(np.count_nonzero(W, axis=0) == 15)
    assert np.max(np.abs(np.linalg.eigvals(W))) == pytest.approx(1.2)
    assert np.all(np.count_nonzero(mg.nn.sparse_init(rng, (2, 7)), axis=0) == 2)


def test_evaluate_scores_the_constant_predictor_as_the_issue_says():
    class Constant:
        """Predicts the mean target, 1, for every sequence."""
        def rnn(self, xs):
            return [np.zeros((xs.shape[1], 1))], None

        def head(self, h):
            return mg.tensor(np.ones_like(h))

    error, mse = evaluate(Constant(), "adding_halves", 20, 10_000, seed=0)
    assert mse == pytest.approx(1 / 6, rel=0.03) and error == pytest.approx(0.92, abs=0.02)
