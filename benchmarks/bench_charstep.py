"""Section 5, the char-RNN step (``--charstep``): forward + ``loss.backward()`` of an Elman RNN
(``mg.nn.RNNModel(mg.nn.RNNCell(V, H), mg.nn.Linear(H, V))``, ``mg.functional.cross_entropy``)
against the hand-written NumPy BPTT of ``rnn.py``, at three sizes; then where the engine's extra
time goes (forward recording, graph walk, the rules' NumPy work).
"""
from __future__ import annotations

import gc
import os
import statistics
import sys
import time
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import microgradrnn as mg  # noqa: E402
import rnn  # noqa: E402
from _bptt_common import (_grads_close, _max_rel_err, _per_round, make_model, numpy_problem, values_of)  # noqa: E402
from _allocator import page_faults  # noqa: E402
from _common import Section, compare, ms, table, x  # noqa: E402





# -- 5. char-RNN step ---------------------------------------------------------------------------

CHAR_V = 64
CHAR_SIZES = {  # name: (H, B, T, target ratio)
    "S": (32, 1, 25, 1.5),
    "M": (128, 32, 50, 1.1),
    "L": (512, 64, 100, 1.05),
}
CONTEXT = {"S": ("2.1x", "11x"), "M": ("1.26x", "3.8x"), "L": ("0.86x", "1.5x")}


class CharStep:
    """One size of the char-RNN benchmark: the data, the model, the engine's step and the
    hand-written NumPy step, on the same parameter arrays."""

    def __init__(self, H, B, T, V=CHAR_V, seed=0):
        rng = np.random.default_rng(seed)
        self.V, self.H, self.B, self.T = V, H, B, T
        self.xs = np.eye(V)[rng.integers(0, V, size=(T, B))]      # (T, B, V) one-hot inputs
        self.targets = rng.integers(0, V, size=(T, B))            # (T, B) next characters
        self.model = make_model(V, H, seed=seed + 1)
        self.params = self.model.parameters()
        self.values = values_of(self.model)
        self.problem = numpy_problem(self.xs, self.targets, np.zeros((B, H)))

    def describe(self):
        n = sum(p.size for p in self.values)
        return f"H={self.H}, B={self.B}, T={self.T} ({n:,} parameters)"

    # the engine: forward (recorded) and backward, separately and together
    def forward(self):
        outputs, _ = self.model(self.xs)
        return mg.functional.cross_entropy(mg.stack(outputs), self.targets)

    def backward(self, loss):
        self.model.zero_grad()
        loss.backward()

    def engine_step(self):
        loss = self.forward()
        self.backward(loss)
        return loss

    # by hand
    def numpy_step(self):
        return rnn.numpy_grad(self.problem, self.values)

    def numpy_forward(self):
        return rnn.numpy_forward(self.problem, self.values)

    def numpy_backward(self, cache):
        hs, _, probs = cache
        return rnn.numpy_backward(self.problem, self.values, hs,
                                  rnn.numpy_loss_cotangent(self.problem, probs))


def run_charstep(quick=False):
    section = Section("charstep", f"5. char-RNN step: mg.nn.RNNModel + cross_entropy, forward + "
                                  f"loss.backward(), vs hand-written NumPy BPTT (V={CHAR_V} "
                                  "one-hot, float64)")
    setups = {name: CharStep(H, B, T) for name, (H, B, T, _) in CHAR_SIZES.items()}
    for name, s in setups.items():
        loss = s.engine_step()
        want_loss, want_grads = s.numpy_step()
        got = [p.grad for p in s.params]
        section.check(f"{name}: same loss and gradients as the NumPy BPTT (allclose 1e-10)",
                      np.isclose(loss.item(), want_loss, rtol=1e-10, atol=0)
                      and _grads_close(got, want_grads),
                      f"loss {loss.item():.15g} vs {want_loss:.15g}, max rel. error "
                      f"{_max_rel_err(got, want_grads):.1e}")

    # Rounds of one call of each (S and M: about 8 s of rounds; L: 7 rounds): the shared
    # machine changes speed from one fraction of a second to the next, and a round of two
    # single calls sees both at the same speed far more often than a round of two 0.2 s
    # batches does (in such rounds S's per-round ratios once ranged from 1.1 to 2.0).
    plan = {"S": 151 if quick else 2001, "M": 15 if quick else 201, "L": 2 if quick else 7}
    printed = []
    for name, s in setups.items():
        repeats = plan[name]
        engine, numpy = _FaultCounter(s.engine_step), _FaultCounter(s.numpy_step)
        timings = compare({"engine": engine, "numpy": numpy}, repeats,
                          collect_every=1 if name == "L" else 25)
        te, tn = timings["engine"], timings["numpy"]
        r_med, r_min, rounds = _per_round(te, tn)
        quartiles = statistics.quantiles(rounds, n=4)
        limit = CHAR_SIZES[name][3]
        torch_x, autograd_x = CONTEXT[name]
        printed.append((f"{name}: {s.describe()}", ms(te.median), ms(tn.median), x(r_med),
                        f"{quartiles[0]:.2f}-{quartiles[2]:.2f}", x(r_min), f"<= {limit:g}x", "met" if r_med <= limit else "MISSED",
                        f"{engine.per_call:.0f} / {numpy.per_call:.0f}", torch_x, autograd_x))
        section.data[name] = {"H": s.H, "B": s.B, "T": s.T, "engine": te.as_dict(),
                              "numpy": tn.as_dict(), "per_round_ratios": rounds,
                              "ratio_median_of_rounds": r_med, "ratio_min_over_min": r_min,
                              "page_faults_per_step": {"engine": engine.per_call,
                                                       "numpy": numpy.per_call}}
        section.target(f"char-RNN {name} step: ours / hand-written", r_med, limit, "x")
    section.say(table(["size", "ours ms", "by hand ms", "ratio", "middle half", "(min/min)",
                       "target", "",
                       "faults/step", "PyTorch", "autograd"], printed))
    section.say("  ratio = median over rounds of (ours / by hand), one call of each timed back "
                f"to back in each round ({', '.join(f'{k}: {v}' for k, v in plan.items())} "
                "rounds, the order alternating); middle half: the quartiles of those ratios;\n"
                "  ours = forward + model.zero_grad() + loss.backward(); by hand = rnn.py's "
                "numpy_grad (probabilities kept from its forward pass).\n"
                "  faults/step: page faults per step, ours / by hand (about 2 us each here; "
                "see _allocator.py for why the heap is held).\n"
                "  PyTorch eager and HIPS autograd ratios: quoted in the issue for this machine, "
                "not re-measured here.")
    for name in ("S", "M"):
        _breakdown(section, name, setups[name], quick)
    return section


