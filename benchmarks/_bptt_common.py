"""Pieces shared by the RNN/BPTT benchmark sections (bench_charstep.py, bench_bptt.py): the
model as a user builds it, its hand-written NumPy twin, round-by-round timing, and peak memory.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import microgradrnn as mg  # noqa: E402
import rnn  # noqa: E402
from _common import Timing, _batch  # noqa: E402

MB = 2 ** 20




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
    cmd = [sys.executable, os.path.join(HERE, "bench_bptt.py"), "--worker", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bptt worker {' '.join(cmd[2:])} failed (exit {proc.returncode}):\n"
                           f"{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
