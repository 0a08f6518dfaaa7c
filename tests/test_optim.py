"""Optimizers and gradient clipping (microgradrnn.optim).

Every update is compared with its textbook formula written again here in plain NumPy (the
algorithm boxes of the papers / torch.optim), over a few steps on random shapes, with some
gradients missing. Then: steps rebind values (graphs recorded before a step stay right),
checkpoints through a real .npz file resume bit for bit, and refused checkpoints change nothing.
Clipping and the sum-vs-mean scaling are in test_clipping.py.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import microgradrnn as mg
import microgradrnn.optim as optim
from microgradrnn.testing.strategies import small_shapes

FLOATS = st.floats(-3, 3, allow_subnormal=False)


def arrays(shape):
    return hnp.arrays(np.float64, shape, elements=FLOATS)


@st.composite
def problems(draw, max_steps=4):
    """Initial values of 1-3 parameters and, per step, a gradient for each or None (missing
    gradients: that parameter must not move and its step count must not advance)."""
    shapes = draw(st.lists(small_shapes(max_dims=2, max_side=3), min_size=1, max_size=3))
    thetas = [draw(arrays(s)) for s in shapes]
    steps = draw(st.integers(1, max_steps))
    grads = [[draw(st.one_of(arrays(s), st.none()) if k else arrays(s)) for s in shapes]
             for k in range(steps)]
    return thetas, grads


# -- the textbook formulas, written independently --------------------------------------------

def reference(thetas, grads, per_param_update):
    """Apply ``per_param_update(theta, g, state, t)`` to each parameter whose gradient is
    present, with its own step count t (1, 2, ...) and its own state dict."""
    thetas = [np.array(x) for x in thetas]
    states = [{"t": 0} for _ in thetas]
    for step in grads:
        for i, g in enumerate(step):
            if g is not None:
                states[i]["t"] += 1
                thetas[i] = per_param_update(thetas[i], g, states[i], states[i]["t"])
    return thetas


def sgd_formula(lr, momentum=0.0, nesterov=False, weight_decay=0.0, dampening=0.0):
    # Sutskever et al. 2013 in torch.optim.SGD's form: b_1 = g_1, b_t = mu b + (1 - tau) g.
    def update(theta, g, s, t):
        g = g + weight_decay * theta
        if momentum:
            s["b"] = g if t == 1 else momentum * s["b"] + (1 - dampening) * g
            g = g + momentum * s["b"] if nesterov else s["b"]
        return theta - lr * g
    return update


def adagrad_formula(lr=0.01, eps=1e-10, initial_accumulator_value=0.0, eps_inside_sqrt=False,
                    weight_decay=0.0):
    # Duchi et al. 2011: G_t = G_0 + sum_k g_k^2;  theta -= lr g / (sqrt(G_t) + eps).
    def update(theta, g, s, t):
        g = g + weight_decay * theta
        s["G"] = s.get("G", initial_accumulator_value) + g ** 2
        denom = np.sqrt(s["G"] + eps) if eps_inside_sqrt else np.sqrt(s["G"]) + eps
        return theta - lr * g / denom
    return update


def rmsprop_formula(lr=0.01, alpha=0.99, eps=1e-8, momentum=0.0, centered=False,
                    weight_decay=0.0):
    # Hinton 2012; centered: Graves 2013 eq. 38-40, dividing by sqrt(E[g^2] - E[g]^2).
    def update(theta, g, s, t):
        g = g + weight_decay * theta
        s["Eg2"] = alpha * s.get("Eg2", 0.0) + (1 - alpha) * g ** 2
        s["Eg"] = alpha * s.get("Eg", 0.0) + (1 - alpha) * g
        variance = s["Eg2"] - s["Eg"] ** 2 if centered else s["Eg2"]
        direction = g / (np.sqrt(variance) + eps)
        if momentum:
            s["b"] = momentum * s.get("b", 0.0) + direction
            direction = s["b"]
        return theta - lr * direction
    return update


def adam_formula(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
    # Kingma & Ba 2015, Algorithm 1, with bias-corrected moments; AMSGrad (Reddi et al. 2018)
    # takes the running maximum of v before the correction, as torch.optim.Adam does.
    beta1, beta2 = betas

    def update(theta, g, s, t):
        g = g + weight_decay * theta
        s["m"] = beta1 * s.get("m", 0.0) + (1 - beta1) * g
        s["v"] = beta2 * s.get("v", 0.0) + (1 - beta2) * g ** 2
        v = s["v"]
        if amsgrad:
            s["vmax"] = v = np.maximum(s.get("vmax", 0.0), v)
        m_hat, v_hat = s["m"] / (1 - beta1 ** t), v / (1 - beta2 ** t)
        return theta - lr * m_hat / (np.sqrt(v_hat) + eps)
    return update


LRS = st.floats(1e-3, 0.5)
DECAYS = st.sampled_from([0.0, 0.01, 0.3])
UNIT = st.floats(0.1, 0.95)
CASES = {
    "sgd": (optim.SGD, sgd_formula, dict(lr=LRS, weight_decay=DECAYS)),
    "sgd_momentum": (optim.SGD, sgd_formula, dict(lr=LRS, momentum=UNIT, weight_decay=DECAYS,
                                                  dampening=st.floats(0, 0.5))),
    "sgd_nesterov": (optim.SGD, sgd_formula, dict(lr=LRS, momentum=UNIT, nesterov=st.just(True),
                                                  weight_decay=DECAYS)),
    "adagrad": (optim.Adagrad, adagrad_formula,
                dict(lr=LRS, eps=st.sampled_from([1e-10, 1e-3]), weight_decay=DECAYS,
                     initial_accumulator_value=st.floats(0, 1))),
    "adagrad_eps_inside_sqrt": (optim.Adagrad, adagrad_formula,
                                dict(lr=LRS, eps=st.sampled_from([1e-8, 1e-3]),
                                     eps_inside_sqrt=st.just(True))),
    "rmsprop": (optim.RMSprop, rmsprop_formula,
                dict(lr=LRS, alpha=st.floats(0.5, 0.99), weight_decay=DECAYS)),
    "rmsprop_centered": (optim.RMSprop, rmsprop_formula,
                         dict(lr=LRS, alpha=st.floats(0.5, 0.99), centered=st.just(True))),
    "rmsprop_momentum": (optim.RMSprop, rmsprop_formula,
                         dict(lr=LRS, momentum=UNIT, centered=st.booleans(),
                              weight_decay=DECAYS)),
    "adam": (optim.Adam, adam_formula,
             dict(lr=LRS, betas=st.tuples(UNIT, st.floats(0.5, 0.999)), weight_decay=DECAYS)),
    "adam_amsgrad": (optim.Adam, adam_formula,
                     dict(lr=LRS, betas=st.tuples(UNIT, st.floats(0.5, 0.999)),
                          amsgrad=st.just(True), eps=st.sampled_from([1e-8, 1e-3]))),
}


def run(cls, thetas, grads, hyper):
    params = [mg.Parameter(x) for x in thetas]
    opt = cls(params, **hyper)
    for step in grads:
        for p, g in zip(params, step):
            p.grad = g
        opt.step()
    return params, opt


@pytest.mark.parametrize("case", CASES)
@given(data=st.data())
def test_update_matches_the_textbook_formula(case, data):
    """Each optimizer, each variant (momentum, Nesterov, centered, AMSGrad, weight decay, eps
    inside the root), over 1-4 steps with some gradients missing, equals the formula above."""
    cls, formula, hyper_strategies = CASES[case]
    thetas, grads = data.draw(problems())
    hyper = data.draw(st.fixed_dictionaries(hyper_strategies))
    params, opt = run(cls, thetas, grads, hyper)
    expected = reference(thetas, grads, formula(**hyper))
    for p, x in zip(params, expected):
        np.testing.assert_allclose(p.value, x, rtol=1e-10, atol=1e-12)
    # per-parameter step counts: only steps with a gradient count
    for i, state in enumerate(opt.state):
        taken = sum(step[i] is not None for step in grads)
        assert state.get("step", 0) == taken
    assert opt.step_count == len(grads)


FACTORIES = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adagrad": lambda ps: optim.Adagrad(ps, lr=0.1, initial_accumulator_value=0.1),
    "rmsprop": lambda ps: optim.RMSprop(ps, momentum=0.5, centered=True, weight_decay=0.01),
    "adam": lambda ps: optim.Adam(ps, lr=0.01, amsgrad=True, weight_decay=0.01),
}


def rng_params(seed):
    rng = np.random.default_rng(seed)
    W = mg.Parameter(rng.normal(size=(3, 4)), name="W")
    b = mg.Parameter(rng.normal(size=3), name="b")
    unused = mg.Parameter(rng.normal(size=2), name="unused")   # never gets a gradient
    x, y = rng.normal(size=4), rng.normal(size=3)
    return [W, b, unused], x, y


def loss_of(params, x, y):
    W, b, _ = params
    return (((W @ x + b).tanh() - y) ** 2).sum()


def train(opt, params, x, y, steps):
    for _ in range(steps):
        opt.zero_grad()
        loss_of(params, x, y).backward()
        opt.step()


@pytest.mark.parametrize("name", FACTORIES)
def test_a_parameter_without_gradient_is_untouched(name):
    """``grad is None`` means no update at all: the same array object, no state, while the
    others move."""
    params, x, y = rng_params(0)
    before = [p.value for p in params]
    opt = FACTORIES[name](params)
    train(opt, params, x, y, 3)
    assert params[2].value is before[2] and opt.state[2] == {}
    assert not np.array_equal(params[0].value, before[0])


@pytest.mark.parametrize("name", FACTORIES)
def test_a_graph_recorded_before_the_step_still_differentiates_the_old_values(name):
    """step() rebinds p.value and never writes into the old array, so a loss recorded before
    the step backpropagates with the values it was computed from (closed form below)."""
    params, x, y = rng_params(1)
    W, b, _ = params
    W0, b0 = W.value.copy(), b.value.copy()
    old = W.value
    loss = loss_of(params, x, y)                          # recorded at W0, b0
    W.grad, b.grad = np.ones(W.shape), np.ones(b.shape)
    FACTORIES[name](params).step()
    assert W.value is not old and np.array_equal(old, W0)
    W.grad = b.grad = None
    loss.backward()
    h = np.tanh(W0 @ x + b0)
    delta = 2 * (h - y) * (1 - h ** 2)                     # d loss / d (W x + b)
    np.testing.assert_allclose(W.grad, np.outer(delta, x), rtol=1e-12)
    np.testing.assert_allclose(b.grad, delta, rtol=1e-12)


def test_zero_grad_forgets_every_gradient():
    params, x, y = rng_params(2)
    opt = optim.SGD(params, lr=0.1)
    loss_of(params, x, y).backward()
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_a_wrong_gradient_shape_is_refused_before_any_parameter_moves():
    params, _, _ = rng_params(3)
    before = [p.value for p in params]
    params[0].grad = np.ones(params[0].shape)
    params[1].grad = np.ones(5)
    with pytest.raises(ValueError, match=r"params\[1\] has shape \(3,\) but its .grad has"):
        optim.Adam(params).step()
    assert all(p.value is v for p, v in zip(params, before))


def walk(obj, path="opt"):
    """Every leaf value reachable through dicts, lists and tuples, with its path."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from walk(v, f"{path}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for k, v in enumerate(obj):
            yield from walk(v, f"{path}[{k}]")
    else:
        yield path, obj