class _FaultCounter:
    """``fn`` itself, counting the page faults of its calls (``per_call``: their mean)."""

    def __init__(self, fn):
        self.fn, self.faults, self.calls = fn, 0, 0

    def __call__(self):
        before = page_faults()
        result = self.fn()
        self.faults += page_faults() - before
        self.calls += 1
        return result

    @property
    def per_call(self):
        return self.faults / max(self.calls, 1)


class _Instrumented:
    """Times every primitive's forward function and VJP rules while active (for the
    breakdown only: the timers add a fraction of a microsecond per call).

    Forward calls made from inside a VJP rule (rules are written with the package's ops) count
    as the rule's time, not the forward's. The fan-in sums of cotangents are not timed apart:
    an ordinary backward pass does them inline in its walk (``autodiff._plain_walk``).
    """

    def __init__(self):
        self.forward = {}   # primitive name: seconds in its forward (NumPy) function
        self.vjp = {}       # primitive name: seconds in its VJP rules
        self._in_rule = False
        self._saved = []

    @staticmethod
    def primitives():
        from microgradrnn import ops, transforms
        from microgradrnn.ops import _core
        found = {}
        modules = [transforms] + [m for m in vars(ops).values() if isinstance(m, types.ModuleType)]
        for module in modules:
            for value in vars(module).values():
                if isinstance(value, _core.Primitive):
                    found[id(value)] = value
        return list(found.values())

    def _wrap_forward(self, prim, fn):
        def timed(*args):
            if self._in_rule:
                return fn(*args)
            t = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self.forward[prim.name] = self.forward.get(prim.name, 0.0) + \
                    time.perf_counter() - t
        return timed

    def _wrap_rule(self, prim, rule):
        def timed(*args):
            outer = self._in_rule
            self._in_rule = True
            t = time.perf_counter()
            try:
                return rule(*args)
            finally:
                self._in_rule = outer
                if not outer:
                    self.vjp[prim.name] = self.vjp.get(prim.name, 0.0) + \
                        time.perf_counter() - t
        return timed

    def __enter__(self):
        for prim in self.primitives():
            self._saved.append((prim, prim.forward, prim.vjps))
            prim.forward = self._wrap_forward(prim, prim.forward)
            rules = prim.vjps
            if isinstance(rules, tuple):
                prim.vjps = tuple(self._wrap_rule(prim, r) for r in rules)
            else:  # an object that makes rule i on demand (concatenate, checkpoint)
                prim.vjps = _TimedRules(self, prim, rules)
        return self

    def __exit__(self, *exc):
        for prim, forward, vjps in self._saved:
            prim.forward, prim.vjps = forward, vjps
        self._saved = []


class _TimedRules:
    def __init__(self, timer, prim, rules):
        self.timer, self.prim, self.rules = timer, prim, rules

    def __getitem__(self, i):
        return self.timer._wrap_rule(self.prim, self.rules[i])


