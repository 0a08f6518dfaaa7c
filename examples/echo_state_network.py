"""An echo state network: a fixed random reservoir, and a readout fitted in one linear solve.

Run ``python examples/echo_state_network.py [--task mackey-glass|narma10|sine|delay-line]
[--out FOLDER]``. It fits the task's network (Jaeger's Mackey-Glass generator by default: 400
units, 3,000 teacher-forced training steps, then running free), prints its error, and writes
to FOLDER (default ``esn-out``):

* ``esn_<task>.png``: the prediction against the truth, and the error on a log scale;
* ``esn_unrolled.svg``: a small ESN unrolled over six steps with the gradient of its training
  loss on the edges. The readout ``W_out`` is the only parameter, with one edge into every
  step; each step's reservoir state enters as a constant. No gradient travels back in time:
  compare ``examples/draw_unrolled_rnn.py``, where BPTT sends it through every step.
"""
import argparse
from pathlib import Path

import numpy as np

import microgradrnn as mg
from microgradrnn.esn import EchoStateNetwork
from microgradrnn.esn_experiments import ESN_TASKS, esn_command

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--task", choices=ESN_TASKS, default="mackey-glass")
parser.add_argument("--out", default="esn-out", help="folder for the pictures (esn-out)")
args = parser.parse_args()
out = Path(args.out)

result = esn_command(args.task, out, seed=0)            # fit, print the error, plot

# The same kind of network as a graph: 6 steps of a 5-unit reservoir learning to echo its
# input two steps late. Only W_out requires grad, so only W_out receives a gradient.
rng = np.random.default_rng(0)
esn = EchoStateNetwork(1, 1, 5, spectral_radius=0.9, connectivity=0.5, washout=2, rng=rng)
u = rng.uniform(-0.5, 0.5, (6, 1))
d = np.vstack([np.zeros((2, 1)), u[:-2]])
esn.fit(u, d)
loss = esn.ridge_loss(u, d)
with mg.record_edge_grads() as recorded:
    loss.backward()
print(f"ridge loss at the closed-form readout: {loss.item():.3g}; its gradient there "
      f"(zero at the minimum, up to rounding): {np.abs(esn.W_out.grad).max():.1e}")
drawing = mg.draw(loss, params=esn, edge_grads=recorded,
                  title="ESN: gradients reach only the readout")
path, renderer = mg.render(drawing, out / "esn_unrolled.svg")
print(f"{path}  ({'rendered by ' + renderer if renderer else 'DOT source'})")
