"""A gradient from the engine next to a central finite difference (the README example)."""
import numpy as np
import microgradrnn as mg

def loss(W, h=np.array([[1.0, -1.0]])):  # h_t = tanh(h_(t-1) W), unrolled 3 steps
    for t in range(3):
        h = (h @ W).tanh()
    return h.sum()

W0 = np.array([[0.5, -0.3], [0.8, 0.2]])
W = mg.Parameter(W0, name="W")            # one leaf node with three consumers
loss(W).backward()                        # W.grad: the sum of the three steps' shares
E = np.zeros((2, 2)); E[0, 1] = 1e-6
print(W.grad[0, 1], (loss(mg.tensor(W0 + E)) - loss(mg.tensor(W0 - E))).item() / 2e-6)