def _breakdown(section, name, s, quick):
    """Where the engine's extra time goes at one size, in rounds of four calls timed back to
    back (order rotated each round; the garbage collector on): an instrumented engine step
    (every primitive's forward and VJP rules timed; the wall time
    of its forward and of its backward), the hand-written forward, the hand-written backward,
    and the plain engine step. What the engine's phases take beyond the NumPy work inside
    them is its own work: recording nodes, the nn modules and scopes; the graph walk and the
    ``.grad`` copies. Every figure is a median over rounds of quantities measured in the same
    round, so a slow spell of the machine shifts whole rounds, not single columns."""
    from bench_chain import _GCTimer   # time inside the garbage collector (gc.callbacks)
    timer = _Instrumented()
    cache = {}

    def engine_instrumented():
        with timer, _GCTimer() as gc_timer:
            f0, v0 = sum(timer.forward.values()), sum(timer.vjp.values())
            t0 = time.perf_counter()
            loss = s.forward()
            t1 = time.perf_counter()
            f1 = sum(timer.forward.values())
            s.backward(loss)
            t2 = time.perf_counter()
            return {"fwd": t1 - t0, "fwd_np": f1 - f0, "bwd": t2 - t1,
                    "rules": sum(timer.vjp.values()) - v0,
                    "gc": gc_timer.total, "instrumented": t2 - t0}

    def numpy_forward():
        cache.pop("np", None)   # free the previous one first, as a full step does
        t0 = time.perf_counter()
        cache["np"] = s.numpy_forward()[1]
        return {"hand_fwd": time.perf_counter() - t0}

    def numpy_backward():
        t0 = time.perf_counter()
        s.numpy_backward(cache["np"])
        return {"hand_bwd": time.perf_counter() - t0}

    def engine_plain():
        t0 = time.perf_counter()
        s.engine_step()
        return {"plain": time.perf_counter() - t0}

    cases = [engine_instrumented, numpy_forward, numpy_backward, engine_plain]
    for case in cases:   # warm up
        case()
    budget = 1.5 if quick else 6.0
    gc.collect()   # once: a collection before every call would start each one with cold caches
    per_round = []
    start = time.perf_counter()
    while time.perf_counter() - start < budget or len(per_round) < 5:
        shift = len(per_round) % len(cases)
        s_round = {}
        for case in cases[shift:] + cases[:shift]:
            s_round.update(case())
        per_round.append(s_round)
    rounds = len(per_round)
    med = {key: statistics.median(r[key] for r in per_round) for key in per_round[0]}
    fwd_rest = statistics.median(r["fwd"] - r["fwd_np"] for r in per_round)
    bwd_rest = statistics.median(r["bwd"] - r["rules"] for r in per_round)
    own = statistics.median(r["plain"] - r["fwd_np"] - r["rules"] for r in per_round)
    fwd_np, rules, gc_s = med["fwd_np"], med["rules"], med["gc"]
    hand_fwd, hand_bwd = med["hand_fwd"], med["hand_bwd"]
    engine = statistics.median(r["fwd"] + r["bwd"] for r in per_round)
    by_hand = statistics.median(r["hand_fwd"] + r["hand_bwd"] for r in per_round)
    extra = engine - by_hand
    rows = [
        ("forward: NumPy work in the primitives' forwards", fwd_np, hand_fwd),
        ("forward: recording + nn modules + scopes (the rest)", fwd_rest, None),
        ("backward: VJP rules (their NumPy work and Python)", rules, hand_bwd),
        ("backward: fan-in sums, order, walk loop, .grad copies (the rest)", bwd_rest, None),
        ("total (the instrumented step)", engine, by_hand),
    ]
    printed = [(label, ms(v), "" if ref is None else ms(ref),
                f"{100 * (v - (ref or 0.0)) / extra:.0f}%" if not label.startswith("total")
                and extra > 0 else "") for label, v, ref in rows]
    printed.append(("the plain step (no timers)", ms(med["plain"]), ms(by_hand), ""))
    section.say(f"\n  {name}: where the engine's extra {ms(extra)} ms per step goes "
                f"({s.describe()}; ms per step, medians over {rounds} rounds):")
    section.say(table(["phase", "ours", "by hand", "of the extra"], printed))
    nodes = _count_nodes(s)
    top_vjp = sorted(timer.vjp.items(), key=lambda kv: -kv[1])[:4]
    top_fwd = sorted(timer.forward.items(), key=lambda kv: -kv[1])[:4]
    calls = rounds + 1
    section.say(f"  The timers' own cost sits in the 'rest' rows. Without them: plain step - NumPy work - rules = {ms(own)} ms of "
                f"engine work, {own / nodes * 1e6:.1f} us per node ({nodes} nodes per step); "
                f"garbage collector {ms(gc_s)} ms per step.\n"
                "  Largest VJP rules (ms per step, mean): "
                + ", ".join(f"{k} {ms(v / calls)}" for k, v in top_vjp)
                + "\n  Largest forwards (ms per step, mean): "
                + ", ".join(f"{k} {ms(v / calls)}" for k, v in top_fwd))
    section.data[f"breakdown_{name}"] = {
        "rounds": per_round, "medians_s": med, "forward_rest_s": fwd_rest,
        "backward_rest_s": bwd_rest, "engine_own_s": own, "nodes": nodes,
        "vjp_by_primitive_s": {k: v / calls for k, v in timer.vjp.items()},
        "forward_by_primitive_s": {k: v / calls for k, v in timer.forward.items()}}


def _count_nodes(s):
    from microgradrnn.graph import backward_order
    return len(backward_order([s.forward().node]))