@pytest.mark.parametrize("name", FACTORIES)
def test_state_holds_only_arrays_and_numbers_even_from_tensor_gradients(name):
    """After backward(create_graph=True) the gradients are Tensors with graphs; the optimizer
    uses their values (same steps as with array gradients) and keeps no Tensor, no node."""
    results = []
    for create_graph in (True, False):
        params, x, y = rng_params(4)
        opt = FACTORIES[name](params)
        for _ in range(3):
            opt.zero_grad()
            loss_of(params, x, y).backward(create_graph=create_graph)
            assert isinstance(params[0].grad, mg.Tensor) == create_graph
            opt.step()
        results.append([p.value for p in params])
        state = {k: v for k, v in vars(opt).items() if k != "params"}
        for path, leaf in walk(state):
            assert isinstance(leaf, (np.ndarray, bool, int, float)), (path, type(leaf))
            assert not isinstance(leaf, np.ndarray) or leaf.dtype == np.float64, path
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


# -- checkpoints -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", FACTORIES)
def test_resume_from_an_npz_checkpoint_is_bit_exact(name, tmp_path):
    """5 steps, save to .npz, load (allow_pickle=False) into a fresh optimizer built with other
    (default) hyperparameters over copies of the parameters, 5 more steps: exactly the same as
    10 steps without interruption (np.array_equal), state included."""
    params, x, y = rng_params(5)
    straight = FACTORIES[name](params)
    train(straight, params, x, y, 10)

    first, _, _ = rng_params(5)
    opt = FACTORIES[name](first)
    train(opt, first, x, y, 5)
    np.savez(tmp_path / "ckpt.npz", **opt.state_dict())
    with np.load(tmp_path / "ckpt.npz", allow_pickle=False) as f:
        saved = dict(f)
    copies = [mg.Parameter(p.value, name=p.name) for p in first]
    resumed = type(opt)(copies, lr=0.5)
    resumed.load_state_dict(saved)
    assert resumed.hyperparameters == opt.hyperparameters
    train(resumed, copies, x, y, 5)

    for p, q in zip(params, copies):
        assert np.array_equal(p.value, q.value)
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def adam_after_two_steps():
    params, x, y = rng_params(6)
    opt = optim.Adam(params, lr=0.01)
    train(opt, params, x, y, 2)
    return opt


