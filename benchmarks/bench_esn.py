"""Echo state network against BPTT on Mackey-Glass (``python benchmarks/bench_esn.py
[--quick]``, or ``run_esn`` from run.py).

The task of Jaeger (2001), "The 'echo state' approach to analysing and training recurrent
neural networks", GMD Report 148, and Jaeger & Haas (2004), Science 304: the Mackey-Glass
series with tau = 17 (Euler steps of 1/10, every 10th value kept), squashed by tanh(x - 1).
A network is trained on 3,000 steps (after a washout of 1,000), then judged by NRMSE_84: in
50 runs, it is teacher-forced for 1,000 steps on a fresh stretch of the series and then runs
free; the error 84 steps into the free run, over the runs, in units of the series' standard
deviation. Predicting the mean scores 1; Jaeger (2001) reports 2.8e-4 for 400 units.

* The ESN (the ``mackey-glass`` preset of ``microgradrnn.esn_experiments``): 400 units, the
  readout in closed form. Targets: NRMSE_84 <= 1e-3 (the median over reservoirs), the fit
  (state harvest + solve, 400 units x 4,000 steps) under a second.
* BPTT: an Elman RNN of the same size (400 tanh units, ``mg.nn.RNNModel``), trained as a
  one-step predictor of the same 4,000 steps with Adam and full BPTT through random 50-step
  windows, stopped when a wall-clock budget is spent: the ESN's fit time, then 10x and 100x
  it. It is judged the same way (teacher-forced input, then its own output fed back). It sees
  the series centred, x - 1, rather than squashed: the squash only serves the ESN's tanh
  feedback, and an unbounded linear readout would leave its range.
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # as run.py: one BLAS thread, set before NumPy loads
    from _threads import one_blas_thread
    one_blas_thread()

import time  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import microgradrnn as mg  # noqa: E402
from microgradrnn.esn import EchoStateNetwork, nrmse, ridge_regression  # noqa: E402
from microgradrnn.esn_experiments import (HORIZON, PRESETS, mackey_glass_nrmse84,  # noqa: E402
                                          squash, unsquash)
from microgradrnn.tasks import mackey_glass_series  # noqa: E402
from _common import Section, compare, run_alone, table  # noqa: E402

PRESET = PRESETS["mackey-glass"]
UNITS, WASHOUT, TRAIN, RUNS = (PRESET["reservoir"], PRESET["washout"], PRESET["train_steps"],
                               PRESET["runs"])
NRMSE_LIMIT, FIT_LIMIT = 1e-3, 1.0
WINDOW, BATCH, WARMUP, LR = 50, 32, 10, 3e-3      # the BPTT training
ONE_STEP = 500       # one-step errors: over the last 500 teacher-forced steps of each run


def make_esn(seed):
    network = {k: v for k, v in PRESET.items() if k not in ("train_steps", "test_steps", "runs")}
    return EchoStateNetwork(0, 1, seed=seed, **network)


def training_series(seed=0):
    """The 4,000 steps every model is trained on (WASHOUT + TRAIN,), unscaled."""
    return mackey_glass_series(WASHOUT + TRAIN, seed=seed)[:, 0]


# -- the checks -----------------------------------------------------------------------------------

def _check_closed_form(section, esn, d):
    """On the benchmark's own states: the readout is at least as good a minimiser of the ridge
    objective as NumPy's lstsq on [Z; sqrt(ridge) I] (these states are too ill-conditioned for
    the two solutions to agree entrywise; the objective is what both minimise)."""
    esn.reset()
    Z = esn.collect_states(np.zeros((len(d), 0)), d[:, None])[esn.washout:]
    D = d[esn.washout:, None]
    F = Z.shape[1]
    ours = ridge_regression(Z, D, esn.ridge)
    reference = np.linalg.lstsq(np.vstack([Z, np.sqrt(esn.ridge) * np.eye(F)]),
                                np.vstack([D, np.zeros((F, 1))]), rcond=None)[0]

    def objective(W):
        return float(np.sum((Z @ W - D) ** 2) + esn.ridge * np.sum(W ** 2))

    mine, theirs = objective(ours), objective(reference)
    section.check("closed-form readout: ridge objective <= NumPy lstsq's (+1e-6 relative) on "
                  f"the {len(Z):,} x {F} training states", mine <= theirs * (1 + 1e-6),
                  f"{mine:.6e} vs {theirs:.6e}; kappa(Z) = {np.linalg.cond(Z):.1e}")


def _check_one_run(section, esn):
    """mackey_glass_nrmse84's single run, redone by hand with the public API."""
    series = mackey_glass_series(WASHOUT + HORIZON, 1, seed=99)[:, 0]
    esn.reset()
    esn.collect_states(np.zeros((WASHOUT, 0)), squash(series[:WASHOUT]))
    by_hand = unsquash(esn.generate(HORIZON)[-1, 0])
    value = mackey_glass_nrmse84(esn, 1, washout=WASHOUT, seed=99)
    expected = abs(by_hand - series[-1]) / np.sqrt(np.var(series[:WASHOUT]))
    section.check("NRMSE_84 of one run equals |x(n+84) - y(n+84)| / std(x), recomputed",
                  np.isclose(value, expected, rtol=1e-12), f"{value:.6e} vs {expected:.6e}")


