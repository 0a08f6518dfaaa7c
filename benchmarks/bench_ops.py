"""Section 1: the per-op overhead of the engine on tiny arrays.

On a (4, 4) array NumPy itself takes well under a microsecond, so what is measured is the
engine's own cost per operation: dispatch, recording a node, walking the graph, calling the
derivative rule. Each engine case is compared with the bare NumPy calls that compute the same
values by hand (the forward, and for forward+backward the derivative formula too).
"""
from __future__ import annotations

import numpy as np

import microgradrnn as mg
from _common import Section, compare, ratio, table, us, x

SHAPE = (4, 4)


def _cases():
    rng = np.random.default_rng(0)
    av, bv, gv = (rng.normal(size=SHAPE) for _ in range(3))
    gv.flags.writeable = False
    a = mg.tensor(av, requires_grad=True)
    b = mg.tensor(bv, requires_grad=True)
    av, bv = a.numpy(), b.numpy()  # the very arrays the engine holds

    def engine_mul_fwd():
        return a * b

    def numpy_mul_fwd():
        return av * bv

    def engine_mul_bwd():
        z = a * b
        z.backward(gv)
        a.grad = b.grad = None

    def numpy_mul_bwd():
        z = av * bv
        return z, gv * bv, gv * av

    def engine_mul_grad():
        return mg.grad(a * b, [a, b], grad_outputs=gv)

    def engine_tanh_fwd():
        return a.tanh()

    def numpy_tanh_fwd():
        return np.tanh(av)

    def engine_tanh_bwd():
        y = a.tanh()
        y.backward(gv)
        a.grad = None

    def numpy_tanh_bwd():
        y = np.tanh(av)
        return y, gv * (1 - y * y)

    def engine_tanh_grad():
        return mg.grad(a.tanh(), [a], grad_outputs=gv)

    # Check that the engine cases compute what the NumPy cases compute.
    checks = []
    z = a * b
    z.backward(gv)
    _, ga, gb = numpy_mul_bwd()
    checks.append(("mul: engine forward and gradients equal NumPy's",
                   np.array_equal(z.numpy(), av * bv) and np.array_equal(a.grad, ga)
                   and np.array_equal(b.grad, gb)))
    a.grad = b.grad = None
    y = a.tanh()
    y.backward(gv)
    _, gt = numpy_tanh_bwd()
    checks.append(("tanh: engine forward and gradient equal NumPy's",
                   np.array_equal(y.numpy(), np.tanh(av)) and np.allclose(a.grad, gt,
                                                                          rtol=1e-15, atol=0)))
    a.grad = None

    rows = [
        # (label, engine case, numpy case)
        ("mul forward (recorded)", engine_mul_fwd, numpy_mul_fwd),
        ("mul forward + z.backward(g)", engine_mul_bwd, numpy_mul_bwd),
        ("mul forward + mg.grad", engine_mul_grad, numpy_mul_bwd),
        ("tanh forward (recorded)", engine_tanh_fwd, numpy_tanh_fwd),
        ("tanh forward + y.backward(g)", engine_tanh_bwd, numpy_tanh_bwd),
        ("tanh forward + mg.grad", engine_tanh_grad, numpy_tanh_bwd),
    ]
    return rows, checks


def run(quick=False):
    section = Section("ops", f"1. Per-op overhead on {SHAPE} float64 arrays "
                             "(microseconds per call; NumPy = the same math by hand)")
    rows, checks = _cases()
    for name, ok in checks:
        section.check(name, ok)
    repeats, target = (3, 0.02) if quick else (9, 0.1)
    cases = {}
    for label, engine, numpy_fn in rows:
        cases[("engine", label)] = engine
        cases[("numpy", label)] = numpy_fn
    # One round-robin over the six distinct NumPy references and six engine cases.
    unique = {}
    for key, fn in cases.items():
        unique.setdefault(fn, key)
    timings = compare({key: fn for fn, key in unique.items()}, repeats, target)
    by_fn = {fn: timings[key] for fn, key in unique.items()}
    printed = []
    for label, engine, numpy_fn in rows:
        te, tn = by_fn[engine], by_fn[numpy_fn]
        r_med, r_min = ratio(te, tn)
        printed.append((label, us(te.median), us(tn.median), us(te.median - tn.median),
                        x(r_med), x(r_min)))
        section.data[label] = {"engine": te.as_dict(), "numpy": tn.as_dict(),
                               "ratio_median": r_med, "ratio_min": r_min}
    section.say(table(["case", "engine us", "numpy us", "overhead us", "ratio", "ratio(min)"],
                      printed))
    section.say(f"  ({repeats} batches per case, round-robin; medians, and the ratio of the "
                "minima)")
    return section
