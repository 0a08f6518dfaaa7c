"""Higher order and function transforms, each against an independent reference: closed
forms, finite differences of gradients, and explicit Jacobian/Hessian matrices."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import arrays

import microgradrnn as mg
from microgradrnn.functional import cross_entropy

finite = st.floats(-2.0, 2.0, allow_nan=False)
vectors = arrays(np.float64, st.integers(1, 5), elements=finite)


@given(arrays(np.float64, st.integers(1, 6), elements=finite))
def test_third_derivative_of_tanh_matches_its_closed_form(x0):
    # tanh''' = -2 (1 - tanh^2)(1 - 3 tanh^2)
    x = mg.tensor(x0, requires_grad=True)
    (d1,) = mg.grad(x.tanh().sum(), [x], create_graph=True)
    (d2,) = mg.grad(d1.sum(), [x], create_graph=True)
    (d3,) = mg.grad(d2.sum(), [x])
    t = np.tanh(x0)
    np.testing.assert_allclose(d1.value, 1 - t**2, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(d2.value, -2 * t * (1 - t**2), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(d3.value, -2 * (1 - t**2) * (1 - 3 * t**2), rtol=1e-11, atol=1e-13)


def _tanh_features(A):
    """f(x) = sum tanh(A x): gradient A^T (1 - t^2), Hessian A^T diag(-2 t (1 - t^2)) A."""
    def f(x):
        return (mg.tensor(A) @ x).tanh().sum()

    def hessian(x):
        t = np.tanh(A @ x)
        return A.T @ np.diag(-2 * t * (1 - t**2)) @ A
    return f, hessian


@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.integers(1, 4))
def test_hvp_matches_the_closed_form_hessian_and_a_difference_of_gradients(seed, n, m):
    rng = np.random.default_rng(seed)
    A, x0, v = rng.normal(size=(m, n)), rng.normal(size=n), rng.normal(size=n)
    f, hessian = _tanh_features(A)
    (hv,) = mg.hvp(f, (x0,), (v,))
    np.testing.assert_allclose(hv.value, hessian(x0) @ v, rtol=1e-10, atol=1e-12)

    eps = 1e-6
    numeric = (_grad_value(f, x0 + eps * v) - _grad_value(f, x0 - eps * v)) / (2 * eps)
    np.testing.assert_allclose(hv.value, numeric, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(mg.hessian(f, x0).value, hessian(x0), rtol=1e-10, atol=1e-12)


def _grad_value(f, x):
    t = mg.tensor(x, requires_grad=True)
    f(t).backward()
    return t.grad


def test_forward_over_reverse_equals_reverse_over_reverse():
    rng = np.random.default_rng(1)
    W0, v = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    x = mg.tensor(rng.normal(size=(2, 3)))

    def f(W):
        return ((x @ W).tanh() @ W).sigmoid().sum()
    (forward_over_reverse,) = mg.hvp(f, (W0,), (v,))
    W = mg.tensor(W0, requires_grad=True)
    (g,) = mg.grad(f(W), [W], create_graph=True)
    (reverse_over_reverse,) = mg.grad((g * v).sum(), [W])
    np.testing.assert_allclose(forward_over_reverse.value, reverse_over_reverse.value,
                               rtol=1e-12, atol=1e-14)


def test_reverse_over_forward_differentiates_a_jvp():
    # d/dx <tangent of tanh at x along v> = d/dx [(1 - tanh^2 x) v] = -2 tanh (1 - tanh^2) v
    x0, v = np.array([0.3, -1.2]), np.array([1.0, 2.0])
    x = mg.tensor(x0, requires_grad=True)
    _, tangent = mg.jvp(lambda a: a.tanh(), (x,), (v,))
    (g,) = mg.grad(tangent.sum(), [x])
    t = np.tanh(x0)
    np.testing.assert_allclose(g.value, -2 * t * (1 - t**2) * v, rtol=1e-13)


def test_nested_jvp_gives_a_second_directional_derivative():
    # d^2/de^2 exp(x + e u) = u^2 exp(x), taken as a jvp of a jvp
    x0, u = np.array([0.1, 0.5]), np.array([2.0, -1.0])

    def directional(x):
        return mg.jvp(lambda a: a.exp(), (x,), (u,))[1]
    _, second = mg.jvp(directional, (x0,), (u,))
    np.testing.assert_allclose(second.value, u**2 * np.exp(x0), rtol=1e-14)


def test_jvp_matches_the_explicit_jacobian_and_vjp_its_transpose():
    rng = np.random.default_rng(2)
    A, x0 = rng.normal(size=(4, 3)), rng.normal(size=3)
    u, v = rng.normal(size=3), rng.normal(size=4)

    def f(x):
        return (mg.tensor(A) @ x).sigmoid()
    s = 1 / (1 + np.exp(-(A @ x0)))
    J = np.diag(s * (1 - s)) @ A
    out, ju = mg.jvp(f, (x0,), (u,))
    np.testing.assert_allclose(out.value, s, rtol=1e-14)
    np.testing.assert_allclose(ju.value, J @ u, rtol=1e-12)
    _, pullback = mg.vjp(f, x0)
    np.testing.assert_allclose(pullback(v)[0].value, J.T @ v, rtol=1e-12)
    np.testing.assert_allclose(mg.jacobian(f, x0).value, J, rtol=1e-12)


def test_vjp_and_jvp_keep_argument_positions_apart():
    # f(a, b) = a * b^2 called with the same array twice: partials b^2 and 2ab, not their sum.
    x0 = np.array([1.5, -2.0])
    _, pullback = mg.vjp(lambda a, b: a * b * b, x0, x0)
    ga, gb = pullback(np.ones(2))
    np.testing.assert_allclose(ga.value, x0**2)
    np.testing.assert_allclose(gb.value, 2 * x0 * x0)
    x = mg.tensor(x0, requires_grad=True)
    _, pullback = mg.vjp(lambda a, b: a * b * b, x, x)
    ga, gb = pullback(np.ones(2))
    np.testing.assert_allclose(gb.value, 2 * x0 * x0)


# -- Gauss-Newton -------------------------------------------------------------------------------

def _classifier(seed, batch=3, features=4, classes=3):
    """z = tanh(x W1) W2, mean softmax cross-entropy; explicit J and H_L for G = J^T H_L J."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, features))
    targets = rng.integers(0, classes, size=batch)
    W1, W2 = rng.normal(size=(features, 5)) * 0.7, rng.normal(size=(5, classes)) * 0.7

    def model(W1, W2):
        return (mg.tensor(x) @ W1).tanh() @ W2

    def loss(z):
        return cross_entropy(z, targets)

    def explicit_G(W1v, W2v):
        h = np.tanh(x @ W1v)
        z = h @ W2v
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        # H_L: block diagonal over rows, (diag p - p p^T) / batch
        H = np.zeros((z.size, z.size))
        for b in range(batch):
            block = slice(b * classes, (b + 1) * classes)
            H[block, block] = (np.diag(p[b]) - np.outer(p[b], p[b])) / batch
        # J: dz/d(W1, W2), flattened row-major, built entry by entry from the chain rule
        J1 = np.zeros((batch, classes) + W1v.shape)
        J2 = np.zeros((batch, classes) + W2v.shape)
        for b in range(batch):
            for c in range(classes):
                J2[b, c, :, c] = h[b]
                J1[b, c] = np.outer(x[b], (1 - h[b] ** 2) * W2v[:, c])
        J = np.concatenate([J1.reshape(z.size, -1), J2.reshape(z.size, -1)], axis=1)
        return J.T @ H @ J

    return model, loss, (W1, W2), explicit_G


