"""Vanishing and exploding gradients (microgradrnn.diagnostics), against closed forms: matrices
built with known eigenvalues and singular values, Pascanu et al.'s bound for tanh, the exact
powers of a linear RNN, a hand-written NumPy product of per-step Jacobians, and central finite
differences for the gated cells."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import microgradrnn as mg
from microgradrnn import diagnostics as dg
from microgradrnn.nn import GRUCell, LSTMCell, RNN, RNNCell

seeds = st.integers(0, 2**32 - 1)


def orthogonal(rng, n):
    q, r = np.linalg.qr(rng.normal(size=(n, n)))
    return q * np.sign(np.diag(r))


# -- matrices ----------------------------------------------------------------------------------

@given(seeds, st.integers(1, 8))
def test_spectral_radius_of_a_matrix_with_known_eigenvalues(seed, n):
    """W = P diag(d) P^-1 has eigenvalues d, so rho(W) = max |d|; on a plain random matrix
    the value agrees with np.linalg.eigvals. Tensors are accepted as well as arrays."""
    rng = np.random.default_rng(seed)
    d = rng.uniform(-2, 2, size=n)
    P = rng.normal(size=(n, n)) + 3 * np.eye(n)  # well conditioned
    W = P @ np.diag(d) @ np.linalg.inv(P)
    assert dg.spectral_radius(W) == pytest.approx(np.max(np.abs(d)), rel=1e-8)
    A = rng.normal(size=(n, n))
    expected = np.max(np.abs(np.linalg.eigvals(A)))
    assert dg.spectral_radius(A) == pytest.approx(expected, rel=1e-12)
    assert dg.spectral_radius(mg.tensor(A)) == pytest.approx(expected, rel=1e-12)


def test_spectral_radius_of_a_scaled_rotation_is_its_scale():
    """A 2-D rotation by theta scaled by r has the complex eigenvalues r e^{+-i theta}."""
    theta, r = 0.7, 1.3
    W = r * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    assert dg.spectral_radius(W) == pytest.approx(r, rel=1e-12)


@given(seeds, st.integers(1, 6), st.integers(1, 6))
def test_largest_singular_value_of_a_matrix_with_known_singular_values(seed, m, n):
    """W = U diag(s) V^T with orthogonal U, V has singular values s; it is also
    sqrt(lambda_max(W^T W)) (np.linalg.eigvalsh) and is never below the spectral radius."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(0.1, 3, size=min(m, n))
    W = orthogonal(rng, m)[:, :len(s)] @ np.diag(s) @ orthogonal(rng, n)[:, :len(s)].T
    assert dg.largest_singular_value(W) == pytest.approx(s.max(), rel=1e-10)
    A = rng.normal(size=(n, n))
    sigma = dg.largest_singular_value(mg.tensor(A))
    assert sigma == pytest.approx(np.sqrt(np.linalg.eigvalsh(A.T @ A).max()), rel=1e-10)
    assert sigma >= dg.spectral_radius(A) * (1 - 1e-12)


@given(seeds, st.integers(1, 8), st.floats(0.0, 3.0))
def test_scale_to_spectral_radius_hits_rho_and_keeps_the_direction(seed, n, rho):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(n, n))
    scaled = dg.scale_to_spectral_radius(W, rho)
    assert abs(np.max(np.abs(np.linalg.eigvals(scaled))) - rho) < 1e-10
    ratio = rho / np.max(np.abs(np.linalg.eigvals(W)))
    np.testing.assert_allclose(scaled, ratio * W, rtol=1e-10, atol=1e-14)


def test_matrix_functions_refuse_what_has_no_answer():
    """Radius 0 (zero or a strictly triangular matrix): no multiple of W reaches rho > 0.
    Eigenvalues need a square matrix; a negative radius does not exist."""
    for W in (np.zeros((3, 3)), np.triu(np.ones((3, 3)), k=1)):
        with pytest.raises(ValueError, match="spectral radius 0"):
            dg.scale_to_spectral_radius(W, 1.0)
    with pytest.raises(ValueError, match="square"):
        dg.spectral_radius(np.ones((2, 3)))
    with pytest.raises(ValueError, match="rho must be >= 0"):
        dg.scale_to_spectral_radius(np.eye(2), -1.0)


# -- Jacobians through the unrolled graph against independent references ----------------------

