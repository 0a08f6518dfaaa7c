"""Hessian-free optimization against first-order training on the two-channel adding problem,
and the cost of HF's curvature products: ``python benchmarks/bench_hf.py --quick`` (a few
minutes) or ``--full`` (hours; run it in the background).

1. Training (:func:`run_training`): a vanilla tanh RNN with 100 hidden units and a linear
   readout on ``adding_halves`` (target A + B), trained by HF, by SGD with gradient-norm
   clipping and by Adam, each for the same wall-clock budget from a fixed seed, then scored on
   10,000 fresh sequences (one fixed test set per T): the fraction with |error| >= 0.04 and
   the mean squared error (a constant guess: MSE 1/6, 92% wrong). Full: T = 20 and 50 for
   15 minutes per run, HF alone at T = 100 for 60 minutes. Quick: T = 10, 40 s per run.
2. Cost (:func:`run_cost`): one Gauss-Newton product against one gradient on the same batch
   (T = 50, B = 250, H = 100, HF's curvature batch), timed round-robin, and a profile of the
   product that shows where the engine's own overhead goes.

Each finished run is appended to the JSON results file at once, so a long run that is stopped
keeps what it did. ``run_training`` and ``run_cost`` return ``_common.Section`` objects, to be
registered in ``run.py``.
"""
from __future__ import annotations

import argparse
import cProfile
import datetime
import io
import json
import os
import pstats
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

if __name__ == "__main__":  # as run.py: one BLAS thread, set before NumPy loads
    from _threads import one_blas_thread
    one_blas_thread()

import numpy as np  # noqa: E402

import microgradrnn as mg  # noqa: E402
from _common import Section, compare, machine_info, ms, ratio_rows, table  # noqa: E402
from microgradrnn.hf_training import build_model, evaluate, hf_problem, train_hf  # noqa: E402

TASK = "adding_halves"
HIDDEN = 100
TEST_SIZE = 10_000
FULL_RUNS = [(20, "hf", 900), (20, "sgd", 900), (20, "adam", 900),
             (50, "hf", 900), (50, "sgd", 900), (50, "adam", 900), (100, "hf", 3600)]
QUICK_RUNS = [(10, "hf", 40), (10, "sgd", 40), (10, "adam", 40)]
# HF: Martens & Sutskever's setting (large gradient batch, a quarter of it for the curvature,
# sparse initialisation, spectral radius 1.1, structural damping mu = 0.03).
HF_OPTIONS = dict(gradient_batch=1000, curvature_batch=250, structural_damping=0.03,
                  spectral_radius=1.1)
# First order: the usual small batches and the library's default initialisation (uniform
# +-1/sqrt(H)); SGD with Pascanu et al.'s (2013) norm clipping.
FIRST_ORDER = {"sgd": dict(lr=0.1, clip=1.0, batch=50), "adam": dict(lr=1e-3, clip=None,
                                                                      batch=50)}


def train_first_order(name, T, budget, seed, hidden_size=HIDDEN):
    """SGD (+ norm clipping) or Adam on the mean squared error at the last step, fresh data
    every iteration, until ``budget`` seconds have passed. Returns (model, iterations)."""
    options = FIRST_ORDER[name]
    rng = np.random.default_rng(seed)
    model = build_model(TASK, T=T, hidden_size=hidden_size, rng=rng)
    params = model.parameters()
    optimizer = (mg.optim.SGD(params, lr=options["lr"]) if name == "sgd"
                 else mg.optim.Adam(params, lr=options["lr"]))
    started, iterations = time.perf_counter(), 0
    while time.perf_counter() - started < budget:
        xs, ys = mg.tasks.adding_halves(T, options["batch"], rng=rng)
        hs, _ = model.rnn(xs)
        loss = mg.functional.mse(model.head(hs[-1]), ys)
        loss.backward()
        if options["clip"]:
            mg.optim.clip_grad_norm(params, options["clip"])
        optimizer.step()
        optimizer.zero_grad()
        iterations += 1
    return model, iterations


