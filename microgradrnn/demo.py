"""``microgradrnn demo``: train a small RNN with backpropagation through time, and show it.

1. Train an RNN to predict the next value of sine waves (built-in data,
   :func:`microgradrnn.tasks.sine_waves`), with full BPTT over ``steps`` time steps.
2. Split one gradient by time step: the recurrent weight ``W_hh`` is one leaf with one
   consumer per step, and what each consumer sends it (:func:`microgradrnn.bptt.contributions`)
   adds up to ``W_hh.grad``, which a central finite difference confirms.
3. Measure how the gradient fades with the lag (:mod:`microgradrnn.diagnostics`).
4. Draw it: the unrolled graph with its gradient flow, the rolled cell, the loss curve and the
   vanishing-gradient plot, written to one folder.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .autodiff import no_grad, record_edge_grads
from .bptt import contributions, sequence_loss
from .diagnostics import format_table, plot_vanishing, vanishing_table
from .draw import draw
from .functional import mse
from .nn import GRUCell, Linear, LSTMCell, RNNCell, RNNModel
from .optim import Adam, clip_grad_norm
from .render import render
from .tasks import sine_waves

__all__ = ["run_demo", "DemoResult"]

CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}


class DemoResult(NamedTuple):
    losses: list        # the training loss at every iteration
    steps: np.ndarray   # (T, H, H): what step t sent W_hh
    total: np.ndarray   # their sum
    grad: np.ndarray    # W_hh.grad from the same loss
    entry: tuple        # the entry checked by finite differences: (index, sum, grad, difference)
    files: dict         # what was written: {description: path}


def run_demo(out_dir="microgradrnn-demo", steps=6, seed=0, cell="rnn", iterations=300,
             hidden=8, batch=32, lr=0.02, progress=True, out=None):
    """Run the four parts above; returns a :class:`DemoResult`."""
    from tqdm import tqdm

    out = sys.stdout if out is None else out
    p = lambda *a: print(*a, file=out)  # noqa: E731
    if steps < 1:
        raise SystemExit("demo: --steps must be at least 1")
    if cell not in CELLS:
        raise SystemExit(f"demo: --cell must be one of {', '.join(CELLS)}, got {cell!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    model = RNNModel(CELLS[cell](1, hidden, rng=rng), Linear(hidden, 1, rng=rng))
    W_hh = model.rnn.cell.W_hh

    p(f"microgradrnn demo: backpropagation through time, made visible (seed {seed})")
    p()
    p(f"1. Training an {cell.upper()} with {hidden} hidden units to predict the next value of "
      "sine waves,")
    p(f"   unrolled over T = {steps} steps (full BPTT, Adam, batch {batch}).")
    optimizer = Adam(model.parameters(), lr=lr)
    losses = []
    report_every = max(1, iterations // 6)
    bar = tqdm(range(1, iterations + 1), desc="training", disable=not progress, leave=False,
               file=sys.stderr)
    for it in bar:
        xs, ys = sine_waves(steps, batch, rng=rng)
        outputs, _ = model(xs)
        loss = sequence_loss(outputs, ys, mse, reduction="mean")
        loss.backward()
        clip_grad_norm(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if it == 1 or it % report_every == 0 or it == iterations:
            p(f"   iteration {it:5d}   mean squared error {losses[-1]:.5f}")
    p()

    # -- 2. one gradient, split by time step ---------------------------------------------------
    xs, ys = sine_waves(steps, 1, rng=rng)
    outputs, _ = model(xs)
    loss = sequence_loss(outputs, ys, mse, steps="last")
    with record_edge_grads() as recorded:  # kept for the drawing's gradient flow
        loss.backward()
    split = contributions(loss, W_hh, steps=steps)
    total = split.steps.sum(0) + split.rest
    index = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(W_hh.grad)), W_hh.shape))
    difference = _central_difference(model, W_hh, index, xs, ys)
    p(f"2. One sequence, with the loss at its last step: L = (y_T - target_T)^2. The recurrent "
      f"weight W_hh {W_hh.shape} is ONE leaf")
    p(f"   node with {steps} consumers, one per step; step t sends it dL/dW_hh,t, and "
      "the gradient is their sum.")
    p(f"   Entry W_hh{list(index)} and the norm of each step's contribution (step 0 multiplies "
      "h_0 = 0, so it sends nothing):")
    p()
    p("      t      x_t   dL/dW_hh,t entry   ||dL/dW_hh,t||")
    for t in range(steps):
        p(f"   {t:4d} {xs[t, 0, 0]:8.4f}   {split.steps[t][index]: .12f}   "
          f"{np.linalg.norm(split.steps[t]):.6e}")
    p()
    rows = [(f"sum of the {steps} contributions", total[index]),
            ("W_hh.grad (the engine's fan-out sum)", W_hh.grad[index]),
            ("central finite difference (eps=1e-6)", difference)]
    for label, value in rows:
        p(f"   {label:<40}{value: .12f}")
    p(f"   largest |sum - W_hh.grad| over all {W_hh.value.size} entries: "
      f"{np.max(np.abs(total - W_hh.grad)):.1e}")
    p()

    # -- 3. vanishing gradients ----------------------------------------------------------------
    table = vanishing_table(cell=cell, steps=50, seed=seed)
    p("3. How far back a gradient reaches: ||dL/dh_t|| for a loss at the last of 50 steps, by "
      "lag T - t")
    p(f"   ({cell.upper()}, 32 units, W_hh scaled to each spectral radius rho):")
    p("   " + format_table(table, lags=(0, 1, 2, 5, 10, 20, 30, 49)).replace("\n", "\n   "))
    p("   Below rho = 1 the early steps' share fades geometrically: the vanishing gradient.")
    p()

    # -- 4. pictures ---------------------------------------------------------------------------
    files = {}
    title = (f"{cell.upper()} unrolled over {steps} steps: W_hh is one node with one edge per "
             "step; edges coloured and thickened by gradient norm")
    unrolled = draw(loss, params=model, edge_grads=recorded, title=title)
    for suffix in ("svg", "png"):
        files[f"unrolled graph ({suffix.upper()})"] = render(
            unrolled, out_dir / f"unrolled_graph.{suffix}").path
    files["rolled graph (PNG)"] = render(draw(model), out_dir / "rolled_graph.png").path
    from .training import plot_curve
    files["loss curve (PNG)"] = plot_curve(
        losses, out_dir / "loss_curve.png", title="demo: training loss (sine waves)",
        ylabel="mean squared error", log=True)
    files["vanishing gradients (PNG)"] = plot_vanishing(table, out_dir / "vanishing.png")
    p(f"4. Written to {out_dir}/:")
    for label, path in files.items():
        p(f"   {label:<28}{path}")
    if any(Path(path).suffix == ".dot" for path in files.values()):
        p("   (no Graphviz renderer was found, so the graphs were written as .dot files; "
          "`pip install graphviz-pure` renders them)")
    return DemoResult(losses, split.steps, total, np.array(W_hh.grad), (index, total[index],
                      W_hh.grad[index], difference), files)


def _central_difference(model, param, index, xs, ys, eps=1e-6):
    """(L(w + eps) - L(w - eps)) / 2 eps for one entry of ``param``, without recording."""
    original = np.array(param.value)

    def loss_with(value):
        changed = original.copy()
        changed[index] = value
        param.value = changed
        with no_grad():
            outputs, _ = model(xs)
            return sequence_loss(outputs, ys, mse, steps="last").item()

    try:
        return (loss_with(original[index] + eps) - loss_with(original[index] - eps)) / (2 * eps)
    finally:
        param.value = original
