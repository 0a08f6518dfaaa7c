"""Section 2: a chain of a million recorded ops: the engine's cost per node, and its memory.

Each measurement runs in a fresh subprocess (this file, run as a script), so that its peak
resident memory (``ru_maxrss``) belongs to that one chain and nothing else. The worker:

1. imports, warms up on a short chain, and reads its baseline peak RSS;
2. builds the chain ``x = x + 1.0`` (op "add": one ``add`` node per step, with a constant
   operand) or ``x = tanh(x)`` (op "tanh") on a float64 tensor of shape (4,), timing it and the
   garbage collector's share of it (``gc.callbacks``);
3. times ``x.backward(ones)`` (several times; the graph stays alive between them), then
   ``mg.grad(x, [x0], grad_outputs=ones)`` once, and reads the peak RSS after each stage;
4. checks the gradient against its closed form, and times freeing the graph.

With ``--tracemalloc`` it instead reports the bytes Python allocated per node (the graph kept
alive after the build, and the peak during backward): slower, so run on a shorter chain.
"""
from __future__ import annotations

import gc
import json
import math
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _rss_bytes():
    # ru_maxrss is in kilobytes on Linux (bytes on macOS).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class _GCTimer:
    """The time spent inside the garbage collector while active."""

    def __init__(self):
        self.total = 0.0
        self.collections = 0
        self._start = None

    def __call__(self, phase, info):
        if phase == "start":
            self._start = time.perf_counter()
        elif self._start is not None:
            self.total += time.perf_counter() - self._start
            self.collections += 1
            self._start = None

    def __enter__(self):
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc):
        gc.callbacks.remove(self)


def _build(op, x0, n):
    import microgradrnn as mg
    x = x0
    if op == "add":
        for _ in range(n):
            x = x + 1.0
    elif op == "tanh":
        tanh = mg.tanh
        for _ in range(n):
            x = tanh(x)
    else:
        raise ValueError(op)
    return x


def _expected_grad(op, start, n):
    """d x_n / d x_0 in closed form: 1 for the add chain, prod(1 - x_i^2) for tanh."""
    if op == "add":
        return 1.0
    d, y = 1.0, start
    for _ in range(n):
        y = math.tanh(y)
        d *= 1.0 - y * y
    return d