def numpy_elman_jacobians(xs, h0, W_xh, W_hh, b):
    """dh_T/dh_t for t = 0..T, by hand. With h_k = tanh(x_k W_xh + h_{k-1} W_hh + b) (row
    vectors), h_k[i] = tanh(sum_j h_{k-1}[j] W_hh[j, i] + ...), so
    d h_k[i] / d h_{k-1}[j] = (1 - h_k[i]^2) W_hh[j, i]: J_k = diag(1 - h_k^2) W_hh^T.
    Then dh_T/dh_t = J_T ... J_{t+1} = (dh_T/dh_{t+1}) J_{t+1}."""
    hs = [h0]
    for x in xs:
        hs.append(np.tanh(x @ W_xh + hs[-1] @ W_hh + b))
    T = len(xs)
    jac = [None] * (T + 1)
    jac[T] = np.eye(len(h0))
    for t in range(T - 1, -1, -1):
        jac[t] = jac[t + 1] @ (np.diag(1 - hs[t + 1] ** 2) @ W_hh.T)
    return np.array(jac)


@given(seeds, st.integers(1, 8), st.integers(1, 4), st.integers(1, 5))
def test_jacobian_products_match_a_hand_written_product_for_the_elman_cell(seed, T, D, H):
    rng = np.random.default_rng(seed)
    cell = RNNCell(D, H, rng=rng)
    cell.W_hh.value = rng.normal(size=(H, H))
    cell.b.value = rng.normal(size=H)
    xs, h0 = rng.normal(size=(T, D)), rng.normal(size=H)
    expected = numpy_elman_jacobians(xs, h0, cell.W_xh.value, cell.W_hh.value, cell.b.value)
    got = dg.jacobian_products(RNN(cell), xs[:, None, :], h0[None, :])
    assert got.shape == (T + 1, H, H)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dg.jacobian_norms(RNN(cell), xs, h0[None, :]),
                               [np.linalg.norm(J, 2) for J in expected[::-1]], rtol=1e-10)


def finite_difference_jacobians(cell, xs, h0, c0=None, eps=1e-6):
    """dh_T/dh_t by central differences on h_t (for an LSTM with c_t held fixed), running the
    cell forward only, without recording."""
    def run(state, start):
        for x in xs[start:]:
            state = cell(mg.tensor(x[None, :]), state)
        return cell.output(state).value[0]

    with mg.no_grad():
        states = [(mg.tensor(h0[None, :]), mg.tensor(c0[None, :])) if c0 is not None
                  else mg.tensor(h0[None, :])]
        for x in xs:
            states.append(cell(mg.tensor(x[None, :]), states[-1]))
        H = len(h0)
        jac = np.zeros((len(xs) + 1, H, H))
        for t, state in enumerate(states):
            h = cell.output(state).value[0]
            for j in range(H):
                e = np.zeros(H)
                e[j] = eps

                def moved(step):
                    h_new = mg.tensor((h + step)[None, :])
                    return (h_new, state[1]) if isinstance(state, tuple) else h_new
                jac[t, :, j] = (run(moved(e), t) - run(moved(-e), t)) / (2 * eps)
    return jac


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@given(seed=seeds, T=st.integers(1, 4))
def test_jacobian_products_of_gated_cells_match_finite_differences(kind, seed, T):
    """For the LSTM the derivative is with respect to h_t with c_t fixed (the h of the state)."""
    rng = np.random.default_rng(seed)
    D, H = 2, 3
    cell = (LSTMCell if kind == "lstm" else GRUCell)(D, H, rng=rng)
    xs, h0, c0 = rng.normal(size=(T, D)), rng.normal(size=H), rng.normal(size=H)
    state0 = (h0[None, :], c0[None, :]) if kind == "lstm" else h0[None, :]
    got = dg.jacobian_products(RNN(cell), xs, state0)
    expected = finite_difference_jacobians(cell, xs, h0, c0 if kind == "lstm" else None)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)


def make_cell(kind, rng, D, H):
    cell = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}[kind](D, H, rng=rng)
    cell.W_hh.value = rng.normal(size=cell.W_hh.shape)
    return cell


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@given(seed=seeds, T=st.integers(1, 7))
def test_hidden_gradient_norms_are_the_jacobians_transposed_applied_to_the_readout(kind, seed, T):
    """L = sum(r * h_T) gives dL/dh_t = (dh_T/dh_t)^T r; entry t - 1 belongs to h_t, so the
    last entry is lag 0, where the gradient is r itself."""
    rng = np.random.default_rng(seed)
    D, H = 2, 4
    rnn = RNN(make_cell(kind, rng, D, H))
    xs, r = rng.normal(size=(T, 1, D)), rng.normal(size=(1, H))
    jac = dg.jacobian_products(rnn, xs)
    norms = dg.hidden_gradient_norms(rnn, xs, readout=r)
    assert norms.shape == (T,)
    np.testing.assert_allclose(norms, [np.linalg.norm(J.T @ r[0]) for J in jac[1:]],
                               rtol=1e-10)
    assert norms[-1] == pytest.approx(np.linalg.norm(r), rel=1e-12)
    ones = dg.hidden_gradient_norms(rnn, xs)  # default readout: ones
    np.testing.assert_allclose(ones, [np.linalg.norm(J.T @ np.ones(H)) for J in jac[1:]],
                               rtol=1e-10)