def one_run(T, method, budget, seed):
    """Train one model for ``budget`` seconds and score it on the fixed test set of this T."""
    started = time.perf_counter()
    if method == "hf":
        model, history = train_hf(TASK, T=T, hidden_size=HIDDEN, updates=10**9, seed=seed,
                                  progress=False, time_budget=budget, eval_every=0,
                                  **HF_OPTIONS)
        steps = len(history)
    else:
        model, steps = train_first_order(method, T, budget, seed)
    trained = time.perf_counter() - started
    error, mse = evaluate(model, TASK, T, TEST_SIZE, seed=10_000 + T)
    return {"T": T, "method": method, "budget_s": budget, "seed": seed, "train_s": trained,
            "updates": steps, "test_error_rate": error, "test_mse": mse}


def _row(r):
    return (f"T={r['T']}", r["method"], f"{r['budget_s'] / 60:.1f} min", r["updates"],
            f"{100 * r['test_error_rate']:.2f}%", f"{r['test_mse']:.5f}",
            "solved" if r["test_error_rate"] <= 0.01 else "")


def run_training(quick=False, runs=None, seed=0, record=None):
    runs = runs or (QUICK_RUNS if quick else FULL_RUNS)
    section = Section("hf_training", "HF vs SGD (norm clipping) vs Adam on the two-channel "
                      f"adding problem, tanh RNN, H={HIDDEN}, same wall-clock budget per run")
    section.say(f"  HF: {HF_OPTIONS}; first order: {FIRST_ORDER}; seed {seed}; test set: "
                f"{TEST_SIZE} fresh sequences (seed 10000 + T)")
    results = []
    for T, method, budget in runs:
        result = one_run(T, method, budget, seed)
        results.append(result)
        section.say("  " + "  ".join(str(c) for c in _row(result)))
        if record is not None:
            record(results)
    section.data["runs"] = results
    section.say(table(["T", "method", "budget", "updates", "test wrong", "test MSE", ""],
                      [_row(r) for r in results]))
    section.say("  (a constant prediction: MSE 1/6 = 0.16667, about 92% wrong; solved: <= 1% "
                "wrong)")
    return section


