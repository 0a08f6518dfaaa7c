"""Echo state networks (microgradrnn.esn) against independent references: the state equation
written out here in column form, NumPy's lstsq on the augmented ridge system and np.linalg.pinv,
eigenvalues and singular values computed here, the contraction bound behind Jaeger's (2001)
sufficient condition, the tutorial's sine generator against 1/2 sin(n/4), the closed-form
gradient of the ridge objective, and central finite differences."""
import io
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import microgradrnn as mg
from microgradrnn.esn import EchoStateNetwork, nrmse, ridge_regression, sparse_reservoir
from microgradrnn.esn_experiments import esn_command, run_task

seeds = st.integers(0, 2**32 - 1)


def numpy_states(esn, inputs, teacher=None):
    """The extended states z(n) = [1, u(n), x(n)] by the ESN equations, written column-wise:
    x(n) = (1 - a) x(n-1) + a tanh(W^T x(n-1) + W_in^T u(n) + W_fb^T y(n-1) + b), from x = 0,
    y = 0; y(n) is the teacher's d(n) when given, else the readout's output z(n) W_out."""
    a, W_out = esn.leak_rate, np.array(esn.W_out.value)
    x, y = np.zeros(esn.size), np.zeros(esn.n_outputs)
    rows = []
    for n in range(len(inputs)):
        pre = esn.W.T @ x + esn.W_in.T @ inputs[n] + esn.W_fb.T @ y + esn.b
        x = (1 - a) * x + a * np.tanh(pre)
        z = np.concatenate([[1.0], inputs[n], x])
        rows.append(z)
        y = teacher[n] if teacher is not None else z @ W_out
    return np.array(rows)


def ridge_by_lstsq(Z, D, ridge):
    """argmin ||Z W - D||^2 + ridge ||W||^2 as the ordinary least squares problem
    [Z; sqrt(ridge) I] W = [D; 0], solved by NumPy."""
    F = Z.shape[1]
    A = np.vstack([Z, np.sqrt(ridge) * np.eye(F)])
    B = np.vstack([D, np.zeros((F, D.shape[1]))])
    return np.linalg.lstsq(A, B, rcond=None)[0]


def small_esn(seed, feedback=False, **options):
    rng = np.random.default_rng(seed)
    options = {"spectral_radius": 0.9, "connectivity": 0.3, "washout": 10, "ridge": 1e-4,
               **options}
    esn = EchoStateNetwork(2, 1, 12, feedback=feedback, bias=0.3, rng=rng, **options)
    inputs = rng.uniform(-1, 1, (80, 2))
    targets = np.sin(np.cumsum(inputs[:, :1], axis=0)) * 0.5      # some nonlinear response
    return esn, inputs, targets


# -- the state equation and the closed form ------------------------------------------------------

@given(seed=seeds, leak=st.floats(0.1, 1.0), feedback=st.booleans(), teacher=st.booleans())
def test_collected_states_follow_the_state_equation(seed, leak, feedback, teacher):
    esn, inputs, targets = small_esn(seed, feedback, leak_rate=leak)
    esn.W_out.value = np.random.default_rng(seed).normal(size=esn.W_out.shape) * 0.1
    fed = targets if feedback and teacher else None
    Z = esn.collect_states(inputs, fed)
    np.testing.assert_allclose(Z, numpy_states(esn, inputs, fed), rtol=1e-12, atol=1e-14)


@given(seed=seeds, ridge=st.floats(1e-8, 1.0), feedback=st.booleans())
def test_readout_equals_an_independent_ridge_solution(seed, ridge, feedback):
    """fit's W_out = lstsq([Z; sqrt(ridge) I], [D; 0]) on the states after the washout, the
    states recomputed here (teacher-forced when there is feedback)."""
    esn, inputs, targets = small_esn(seed, feedback, ridge=ridge)
    esn.fit(inputs, targets)
    Z = numpy_states(esn, inputs, targets if feedback else None)[esn.washout:]
    expected = ridge_by_lstsq(Z, targets[esn.washout:], ridge)
    got = esn.W_out.value
    assert np.linalg.norm(got - expected) <= 1e-10 * np.linalg.norm(expected)