def worker(op, n, backward_repeats, use_tracemalloc):
    import numpy as np
    import microgradrnn as mg

    start = 0.5
    seed = np.ones(4)
    # Warm up every code path on a short chain, then take the baseline.
    x0 = mg.tensor(np.full(4, start), requires_grad=True)
    x = _build(op, x0, 1000)
    x.backward(seed)
    mg.grad(x, [x0], grad_outputs=seed)
    del x, x0
    gc.collect()
    x0 = mg.tensor(np.full(4, start), requires_grad=True)
    result = {"op": op, "n": n}

    if use_tracemalloc:
        import tracemalloc
        tracemalloc.start()
        x = _build(op, x0, n)
        gc.collect()
        result["graph_bytes"] = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        x.backward(seed)
        result["backward_peak_bytes"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return result

    result["rss_baseline"] = _rss_bytes()
    with _GCTimer() as gc_timer:
        t = time.perf_counter()
        x = _build(op, x0, n)
        result["build_s"] = time.perf_counter() - t
    result["build_gc_s"] = gc_timer.total
    result["build_gc_collections"] = gc_timer.collections
    result["rss_after_build"] = _rss_bytes()

    backward_s = []
    for _ in range(backward_repeats):
        x0.grad = None
        t = time.perf_counter()
        x.backward(seed)
        backward_s.append(time.perf_counter() - t)
        if "rss_after_backward" not in result:
            result["rss_after_backward"] = _rss_bytes()
    result["backward_s"] = backward_s
    t = time.perf_counter()
    (g,) = mg.grad(x, [x0], grad_outputs=seed)
    result["grad_s"] = time.perf_counter() - t
    result["rss_after_grad"] = _rss_bytes()

    expected = _expected_grad(op, start, n)
    got = x0.grad
    result["grad_ok"] = bool(np.allclose(got, expected, rtol=1e-9, atol=1e-300)
                             and np.allclose(g.numpy(), expected, rtol=1e-9, atol=1e-300))
    result["grad_value"] = float(got[0])
    result["grad_expected"] = expected

    del g, x0
    t = time.perf_counter()
    del x
    result["free_s"] = time.perf_counter() - t
    return result


def _spawn(op, n, backward_repeats, use_tracemalloc=False):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", op, str(n),
           str(backward_repeats)] + (["--tracemalloc"] if use_tracemalloc else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"chain worker {' '.join(cmd[2:])} failed "
                           f"(exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick=False, n=None, runs=None):
    from _common import Section, table
    import statistics

    n = n or (100_000 if quick else 1_000_000)
    runs = runs or (1 if quick else 3)
    backward_repeats = 2 if quick else 3
    section = Section("chain", f"2. A chain of {n:,} recorded ops on a (4,) tensor "
                               f"({runs} fresh process(es) per op; medians)")
    med = statistics.median
    columns = []
    for op, label in (("add", "x = x + 1.0"), ("tanh", "x = tanh(x)")):
        results = []
        for _ in range(runs):
            results.append(_spawn(op, n, backward_repeats))
        ok = all(r["grad_ok"] for r in results)
        section.check(f"{op} chain: dx_n/dx_0 equals its closed form",
                      ok, f"got {results[0]['grad_value']:.6g}, expected "
                          f"{results[0]['grad_expected']:.6g}")
        per_node = {
            "build_us_per_node": med(r["build_s"] for r in results) / n * 1e6,
            "build_gc_us_per_node": med(r["build_gc_s"] for r in results) / n * 1e6,
            "backward_us_per_node_min": med(min(r["backward_s"]) for r in results) / n * 1e6,
            "backward_us_per_node_median": med(med(r["backward_s"]) for r in results) / n * 1e6,
            "grad_us_per_node": med(r["grad_s"] for r in results) / n * 1e6,
            "free_us_per_node": med(r["free_s"] for r in results) / n * 1e6,
            "rss_build_mb": med(r["rss_after_build"] - r["rss_baseline"]
                                for r in results) / 2**20,
            "rss_build_backward_mb": med(r["rss_after_backward"] - r["rss_baseline"]
                                         for r in results) / 2**20,
        }
        per_node["rss_build_backward_bytes_per_node"] = \
            per_node["rss_build_backward_mb"] * 2**20 / n
        section.data[op] = {"label": label, "runs": results, **per_node}
        columns.append((f"{op}: {label}", per_node))
        if op == "add":
            section.target("add chain: backward us/node",
                           per_node["backward_us_per_node_min"], 2.0, "us")
    rows = [
        ("build (forward, recording) us/node", "build_us_per_node", "{:.2f}"),
        ("  of which garbage collector", "build_gc_us_per_node", "{:.2f}"),
        ("x.backward(ones) us/node (min)", "backward_us_per_node_min", "{:.2f}"),
        ("x.backward(ones) us/node (median)", "backward_us_per_node_median", "{:.2f}"),
        ("mg.grad(x, [x0], ones) us/node", "grad_us_per_node", "{:.2f}"),
        ("freeing the graph us/node", "free_us_per_node", "{:.2f}"),
        ("RSS after build, MB", "rss_build_mb", "{:.0f}"),
        ("peak RSS build + backward, MB", "rss_build_backward_mb", "{:.0f}"),
        ("peak RSS build + backward, B/node", "rss_build_backward_bytes_per_node", "{:.0f}"),
    ]
    section.say(table(["per node"] + [c[0] for c in columns],
                      [[label] + [fmt.format(c[1][key]) for c in columns]
                       for label, key, fmt in rows]))
    section.say("  backward: min over repeats within a process, then median over processes; "
                "it includes the graph walk.\n  RSS: ru_maxrss minus the worker's baseline "
                "after imports and a warm-up.")

    n_tm = 20_000 if quick else 100_000
    tm = _spawn("add", n_tm, 1, use_tracemalloc=True)
    graph_b, peak_b = tm["graph_bytes"] / n_tm, tm["backward_peak_bytes"] / n_tm
    section.data["tracemalloc"] = tm
    section.say(f"  tracemalloc (add chain of {n_tm:,}): the graph keeps {graph_b:.0f} B/node; "
                f"backward's transient peak adds {peak_b - graph_b:.0f} B/node "
                f"(peak {peak_b:.0f} B/node)")
    return section


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "--worker":
        out = worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
                     "--tracemalloc" in sys.argv[5:])
        print(json.dumps(out))
    else:
        sys.path.insert(0, HERE)
        run(quick="--quick" in sys.argv)