def run_cost(quick=False, T=50, B=250, H=HIDDEN):
    """One Gauss-Newton product against one gradient on the same batch, and a profile."""
    section = Section("hf_cost", f"HF curvature products vs one gradient (tanh RNN, T={T}, "
                      f"B={B}, H={H}, adding problem)")
    rng = np.random.default_rng(0)
    model = build_model(TASK, T=T, hidden_size=H, rng=rng)
    batch = mg.tasks.adding_halves(T, B, rng=rng)
    theta = [p.value for p in model.parameters()]
    v = tuple(rng.standard_normal(t.shape) for t in theta)
    with_hidden = hf_problem(model, batch, structural_damping=True)
    plain = hf_problem(model, batch, structural_damping=False)
    flat_v = mg.optim.hessian_free.flatten(v)

    def model_fn(*ps):
        return plain.model_fn(list(ps), batch)

    def loss_fn(z):
        return plain.loss_fn(z, batch)

    params = [mg.tensor(t, requires_grad=True) for t in theta]
    G = mg.gauss_newton(model_fn, loss_fn, theta)
    damped = mg.optim.hessian_free.Curvature(with_hidden, theta, batch, weight=0.03).damped
    cases = {
        "gradient (forward + backward)": lambda: mg.grad(loss_fn(model_fn(*params)), params),
        "G(v), gauss_newton closure reused": lambda: G(v),
        "G(v) + structural damping (HF's CG product)": lambda: damped(flat_v),
        "mg.gnvp (incl. forward)": lambda: mg.gnvp(model_fn, loss_fn, theta, v),
        "mg.gauss_newton construction (forward)": lambda: mg.gauss_newton(model_fn, loss_fn,
                                                                          theta),
    }
    repeats = 3 if quick else 11
    timings = compare(cases, repeats)
    rows = ratio_rows(section, timings, "gradient (forward + backward)")
    section.say(table(["case", "median ms", "/ gradient", "(min/min)"], rows))
    section.target("CG product G(v) / gradient",
                   section.data["G(v), gauss_newton closure reused"]["ratio_median"], 2.5, "x")
    section.target("mg.gnvp incl. forward / gradient",
                   section.data["mg.gnvp (incl. forward)"]["ratio_median"], 2.5, "x")

    # where a CG product's time goes: the same product at B = 1 (little arithmetic) and a profile
    tiny = build_model(TASK, T=T, hidden_size=H, rng=np.random.default_rng(1))
    tiny_batch = mg.tasks.adding_halves(T, 1, seed=1)
    tiny_problem = hf_problem(tiny, tiny_batch, structural_damping=False)
    G1 = mg.gauss_newton(lambda *ps: tiny_problem.model_fn(list(ps), tiny_batch),
                         lambda z: tiny_problem.loss_fn(z, tiny_batch), theta)
    t1 = compare({"G(v) at B=1": lambda: G1(v)}, repeats)["G(v) at B=1"]
    share = t1.median / timings["G(v), gauss_newton closure reused"].median
    section.data["G(v) at B=1"] = t1.as_dict()
    section.say(f"  The same product at B=1: {ms(t1.median)} ms, {100 * share:.0f}% of the B={B} "
                "product: the engine's per-node cost, which does not grow with the batch.")
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(3):
        G(v)
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(8)
    lines = [ln for ln in text.getvalue().splitlines() if ln.strip()][-9:]
    section.data["profile_top"] = lines
    section.say("  Profile of three G(v) at full size (top 8 by own time):\n    "
                + "\n    ".join(lines))
    return section


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="T=10, 40 s per run (minutes)")
    mode.add_argument("--full", action="store_true", help="T=20, 50 (15 min), HF at T=100 "
                                                          "(60 min): hours")
    parser.add_argument("--only", default=None,
                        help="runs to do, e.g. '50:hf,50:sgd' (T:method; the mode's budgets)")
    parser.add_argument("--no-cost", action="store_true", help="skip the cost section")
    parser.add_argument("--curvature-batch", type=int, default=None,
                        help=f"HF's curvature batch (default {HF_OPTIONS['curvature_batch']})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    if args.curvature_batch:
        HF_OPTIONS["curvature_batch"] = args.curvature_batch
    runs = FULL_RUNS if args.full else QUICK_RUNS
    if args.only:
        wanted = {tuple(item.split(":")) for item in args.only.split(",")}
        runs = [r for r in runs if (str(r[0]), r[1]) in wanted]
    info = machine_info(os.path.dirname(HERE))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    kind = "full" if args.full else "quick"
    os.makedirs(args.out, exist_ok=True)
    part = "-" + args.only.replace(":", "").replace(",", "-") if args.only else ""
    part += f"-cb{args.curvature_batch}" if args.curvature_batch else ""
    path = os.path.join(args.out, f"hf-{stamp}-{kind}{part}.json")
    record = {"timestamp": stamp, "mode": kind, "command": " ".join(sys.argv), "machine": info,
              "seed": args.seed, "hf_options": dict(HF_OPTIONS), "runs": []}

    def save(results):
        record["runs"] = results
        with open(path, "w") as f:
            json.dump(record, f, indent=1, default=str)

    print(f"microgradrnn HF benchmark ({kind}); results in {os.path.relpath(path)}")
    sections = []
    if not args.no_cost:
        sections.append(run_cost(quick=not args.full))
        record["cost"] = sections[-1].as_dict()
        save(record["runs"])
    sections.append(run_training(runs=runs, seed=args.seed, record=save))
    record["training"] = sections[-1].as_dict()
    save(record["runs"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
