"""Sections 3 and 4 (and the optional HIPS autograd comparison): the Elman RNN of ``rnn.py``.

3. Second order: mg.hvp, mg.gnvp and a reused mg.gauss_newton closure, each as a ratio to one
   gradient (forward + backward with mg.grad) measured in the same round-robin.
4. The same gradient against a hand-written NumPy BPTT (forward + backward by hand).
A. HIPS autograd's hvp/grad ratio on the same RNN, when ``autograd`` is importable.

Every section first checks its numbers (cheaply) against something independent of the engine:
the hand-written NumPy gradient, finite differences of it, and a Gauss-Newton product assembled
from NumPy pieces.
"""
from __future__ import annotations

import numpy as np

import microgradrnn as mg
import rnn
from _common import Section, compare, ms, ratio, ratio_rows, table, x

SIZES = dict(V=64, H=128, B=32, T=50)


def _describe(problem):
    return (f"V={problem.V} one-hot inputs, H={problem.H}, B={problem.B}, T={problem.T}, "
            f"{problem.n_params:,} parameters, float64")


def _dot(us, vs):
    return sum(float(np.vdot(np.asarray(u), np.asarray(v))) for u, v in zip(us, vs))


def _rel_err(got, want):
    got = np.concatenate([np.ravel(np.asarray(g)) for g in got])
    want = np.concatenate([np.ravel(np.asarray(w)) for w in want])
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def _numpy_gnvp(problem, params, v, eps=1e-5):
    """G v = J^T H_L J v from NumPy pieces: J v by a central difference of the hand-written
    logits, H_L in closed form for the mean softmax cross-entropy, J^T by the hand BPTT."""
    plus = [p + eps * d for p, d in zip(params, v)]
    minus = [p - eps * d for p, d in zip(params, v)]
    jv = (rnn.numpy_logits(problem, plus) - rnn.numpy_logits(problem, minus)) / (2 * eps)
    _, (hs, _, probs) = rnn.numpy_forward(problem, params)
    # Hessian of mean_rows CE(z_row) w.r.t. z_row: (diag(p) - p p^T) / rows.
    h_jv = (probs * jv - probs * np.sum(probs * jv, axis=-1, keepdims=True)) / problem.targets.size
    return rnn.numpy_backward(problem, params, hs, h_jv)


def _numpy_hvp_fd(problem, params, v, eps=1e-5):
    """H v by a central difference of the hand-written NumPy gradient along v."""
    plus = [p + eps * d for p, d in zip(params, v)]
    minus = [p - eps * d for p, d in zip(params, v)]
    g_plus, g_minus = rnn.numpy_grad(problem, plus)[1], rnn.numpy_grad(problem, minus)[1]
    return [(a - b) / (2 * eps) for a, b in zip(g_plus, g_minus)]


def run_second_order(quick=False):
    problem = rnn.Problem(**SIZES)
    section = Section("rnn", "3. Second order on the Elman RNN (" + _describe(problem) + ")")
    model_fn, loss_fn, f = rnn.engine_functions(problem)
    values = problem.params
    params = [mg.Parameter(p, name=n) for p, n in zip(values, rnn.PARAM_NAMES)]
    v = problem.random_direction(1)
    u = problem.random_direction(2)

    # -- correctness (cheap; against NumPy references where possible) --
    hv = [t.numpy() for t in mg.hvp(f, values, v)]
    err = _rel_err(hv, _numpy_hvp_fd(problem, values, v))
    section.check("hvp equals a central difference of the NumPy gradient along v",
                  err < 1e-6, f"max rel. error {err:.1e}")
    hu = [t.numpy() for t in mg.hvp(f, values, u)]
    a, b = _dot(u, hv), _dot(hu, v)
    section.check("hvp symmetric: <u, Hv> == <Hu, v>", abs(a - b) <= 1e-9 * max(abs(a), 1e-30),
                  f"{a:.12g} vs {b:.12g}")
    gv = [t.numpy() for t in mg.gnvp(model_fn, loss_fn, values, v)]
    err = _rel_err(gv, _numpy_gnvp(problem, values, v))
    section.check("gnvp equals J^T H_L J v assembled from NumPy pieces", err < 1e-6,
                  f"max rel. error {err:.1e}")
    G = mg.gauss_newton(model_fn, loss_fn, values)
    gu = [t.numpy() for t in G(u)]
    a, b = _dot(u, gv), _dot(gu, v)
    section.check("gnvp symmetric: <u, Gv> == <Gu, v>", abs(a - b) <= 1e-9 * max(abs(a), 1e-30),
                  f"{a:.12g} vs {b:.12g}")
    vgv = _dot(v, gv)
    section.check("Gauss-Newton is positive semi-definite: <v, Gv> >= 0", vgv >= 0,
                  f"{vgv:.6g}")
    err = _rel_err([t.numpy() for t in G(v)], gv)
    section.check("the reused gauss_newton closure gives gnvp's product", err < 1e-12,
                  f"max rel. error {err:.1e}")

    # -- timing --
    cases = {
        "gradient (mg.grad, forward + backward)": lambda: mg.grad(f(*params), params),
        "forward only (recorded)": lambda: f(*params),
        "mg.hvp (incl. forward)": lambda: mg.hvp(f, values, v),
        "mg.gnvp (incl. forward)": lambda: mg.gnvp(model_fn, loss_fn, values, v),
        "G(v), gauss_newton closure reused": lambda: G(v),
        "mg.gauss_newton(...) construction": lambda: mg.gauss_newton(model_fn, loss_fn, values),
        "mg.hvp with Parameters as primals": lambda: mg.hvp(f, params, v),
    }
    repeats = 5 if quick else 21
    timings = compare(cases, repeats)
    printed = ratio_rows(section, timings, "gradient (mg.grad, forward + backward)",
                         with_min=True)
    section.say(table(["case", "median ms", "min ms", "/ gradient", "(min/min)"], printed))
    section.say(f"  ({repeats} rounds, round-robin. 'with Parameters': primals that require "
                "grad make hvp keep its result differentiable, which costs more.)\n"
                "  For context, quoted in the issue for this machine (not re-measured here): "
                "JAX jit 2.1x, HIPS autograd 2.9x,\n  PyTorch double-backward 3.2x, "
                "torch.autograd.functional.hvp 6.7x.")
    for name, key in (("hvp / gradient", "mg.hvp (incl. forward)"),
                      ("gnvp / gradient", "mg.gnvp (incl. forward)")):
        section.target(name, section.data[key]["ratio_median"], 2.5, "x")
    _overhead_table(section, quick)
    section.data["matmul_flop_ratio_hvp_over_grad"] = _matmul_flop_ratio(problem)
    section.say(f"  Dense-matmul FLOP count of reverse-over-forward hvp / gradient for this "
                f"RNN: {section.data['matmul_flop_ratio_hvp_over_grad']:.2f}x\n"
                "  (counted by hand: what the hvp/gradient ratio of any engine would tend to if "
                "the matmuls were all the work).")
    return section