@given(seed=seeds, shape=st.sampled_from([(40, 6), (6, 9), (30, 30)]), rank=st.integers(1, 5),
       K=st.integers(1, 3))
def test_ridge_zero_is_the_pseudo_inverse_even_when_rank_deficient(seed, shape, rank, K):
    """Z of rank r < F (a product of (T, r) and (r, F) factors), and T < F too: the minimum-norm
    least squares solution pinv(Z) D."""
    rng = np.random.default_rng(seed)
    T, F = shape
    Z = rng.normal(size=(T, rank)) @ rng.normal(size=(rank, F))
    D = rng.normal(size=(T, K))
    expected = np.linalg.pinv(Z, rcond=1e-10) @ D
    np.testing.assert_allclose(ridge_regression(Z, D, 0.0), expected, rtol=1e-8,
                               atol=1e-10 * np.abs(expected).max())


@given(seeds, st.floats(1e-6, 10.0))
def test_ridge_regression_solves_the_regularised_normal_equations(seed, ridge):
    """On a well-conditioned Z the normal equations are safe: (Z^T Z + ridge I) W = Z^T D."""
    rng = np.random.default_rng(seed)
    Z, D = rng.normal(size=(50, 7)), rng.normal(size=(50, 2))
    expected = np.linalg.solve(Z.T @ Z + ridge * np.eye(7), Z.T @ D)
    np.testing.assert_allclose(ridge_regression(Z, D, ridge), expected, rtol=1e-10)


def test_the_closed_form_stays_accurate_where_the_normal_equations_fail():
    """Z with singular values 1 .. 1e-7 (kappa(Z^T Z) = 1e14) and an exact solution W: the
    QR + SVD route recovers W to ~kappa(Z) eps, the normal equations only to ~kappa(Z)^2 eps."""
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.normal(size=(200, 8)))
    V, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    Z = U @ np.diag(np.logspace(0, -7, 8)) @ V.T
    W = rng.normal(size=(8, 1))
    D = Z @ W
    ours = np.linalg.norm(ridge_regression(Z, D, 0.0) - W) / np.linalg.norm(W)
    normal = np.linalg.norm(np.linalg.solve(Z.T @ Z, Z.T @ D) - W) / np.linalg.norm(W)
    assert ours < 1e-7 and normal > 100 * ours


# -- the reservoir -----------------------------------------------------------------------------

@given(seed=seeds, N=st.integers(5, 60), connectivity=st.floats(0.05, 1.0),
       rho=st.floats(0.05, 1.5))
def test_reservoir_has_the_requested_spectral_radius(seed, N, connectivity, rho):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        esn = EchoStateNetwork(1, 1, N, spectral_radius=rho, connectivity=connectivity,
                               seed=seed)
    assert abs(np.max(np.abs(np.linalg.eigvals(esn.W))) - rho) <= 1e-8
    assert esn.spectral_radius == pytest.approx(rho, abs=1e-8)
    assert esn.largest_singular_value == pytest.approx(np.linalg.svd(esn.W)[1][0], rel=1e-12)
    assert not esn.W.flags.writeable and not esn.W_in.flags.writeable
    assert [p.name for p in esn.parameters()] == ["W_out"]     # the reservoir is no Parameter


def test_reservoir_is_sparse_with_the_requested_connectivity():
    """100 x 100 entries, each nonzero with probability 0.1: 1,000 expected, s.d. 30."""
    W = sparse_reservoir(100, 0.1, 0.9, np.random.default_rng(0))
    assert abs(np.count_nonzero(W) - 1000) < 5 * 30