@given(st.integers(0, 2**32 - 1))
def test_gnvp_matches_explicit_jacobians_and_is_positive_semidefinite(seed):
    model, loss, (W1, W2), explicit_G = _classifier(seed)
    rng = np.random.default_rng(seed + 1)
    v = (rng.normal(size=W1.shape), rng.normal(size=W2.shape))
    g1, g2 = mg.gnvp(model, loss, (W1, W2), v)
    flat = np.concatenate([g1.value.ravel(), g2.value.ravel()])
    v_flat = np.concatenate([v[0].ravel(), v[1].ravel()])
    G = explicit_G(W1, W2)
    np.testing.assert_allclose(flat, G @ v_flat, rtol=1e-10, atol=1e-12)
    assert v_flat @ flat >= -1e-12  # v^T G v >= 0


def test_gauss_newton_closure_reuses_one_forward_pass_for_many_products():
    model, loss, params, explicit_G = _classifier(5)
    G = mg.gauss_newton(model, loss, params)
    rng = np.random.default_rng(6)
    for _ in range(3):
        v = tuple(rng.normal(size=p.shape) for p in params)
        got = np.concatenate([g.value.ravel() for g in G(v)])
        want = explicit_G(*params) @ np.concatenate([a.ravel() for a in v])
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@given(st.integers(0, 2**32 - 1))
def test_gauss_newton_of_two_outputs_is_the_product_of_the_joined_output(seed):
    """A model with outputs (z, h) under L(z, h) has G = J^T H_L J with J the Jacobian of
    (z, h) together. Checked two ways: against the explicit matrix for a block-diagonal loss
    (cross-entropy of z plus c/2 ||h - h0||^2, as Hessian-free's structural damping), and,
    with a cross term in the loss, against the same model joined into one flat output."""
    model, loss, (W1, W2), explicit_G = _classifier(seed)
    rng = np.random.default_rng(seed + 7)
    x = np.random.default_rng(seed).normal(size=(3, 4))  # _classifier's inputs, drawn again
    c, h0 = 0.3, np.tanh(x @ W1)

    def two(W1, W2):
        h = (mg.tensor(x) @ W1).tanh()
        return h @ W2, h

    def penalised(z, h):
        return loss(z) + 0.5 * c * ((h - h0) ** 2).sum()

    v = (rng.normal(size=W1.shape), rng.normal(size=W2.shape))
    v_flat = np.concatenate([v[0].ravel(), v[1].ravel()])
    got = np.concatenate([g.value.ravel() for g in mg.gnvp(two, penalised, (W1, W2), v)])
    J_h = np.zeros((3, 5) + W1.shape)  # dh[b, k] / dW1[i, k] = x[b, i] (1 - h[b, k]^2)
    for b in range(3):
        for k in range(5):
            J_h[b, k, :, k] = x[b] * (1 - h0[b, k] ** 2)
    J_h = np.concatenate([J_h.reshape(15, -1), np.zeros((15, W2.size))], axis=1)
    want = explicit_G(W1, W2) @ v_flat + c * J_h.T @ (J_h @ v_flat)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)

    def crossed(z, h):
        return penalised(z, h) + (z[:, :1] * h[:, :1]).sum()

    def joined(W1, W2):
        z, h = two(W1, W2)
        return mg.concatenate([z.reshape(-1), h.reshape(-1)])

    def joined_loss(zh):
        return crossed(zh[:9].reshape(3, 3), zh[9:].reshape(3, 5))
    got = np.concatenate([g.value.ravel() for g in mg.gnvp(two, crossed, (W1, W2), v)])
    want = np.concatenate([g.value.ravel() for g in mg.gnvp(joined, joined_loss, (W1, W2), v)])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_gauss_newton_equals_the_hessian_when_the_model_is_linear_in_the_parameters():
    rng = np.random.default_rng(3)
    x, targets = rng.normal(size=(4, 3)), rng.integers(0, 2, size=4)
    W0, v = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))

    def model(W):
        return mg.tensor(x) @ W

    def loss(z):
        return cross_entropy(z, targets)
    (gv,) = mg.gnvp(model, loss, (W0,), (v,))
    (hv,) = mg.hvp(lambda W: loss(model(W)), (W0,), (v,))
    np.testing.assert_allclose(gv.value, hv.value, rtol=1e-12, atol=1e-14)


