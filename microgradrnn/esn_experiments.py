"""Echo state networks on the reservoir-computing tasks: one setup per task, shared by the
``microgradrnn esn`` command (:func:`esn_command`), ``examples/echo_state_network.py`` and
``benchmarks/bench_esn.py``.

* ``mackey-glass``: a pattern generator. The network has no input, only a constant bias and
  its output fed back; it is teacher-forced with the Mackey-Glass series (squashed,
  ``tanh(x - 1)``, as Jaeger 2001 does), then runs free. Its error is NRMSE_84 (Jaeger 2001;
  Jaeger & Haas 2004): over many runs, each teacher-forced on a fresh stretch of the series
  and then free for 84 steps, ``sqrt(mean_runs (x(n + 84) - y(n + 84))**2 / var(x))``.
* ``sine``: the tutorial's generator of ``1/2 sin(n/4)``: 20 units, spectral radius 0.8,
  output feedback, 300 teacher-forced steps of which 100 are washout, the pseudo-inverse
  (ridge 0), then 50 free steps; the error is their mean squared error, as in the tutorial.
* ``narma10`` and ``delay-line``: input-driven; fitted on one stretch of input, judged by the
  NRMSE on the stretch that follows.
"""
from __future__ import annotations

import os
import sys
import time
from typing import NamedTuple

import numpy as np

from .esn import EchoStateNetwork, nrmse
from .tasks.reservoir import delay_line, mackey_glass_series, narma10, sine_generator

__all__ = ["ESN_TASKS", "PRESETS", "ESNResult", "run_task", "squash", "unsquash",
           "mackey_glass_nrmse84", "plot_prediction", "esn_command"]

ESN_TASKS = ("mackey-glass", "narma10", "sine", "delay-line")

# Per task: the network (EchoStateNetwork's keywords) and the run. Steps: `washout` steps are
# teacher-forced (or driven) and discarded, the readout is fitted on the next `train_steps`,
# and the prediction is judged on `test_steps` more. The Mackey-Glass network was chosen by a
# small search (spectral radius, leak rate, ridge, over 5 reservoirs); the others are the usual
# settings, the sine the tutorial's.
PRESETS = {
    "mackey-glass": dict(reservoir=400, spectral_radius=0.95, leak_rate=0.5, connectivity=0.05,
                         bias=0.2, feedback=True, ridge=1e-12, washout=1000, train_steps=3000,
                         test_steps=300, runs=50),
    "sine": dict(reservoir=20, spectral_radius=0.8, connectivity=0.2, feedback=True, ridge=0.0,
                 washout=100, train_steps=200, test_steps=50),
    "narma10": dict(reservoir=200, spectral_radius=0.9, input_scaling=0.1, bias=0.2,
                    connectivity=0.1, ridge=1e-8, washout=200, train_steps=3000,
                    test_steps=1000),
    "delay-line": dict(reservoir=100, spectral_radius=0.9, input_scaling=0.1, connectivity=0.1,
                       ridge=1e-8, washout=100, train_steps=2000, test_steps=500, delay=10),
}
_RUN_KEYS = ("train_steps", "test_steps", "runs", "delay")
HORIZON = 84    # Jaeger's free-running horizon for Mackey-Glass


class ESNResult(NamedTuple):
    """What :func:`run_task` did: the fitted network, the error (``measure`` says which), the
    judged stretch (``truth``, ``prediction``, shape (test_steps, outputs)), the last teacher-
    forced or driven steps before it (``context``), the number of steps the readout was fitted
    on, the seconds the fit took, and the plot's path (set by :func:`esn_command`)."""
    task: str
    esn: EchoStateNetwork
    error: float
    measure: str
    truth: np.ndarray
    prediction: np.ndarray
    context: np.ndarray
    train_steps: int
    fit_seconds: float
    path: str | None = None


def squash(x):
    """``tanh(x - 1)``: Jaeger's (2001) map of the Mackey-Glass series (about 0.4 .. 1.4) into
    the range of a tanh unit, where the network sees and produces it."""
    return np.tanh(x - 1.0)


def unsquash(y):
    """The inverse of :func:`squash`, ``1 + artanh(y)``. A free run that has left the
    attractor can step outside (-1, 1): it is clipped, to show as a large error, not a NaN."""
    return 1.0 + np.arctanh(np.clip(y, -1 + 1e-12, 1 - 1e-12))


def mackey_glass_nrmse84(esn, runs=50, *, washout=1000, horizon=HORIZON, seed=1):
    """NRMSE_84 of a Mackey-Glass generator (Jaeger 2001; Jaeger & Haas 2004): ``runs`` fresh
    seeded stretches of the series; each is teacher-forced into the network from the zero
    state for ``washout`` steps, and the network then runs free for ``horizon`` steps.
    ``sqrt(mean_runs (x(n + 84) - y(n + 84))**2 / var(x))``, the variance being that of the
    series (estimated from all the teacher-forced samples). Leaves the network in the state
    of its last run."""
    series = mackey_glass_series(washout + horizon, runs, seed=seed)     # (T, runs)
    predicted = np.empty(runs)
    for r in range(runs):
        esn.reset()
        esn.collect_states(np.zeros((washout, 0)), squash(series[:washout, r]))
        predicted[r] = unsquash(esn.generate(horizon)[-1, 0])
    return nrmse(predicted, series[-1], variance=np.var(series[:washout]))


