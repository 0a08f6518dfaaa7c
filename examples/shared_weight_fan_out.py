"""One weight, T consumers: its gradient is the sum of what each time step sends it.

Backpropagation through time needs no special code: the unrolled graph uses the same leaf
W_hh at every step, and the engine sums the cotangents of a node with several consumers.
``record_edge_grads`` lists those per-step terms, and ``scope(t=...)`` tells which step sent each.
"""
import numpy as np

import microgradrnn as mg

rng = np.random.default_rng(0)
T, B, D, H = 5, 2, 3, 4
W_xh = mg.Parameter(rng.normal(scale=0.5, size=(D, H)), name="W_xh")
W_hh = mg.Parameter(rng.normal(scale=0.5, size=(H, H)), name="W_hh")
xs = rng.normal(size=(T, B, D))

h = mg.tensor(np.zeros((B, H)))
for t in range(T):
    with mg.scope(t=t):
        h = (xs[t] @ W_xh + h @ W_hh).tanh()
loss = (h * h).sum()

with mg.record_edge_grads(only=[W_hh]) as record:
    loss.backward()

print("step t   |what step t sent W_hh|   (step 0 sends nothing: it multiplies h_0 = 0)")
for edge in sorted(record.edges, key=lambda e: e.consumer.tags["t"]):
    print(f"{edge.consumer.tags['t']:6d}   {np.linalg.norm(edge.grad):.3e}")
total = sum(edge.grad for edge in record.edges)
print("max |sum of the terms - W_hh.grad| =", np.abs(total - W_hh.grad).max())
