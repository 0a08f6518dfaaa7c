"""Hessian-free optimization on a long-range problem (Martens & Sutskever 2011).

The two-channel adding problem: T numbers, two of them marked (one in each half); the target,
read at the last step, is their sum. A constant guess has mean squared error 1/6 and gets 92%
of the sequences wrong (|error| >= 0.04). Each HF update solves the damped Gauss-Newton system
with conjugate gradient; the line shows the loss, the damping lambda, the reduction ratio rho
(how well the quadratic model predicted the change) and the CG iterations.

    python examples/hessian_free_pathological.py                  # seconds: T=10, 20 units
    python examples/hessian_free_pathological.py --T 50 --hidden 100 --updates 200 \\
        --gradient-batch 1000 --curvature-batch 250               # the paper's scale (slow)
"""
import argparse

from microgradrnn.hf_training import evaluate, train_hf


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="adding_halves")
    parser.add_argument("--T", type=int, default=10, help="sequence length")
    parser.add_argument("--hidden", type=int, default=20, help="hidden units")
    parser.add_argument("--updates", type=int, default=15, help="HF updates")
    parser.add_argument("--gradient-batch", type=int, default=200)
    parser.add_argument("--curvature-batch", type=int, default=50)
    parser.add_argument("--structural-damping", type=float, default=0.03, help="mu (0: off)")
    parser.add_argument("--time-budget", type=float, default=None, help="seconds")
    parser.add_argument("--test-size", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    def show(u, step):
        print(f"update {u:4d}  loss {step.loss:.5f} -> {step.new_loss:.5f}  "
              f"lambda {step.damping:.3g}  rho {step.rho:5.2f}  CG {step.cg_iterations:3d} "
              f"(kept {step.backtracked_to})")

    model, history = train_hf(args.task, T=args.T, hidden_size=args.hidden,
                              updates=args.updates, gradient_batch=args.gradient_batch,
                              curvature_batch=args.curvature_batch,
                              structural_damping=args.structural_damping,
                              time_budget=args.time_budget, seed=args.seed, progress=False,
                              eval_every=0, log=show)
    error, mse = evaluate(model, args.task, args.T, args.test_size, seed=args.seed + 12345)
    print(f"test: {100 * error:.1f}% of {args.test_size} fresh sequences wrong"
          + (f", mean squared error {mse:.5f} (a constant guess: 1/6 = 0.16667)"
             if mse is not None else ""))


if __name__ == "__main__":
    main()