@given(seeds, st.integers(2, 4))
def test_hidden_gradient_norms_of_a_batch_add_up_the_sequences(seed, B):
    """Sequences in a batch do not interact, so the batch gradient is the per-sequence
    gradients stacked: its norm squared is the sum of theirs."""
    rng = np.random.default_rng(seed)
    rnn = RNN(make_cell("rnn", rng, 2, 3))
    xs, h0, r = rng.normal(size=(5, B, 2)), rng.normal(size=(B, 3)), rng.normal(size=(B, 3))
    together = dg.hidden_gradient_norms(rnn, xs, h0, r)
    alone = [dg.hidden_gradient_norms(rnn, xs[:, b:b + 1], h0[b:b + 1], r[b:b + 1])
             for b in range(B)]
    np.testing.assert_allclose(together, np.sqrt(np.sum(np.square(alone), axis=0)),
                               rtol=1e-12)


# -- vanishing and exploding ---------------------------------------------------------------------

@given(seed=seeds, s=st.floats(0.3, 0.95), T=st.integers(2, 15), H=st.integers(2, 6))
def test_tanh_gradients_vanish_geometrically_when_the_largest_singular_value_is_below_one(
        seed, s, T, H):
    """Pascanu et al. (2013): ||J_k||_2 <= gamma ||W_hh||_2 = s with gamma = sup tanh' = 1,
    so ||dh_T/dh_t||_2 <= s^(T - t) whatever the inputs and h_0; and ||dL/dh_t|| <= s^(T-t)
    ||r||."""
    rng = np.random.default_rng(seed)
    cell = RNNCell(3, H, rng=rng)
    W = rng.normal(size=(H, H))
    cell.W_hh.value = W * (s / np.linalg.norm(W, 2))
    xs, h0, r = rng.normal(size=(T, 1, 3)), rng.normal(size=(1, H)), rng.normal(size=(1, H))
    bound = s ** np.arange(T + 1)
    assert np.all(dg.jacobian_norms(RNN(cell), xs, h0) <= bound * (1 + 1e-10))
    by_lag = dg.hidden_gradient_norms(RNN(cell), xs, h0, r)[::-1]
    assert np.all(by_lag <= bound[:T] * np.linalg.norm(r) * (1 + 1e-10))


def linear_cell(rng, W_hh, D=2):
    cell = dg.LinearRNNCell(D, len(W_hh), rng=rng)
    cell.W_hh.value = W_hh
    return cell


@given(seeds, st.integers(1, 6), st.integers(1, 30))
def test_a_linear_rnn_with_a_scaled_orthogonal_matrix_grows_exactly_like_the_scale(seed, H, T):
    """W_hh = 1.2 Q (Q orthogonal): dh_T/dh_t = (W_hh^T)^(T-t) = 1.2^(T-t) (Q^T)^(T-t), whose
    2-norm is 1.2^(T-t), and ||dL/dh_t|| = 1.2^(T-t) ||r||, whatever the inputs."""
    rng = np.random.default_rng(seed)
    rnn = RNN(linear_cell(rng, 1.2 * orthogonal(rng, H)))
    xs, h0, r = rng.normal(size=(T, 1, 2)), rng.normal(size=(1, H)), rng.normal(size=(1, H))
    growth = 1.2 ** np.arange(T + 1)
    np.testing.assert_allclose(dg.jacobian_norms(rnn, xs, h0), growth, rtol=1e-10)
    by_lag = dg.hidden_gradient_norms(rnn, xs, h0, r)[::-1]
    np.testing.assert_allclose(by_lag / by_lag[0], growth[:T], rtol=1e-10)


@given(seeds)
def test_a_linear_rnn_with_spectral_radius_above_one_explodes(seed):
    """A random W_hh of spectral radius 1.2: dL/dh_{T-k} = W_hh^k r exactly (NumPy matrix
    powers), and over 40 steps the norm grows far past its value at lag 0."""
    rng = np.random.default_rng(seed)
    H, T = 6, 40
    W = dg.scale_to_spectral_radius(rng.normal(size=(H, H)), 1.2)
    rnn = RNN(linear_cell(rng, W))
    xs, r = rng.normal(size=(T, 1, 2)), rng.normal(size=(1, H))
    by_lag = dg.hidden_gradient_norms(rnn, xs, readout=r)[::-1]
    expected = [np.linalg.norm(np.linalg.matrix_power(W, k) @ r[0]) for k in range(T)]
    np.testing.assert_allclose(by_lag, expected, rtol=1e-9)
    assert by_lag[-1] > 10 * by_lag[0]


