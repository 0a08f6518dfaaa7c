"""Sections 5-7, the RNN/BPTT benchmarks: models built with ``mg.nn`` as a user would build them.

5. char-RNN step (``--charstep``): forward + ``loss.backward()`` of an Elman RNN
   (``mg.nn.RNNModel(mg.nn.RNNCell(V, H), mg.nn.Linear(H, V))``, ``mg.functional.cross_entropy``)
   against the hand-written NumPy BPTT of ``rnn.py``, at three sizes; then where the engine's
   extra time goes (forward recording, graph walk, the rules' NumPy work).
6. Truncated BPTT memory (``--tbptt-memory``): ``mg.bptt.TruncatedBPTT`` (k1 = k2 = 5) streamed
   over 1,000 / 10,000 / 100,000 steps, one fresh process per length: peak memory must not grow.
7. Checkpointing (``--checkpointing``): plain BPTT over T = 10,000 steps against
   ``mg.bptt.checkpointed_loss``: peak memory (fresh processes) and time.

Every section checks its numbers first: against the hand-written NumPy BPTT of ``rnn.py``
(``numpy_forward`` / ``numpy_backward``, which take any object with ``xs``, ``T``, ``h0`` and
``targets``), and the two checkpointing variants against each other.

Run as a script, this file is also the worker of sections 6 and 7 (``--worker ...``): each
memory measurement runs in a fresh process, so that its peak resident memory is its own.
"""
from __future__ import annotations

import gc
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import microgradrnn as mg  # noqa: E402
import rnn  # noqa: E402
from _common import Section, Timing, _batch, compare, ms, table, x  # noqa: E402

MB = 2 ** 20


# -- shared pieces ----------------------------------------------------------------------------

def make_model(V, H, seed=0):
    """The model as a user writes it: an Elman cell unrolled in time, a linear readout."""
    return mg.nn.RNNModel(mg.nn.RNNCell(V, H, seed=seed), mg.nn.Linear(H, V, seed=seed + 1))


def values_of(model):
    """The parameters' arrays in ``rnn.PARAM_NAMES`` order (W_xh, W_hh, b_h, W_hy, b_y)."""
    return [p.numpy() for p in model.parameters()]


def numpy_problem(xs, targets, h0):
    """What ``rnn.numpy_forward`` / ``numpy_backward`` read."""
    return types.SimpleNamespace(xs=xs, T=len(xs), h0=h0, targets=targets)


def numpy_sum_of_step_means(problem, params):
    """(loss, gradient, final state) by hand for the loss sum_t mean_b CE(logits_t[b], y_t[b])
    (what TruncatedBPTT and checkpointed_loss sum): rnn.py's mean over (t, b), times T."""
    loss, (hs, _, probs) = rnn.numpy_forward(problem, params)
    d = rnn.numpy_loss_cotangent(problem, probs) * problem.T
    return loss * problem.T, rnn.numpy_backward(problem, params, hs, d), hs[-1]


def _max_rel_err(got, want):
    return max(float(np.max(np.abs(np.asarray(g) - w)) / max(np.max(np.abs(w)), 1e-300))
               for g, w in zip(got, want))


def _grads_close(got, want, rtol=1e-10):
    """allclose with rtol, and atol = rtol / 100 of each array's largest entry (for entries
    near zero)."""
    return all(np.allclose(g, w, rtol=rtol, atol=rtol * 1e-2 * max(np.max(np.abs(w)), 1e-300))
               for g, w in zip(got, want))


def _per_round(a: Timing, b: Timing):
    """(median of the per-round ratios a/b, min/min): each round timed a and b back to back."""
    rounds = [sa / sb for sa, sb in zip(a.samples, b.samples)]
    return statistics.median(rounds), a.min / b.min, rounds


def _interleave(cases, repeats):
    """Round-robin like ``_common.compare``, one call per sample, without compare's warm-up
    call (for cases of several seconds that the correctness checks have just run)."""
    timings = {name: Timing(number=1) for name in cases}
    names = list(cases)
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            timings[name].samples.append(_batch(cases[name], 1))
    return timings


