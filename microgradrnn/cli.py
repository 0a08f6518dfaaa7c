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


def vanishing(radii, hidden_size, steps, cell, linear, seed, out_path, out=None):
    """Print gradient norms by lag for several spectral radii of W_hh, and save the plot."""
    from .diagnostics import format_table, plot_vanishing, vanishing_table

    out = sys.stdout if out is None else out
    table = vanishing_table(tuple(radii), hidden_size=hidden_size, steps=steps, cell=cell,
                            linear=linear, seed=seed)
    kind = "linear RNN" if linear else f"{cell.upper()} cell"
    print(f"||dL/dh_t|| for a loss at the last step, by lag T - t ({kind}, H = {hidden_size}, "
          f"T = {steps}, W_hh scaled to each spectral radius rho):", file=out)
    lags = tuple(lag for lag in (0, 1, 2, 5, 10, 20, 50, 100, 200) if lag < steps)
    print(format_table(table, lags=lags + ((steps - 1,) if steps - 1 not in lags else ())),
          file=out)
    plot_vanishing(table, out_path)
    print(f"plot written to {out_path}", file=out)
    return table


def train(args, out=None):
    """``microgradrnn train``: train on the text (min-char-rnn) or on a sequence task, print the
    loss as it goes, and write the loss curve."""
    import os

    from .training import CharRNN, plot_curve, train_task

    out = sys.stdout if out is None else out
    os.makedirs(args.out, exist_ok=True)
    plot_path = os.path.join(args.out, "loss_curve.png")
    if args.task == "char":
        k = args.seq_length if args.bptt == "full" else args.k
        model = CharRNN(cell=args.cell, hidden_size=args.hidden or 100,
                        seq_length=args.seq_length, k=k, lr=args.lr or 0.1, seed=args.seed)
        print(f"char-rnn on {len(model.inputs) * args.seq_length:,} characters of the bundled "
              f"text ({model.vocab.size} symbols), {args.cell.upper()} with "
              f"{args.hidden or 100} hidden units, truncated BPTT k = {k}; the smooth loss "
              f"starts at {args.seq_length} ln V = {model.smooth_loss:.2f}", file=out)
        history = model.train(args.iterations, sample_every=args.sample_every,
                              progress=not args.quiet)
        print(f"after {model.iteration} iterations the smooth loss is {model.smooth_loss:.3f}",
              file=out)
        print("sample:\n" + model.sample(200), file=out)
        plot_curve(history, plot_path, title="char-rnn: smooth loss per 25-character chunk",
                   ylabel="smooth loss")
    else:
        model, history = train_task(
            args.task, cell=args.cell, hidden_size=args.hidden or 64, T=args.T,
            batch_size=args.batch, iterations=args.iterations, optimizer=args.optim,
            lr=args.lr or 1e-3, bptt=args.bptt, k=args.k, seed=args.seed,
            progress=not args.quiet, eval_every=max(1, args.iterations // 10))
        for it, loss, error in history:
            if error is not None:
                print(f"iteration {it:6d}  loss {loss:.5f}  error rate on fresh data "
                      f"{100 * error:.1f}%", file=out)
        plot_curve([loss for _, loss, _ in history], plot_path, log=True,
                   title=f"{args.task}: training loss", ylabel="loss")
    print(f"loss curve written to {plot_path}", file=out)
    return history


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

    vanishing_parser = commands.add_parser(
        "vanishing", help="measure how the gradient fades (or grows) with the lag, for several "
                          "spectral radii of W_hh, and plot it")
    vanishing_parser.add_argument("--radii", type=float, nargs="+",
                                  default=[0.5, 0.9, 1.0, 1.1, 1.5],
                                  help="spectral radii of W_hh (default 0.5 0.9 1.0 1.1 1.5)")
    vanishing_parser.add_argument("--hidden", type=int, default=32, help="hidden size (32)")
    vanishing_parser.add_argument("--steps", type=int, default=50, help="time steps T (50)")
    vanishing_parser.add_argument("--cell", choices=["rnn", "lstm", "gru"], default="rnn")
    vanishing_parser.add_argument("--linear", action="store_true",
                                  help="a linear RNN (no tanh): gradients then explode for rho > 1")
    vanishing_parser.add_argument("--seed", type=int, default=0)
    vanishing_parser.add_argument("--out", default="vanishing.png",
                                  help="where to write the plot (default vanishing.png)")

    from .tasks import TASKS
    train_parser = commands.add_parser(
        "train", help="train an RNN: on the bundled text (char, min-char-rnn) or on a "
                      "long-term-dependency task")
    train_parser.add_argument("--task", choices=["char", *TASKS], default="char")
    train_parser.add_argument("--cell", choices=["rnn", "lstm", "gru"], default="rnn")
    train_parser.add_argument("--bptt", choices=["full", "truncated"], default="full",
                              help="full: through the whole chunk or sequence; truncated: the "
                                   "state is cut every --k steps")
    train_parser.add_argument("--k", type=int, default=5, help="truncation length (5)")
    train_parser.add_argument("--iterations", type=int, default=1000)
    train_parser.add_argument("--hidden", type=int, default=None,
                              help="hidden units (char: 100, tasks: 64)")
    train_parser.add_argument("--T", type=int, default=50, help="sequence length of a task (50)")
    train_parser.add_argument("--batch", type=int, default=32, help="task batch size (32)")
    train_parser.add_argument("--seq-length", type=int, default=25,
                              help="characters per chunk for char (25)")
    train_parser.add_argument("--optim", choices=["sgd", "adagrad", "rmsprop", "adam"],
                              default="adam", help="optimizer for the tasks (char uses Adagrad)")
    train_parser.add_argument("--lr", type=float, default=None,
                              help="learning rate (char: 0.1, tasks: 0.001)")
    train_parser.add_argument("--sample-every", type=int, default=0,
                              help="char: print a sample every N iterations")
    train_parser.add_argument("--seed", type=int, default=0)
    train_parser.add_argument("--quiet", action="store_true", help="no progress bar")
    train_parser.add_argument("--out", default="microgradrnn-train",
                              help="folder for the loss curve (default microgradrnn-train)")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(steps=args.steps, seed=args.seed, weight=args.weight)
        return 0
    if args.command == "train":
        train(args)
        return 0
    if args.command == "vanishing":
        vanishing(args.radii, args.hidden, args.steps, args.cell, args.linear, args.seed,
                  args.out)
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
