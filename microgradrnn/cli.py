"""The ``microgradrnn`` command: ``demo`` (the main job, :mod:`microgradrnn.demo`),
``draw``, ``vanishing``, ``train`` and ``esn``."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from . import __version__


def draw_command(args, out=None):
    """``microgradrnn draw``: a small RNN unrolled ``--steps`` steps (or rolled), written to
    ``--out`` (SVG, PNG or DOT by its extension)."""
    from .autodiff import record_edge_grads
    from .bptt import sequence_loss
    from .demo import CELLS
    from .draw import draw
    from .functional import mse
    from .nn import Linear, RNNModel
    from .render import render

    out = sys.stdout if out is None else out
    if args.steps < 1:
        raise SystemExit("draw: --steps must be at least 1")
    rng = np.random.default_rng(args.seed)
    model = RNNModel(CELLS[args.cell](1, args.hidden, rng=rng), Linear(args.hidden, 1, rng=rng))
    if args.rolled:
        drawing = draw(model)
        what = f"the rolled {args.cell.upper()} cell"
    else:
        xs = rng.standard_normal((args.steps, 1, 1))
        outputs, _ = model(xs)
        loss = sequence_loss(outputs, rng.standard_normal((args.steps, 1, 1)), mse)
        recorded = None
        if args.grads:
            with record_edge_grads() as recorded:
                loss.backward()
        drawing = draw(loss, params=model, edge_grads=recorded, collapse=args.collapse,
                       title=f"{args.cell.upper()} unrolled over {args.steps} steps")
        what = f"a {args.cell.upper()} unrolled over {args.steps} steps"
    result = render(drawing, args.out)
    how = f"rendered with {result.renderer}" if result.renderer else "DOT source"
    print(f"{what}: {result.path} ({how})", file=out)
    return result


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
    if args.task == "char" and args.optim == "hf":
        raise SystemExit("train: --optim hf trains the sequence tasks (e.g. --task adding_halves "
                         "--T 50), not the char model")
    if args.task == "char" and args.bptt == "rtrl":
        raise SystemExit("train: --bptt rtrl trains the sequence tasks (e.g. --task adding "
                         "--hidden 16), not the char model; use --bptt full or truncated")
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
    elif args.optim == "hf":
        from .hf_training import train_hf
        model, history = train_hf(
            args.task, cell=args.cell, hidden_size=args.hidden or 100, T=args.T,
            updates=args.iterations, seed=args.seed, progress=not args.quiet,
            eval_every=max(1, args.iterations // 10))
        _report(history, "update", f"{args.task}: Hessian-free training loss", plot_path, out)
    else:
        model, history = train_task(
            args.task, cell=args.cell,
            hidden_size=args.hidden or (16 if args.bptt == "rtrl" else 64), T=args.T,
            batch_size=args.batch, iterations=args.iterations, optimizer=args.optim,
            lr=args.lr or 1e-3, bptt=args.bptt, k=args.k, seed=args.seed,
            progress=not args.quiet, eval_every=max(1, args.iterations // 10))
        _report(history, "iteration", f"{args.task}: training loss", plot_path, out)
    print(f"loss curve written to {plot_path}", file=out)
    return history


def _report(history, unit, title, plot_path, out):
    """Print the evaluated points of a (step, loss, error or None) history; plot its loss."""
    from .training import plot_curve
    for it, loss, error in history:
        if error is not None:
            print(f"{unit} {it:6d}  loss {loss:.5f}  error rate on fresh data "
                  f"{100 * error:.1f}%", file=out)
    plot_curve([loss for _, loss, _ in history], plot_path, log=True, title=title, ylabel="loss")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="microgradrnn",
        description="Backpropagation through time, made visible: a readable autodiff engine "
                    "on NumPy.")
    parser.add_argument("--version", action="version", version=f"microgradrnn {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="command")
    demo_parser = commands.add_parser(
        "demo", help="train a small RNN with BPTT, split a gradient by time step, measure "
                     "vanishing gradients, and draw it all")
    demo_parser.add_argument("--out", default="microgradrnn-demo",
                             help="folder for the pictures (default microgradrnn-demo)")
    demo_parser.add_argument("--steps", type=int, default=6,
                             help="time steps T unrolled for training and drawing (default 6)")
    demo_parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo_parser.add_argument("--cell", choices=["rnn", "lstm", "gru"], default="rnn")
    demo_parser.add_argument("--iterations", type=int, default=300,
                             help="training iterations (default 300)")
    demo_parser.add_argument("--quiet", action="store_true", help="no progress bar")

    draw_parser = commands.add_parser(
        "draw", help="draw a small RNN unrolled in time (or rolled) to SVG, PNG or DOT")
    draw_parser.add_argument("--cell", choices=["rnn", "lstm", "gru"], default="rnn")
    draw_parser.add_argument("--steps", type=int, default=4, help="time steps (default 4)")
    draw_parser.add_argument("--hidden", type=int, default=4, help="hidden units (default 4)")
    draw_parser.add_argument("--out", default="graph.svg",
                             help="the file; .svg, .png or .dot (default graph.svg)")
    draw_parser.add_argument("--grads", action="store_true",
                             help="backpropagate and draw the gradient flow on the edges")
    draw_parser.add_argument("--collapse", choices=["step"], default=None,
                             help="draw each time step as one box")
    draw_parser.add_argument("--rolled", action="store_true",
                             help="draw the cell once, with its state fed back (rolled view)")
    draw_parser.add_argument("--seed", type=int, default=0)

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

    from .esn_experiments import ESN_TASKS
    esn_parser = commands.add_parser(
        "esn", help="fit an echo state network (only the readout is trained, in closed form) "
                    "and plot its prediction against the truth")
    esn_parser.add_argument("--task", choices=ESN_TASKS, default="mackey-glass")
    esn_parser.add_argument("--reservoir", type=int, default=None,
                            help="reservoir size (default: the task's preset)")
    esn_parser.add_argument("--spectral-radius", type=float, default=None)
    esn_parser.add_argument("--leak-rate", type=float, default=None)
    esn_parser.add_argument("--ridge", type=float, default=None,
                            help="ridge strength; 0 is the pseudo-inverse")
    esn_parser.add_argument("--seed", type=int, default=0)
    esn_parser.add_argument("--out", default="microgradrnn-esn",
                            help="folder for the plot (default microgradrnn-esn)")

    from .tasks import TASKS
    train_parser = commands.add_parser(
        "train", help="train an RNN: on the bundled text (char, min-char-rnn) or on a "
                      "long-term-dependency task")
    train_parser.add_argument("--task", choices=["char", *TASKS], default="char")
    train_parser.add_argument("--cell", choices=["rnn", "lstm", "gru"], default="rnn")
    train_parser.add_argument("--bptt", choices=["full", "truncated", "rtrl"], default="full",
                              help="full: through the whole chunk or sequence; truncated: the "
                                   "state is cut every --k steps; rtrl: real-time recurrent "
                                   "learning, forward in time (tasks, small models)")
    train_parser.add_argument("--k", type=int, default=5, help="truncation length (5)")
    train_parser.add_argument("--iterations", type=int, default=1000)
    train_parser.add_argument("--hidden", type=int, default=None,
                              help="hidden units (char: 100, tasks: 64, with rtrl: 16)")
    train_parser.add_argument("--T", type=int, default=50, help="sequence length of a task (50)")
    train_parser.add_argument("--batch", type=int, default=32, help="task batch size (32)")
    train_parser.add_argument("--seq-length", type=int, default=25,
                              help="characters per chunk for char (25)")
    train_parser.add_argument("--optim", choices=["sgd", "adagrad", "rmsprop", "adam", "hf"],
                              default="adam",
                              help="optimizer for the tasks (char uses Adagrad); hf: "
                                   "Hessian-free, one update per --iterations")
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
        from .demo import run_demo
        run_demo(args.out, steps=args.steps, seed=args.seed, cell=args.cell,
                 iterations=args.iterations, progress=not args.quiet)
        return 0
    if args.command == "draw":
        draw_command(args)
        return 0
    if args.command == "train":
        train(args)
        return 0
    if args.command == "esn":
        from .esn_experiments import esn_command
        esn_command(args.task, args.out, seed=args.seed, reservoir=args.reservoir,
                    spectral_radius=args.spectral_radius, leak_rate=args.leak_rate,
                    ridge=args.ridge)
        return 0
    if args.command == "vanishing":
        vanishing(args.radii, args.hidden, args.steps, args.cell, args.linear, args.seed,
                  args.out)
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
