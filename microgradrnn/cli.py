"""The ``microgradrnn`` command.

``microgradrnn demo`` unrolls a one-unit recurrence and shows the central fact of
backpropagation through time: the recurrent weight is one node with one consumer per step,
and its gradient is the sum of what those consumers send it.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from . import __version__
from .autodiff import record_edge_grads, scope
from .graph import backward_order
from .tensor import Parameter, tensor


def unrolled_recurrence(w, xs, h0):
    """h_t = tanh(w * h_{t-1} + x_t) for t = 1..T, each step's ops tagged with scope(t=t)."""
    h = h0
    states = []
    for t, x in enumerate(xs, start=1):
        with scope(t=t):
            h = (w * h + x).tanh()
        states.append(h)
    return states


def demo(steps=6, seed=0, weight=0.9, out=None):
    """Unroll, backpropagate once, and print the per-step contributions next to the gradient
    and a central finite difference. Returns the three numbers (sum, gradient, difference)."""
    if steps < 1:
        raise SystemExit("demo: --steps must be at least 1")
    rng = np.random.default_rng(seed)
    xs = rng.uniform(-1.0, 1.0, size=steps)
    h0 = tensor(0.5)
    w = Parameter(weight, name="w")

    def loss_at(w_value):
        return unrolled_recurrence(tensor(w_value), xs, h0)[-1].item()

    states = [h.retain_grad() for h in unrolled_recurrence(w, xs, h0)]
    loss = states[-1]  # L = h_T
    with record_edge_grads(only=[w]) as record:
        loss.backward()
    sent = {edge.consumer.tags["t"]: float(edge.grad) for edge in record.edges}
    total = sum(sent.values())
    eps = 1e-6
    numeric = (loss_at(weight + eps) - loss_at(weight - eps)) / (2 * eps)
    nodes = len(backward_order([loss.node]))

    out = sys.stdout if out is None else out
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p("microgradrnn demo: backpropagation through time on h_t = tanh(w * h_(t-1) + x_t)")
    p()
    p(f"Unrolled T = {steps} steps from h_0 = 0.5, with w = {weight} and inputs x_t drawn "
      f"with seed {seed}.")
    p(f"The recorded graph has {nodes} nodes. The weight w is ONE leaf node with {len(sent)} "
      "consumers:")
    p("the multiplication w * h_(t-1) of every step. The loss is L = h_T.")
    p()
    p("   t       x_t         h_t      dL/dh_t    dL/dw sent by step t's consumer")
    for t in range(1, steps + 1):
        h = states[t - 1]
        p(f"{t:4d} {xs[t - 1]:9.4f} {h.item():11.6f} {h.grad.item():12.6f}    {sent[t]: .12f}")
    p()
    for label, value in [(f"sum of the {len(sent)} contributions", total),
                         ("w.grad (the engine's fan-out sum)", w.grad.item()),
                         (f"central finite difference (eps={eps:g})", numeric)]:
        p(f"{label:<40}{value: .12f}")
    p()
    p("Backpropagation through time sums the gradients of every unrolled copy of w; the engine")
    p("does it with no RNN-specific code, because a node with several consumers receives the")
    p("sum of what they send. Step t sends dL/dh_t * (1 - h_t^2) * h_(t-1), and each step")
    p("back multiplies dL/dh_t by w (1 - h_t^2), whose size is below 1 when |w| < 1: over")
    p("long spans the early steps' share fades away (the vanishing gradient).")
    return total, w.grad.item(), numeric


def build_parser():
    parser = argparse.ArgumentParser(
        prog="microgradrnn",
        description="Backpropagation through time, made visible: a readable autodiff engine "
                    "on NumPy.")
    parser.add_argument("--version", action="version", version=f"microgradrnn {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="command")
    demo_parser = commands.add_parser(
        "demo", help="unroll a small recurrence and show the shared weight's gradient as the "
                     "sum of its per-step contributions")
    demo_parser.add_argument("--steps", type=int, default=6, help="time steps T (default 6)")
    demo_parser.add_argument("--seed", type=int, default=0, help="seed of the inputs x_t")
    demo_parser.add_argument("--weight", type=float, default=0.9, help="the recurrent weight w")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(steps=args.steps, seed=args.seed, weight=args.weight)
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