def edit(**changes):
    def apply(d):
        for key, value in changes.items():
            if value is None:
                del d[key]
            else:
                d[key] = value(d) if callable(value) else value
        return d
    return apply


REFUSALS = {
    "another class": (edit(optimizer=np.array("SGD")), "saved by SGD, not by Adam"),
    "not a dict": (lambda d: list(d.items()), "expected a dict"),
    "missing hyperparameter": (edit(lr=None), r"missing keys \['lr'\]"),
    "missing state array": (edit(**{"state.0.exp_avg": None}), "parameter 0 has state"),
    "missing state step": (edit(**{"state.1.step": None}), "parameter 1 has state"),
    "unknown key": (edit(foo=1), "unexpected key 'foo'"),
    "unknown state name": (edit(**{"state.0.bogus": np.zeros((3, 4))}), "'state.0.bogus'"),
    "parameter out of range": (edit(**{"state.7.step": 1}), "'state.7.step'"),
    "wrong shape": (edit(**{"state.0.exp_avg": np.zeros((4, 3))}), r"shape \(4, 3\)"),
    "wrong dtype": (edit(**{"state.0.exp_avg": lambda d: d["state.0.exp_avg"].astype(
        np.float32)}), "dtype float32"),
    "other parameter count": (edit(num_params=2), "state is for 2 parameters"),
    "negative lr": (edit(lr=-1.0), r"lr must be in \[0, inf\)"),
    "beta of 1": (edit(betas=np.array([0.9, 1.0])), r"betas\[1\] must be in \[0, 1\)"),
    "flag that needs more state": (edit(amsgrad=True), "expected"),
    "fractional step": (edit(step=2.5), "step must be an integer"),
    "zero parameter step": (edit(**{"state.0.step": 0}), "state.0.step must be an integer >= 1"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_mismatched_checkpoint_is_refused_and_changes_nothing(case):
    change, message = REFUSALS[case]
    opt = adam_after_two_steps()
    before = opt.state_dict()
    hyper = dict(opt.hyperparameters)
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(change(opt.state_dict()))
    after = opt.state_dict()
    assert after.keys() == before.keys() and opt.hyperparameters == hyper
    assert all(np.array_equal(after[k], before[k]) for k in after)


# -- construction --------------------------------------------------------------------------------

def test_parameters_may_come_from_a_generator():
    params, _, _ = rng_params(7)
    assert optim.SGD((p for p in params), lr=0.1).params == params


def _leaf():
    return mg.Parameter(np.ones(2), name="w")


BAD_PARAMS = {
    "duplicate": (lambda w: [w, w], ValueError, r"params\[1\] \('w'\) is the same Tensor as "
                                                 r"params\[0\]"),
    "non-leaf": (lambda w: [w, w * 2], ValueError, r"params\[1\] is not a leaf"),
    "no grad": (lambda w: [w, mg.tensor([1.0])], ValueError, r"params\[1\] does not require"),
    "empty": (lambda w: [], ValueError, "no parameters"),
    "single tensor": (lambda w: w, TypeError, "not a single Tensor"),
    "set": (lambda w: {w}, TypeError, "no stable order"),
    "array": (lambda w: [w, np.ones(2)], TypeError, r"params\[1\] is a ndarray"),
}


@pytest.mark.parametrize("case", BAD_PARAMS)
def test_bad_parameter_lists_are_refused(case):
    make, error, message = BAD_PARAMS[case]
    with pytest.raises(error, match=message):
        optim.Adam(make(_leaf()))


BAD_HYPER = [
    (optim.SGD, dict(lr=-0.1), ValueError, "lr must be in"),
    (optim.SGD, dict(lr=float("nan")), ValueError, "lr must be in"),
    (optim.SGD, dict(lr="0.1"), TypeError, "lr must be a number"),
    (optim.SGD, dict(lr=0.1, nesterov=True), ValueError, "nesterov=True needs momentum > 0"),
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, dampening=0.1), ValueError,
     "dampening = 0"),
    (optim.SGD, dict(lr=0.1, momentum=1.0), ValueError, r"momentum must be in \[0, 1\)"),
    (optim.SGD, dict(lr=0.1, nesterov=1), TypeError, "nesterov must be True or False"),
    (optim.Adagrad, dict(eps=-1e-10), ValueError, "eps must be in"),
    (optim.Adagrad, dict(initial_accumulator_value=-1), ValueError, "initial_accumulator"),
    (optim.RMSprop, dict(alpha=1.0), ValueError, r"alpha must be in \[0, 1\)"),
    (optim.RMSprop, dict(momentum=-0.5), ValueError, "momentum must be in"),
    (optim.Adam, dict(betas=(0.9, 1.0)), ValueError, r"betas\[1\] must be in \[0, 1\)"),
    (optim.Adam, dict(betas=(-0.1, 0.999)), ValueError, r"betas\[0\] must be in"),
    (optim.Adam, dict(betas=(0.9,)), TypeError, "betas must be a pair"),
    (optim.Adam, dict(weight_decay=-1.0), ValueError, "weight_decay must be in"),
]


@pytest.mark.parametrize("cls, hyper, error, message", BAD_HYPER)
def test_bad_hyperparameters_are_refused(cls, hyper, error, message):
    with pytest.raises(error, match=message):
        cls([_leaf()], **hyper)