def _options(task, overrides):
    if task not in PRESETS:
        raise ValueError(f"unknown ESN task {task!r}; known: {', '.join(ESN_TASKS)}")
    options = dict(PRESETS[task])
    options.update({k: v for k, v in overrides.items() if v is not None})
    network = {k: v for k, v in options.items() if k not in _RUN_KEYS}
    return network, options


def run_task(task, *, seed=0, **overrides):
    """Fit an :class:`~microgradrnn.esn.EchoStateNetwork` on ``task`` (one of
    :data:`ESN_TASKS`) with its preset (:data:`PRESETS`; ``overrides`` replace entries, None
    keeps the preset), judge it, and return an :class:`ESNResult`. Seeded: the reservoir and
    the data both come from ``seed``."""
    network, options = _options(task, overrides)
    washout, train, test = network["washout"], options["train_steps"], options["test_steps"]
    n_fit = washout + train
    rng = np.random.default_rng(seed)
    generator = task in ("mackey-glass", "sine")
    if task == "mackey-glass":
        raw = mackey_glass_series(n_fit + test, rng=rng)
        inputs, targets = np.zeros((n_fit + test, 0)), squash(raw)
    elif task == "sine":
        inputs, targets = (a[:, 0] for a in sine_generator(n_fit + test))
    elif task == "narma10":
        inputs, targets = (a[:, 0] for a in narma10(n_fit + test, 1, rng=rng))
    else:
        inputs, targets = (a[:, 0] for a in delay_line(n_fit + test, 1,
                                                          delays=options["delay"], rng=rng))
    esn = EchoStateNetwork(inputs.shape[1], targets.shape[1], rng=rng, **network)
    start = time.perf_counter()
    esn.fit(inputs[:n_fit], targets[:n_fit])
    fit_seconds = time.perf_counter() - start
    prediction = esn.generate(test) if generator else esn.predict(inputs[n_fit:])
    truth, context = targets[n_fit:], targets[max(0, n_fit - 100):n_fit]
    if task == "mackey-glass":
        truth, context, prediction = raw[n_fit:], raw[max(0, n_fit - 100):n_fit], \
            unsquash(prediction)
        runs = options["runs"]
        error = mackey_glass_nrmse84(esn, runs, washout=washout, seed=seed + 1)
        measure = f"NRMSE_84 over {runs} free runs"
    elif task == "sine":
        error = float(np.mean((prediction - truth) ** 2))
        measure = f"test MSE over {test} free-running steps"
    else:
        error = nrmse(prediction, truth)
        measure = f"NRMSE over {test} test steps"
    return ESNResult(task, esn, error, measure, truth, prediction, context, train, fit_seconds)


def plot_prediction(result, path):
    """Write a PNG of the prediction against the truth (top; for a generator, with the last
    teacher-forced steps before the free run) and of the absolute error on a log scale
    (bottom), and return ``path``. A Figure of its own with the Agg canvas: no pyplot state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5.6))
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    n_context = len(result.context)
    before = np.arange(-n_context, 0)
    after = np.arange(len(result.truth))
    generator = result.task in ("mackey-glass", "sine")
    if generator and n_context:
        top.plot(before, result.context[:, 0], color="0.6", label="teacher (forced)")
    top.plot(after, result.truth[:, 0], color="black", label="truth")
    top.plot(after, result.prediction[:, 0], "--", color="#cc4125",
             label="free run" if generator else "prediction")
    top.axvline(0, color="0.7", linewidth=0.8)
    top.set_ylabel("output (first channel)")
    top.set_title(f"Echo state network on {result.task}: {result.measure} = "
                  f"{result.error:.3g}")
    top.legend(loc="upper right", fontsize="small")
    error = np.abs(result.prediction[:, 0] - result.truth[:, 0])
    bottom.plot(after, np.where(error > 0, error, np.nan), color="#cc4125")
    bottom.set_yscale("log")
    bottom.set_xlabel("steps after the fit" + (" (free running)" if generator else ""))
    bottom.set_ylabel("|error|")
    for axes in (top, bottom):
        axes.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    return path


def esn_command(task, out_dir, *, seed=0, reservoir=None, spectral_radius=None,
                leak_rate=None, ridge=None, washout=None, train_steps=None, test_steps=None,
                runs=None, out=None):
    """``microgradrnn esn --task ...``: fit the task's echo state network (:func:`run_task`;
    options left None keep the preset), print what was built, the fit time and the error,
    write the prediction-vs-truth plot to ``out_dir/esn_<task>.png``, and return the
    :class:`ESNResult` with its ``path``."""
    out = sys.stdout if out is None else out
    result = run_task(task, seed=seed, reservoir=reservoir, spectral_radius=spectral_radius,
                      leak_rate=leak_rate, ridge=ridge, washout=washout,
                      train_steps=train_steps, test_steps=test_steps, runs=runs)
    esn = result.esn
    print(f"echo state network on {task}: {esn.size} units, spectral radius "
          f"{esn.spectral_radius:.3g} (largest singular value {esn.largest_singular_value:.3g}), "
          f"leak rate {esn.leak_rate:g}, ridge {esn.ridge:g}"
          f"{', output feedback' if esn.feedback else ''}", file=out)
    print(f"readout fitted in closed form on {result.train_steps} steps after a washout of "
          f"{esn.washout}, in {result.fit_seconds:.2f} s", file=out)
    print(f"{result.measure}: {result.error:.3g}", file=out)
    os.makedirs(out_dir, exist_ok=True)
    path = plot_prediction(result, os.path.join(out_dir, f"esn_{task}.png"))
    print(f"plot written to {path}", file=out)
    return result._replace(path=path)