def _overhead_table(section, quick):
    """The same graphs on tiny arrays: what is left is the engine's own per-node cost."""
    tiny = rnn.Problem(V=2, H=2, B=1, T=SIZES["T"])
    model_fn, loss_fn, f = rnn.engine_functions(tiny)
    params = [mg.Parameter(p) for p in tiny.params]
    v = tiny.random_direction(1)
    G = mg.gauss_newton(model_fn, loss_fn, tiny.params)
    cases = {
        "gradient": lambda: mg.grad(f(*params), params),
        "mg.hvp": lambda: mg.hvp(f, tiny.params, v),
        "mg.gnvp": lambda: mg.gnvp(model_fn, loss_fn, tiny.params, v),
        "G(v), closure reused": lambda: G(v),
        "NumPy by hand: gradient": lambda: rnn.numpy_grad(tiny, tiny.params),
    }
    timings = compare(cases, 5 if quick else 9)
    full = {"gradient": "gradient (mg.grad, forward + backward)",
            "mg.hvp": "mg.hvp (incl. forward)", "mg.gnvp": "mg.gnvp (incl. forward)",
            "G(v), closure reused": "G(v), gauss_newton closure reused"}
    printed = []
    for name, t in timings.items():
        share = ""
        if name in full:
            share = f"{100 * t.median / section.data[full[name]]['median_s']:.0f}%"
        printed.append((name, ms(t.median), x(t.median / timings["gradient"].median), share))
        section.data["tiny: " + name] = t.as_dict()
    section.say(f"  The same graphs on tiny arrays (V=2, H=2, B=1, T={tiny.T}): the engine's own "
                "overhead, without the arithmetic:")
    section.say(table(["tiny case", "median ms", "/ gradient", "of full-size time"], printed))


def _matmul_flop_ratio(problem):
    """Matmul FLOPs of ``mg.hvp`` (reverse mode over forward mode) over those of one gradient,
    counted by hand.

    Per step, in units of B*H multiply-adds: the input product x_t W_xh costs V, the recurrent
    h W_hh costs H, the output h W_hy costs V. A gradient runs each forward product once and its
    VJPs (x_t is constant, so W_xh has one; W_hh and W_hy two each). The hvp runs the forward
    products, their tangents (x_t V_xh; dh W_hh + h V_hh; dh W_hy + h V_hy), then one reverse
    sweep through both: the forward products' VJPs as in a gradient, two for dh W_hh and
    dh W_hy, one for h V_hh and h V_hy (V is a constant), none for x_t V_xh (both constant).
    At t = 0, h_0 is a constant with no tangent.
    """
    V, H, T = problem.V, problem.H, problem.T
    forward = T * (V + H + V)
    backward = T * (V + 2 * H + 2 * V) - H             # no dh_0
    tangent_forward = T * (V + 2 * H + 2 * V) - H      # no dh_0 W_hh
    reverse = T * (3 * V + 2 * H) - H + T * (2 * H + H + 2 * V + V) - 3 * H
    return (forward + tangent_forward + reverse) / (forward + backward)