def test_linear_cell_is_the_elman_step_without_tanh():
    rng = np.random.default_rng(0)
    cell = dg.LinearRNNCell(3, 4, rng=rng)
    cell.b.value = rng.normal(size=4)
    x, h = rng.normal(size=(2, 3)), rng.normal(size=(2, 4))
    expected = x @ cell.W_xh.value + h @ cell.W_hh.value + cell.b.value
    np.testing.assert_allclose(cell(mg.tensor(x), mg.tensor(h)).value, expected, rtol=1e-14)


# -- the experiment: table and plot --------------------------------------------------------------

@pytest.mark.parametrize("kind, gates", [("rnn", 1), ("lstm", 4), ("gru", 3)])
def test_build_cell_gives_every_recurrent_block_the_requested_radius(kind, gates):
    H = 5
    cell = dg.build_cell(H, 1.7, cell=kind, seed=3)
    assert cell.W_hh.shape == (H, gates * H)
    for g in range(gates):
        block = cell.W_hh.value[:, g * H:(g + 1) * H]
        assert abs(np.max(np.abs(np.linalg.eigvals(block))) - 1.7) < 1e-10
    with pytest.raises(ValueError, match="linear=True"):
        dg.build_cell(H, 1.0, cell="lstm", linear=True)


def test_vanishing_table_of_a_linear_rnn_is_the_powers_of_its_matrix():
    """With linear=True, dL/dh_{T-k} = W_hh^k 1 exactly: the table is NumPy's matrix powers of
    the matrix build_cell makes, for every radius (so small radii vanish, large ones explode)."""
    radii, H, T = (0.5, 1.0, 1.5), 6, 12
    table = dg.vanishing_table(radii, hidden_size=H, steps=T, linear=True, seed=1)
    assert list(table) == list(radii)
    for rho in radii:
        W = dg.build_cell(H, rho, linear=True, seed=1).W_hh.value
        expected = [np.linalg.norm(np.linalg.matrix_power(W, k) @ np.ones(H)) for k in range(T)]
        assert table[rho].shape == (T,)
        np.testing.assert_allclose(table[rho], expected, rtol=1e-10)
    assert table[0.5][-1] < table[0.5][0] < table[1.5][-1]


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_vanishing_table_runs_for_every_cell(kind):
    table = dg.vanishing_table((0.5, 1.5), hidden_size=4, steps=6, cell=kind)
    for norms in table.values():
        assert norms.shape == (6,) and np.all(np.isfinite(norms)) and np.all(norms > 0)
        assert norms[0] == pytest.approx(2.0)  # lag 0: ||readout|| = ||ones(4)||


def test_format_table_shows_every_radius_and_lag_with_its_value():
    """The numbers printed are the table's, to the 4 significant digits shown; lags past the
    end of the rows are left out."""
    table = {0.5: np.array([1.0, 0.25, 3.5e-7]), 1.5: np.array([2.0, 3.0, 4.5e8])}
    text = dg.format_table(table, lags=(0, 2, 7))
    header, *rows = text.splitlines()
    assert header.split() == ["lag", "rho=0.5", "rho=1.5"]
    assert [row.split()[0] for row in rows] == ["0", "2"]
    for row in rows:
        lag, *cells = row.split()
        for rho, cell in zip(table, cells):
            assert "e" in cell
            assert float(cell) == pytest.approx(table[rho][int(lag)], rel=1e-3)


def test_plot_vanishing_writes_a_png(tmp_path):
    table = dg.vanishing_table((0.5, 1.0), hidden_size=4, steps=8)
    path = tmp_path / "vanishing.png"
    assert dg.plot_vanishing(table, path) == path
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_bad_arguments_are_refused_with_a_reason():
    rnn = RNN(RNNCell(2, 3, seed=0))
    xs = np.zeros((4, 2, 2))
    with pytest.raises(ValueError, match="batch of one"):
        dg.jacobian_products(rnn, xs)
    with pytest.raises(ValueError, match="readout has shape"):
        dg.hidden_gradient_norms(rnn, xs, readout=np.ones(3))
    with pytest.raises(ValueError, match="cell must be one of"):
        dg.build_cell(3, 1.0, cell="transformer")
