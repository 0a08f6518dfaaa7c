"""Draw backpropagation through time: an RNN unrolled in time, next to the same RNN rolled up.

Run ``python examples/draw_unrolled_rnn.py [--out FOLDER]``; it writes four pictures:

* ``unrolled.svg``: four time steps, one cluster each; every weight is drawn once, with one
  edge into every step that uses it. After a backward pass recorded with
  ``mg.record_edge_grads()``, each edge is coloured and thickened by the norm of the gradient
  it carried, and the edges out of a shared weight are labelled with that step's contribution:
  with the loss at the last step, they fade the further back the step is;
* ``rolled.svg``: the cell once, its new state fed back as the next step's state;
* ``truncated.svg``: a truncated-BPTT window, where the state carried in was cut by
  ``detach()`` (the red dashed edge);
* ``collapsed.svg``: twenty steps, each drawn as one box.

In Jupyter, ``mg.draw(loss)`` on the last line of a cell shows the drawing inline.
"""
import argparse
from pathlib import Path

import numpy as np

import microgradrnn as mg
from microgradrnn.nn import Linear, RNNCell, RNNModel

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--out", default="drawings", help="folder for the pictures (drawings)")
out = Path(parser.parse_args().out)

rng = np.random.default_rng(0)
model = RNNModel(RNNCell(1, 3, rng=rng), Linear(3, 1, rng=rng))


def unroll(T, h0=None, t0=0):
    """The loss at the last of T steps, and the final state."""
    outputs, state = model(rng.standard_normal((T, 1, 1)), h0=h0, t0=t0)
    loss = mg.bptt.sequence_loss(outputs, rng.standard_normal((T, 1, 1)), mg.functional.mse,
                                 steps="last")
    return loss, state


loss, _ = unroll(4)
with mg.record_edge_grads() as recorded:
    loss.backward()
W_hh = model.rnn.cell.W_hh
split = mg.bptt.contributions(loss, W_hh)
print("what each step sent W_hh (norms):", np.round(np.linalg.norm(split.steps, axis=(1, 2)), 4))

written = [
    mg.render(mg.draw(loss, params=model, edge_grads=recorded, title="loss at the last step"),
              out / "unrolled.svg"),
    mg.render(model, out / "rolled.svg"),                     # mg.draw(model): the rolled view
]
_, state = unroll(3)                                           # a first window ...
window, _ = unroll(3, h0=state.detach(), t0=3)                 # ... and the next one, cut
written.append(mg.render(window, out / "truncated.svg", params=model))
long_loss, _ = unroll(20)
written.append(mg.render(mg.draw(long_loss, collapse="step"), out / "collapsed.svg"))
for path, renderer in written:
    print(f"{path}  ({'rendered by ' + renderer if renderer else 'DOT source'})")