# -- checkpointing --------------------------------------------------------------------------------

def _step(h, W, x):
    return (h @ W + x).tanh()


def test_checkpoint_gives_the_same_gradients_and_forward_tangents():
    rng = np.random.default_rng(4)
    W0, h0, x0 = rng.normal(size=(3, 3)), rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    plain = [mg.Parameter(W0), mg.tensor(h0, requires_grad=True)]
    saved = [mg.Parameter(W0), mg.tensor(h0, requires_grad=True)]
    _step(_step(plain[1], plain[0], x0), plain[0], x0).sum().backward()
    out = mg.checkpoint(_step, mg.checkpoint(_step, saved[1], saved[0], x0), saved[0], x0)
    assert out.node.primitive.name == "checkpoint"
    out.sum().backward()
    for a, b in zip(plain, saved):
        np.testing.assert_allclose(b.grad, a.grad, rtol=1e-13)
    u = rng.normal(size=(3, 3))
    _, t_plain = mg.jvp(lambda W: _step(mg.tensor(h0), W, x0), (W0,), (u,))
    _, t_ckpt = mg.jvp(lambda W: mg.checkpoint(_step, mg.tensor(h0), W, x0), (W0,), (u,))
    np.testing.assert_allclose(t_ckpt.value, t_plain.value, rtol=1e-13)


def test_checkpoint_second_order_matches_the_plain_graph():
    rng = np.random.default_rng(5)
    W0, h0, v = rng.normal(size=(3, 3)), rng.normal(size=(2, 3)), rng.normal(size=(3, 3))
    x0 = np.zeros((2, 3))
    (plain,) = mg.hvp(lambda W: _step(mg.tensor(h0), W, x0).sum(), (W0,), (v,))
    (ckpt,) = mg.hvp(lambda W: mg.checkpoint(_step, mg.tensor(h0), W, x0).sum(), (W0,), (v,))
    np.testing.assert_allclose(ckpt.value, plain.value, rtol=1e-12)


def test_checkpoint_reports_a_closed_over_parameter():
    W = mg.Parameter(np.eye(2), name="W_hh")
    out = mg.checkpoint(lambda h: (h @ W).tanh(), mg.tensor(np.ones((1, 2)), requires_grad=True))
    with pytest.raises(RuntimeError, match="W_hh"):
        out.sum().backward()


def test_no_transform_writes_grad():
    W = mg.Parameter(np.ones((2, 2)))
    f = lambda A: (A @ A).tanh().sum()  # noqa: E731
    mg.grad(f(W), [W])
    mg.hvp(f, (W,), (np.ones((2, 2)),))
    mg.jvp(f, (W,), (np.ones((2, 2)),))
    mg.vjp(f, W)[1](np.array(1.0))
    mg.gnvp(lambda A: A @ A, lambda z: (z * z).sum(), (W,), (np.ones((2, 2)),))
    assert W.grad is None
