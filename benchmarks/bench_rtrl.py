"""RTRL against full and truncated BPTT: time and peak memory as the sequence length T and the
hidden size H grow (``python benchmarks/bench_rtrl.py [--quick]``, or ``run_rtrl`` from run.py).

One job, three ways: the gradient of the summed loss of a T-step sequence (an Elman RNN, D = 4
inputs, a linear readout to 4 outputs, squared error at every step, one sequence: the online
setting RTRL is made for), no parameter update.

* full BPTT: unroll all T steps, then one backward pass; the graph of every step is kept;
* truncated BPTT: ``mg.bptt.TruncatedBPTT`` with k1 = k2 = 10 (a backward pass every 10 steps,
  through those 10 only): cheap, but the gradient is truncated (a different, biased one);
* RTRL: ``microgradrnn.rtrl.RTRL``, the sensitivities ds_t/dθ carried forward: the same
  gradient as full BPTT (checked below), with nothing of past steps kept.

Theory (P ~ H^2 parameter entries): per step, BPTT costs O(H^2) time, RTRL O(H^4); memory is
O(T H) for full BPTT, O(k H) for truncated, O(H P) = O(H^3) for RTRL, whatever T. Every
measurement runs in a fresh process (this file with ``--worker``), so its peak resident memory
(VmHWM, reset at the start of the run) is its own.
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # as run.py: one BLAS thread, set before NumPy loads
    from _threads import one_blas_thread
    one_blas_thread()

import gc  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import microgradrnn as mg  # noqa: E402
from microgradrnn.rtrl import RTRL  # noqa: E402
from _bptt_common import MB, peak_rss, reset_peak_rss  # noqa: E402
from _common import Section, run_alone, table  # noqa: E402

D, V, K = 4, 4, 10
METHODS = ("full", "truncated", "rtrl")
FLAT_LIMIT_KB = 512.0   # RTRL's peak memory may grow by less than this from the shortest T


def make_problem(T, H, seed=0):
    """The model and a random sequence: (model, xs (T, 1, D), targets (T, 1, V))."""
    rng = np.random.default_rng(seed)
    model = mg.nn.RNNModel(mg.nn.RNNCell(D, H, seed=seed + 1), mg.nn.Linear(H, V, seed=seed + 2))
    return model, rng.normal(size=(T, 1, D)), rng.normal(size=(T, 1, V))


def loss_fn(output, target):
    return mg.functional.mse(output, target, reduction="sum")


class _Collect:
    """An "optimizer" for TruncatedBPTT that adds each update's gradient to a total and never
    moves the weights: the truncated gradient of the whole sequence."""

    def __init__(self, params):
        self.params = list(params)
        self.total = [np.zeros(p.shape) for p in self.params]

    def step(self):
        for t, p in zip(self.total, self.params):
            t += p.grad

    def zero_grad(self):
        for p in self.params:
            p.grad = None


def gradient(method, model, xs, ys):
    """The gradient of sum_t loss_t by ``method``, as a list of arrays (model order)."""
    params = model.parameters()
    model.zero_grad()
    if method == "full":
        outputs, _ = model(xs)
        total = None
        for output, y in zip(outputs, ys):
            loss = loss_fn(output, y)
            total = loss if total is None else total + loss
        total.backward()
        return [p.grad for p in params]
    if method == "truncated":
        collect = _Collect(params)
        trainer = mg.bptt.TruncatedBPTT(model, loss_fn, collect, k1=K, k2=K)
        for x, y in zip(xs, ys):  # every T here is a multiple of k: no chunk is left over
            trainer.step(x, y)
        return collect.total
    if method == "rtrl":
        learner = RTRL(model, loss_fn)
        for x, y in zip(xs, ys):
            learner.step(x, y)
        return [p.grad for p in params]
    raise ValueError(f"unknown method {method!r}")


def worker(method, T, H):
    """In a fresh process: warm up on 20 steps, then one gradient over T steps; time, and peak
    resident memory above the start of the run."""
    model, xs, ys = make_problem(T, H)
    gradient(method, model, xs[:20], ys[:20])
    model.zero_grad()
    gc.collect()
    baseline, reset = reset_peak_rss()
    start = time.perf_counter()
    gradient(method, model, xs, ys)
    seconds = time.perf_counter() - start
    peak = peak_rss()
    P = sum(p.size for p in model.rnn.cell.parameters())
    return {"method": method, "T": T, "H": H, "P": P, "seconds": seconds,
            "rss_baseline": baseline, "rss_peak": peak, "rss_growth": peak - baseline,
            "peak_reset": reset}


def _spawn(method, T, H):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", method, str(T), str(H)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"rtrl worker {method} T={T} H={H} failed (exit {proc.returncode}):"
                           f"\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _relative_error(got, want):
    return max(float(np.max(np.abs(g - w)) / max(np.max(np.abs(w)), 1e-300))
               for g, w in zip(got, want))


def _check(section, T=60, H=6):
    model, xs, ys = make_problem(T, H, seed=3)
    grads = {m: [np.array(g) for g in gradient(m, model, xs, ys)] for m in METHODS}
    err = _relative_error(grads["rtrl"], grads["full"])
    section.check(f"RTRL's gradient is full BPTT's (T={T}, H={H}; relative error <= 1e-10)",
                  err <= 1e-10, f"max rel. error {err:.1e}")
    bias = _relative_error(grads["truncated"], grads["full"])
    section.say(f"  truncated BPTT (k = {K}) differs from the full gradient by {bias:.1e} "
                "(relative, max over parameters): the part of the gradient it cuts")
    return err, bias


def _rows(results):
    rows = []
    for r in results:
        rows.append((r["method"], f"{r['T']:,}", r["H"], f"{r['P']:,}", f"{r['seconds']:.3f}",
                     f"{r['seconds'] / r['T'] * 1e3:.3f}", f"{r['rss_growth'] / MB:.2f}"))
    return rows


def _winners(section, results, axis):
    """Per value of ``axis``: the fastest and the leanest method, and the leanest exact one."""
    lines = []
    for value in sorted({r[axis] for r in results}):
        group = {r["method"]: r for r in results if r[axis] == value}
        fastest = min(group.values(), key=lambda r: r["seconds"])["method"]
        leanest = min(group.values(), key=lambda r: r["rss_growth"])["method"]
        exact = min((group[m] for m in ("full", "rtrl")), key=lambda r: r["rss_growth"])
        rtrl, full = group["rtrl"], group["full"]
        lines.append(f"  {axis}={value:,}: fastest {fastest}; least memory {leanest}; "
                     f"least memory for the exact gradient {exact['method']} "
                     f"(rtrl / full: time {rtrl['seconds'] / full['seconds']:.1f}x, memory "
                     f"{rtrl['rss_growth'] / max(full['rss_growth'], 1):.2f}x)")
    section.say("\n".join(lines))


def _crossover(results_T, H):
    """The T beyond which full BPTT needs more memory than RTRL at this H, from the slope of
    full BPTT's memory in T (bytes per step) and RTRL's memory at the longest T."""
    full = sorted((r for r in results_T if r["method"] == "full"), key=lambda r: r["T"])
    rtrl = max((r for r in results_T if r["method"] == "rtrl"), key=lambda r: r["T"])
    if len(full) < 2:
        return None, None
    per_step = (full[-1]["rss_growth"] - full[0]["rss_growth"]) / (full[-1]["T"] - full[0]["T"])
    if per_step <= 0:
        return None, per_step
    return rtrl["rss_growth"] / per_step, per_step


def plot(results_T, results_H, H_fixed, T_fixed, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 7.5))
    FigureCanvasAgg(figure)
    panels = figure.subplots(2, 2)
    styles = {"full": ("full BPTT", "o-"), "truncated": (f"truncated BPTT (k = {K})", "s--"),
              "rtrl": ("RTRL", "^-")}
    for column, (results, axis, fixed) in enumerate(
            ((results_T, "T", f"H = {H_fixed}"), (results_H, "H", f"T = {T_fixed:,}"))):
        for row, (key, label, scale) in enumerate((("seconds", "time per sequence (s)", 1.0),
                                                   ("rss_growth", "peak memory growth (MB)",
                                                    1.0 / MB))):
            ax = panels[row][column]
            for method in METHODS:
                points = sorted((r[axis], r[key] * scale) for r in results
                                if r["method"] == method)
                name, style = styles[method]
                ax.plot([p[0] for p in points], [max(p[1], 1e-3) for p in points], style,
                        label=name)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set(xlabel=f"{axis} ({fixed})", ylabel=label)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
    figure.suptitle("RTRL vs BPTT: the gradient of one sequence (Elman RNN, D = 4, B = 1)")
    figure.tight_layout()
    figure.savefig(path)
    return path


def run_rtrl(quick=False, out_dir=None):
    """The benchmark section: checks, the two sweeps (T at fixed H, H at fixed T), the tables,
    the winners and the plot (written to ``out_dir``, default benchmarks/results)."""
    H_fixed, T_fixed = 16, (100 if quick else 300)
    lengths = [100, 1_000] if quick else [100, 1_000, 10_000]
    sizes = [8, 16, 32] if quick else [8, 16, 32, 64, 128]
    section = Section("rtrl", "RTRL vs full BPTT vs truncated BPTT (k = %d): the gradient of "
                              "one sequence, Elman RNN D=%d, V=%d, B=1; one fresh process per "
                              "case" % (K, D, V))
    err, bias = _check(section)
    results_T = [_spawn(m, T, H_fixed) for T in lengths for m in METHODS]
    results_H = [_spawn(m, T_fixed, H) for H in sizes for m in METHODS]
    headers = ["method", "T", "H", "P", "time s", "ms / step", "peak growth MB"]
    section.say(f"\n  T grows (H = {H_fixed}):")
    section.say(table(headers, _rows(results_T)))
    _winners(section, results_T, "T")
    section.say(f"\n  H grows (T = {T_fixed:,}):")
    section.say(table(headers, _rows(results_H)))
    _winners(section, results_H, "H")
    crossing, per_step = _crossover(results_T, H_fixed)
    if crossing is not None:
        section.say(f"\n  full BPTT keeps {per_step / 1024:.1f} KB per step at H = {H_fixed}; "
                    f"RTRL's memory (fixed in T) is below full BPTT's beyond T ~ {crossing:,.0f}")
    rtrl_T = sorted((r for r in results_T if r["method"] == "rtrl"), key=lambda r: r["T"])
    growth_kb = (rtrl_T[-1]["rss_growth"] - rtrl_T[0]["rss_growth"]) / 1024
    section.say(f"  RTRL's peak memory from T = {rtrl_T[0]['T']:,} to {rtrl_T[-1]['T']:,}: "
                f"{growth_kb:+.0f} KB (target: flat, below {FLAT_LIMIT_KB:.0f} KB)")
    section.say("  time s: one gradient of the whole sequence (warm); peak growth: the "
                "high-water mark during it (VmHWM, reset at its start) minus the resident "
                "memory at its start.")
    if not all(r["peak_reset"] for r in results_T + results_H):
        section.say("  (the peak could not be reset here: it is ru_maxrss since the process "
                    "started)")
    section.target(f"RTRL peak memory flat in T ({rtrl_T[0]['T']:,} to {rtrl_T[-1]['T']:,} "
                   f"steps, H = {H_fixed})", growth_kb, FLAT_LIMIT_KB, "KB")
    out_dir = out_dir or os.path.join(HERE, "results")
    os.makedirs(out_dir, exist_ok=True)
    path = plot(results_T, results_H, H_fixed, T_fixed,
                os.path.join(out_dir, f"rtrl{'-quick' if quick else ''}.png"))
    section.say(f"  plot written to {os.path.relpath(path)}")
    section.data.update({"H_fixed": H_fixed, "T_fixed": T_fixed, "by_T": results_T,
                         "by_H": results_H, "rtrl_vs_full_error": err,
                         "truncated_vs_full_error": bias, "memory_crossover_T": crossing,
                         "full_bptt_bytes_per_step": per_step, "plot": path})
    return section


def main(argv):
    return run_alone("RTRL", "rtrl", run_rtrl, argv)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        method, T, H = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        print(json.dumps(worker(method, T, H)))
    else:
        sys.exit(main(sys.argv[1:]))