@pytest.mark.parametrize("rho", [1.0, 1.3])
def test_a_spectral_radius_of_one_or_more_is_warned_about(rho):
    with pytest.warns(UserWarning, match="echo state property"):
        EchoStateNetwork(1, 1, 20, spectral_radius=rho, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        EchoStateNetwork(1, 1, 20, spectral_radius=0.99, seed=0)


def two_runs(esn, rng, steps, drive=1.0):
    """Two random initial states (rows) driven by the same input; their distance by step."""
    x = rng.uniform(-1, 1, (2, esn.size))
    distances = [np.linalg.norm(x[0] - x[1])]
    for _ in range(steps):
        u = np.full((2, esn.n_inputs), drive * rng.uniform(-1, 1))
        x = esn.step(x, u, None)
        distances.append(np.linalg.norm(x[0] - x[1]))
    return np.array(distances)


@given(seed=seeds, sigma=st.floats(0.3, 0.95), leak=st.floats(0.2, 1.0))
def test_states_converge_when_the_largest_singular_value_is_below_one(seed, sigma, leak):
    """Jaeger (2001), Proposition 3, the sufficient condition: tanh is 1-Lipschitz, so one step
    maps two states at distance r to distance <= ((1 - a) + a sigma_max(W)) r whatever the
    input: a contraction when sigma_max < 1. Checked at every step (W scaled so that
    sigma_max = sigma exactly)."""
    probe = EchoStateNetwork(1, 1, 30, spectral_radius=0.5, seed=seed)
    rho = 0.5 * sigma / probe.largest_singular_value      # same W0, so W scales linearly
    esn = EchoStateNetwork(1, 1, 30, spectral_radius=rho, leak_rate=leak, seed=seed)
    assert esn.largest_singular_value == pytest.approx(sigma, rel=1e-9)
    distances = two_runs(esn, np.random.default_rng(seed), 200)
    factor = (1 - leak) + leak * sigma
    assert np.all(distances <= distances[0] * factor ** np.arange(201) * (1 + 1e-9) + 1e-15)


@given(seed=seeds, rho=st.floats(0.5, 0.9))
def test_typical_reservoirs_below_spectral_radius_one_forget_their_start(seed, rho):
    """Measured, not a theorem: such reservoirs have sigma_max(W) around 2 rho (often above 1,
    outside Jaeger's sufficient condition), yet two starts driven by the same input meet
    within 300 steps."""
    esn = EchoStateNetwork(1, 1, 50, spectral_radius=rho, seed=seed)
    distances = two_runs(esn, np.random.default_rng(seed), 300)
    assert distances[-1] < 1e-8 * distances[0]


def test_without_input_a_spectral_radius_above_one_keeps_the_start():
    """The contrast: with rho = 1.5 and zero input the zero state is unstable, and two starts
    stay apart (no echo state property)."""
    with pytest.warns(UserWarning):
        esns = [EchoStateNetwork(1, 1, 50, spectral_radius=1.5, seed=s) for s in range(5)]
    for seed, esn in enumerate(esns):
        assert two_runs(esn, np.random.default_rng(seed), 300, drive=0.0)[-1] > 0.1


# -- the tutorial's sine generator ---------------------------------------------------------------

def tutorial_sine_mse(seed, ridge=0.0):
    """Jaeger's tutorial (GMD Report 159): 20 units, spectral radius 0.8, output feedback, no
    input; 300 teacher-forced steps of d(n) = 1/2 sin(n/4), the first 100 discarded, the
    readout by the pseudo-inverse; then 50 free steps against d(301) .. d(350)."""
    n = np.arange(1, 351)
    d = 0.5 * np.sin(n / 4)
    esn = EchoStateNetwork(0, 1, 20, spectral_radius=0.8, connectivity=0.2, feedback=True,
                           washout=100, ridge=ridge, seed=seed)
    esn.fit(None, d[:300])
    return float(np.mean((esn.generate(50)[:, 0] - d[300:]) ** 2))


def test_the_tutorial_sine_generator_runs_free_with_a_tiny_error():
    """The tutorial reports a test MSE of 5.6e-12 for its network."""
    assert tutorial_sine_mse(seed=0) < 1e-8


def test_the_tutorial_sine_generator_works_for_most_random_reservoirs():
    """Not every draw works: measured over 200 reservoirs, 81% reach a test MSE below 1e-8
    with the pseudo-inverse (the others become unstable once running free)."""
    assert np.mean([tutorial_sine_mse(seed) < 1e-8 for seed in range(40)]) >= 0.7


# -- the unrolled graph: gradients reach only the readout ------------------------------------

def test_unrolled_outputs_are_the_collected_states_times_the_readout():
    esn, inputs, targets = small_esn(3, feedback=True)
    esn.fit(inputs, targets)
    outputs = esn.unroll(inputs, teacher=targets)
    expected = numpy_states(esn, inputs, targets) @ esn.W_out.value
    np.testing.assert_allclose(np.concatenate([o.value for o in outputs]), expected,
                               rtol=1e-12, atol=1e-14)


def test_gradients_reach_only_the_readout_one_edge_per_step():
    """L = sum_n ||z(n) W - d(n)||^2 + ridge ||W||^2. Its gradient, 2 Z^T (Z W - D) + 2 ridge
    W, is the sum of per-step terms 2 z(n)^T (z(n) W - d(n)), each arriving on its own edge;
    no other leaf exists, and no reservoir op (tanh) is recorded, so the drawing shows W_out
    feeding every step and nothing flowing back in time."""
    esn, inputs, targets = small_esn(5, feedback=True, washout=3)
    inputs, targets = inputs[:8], targets[:8]
    esn.W_out.value = np.random.default_rng(0).normal(size=esn.W_out.shape)
    loss = esn.ridge_loss(inputs, targets)
    with mg.record_edge_grads() as recorded:
        loss.backward()
    W = esn.W_out.value
    Z = numpy_states(esn, inputs, targets)[esn.washout:]
    D = targets[esn.washout:]
    np.testing.assert_allclose(esn.W_out.grad, 2 * Z.T @ (Z @ W - D) + 2 * esn.ridge * W,
                               rtol=1e-10)
    per_step = [2 * np.outer(z, z @ W - d) for z, d in zip(Z, D)]
    by_step = {edge.consumer.tags["t"]: edge.grad for edge in recorded.into(esn.W_out)
               if edge.consumer.primitive.name == "matmul"}
    assert sorted(by_step) == list(range(esn.washout, len(inputs)))
    np.testing.assert_allclose([by_step[t] for t in sorted(by_step)], per_step, rtol=1e-10)
    assert {edge.input.name for edge in recorded.edges if edge.input.primitive is None} \
        == {"W_out"}
    source = mg.draw(loss, params=esn, edge_grads=recorded).source
    assert "W_out" in source and "tanh" not in source
    assert source.count("cluster_t") == len(inputs) - esn.washout


def test_running_free_the_output_feeds_back_and_the_gradient_goes_through_time():
    """Without a teacher, y(n-1) feeds x(n): W_out now reaches later outputs through the
    reservoir, and the engine's gradient of sum y(n) matches central finite differences."""
    esn, inputs, targets = small_esn(7, feedback=True)
    esn.fit(inputs, targets)
    inputs = inputs[:15]

    def total(W):
        esn.W_out.value = W
        return sum(o for o in esn.unroll(inputs)).sum()

    W0 = np.array(esn.W_out.value)
    (g,) = mg.grad(total(W0), [esn.W_out])
    numeric = np.zeros_like(W0)
    for i in range(W0.shape[0]):
        step = np.zeros_like(W0)
        step[i] = 1e-6
        numeric[i] = (total(W0 + step).item() - total(W0 - step).item()) / 2e-6
    np.testing.assert_allclose(g.value, numeric, rtol=1e-6, atol=1e-8)
    assert "tanh" in mg.draw(total(W0)).source


@pytest.mark.parametrize("feedback", [False, True])
def test_gradient_descent_on_the_ridge_loss_reaches_the_closed_form(feedback):
    """Nesterov-accelerated gradient descent through the unrolled graph (step 1/L and momentum
    (sqrt(k) - 1) / (sqrt(k) + 1) from the Hessian 2 (Z^T Z + ridge I), computed here) ends
    within 1e-6 (relative) of the closed-form readout: the same minimiser, found slowly."""
    esn, inputs, targets = small_esn(11, feedback, ridge=0.5, washout=5)
    inputs, targets = inputs[:40], targets[:40]
    closed_form = np.array(esn.fit(inputs, targets).W_out.value)
    Z = numpy_states(esn, inputs, targets if feedback else None)[esn.washout:]
    eigenvalues = np.linalg.eigvalsh(2 * (Z.T @ Z + esn.ridge * np.eye(Z.shape[1])))
    k = np.sqrt(eigenvalues[-1] / eigenvalues[0])
    esn.W_out.value = np.zeros_like(closed_form)
    optimizer = mg.optim.SGD(esn.parameters(), lr=1 / eigenvalues[-1],
                             momentum=(k - 1) / (k + 1), nesterov=True)
    for _ in range(1000):
        esn.ridge_loss(inputs, targets).backward()
        optimizer.step()
        optimizer.zero_grad()
        error = np.linalg.norm(esn.W_out.value - closed_form) / np.linalg.norm(closed_form)
        if error < 1e-7:
            break
    assert error < 1e-6


# -- the API's edges -------------------------------------------------------------------------

def test_predict_continues_from_where_fit_stopped():
    """Fitting on the first 60 steps and predicting the next 20 gives the outputs of one run
    over all 80 (the state carries over)."""
    esn, inputs, targets = small_esn(2)
    esn.fit(inputs[:60], targets[:60])
    tail = esn.predict(inputs[60:])
    np.testing.assert_allclose(tail, (numpy_states(esn, inputs) @ esn.W_out.value)[60:],
                               rtol=1e-12, atol=1e-14)


def test_bad_arguments_are_refused_with_a_reason():
    esn, inputs, targets = small_esn(0)
    with pytest.raises(ValueError, match=r"shape \(T, 2\)"):
        esn.fit(inputs[:, :1], targets)
    with pytest.raises(ValueError, match="washout"):
        esn.fit(inputs[:5], targets[:5])
    with pytest.raises(ValueError, match="feedback=True"):
        esn.generate(5)
    with pytest.raises(ValueError, match="leak_rate"):
        EchoStateNetwork(1, 1, 5, leak_rate=0.0)
    with pytest.raises(ValueError, match="ridge"):
        ridge_regression(np.eye(2), np.eye(2), -1.0)


def test_nrmse_is_one_for_the_mean_and_zero_for_the_truth():
    y = np.sin(np.arange(100.0))
    assert nrmse(np.full(100, y.mean()), y) == pytest.approx(1.0)
    assert nrmse(y, y) == 0.0


# -- the command --------------------------------------------------------------------------------

@pytest.mark.parametrize("task, options", [
    ("sine", {}),
    ("mackey-glass", {"reservoir": 60, "washout": 200, "train_steps": 600, "test_steps": 100,
                      "runs": 5}),
])
def test_esn_command_prints_the_error_and_writes_the_plot(tmp_path, task, options):
    out = io.StringIO()
    result = esn_command(task, tmp_path / "esn", seed=1, out=out, **options)
    text = out.getvalue()
    assert f"{result.measure}: {result.error:.3g}" in text and "plot written" in text
    data = (tmp_path / "esn" / f"esn_{task}.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert result.prediction.shape == result.truth.shape == (result.prediction.shape[0], 1)
    if task == "sine":       # the preset is the tutorial's network
        assert result.esn.size == 20 and result.esn.spectral_radius == pytest.approx(0.8)
        assert result.error < 1e-8


@pytest.mark.parametrize("task, limit", [("narma10", 0.5), ("delay-line", 0.2)])
def test_input_driven_presets_learn_their_task(task, limit):
    """Small versions of the presets: well below NRMSE 1, the score of predicting the mean."""
    result = run_task(task, seed=2, reservoir=60, train_steps=800, test_steps=200)
    assert result.error < limit
    assert result.error == pytest.approx(nrmse(result.prediction, result.truth))
