"""Sections 6 and 7 of the RNN/BPTT benchmarks, with models built with ``mg.nn`` as a user would.

6. Truncated BPTT memory (``--tbptt-memory``): ``mg.bptt.TruncatedBPTT`` (k1 = k2 = 5) streamed
   over 1,000 / 10,000 / 100,000 steps, one fresh process per length: peak memory must not grow.
7. Checkpointing (``--checkpointing``): plain BPTT over T = 10,000 steps against
   ``mg.bptt.checkpointed_loss``: peak memory (fresh processes) and time.

Every section checks its numbers first: against the hand-written NumPy BPTT of ``rnn.py``, and
the two checkpointing variants against each other. Run as a script, this file is the worker of
both sections (``--worker ...``): each memory measurement runs in a fresh process, so that its
peak resident memory is its own.
"""
from __future__ import annotations

import gc
import json
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import microgradrnn as mg  # noqa: E402
import rnn  # noqa: E402
from _bptt_common import (_grads_close, _interleave, _max_rel_err, _per_round, _spawn, _status_kb, make_model, numpy_problem, numpy_sum_of_step_means, peak_rss, reset_peak_rss, values_of, MB)  # noqa: E402
from _common import Section, ms, table, x  # noqa: E402





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