def _status_kb(field):
    """A memory field of /proc/self/status in bytes (Linux), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss():
    """Start a new peak-RSS measurement: (resident bytes now, whether the peak was reset).

    On Linux, writing 5 to /proc/self/clear_refs resets the high-water mark (VmHWM), so the
    peak read afterwards belongs to what runs in between. Without it, ru_maxrss is the peak
    since the process started, and a child inherits its parent's at fork: a subprocess
    started from a large parent would hide any growth below that figure.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = _status_kb("VmHWM") is not None
    except OSError:
        reset = False
    current = _status_kb("VmRSS")
    return (current if current is not None else peak_rss()), reset


def peak_rss():
    """The peak resident memory since the last reset_peak_rss (VmHWM), or ru_maxrss."""
    hwm = _status_kb("VmHWM")
    if hwm is not None:
        return hwm
    scale = 1 if sys.platform == "darwin" else 1024   # ru_maxrss: KB on Linux, bytes on macOS
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _spawn(*args):
    """Run this file as a worker in a fresh process; its last stdout line is a JSON record."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bptt worker {' '.join(cmd[2:])} failed (exit {proc.returncode}):\n"
                           f"{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


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

    plan = {"S": (0.05, 7) if quick else (0.2, 21), "M": (0.05, 5) if quick else (0.2, 21),
            "L": (0.0, 2) if quick else (0.0, 7)}
    printed = []
    for name, s in setups.items():
        target_s, repeats = plan[name]
        timings = compare({"engine": s.engine_step, "numpy": s.numpy_step}, repeats, target_s)
        te, tn = timings["engine"], timings["numpy"]
        r_med, r_min, rounds = _per_round(te, tn)
        limit = CHAR_SIZES[name][3]
        torch_x, autograd_x = CONTEXT[name]
        printed.append((f"{name}: {s.describe()}", ms(te.median), ms(tn.median), x(r_med),
                        x(r_min), f"<= {limit:g}x", "met" if r_med <= limit else "MISSED",
                        torch_x, autograd_x))
        section.data[name] = {"H": s.H, "B": s.B, "T": s.T, "engine": te.as_dict(),
                              "numpy": tn.as_dict(), "per_round_ratios": rounds,
                              "ratio_median_of_rounds": r_med, "ratio_min_over_min": r_min}
        section.target(f"char-RNN {name} step: ours / hand-written", r_med, limit, "x")
    section.say(table(["size", "ours ms", "by hand ms", "ratio", "(min/min)", "target", "",
                       "PyTorch", "autograd"], printed))
    section.say("  ratio = median over rounds of (ours / by hand) timed back to back in each "
                f"round ({', '.join(f'{k}: {v[1]}' for k, v in plan.items())} rounds);\n"
                "  ours = forward + model.zero_grad() + loss.backward(); by hand = rnn.py's "
                "numpy_grad (probabilities kept from its forward pass).\n"
                "  PyTorch eager and HIPS autograd ratios: quoted in the issue for this machine, "
                "not re-measured here.")
    for name in ("S", "M"):
        _breakdown(section, name, setups[name], quick)
    return section


class _Instrumented:
    """Times every primitive's forward function and VJP rules while active (for the
    breakdown only: the timers add a fraction of a microsecond per call).

    Forward calls made from inside a VJP rule (rules are written with the package's ops) count
    as the rule's time, not the forward's. ``send`` (the engine's fan-in sum of cotangents) is
    timed too.
    """

    def __init__(self):
        self.forward = {}   # primitive name: seconds in its forward (NumPy) function
        self.vjp = {}       # primitive name: seconds in its VJP rules
        self.send = 0.0     # seconds in autodiff.send (the fan-in sums and their bookkeeping)
        self._in_rule = False
        self._saved = []
        self._send = None

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
        from microgradrnn import autodiff
        self._send = send = autodiff.send

        def timed_send(*args):
            t = time.perf_counter()
            try:
                return send(*args)
            finally:
                self.send += time.perf_counter() - t
        autodiff.send = timed_send
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
        from microgradrnn import autodiff
        autodiff.send = self._send
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
    (every primitive's forward and VJP rules timed, and the engine's ``send``; the wall time
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
            f0, v0, s0 = sum(timer.forward.values()), sum(timer.vjp.values()), timer.send
            t0 = time.perf_counter()
            loss = s.forward()
            t1 = time.perf_counter()
            f1 = sum(timer.forward.values())
            s.backward(loss)
            t2 = time.perf_counter()
            return {"fwd": t1 - t0, "fwd_np": f1 - f0, "bwd": t2 - t1,
                    "rules": sum(timer.vjp.values()) - v0, "send": timer.send - s0,
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
    bwd_rest = statistics.median(r["bwd"] - r["rules"] - r["send"] for r in per_round)
    own = statistics.median(r["plain"] - r["fwd_np"] - r["rules"] - r["send"] for r in per_round)
    fwd_np, rules, sends, gc_s = med["fwd_np"], med["rules"], med["send"], med["gc"]
    hand_fwd, hand_bwd = med["hand_fwd"], med["hand_bwd"]
    engine = statistics.median(r["fwd"] + r["bwd"] for r in per_round)
    by_hand = statistics.median(r["hand_fwd"] + r["hand_bwd"] for r in per_round)
    extra = engine - by_hand
    rows = [
        ("forward: NumPy work in the primitives' forwards", fwd_np, hand_fwd),
        ("forward: recording + nn modules + scopes (the rest)", fwd_rest, None),
        ("backward: VJP rules (their NumPy work and Python)", rules, hand_bwd),
        ("backward: send, the fan-in sums (NumPy adds + bookkeeping)", sends, None),
        ("backward: order, walk loop, .grad copies (the rest)", bwd_rest, None),
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
    section.say(f"  The timers' own cost sits in the 'rest' rows. Without them: plain step - NumPy work - rules - send = {ms(own)} ms of "
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


# -- 6. truncated BPTT memory -----------------------------------------------------------------

TB_V, TB_H, TB_B, TB_K, TB_LR = 16, 64, 1, 5, 0.05
TB_WARMUP = 1000
FLAT_LIMIT_KB = 512.0   # "flat": from 1,000 steps to the longest, the peak grows by less than this


def token_stream(seed, V=TB_V, block=1000):
    """A synthetic character stream made in blocks (constant memory however long it runs):
    the next token is (token + 1) mod V, or with probability 0.2 a uniformly random one.
    Yields (x, target): a (1, V) one-hot input and the (1,) index of the next token."""
    rng = np.random.default_rng(seed)
    eye = np.eye(V)
    token = 0
    while True:
        noise = rng.random(block) < 0.2
        random = rng.integers(0, V, block)
        tokens = np.empty(block + 1, dtype=np.int64)
        tokens[0] = token
        for i in range(block):
            tokens[i + 1] = random[i] if noise[i] else (tokens[i] + 1) % V
        token = tokens[-1]
        xs = eye[tokens[:-1]]
        for i in range(block):
            yield xs[i:i + 1], tokens[i + 1:i + 2]


def make_tbptt(seed=0):
    model = make_model(TB_V, TB_H, seed=seed)
    optimizer = mg.optim.SGD(model.parameters(), lr=TB_LR)
    trainer = mg.bptt.TruncatedBPTT(model, mg.functional.cross_entropy, optimizer,
                                    k1=TB_K, k2=TB_K, batch=TB_B)
    return model, trainer


def _check_tbptt_by_hand(steps=50):
    """TruncatedBPTT + SGD over ``steps`` steps against the same by hand: chunks of k steps
    from the carried state, the chunk's summed loss backpropagated, SGD, the state carried on.
    Returns (parameters equal, max rel. error, per-step losses equal)."""
    model, trainer = make_tbptt(seed=3)
    params = [np.array(v) for v in values_of(model)]
    stream = token_stream(7)
    data = [next(stream) for _ in range(steps)]
    losses = [trainer.step(x_t, y_t) for x_t, y_t in data]
    h, by_hand = np.zeros((TB_B, TB_H)), []
    for start in range(0, steps, TB_K):
        chunk = data[start:start + TB_K]
        problem = numpy_problem(np.stack([c[0] for c in chunk]), np.stack([c[1] for c in chunk]),
                                h)
        _, (_, _, probs) = rnn.numpy_forward(problem, params)
        by_hand += [float(-np.log(probs[t][np.arange(TB_B), problem.targets[t]]).mean())
                    for t in range(len(chunk))]
        _, grads, h = numpy_sum_of_step_means(problem, params)
        params = [p - TB_LR * g for p, g in zip(params, grads)]
    got = values_of(model)
    return (_grads_close(got, params), _max_rel_err(got, params),
            np.allclose(losses, by_hand, rtol=1e-10, atol=0))


def tbptt_worker(steps, traced_steps):
    """In a fresh process: warm up, stream ``steps`` steps (time, peak RSS growth), then with
    ``traced_steps`` > 0 stream that many more under tracemalloc (peak, bytes kept per step)."""
    model, trainer = make_tbptt(seed=0)
    stream = token_stream(1)
    warm = [trainer.step(*next(stream)) for _ in range(TB_WARMUP)]
    result = {"steps": steps, "warmup_first_loss": float(np.mean(warm[:TB_WARMUP // 5]))}
    del warm
    gc.collect()
    result["rss_baseline"], result["peak_reset"] = reset_peak_rss()
    tail, tail_sum = steps - min(steps, 1000), 0.0   # no per-step record: memory stays flat
    start = time.perf_counter()
    for i in range(steps):
        loss = trainer.step(*next(stream))
        if i >= tail:
            tail_sum += loss
    result["seconds"] = time.perf_counter() - start
    result["rss_peak"] = peak_rss()
    result["rss_end"] = _status_kb("VmRSS")
    result["last_loss"] = tail_sum / (steps - tail)
    result["updates"] = trainer.updates
    if traced_steps:
        import tracemalloc
        gc.collect()
        tracemalloc.start()
        settle = min(1000, traced_steps // 2)
        for i in range(traced_steps):
            trainer.step(*next(stream))
            if i + 1 == settle:
                gc.collect()
                result["traced_after_settle"] = tracemalloc.get_traced_memory()[0]
        gc.collect()
        result["traced_end"], result["traced_peak"] = tracemalloc.get_traced_memory()
        result["traced_steps"], result["traced_settle"] = traced_steps, settle
        tracemalloc.stop()
    return result


def run_tbptt_memory(quick=False, lengths=None):
    lengths = lengths or ([1_000, 10_000] if quick else [1_000, 10_000, 100_000])
    traced = 2_000 if quick else 10_000
    section = Section("tbptt_memory", f"6. Truncated BPTT memory: mg.bptt.TruncatedBPTT "
                                      f"(k1 = k2 = {TB_K}), RNNModel V={TB_V}, H={TB_H}, "
                                      f"B={TB_B}, SGD lr {TB_LR}, a synthetic stream; one fresh "
                                      "process per length")
    ok, err, losses_ok = _check_tbptt_by_hand()
    section.check("TruncatedBPTT + SGD over 50 steps equals a hand-written NumPy truncated BPTT "
                  "(parameters allclose 1e-10, same per-step losses)", ok and losses_ok,
                  f"max rel. error {err:.1e}")
    traced_in = max((n for n in lengths if n <= 10_000), default=None)
    results = []
    for n in lengths:
        results.append(_spawn("tbptt", n, traced if n == traced_in else 0))
    first = results[0]
    section.check("training works: the loss over the last 1,000 steps is below the warm-up's "
                  "first 200", all(r["last_loss"] < r["warmup_first_loss"] for r in results),
                  ", ".join(f"{r['warmup_first_loss']:.3f} -> {r['last_loss']:.3f}"
                            for r in results))
    printed = []
    for r in results:
        r["rss_growth"] = r["rss_peak"] - r["rss_baseline"]
        printed.append((f"{r['steps']:,}", f"{r['seconds'] / r['steps'] * 1e6:.0f}",
                        f"{r['rss_baseline'] / MB:.1f}", f"{r['rss_peak'] / MB:.1f}",
                        f"{r['rss_growth'] / 1024:.0f}",
                        f"{(r['rss_growth'] - first['rss_growth']) / 1024:+.0f}",
                        f"{r['last_loss']:.3f}"))
    section.say(table(["steps", "us / step", "RSS at start MB", "peak RSS MB", "growth KB",
                       f"vs {first['steps']:,} KB", "loss (last 1,000)"], printed))
    section.say(f"  RSS at start: after imports and a {TB_WARMUP:,}-step warm-up; peak: the "
                "high-water mark during the stream (VmHWM, reset at the start);\n  growth = "
                f"peak - start; 'vs {first['steps']:,}' = growth - the {first['steps']:,}-step "
                "process's growth. "
                "us / step: the whole stream, updates included.")
    if not all(r["peak_reset"] for r in results):
        section.say("  (the peak could not be reset here: it is ru_maxrss since the process "
                    "started, so growth below an earlier peak is not seen)")
    tr = next((r for r in results if "traced_peak" in r), None)
    if tr is not None:
        kept = (tr["traced_end"] - tr["traced_after_settle"]) / \
            (tr["traced_steps"] - tr["traced_settle"])
        tr["kept_bytes_per_step"] = kept
        section.say(f"  tracemalloc over {tr['traced_steps']:,} more steps (in the "
                    f"{tr['steps']:,}-step process): peak {tr['traced_peak'] / 1024:.0f} KB "
                    "above the start; still "
                    f"allocated after {tr['traced_settle']:,} steps "
                    f"{tr['traced_after_settle'] / 1024:.0f} KB, at the end "
                    f"{tr['traced_end'] / 1024:.0f} KB ({kept:+.1f} B kept per step).")
    last = results[-1]
    growth_kb = (last["rss_growth"] - first["rss_growth"]) / 1024
    section.target(f"TBPTT peak memory flat from {first['steps']:,} to {last['steps']:,} steps "
                   f"(RSS growth minus the {first['steps']:,}-step one)", growth_kb,
                   FLAT_LIMIT_KB, "KB")
    section.data["runs"] = results
    return section


# -- 7. checkpointing ---------------------------------------------------------------------------

CK_V, CK_H, CK_B = 16, 128, 4


class CheckpointProblem:
    def __init__(self, T, seed=0):
        rng = np.random.default_rng(seed)
        tokens = rng.integers(0, CK_V, size=(T + 1, CK_B))
        self.T = T
        self.xs = np.eye(CK_V)[tokens[:-1]]       # (T, B, V)
        self.targets = tokens[1:]                 # (T, B)
        self.model = make_model(CK_V, CK_H, seed=seed + 1)

    def plain(self):
        """Plain BPTT: unroll over the whole sequence, sum the per-step losses, backward."""
        outputs, _ = self.model(self.xs)
        ce, total = mg.functional.cross_entropy, None
        for t, output in enumerate(outputs):
            loss = ce(output, self.targets[t])
            total = loss if total is None else total + loss
        self.model.zero_grad()
        total.backward()
        return total

    def checkpointed(self):
        total = mg.bptt.checkpointed_loss(self.model, self.xs, self.targets,
                                          mg.functional.cross_entropy)
        self.model.zero_grad()
        total.backward()
        return total

    def grads(self):
        return [np.array(p.grad) for p in self.model.parameters()]


def _count_recomputation(T=400):
    """How many times checkpointed_loss runs the model's step, forward and backward, on a
    short sequence (a counting wrapper on this model instance's ``step``)."""
    problem = CheckpointProblem(T)
    model, calls = problem.model, [0]
    step = model.step

    def counting_step(*args, **kwargs):
        calls[0] += 1
        return step(*args, **kwargs)

    object.__setattr__(model, "step", counting_step)
    try:
        total = mg.bptt.checkpointed_loss(model, problem.xs, problem.targets,
                                          mg.functional.cross_entropy)
        forward = calls[0]
        total.backward()
    finally:
        object.__delattr__(model, "step")
    return {"T": T, "segment": max(1, math.isqrt(T)), "forward": forward,
            "backward": calls[0] - forward}


def checkpoint_worker(case, T):
    """In a fresh process: warm up on 100 steps, then one forward + backward over T steps;
    the peak RSS growth over the warmed-up baseline and the time."""
    warm = CheckpointProblem(100)
    getattr(warm, case)()
    problem = CheckpointProblem(T)
    del warm
    gc.collect()
    baseline, reset = reset_peak_rss()
    start = time.perf_counter()
    getattr(problem, case)()
    seconds = time.perf_counter() - start
    return {"case": case, "T": T, "rss_baseline": baseline, "peak_reset": reset,
            "rss_peak": peak_rss(), "seconds": seconds}


def run_checkpointing(quick=False, T=None):
    T = T or (2_000 if quick else 10_000)
    section = Section("checkpointing", f"7. Checkpointing: plain BPTT vs "
                                       f"mg.bptt.checkpointed_loss (segments of "
                                       f"{max(1, math.isqrt(T))}), T={T:,}, H={CK_H}, B={CK_B}, "
                                       f"V={CK_V}, loss summed over steps")
    problem = CheckpointProblem(T)
    loss_plain = problem.plain().item()
    g_plain = problem.grads()
    loss_ck = problem.checkpointed().item()
    g_ck = problem.grads()
    section.check("checkpointed: same loss and gradients as plain BPTT (allclose 1e-10)",
                  np.isclose(loss_ck, loss_plain, rtol=1e-10, atol=0)
                  and _grads_close(g_ck, g_plain),
                  f"loss {loss_ck:.15g} vs {loss_plain:.15g}, max rel. error "
                  f"{_max_rel_err(g_ck, g_plain):.1e}")
    want_loss, want_grads, _ = numpy_sum_of_step_means(
        numpy_problem(problem.xs, problem.targets, np.zeros((CK_B, CK_H))),
        values_of(problem.model))
    section.check("plain BPTT: same loss and gradients as the hand-written NumPy BPTT",
                  np.isclose(loss_plain, want_loss, rtol=1e-10, atol=0)
                  and _grads_close(g_plain, want_grads),
                  f"max rel. error {_max_rel_err(g_plain, want_grads):.1e}")

    runs = _count_recomputation()
    section.data["recomputation"] = runs
    section.say(f"  model.step calls on a {runs['T']}-step sequence (segments of "
                f"{runs['segment']}): {runs['forward']} in checkpointed_loss's forward, "
                f"{runs['backward']} in its backward ({runs['backward'] / runs['T']:.1f} per "
                "step; rerunning each segment once would be 1.0)")
    repeats = 1 if quick else 3
    timings = _interleave({"plain": problem.plain, "checkpointed": problem.checkpointed},
                          repeats)
    r_med, r_min, rounds = _per_round(timings["checkpointed"], timings["plain"])
    del problem
    gc.collect()
    memory = {case: _spawn("checkpoint", case, T) for case in ("plain", "checkpointed")}
    growth = {case: m["rss_peak"] - m["rss_baseline"] for case, m in memory.items()}
    mem_ratio = growth["checkpointed"] / growth["plain"] if growth["plain"] > 0 else float("inf")
    rows = [(case, ms(timings[case].median), ms(timings[case].min),
             f"{growth[case] / MB:.1f}", f"{memory[case]['rss_peak'] / MB:.1f}")
            for case in ("plain", "checkpointed")]
    section.say(table(["case", "median ms", "min ms", "peak RSS growth MB", "peak RSS MB"],
                      rows))
    section.say(f"  time: checkpointed / plain {x(r_med)} (median of {repeats} per-round ratios; "
                f"min/min {x(r_min)}); target <= 1.5x: {'met' if r_med <= 1.5 else 'MISSED'}\n"
                f"  memory: checkpointed / plain peak RSS growth {mem_ratio:.3f}"
                f"{f' (1/{1 / mem_ratio:.0f})' if 0 < mem_ratio < float('inf') else ''}; "
                "target <= 1/10: "
                f"{'met' if mem_ratio <= 0.1 else 'MISSED'}\n"
                "  peak RSS growth: in a fresh process per case, after imports, a 100-step "
                "warm-up and building the data,\n  the high-water mark of one forward + "
                "backward (VmHWM, reset at its start) minus the resident memory at its start.")
    if not all(m["peak_reset"] for m in memory.values()):
        section.say("  (the peak could not be reset here: it is ru_maxrss since the process "
                    "started)")
    section.target("checkpointed / plain time (T=%s)" % f"{T:,}", r_med, 1.5, "x")
    section.target("checkpointed / plain peak memory (T=%s)" % f"{T:,}", mem_ratio, 0.1, "x")
    section.data.update({"T": T, "timings": {k: t.as_dict() for k, t in timings.items()},
                         "per_round_ratios": rounds, "time_ratio_median_of_rounds": r_med,
                         "time_ratio_min_over_min": r_min, "memory": memory,
                         "rss_growth": growth, "memory_ratio": mem_ratio})
    return section


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--worker":
        kind, rest = sys.argv[2], sys.argv[3:]
        if kind == "tbptt":
            out = tbptt_worker(int(rest[0]), int(rest[1]))
        elif kind == "checkpoint":
            out = checkpoint_worker(rest[0], int(rest[1]))
        else:
            raise SystemExit(f"unknown worker {kind!r}")
        print(json.dumps(out))
    else:
        raise SystemExit("run the sections through benchmarks/run.py "
                         "(--charstep, --tbptt-memory, --checkpointing)")