def run_bptt(quick=False):
    problem = rnn.Problem(**SIZES)
    section = Section("bptt", "4. Gradient of the RNN: microgradrnn vs hand-written NumPy BPTT ("
                      + _describe(problem) + ")")
    _, _, f = rnn.engine_functions(problem)
    params = [mg.Parameter(p, name=n) for p, n in zip(problem.params, rnn.PARAM_NAMES)]
    loss = f(*params)
    ours = [g.numpy() for g in mg.grad(loss, params)]
    np_loss, theirs = rnn.numpy_grad(problem, problem.params)
    section.check("same loss as the hand-written NumPy forward",
                  np.isclose(loss.item(), np_loss, rtol=1e-12, atol=0),
                  f"{loss.item():.15g} vs {np_loss:.15g}")
    close = all(np.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(ours, theirs))
    section.check("same gradient as the hand-written NumPy BPTT (allclose, rtol 1e-9)", close,
                  f"max rel. error {_rel_err(ours, theirs):.1e}")

    with_params = params
    cases = {
        "microgradrnn: forward + mg.grad": lambda: mg.grad(f(*with_params), with_params),
        "NumPy by hand: forward + backward": lambda: rnn.numpy_grad(problem, problem.params),
        "microgradrnn: forward only": lambda: f(*with_params),
        "NumPy by hand: forward only": lambda: rnn.numpy_forward(problem, problem.params),
    }
    repeats = 5 if quick else 15
    timings = compare(cases, repeats)
    printed = []
    for name, t in timings.items():
        printed.append((name, ms(t.median), ms(t.min)))
        section.data[name] = t.as_dict()
    section.say(table(["case", "median ms", "min ms"], printed))
    names = list(cases)
    for label, a, b in (("gradient: ours / hand-written", names[0], names[1]),
                        ("forward: ours / hand-written", names[2], names[3])):
        r_med, r_min = ratio(timings[a], timings[b])
        section.data[label] = {"ratio_median": r_med, "ratio_min": r_min}
        section.say(f"  {label}: {x(r_med)} (min/min {x(r_min)})")
    return section


def run_autograd(quick=False):
    problem = rnn.Problem(**SIZES)
    section = Section("autograd", "A. HIPS autograd on the same RNN (optional)")
    try:
        import autograd
    except ImportError:
        section.say("  skipped: the package 'autograd' is not importable "
                    "(install it with `pip install autograd` to include it)")
        section.data["skipped"] = True
        return section
    section.data["version"] = getattr(autograd, "__version__", "unknown")
    f_flat, unflatten = rnn.autograd_functions(problem)
    theta = rnn.flatten(problem.params)
    v = problem.random_direction(1)
    v_flat = rnn.flatten(v)
    grad_fn = autograd.grad(f_flat)
    hvp_fn = autograd.hessian_vector_product(f_flat)

    _, want_grad = rnn.numpy_grad(problem, problem.params)
    err = _rel_err(unflatten(grad_fn(theta)), want_grad)
    section.check("autograd's gradient equals the hand-written NumPy one", err < 1e-9,
                  f"max rel. error {err:.1e}")
    _, _, f = rnn.engine_functions(problem)
    ours = [t.numpy() for t in mg.hvp(f, problem.params, v)]
    err = _rel_err(unflatten(hvp_fn(theta, v_flat)), ours)
    section.check("autograd's hvp equals mg.hvp", err < 1e-9, f"max rel. error {err:.1e}")

    params = [mg.Parameter(p) for p in problem.params]
    cases = {
        "autograd.grad": lambda: grad_fn(theta),
        "autograd.hessian_vector_product": lambda: hvp_fn(theta, v_flat),
        "mg.grad (forward + backward)": lambda: mg.grad(f(*params), params),
        "mg.hvp": lambda: mg.hvp(f, problem.params, v),
    }
    repeats = 3 if quick else 9
    timings = compare(cases, repeats)
    printed = [(name, ms(t.median), ms(t.min)) for name, t in timings.items()]
    for name, t in timings.items():
        section.data[name] = t.as_dict()
    section.say(table(["case", "median ms", "min ms"], printed))
    for label, a, b in (("autograd hvp / autograd grad", "autograd.hessian_vector_product",
                         "autograd.grad"),
                        ("mg hvp / mg grad", "mg.hvp", "mg.grad (forward + backward)"),
                        ("mg grad / autograd grad", "mg.grad (forward + backward)",
                         "autograd.grad"),
                        ("mg hvp / autograd hvp", "mg.hvp", "autograd.hessian_vector_product")):
        r_med, r_min = ratio(timings[a], timings[b])
        section.data[label] = {"ratio_median": r_med, "ratio_min": r_min}
        section.say(f"  {label}: {x(r_med)} (min/min {x(r_min)})")
    return section