# -- the RNN trained by BPTT ----------------------------------------------------------------------

def make_rnn(seed):
    rng = np.random.default_rng(seed)
    return mg.nn.RNNModel(mg.nn.RNNCell(1, UNITS, rng=rng), mg.nn.Linear(UNITS, 1, rng=rng))


def train_rnn(model, d, budget, seed=0):
    """Adam on one-step prediction (input d(n), target d(n+1)), full BPTT through windows of
    WINDOW steps (BATCH random windows per update, the first WARMUP steps of each without a
    loss: the state starts at zero) until ``budget`` seconds are spent. Returns (iterations,
    seconds, last loss)."""
    rng = np.random.default_rng(seed)
    optimizer = mg.optim.Adam(model.parameters(), lr=LR)
    mask = np.arange(WINDOW) >= WARMUP
    start, iterations, loss = time.perf_counter(), 0, float("nan")
    while time.perf_counter() - start < budget:
        begin = rng.integers(0, len(d) - WINDOW - 1, size=BATCH)
        index = begin[None, :] + np.arange(WINDOW)[:, None]                    # (WINDOW, BATCH)
        xs, ys = d[index][:, :, None], d[index + 1][:, :, None]
        outputs, _ = model(xs)
        total = mg.bptt.sequence_loss(outputs, ys, mg.functional.mse, steps=mask,
                                      reduction="mean")
        total.backward()
        mg.optim.clip_grad_norm(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        iterations, loss = iterations + 1, total.item()
    return iterations, time.perf_counter() - start, loss


def rnn_errors(model, runs=RUNS, seed=1):
    """The ESN's protocol for the RNN: all runs as one batch, teacher-forced input for WASHOUT
    steps (the output at the last of them predicts x(n + 1)), then its own output fed back;
    the 84th prediction against x(n + 84). Returns (NRMSE_84, one-step NRMSE over the last
    ONE_STEP teacher-forced steps)."""
    series = mackey_glass_series(WASHOUT + HORIZON, runs, seed=seed)       # the ESN's runs
    variance = np.var(series[:WASHOUT])
    one_step = []
    with mg.no_grad():
        state = model.initial_state(runs)
        for n in range(WASHOUT):
            output, state = model.step(series[n][:, None] - 1.0, state, n)
            if n >= WASHOUT - ONE_STEP - 1 and n < WASHOUT - 1:
                one_step.append(1.0 + output.value[:, 0])       # predicts x(n + 1)
        for n in range(WASHOUT, WASHOUT + HORIZON - 1):
            output, state = model.step(output, state, n)
    predicted = 1.0 + output.value[:, 0]
    truth = series[WASHOUT - ONE_STEP:WASHOUT]
    return (nrmse(predicted, series[-1], variance=variance),
            nrmse(np.array(one_step), truth, variance=variance))


def esn_one_step(esn, runs=RUNS, seed=1):
    """The ESN's one-step NRMSE on the same runs: teacher-forced, the readout's output at step
    n is its prediction of x(n) from the past (d(n - 1) fed back)."""
    series = mackey_glass_series(WASHOUT + HORIZON, runs, seed=seed)
    predictions = []
    for r in range(runs):
        esn.reset()
        Z = esn.collect_states(np.zeros((WASHOUT, 0)), squash(series[:WASHOUT, r]))
        predictions.append(unsquash(Z[-ONE_STEP:] @ esn.W_out.value)[:, 0])
    return nrmse(np.array(predictions).T, series[WASHOUT - ONE_STEP:WASHOUT],
                 variance=np.var(series[:WASHOUT]))


# -- the section ----------------------------------------------------------------------------------

def run_esn(quick=False, reservoirs=None, budgets=None):
    reservoirs = reservoirs or (2 if quick else 5)
    budgets = budgets or ((1, 10) if quick else (1, 10, 100))
    section = Section("esn", f"9. Echo state network vs BPTT: Mackey-Glass tau = 17, NRMSE_84 "
                             f"over {RUNS} runs, {UNITS} units, {TRAIN:,} training steps after "
                             f"a washout of {WASHOUT:,}")
    x = training_series()
    d = squash(x)             # what the ESN sees: Jaeger's tanh(x - 1)
    esn = make_esn(0)
    esn.fit(None, d)
    _check_closed_form(section, esn, d)
    _check_one_run(section, esn)

    # 1. accuracy, over several reservoirs (the network is random; so is its error)
    rows, errors = [], []
    for seed in range(reservoirs):
        esn = make_esn(seed)
        esn.fit(None, d)
        errors.append(mackey_glass_nrmse84(esn, RUNS, washout=WASHOUT, seed=1))
        rows.append((f"reservoir seed {seed}", f"{esn.spectral_radius:.3g}",
                     f"{esn.largest_singular_value:.3g}", f"{errors[-1]:.2e}"))
    section.say(table(["ESN", "spectral radius", "largest singular value", "NRMSE_84"], rows))
    median = float(np.median(errors))
    section.say(f"  median NRMSE_84 {median:.2e} (worst {max(errors):.2e}); target <= "
                f"{NRMSE_LIMIT:g}: {'met' if median <= NRMSE_LIMIT else 'MISSED'}; Jaeger "
                f"(2001) reports 2.8e-4 for 400 units, Jaeger & Haas (2004) 10^-4.2 for 1,000")
    section.target("ESN Mackey-Glass NRMSE_84 (median over reservoirs)", median, NRMSE_LIMIT)

    # 2. the fit's time: harvesting the states, and the closed-form solve
    esn = make_esn(0)
    inputs = np.zeros((len(d), 0))
    esn.reset()
    Z = esn.collect_states(inputs, d[:, None])[WASHOUT:]

    def harvest():
        esn.reset()
        esn.collect_states(inputs, d[:, None])

    timings = compare({"fit": lambda: esn.fit(None, d), "harvest": harvest,
                       "solve": lambda: ridge_regression(Z, d[WASHOUT:, None], esn.ridge)},
                      repeats=3 if quick else 7)
    fit = timings["fit"]
    section.say(table(["step", "median s", "min s"],
                      [(name, f"{t.median:.3f}", f"{t.min:.3f}") for name, t in timings.items()]))
    section.say(f"  fit = harvest ({len(d):,} steps of a {UNITS}-unit reservoir) + solve (QR "
                f"of the {TRAIN:,} x {Z.shape[1]} states, SVD of the triangle); target < "
                f"{FIT_LIMIT:g} s: {'met' if fit.median < FIT_LIMIT else 'MISSED'}")
    section.target("ESN fit time, 400 units x 3,000 steps (median)", fit.median, FIT_LIMIT, "s")

    # 3. BPTT with the same data and the same (and larger) wall-clock budgets
    budget = fit.median
    esn = make_esn(0)
    esn.fit(None, d)
    table_rows = [(f"ESN, {UNITS} units (seed 0)", "closed-form readout", f"{fit.median:.2f}",
                   "-", f"{esn_one_step(esn):.2e}",
                   f"{mackey_glass_nrmse84(esn, RUNS, washout=WASHOUT, seed=1):.2e}")]
    bptt = []
    for factor in budgets:
        model = make_rnn(0)
        iterations, seconds, loss = train_rnn(model, x - 1.0, factor * budget)
        error, one_step = rnn_errors(model)
        bptt.append({"budget_factor": factor, "iterations": iterations, "seconds": seconds,
                     "train_loss": loss, "nrmse84": error, "one_step_nrmse": one_step})
        table_rows.append((f"RNN, {UNITS} units", f"BPTT + Adam, {factor}x the ESN's time",
                           f"{seconds:.2f}", f"{iterations}", f"{one_step:.2e}",
                           f"{error:.2e}"))
    section.say("")
    section.say(table(["model", "training", "seconds", "updates", "1-step NRMSE", "NRMSE_84"],
                      table_rows))
    section.say(f"  BPTT: windows of {WINDOW} steps, {BATCH} per update, Adam lr {LR}, "
                "gradient norm clipped at 1; an update begun inside the budget is finished, "
                "so the time can overshoot by one.\n  1-step NRMSE: teacher-forced, over the "
                f"last {ONE_STEP} steps before each free run; NRMSE_84: {HORIZON} steps into "
                "the free run. 1 is the score of predicting the mean.")
    section.data.update({"nrmse84_by_reservoir": errors, "nrmse84_median": median,
                         "timings": {k: t.as_dict() for k, t in timings.items()},
                         "bptt": bptt, "budget_s": budget})
    return section


def main(argv):
    return run_alone("echo state network", "esn", run_esn, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
