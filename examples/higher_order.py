"""Derivatives of derivatives: the same rules, run on Tensors, record a new graph.

With ``create_graph=True`` each VJP rule (for tanh: g * (1 - out^2)) is evaluated with the
graph's own tensors, so the gradient is itself differentiable, to any order. Forward mode
(``jvp``) composes with it: ``hvp`` is a jvp of grad, and never forms the Hessian.
"""
import numpy as np

import microgradrnn as mg

x = mg.tensor([0.5, -1.0], requires_grad=True)
(d1,) = mg.grad(x.tanh().sum(), [x], create_graph=True)
(d2,) = mg.grad(d1.sum(), [x], create_graph=True)
(d3,) = mg.grad(d2.sum(), [x])
t = np.tanh(x.value)
print("tanh'''(x) by the engine:   ", d3.value)
print("-2(1 - t^2)(1 - 3 t^2):     ", -2 * (1 - t**2) * (1 - 3 * t**2))

A = np.array([[1.0, 2.0], [0.5, -1.0], [0.0, 3.0]])
f = lambda x: (A @ x).tanh().sum()  # noqa: E731
x0, v = np.array([0.1, -0.2]), np.array([1.0, 0.5])
(hv,) = mg.hvp(f, (x0,), (v,))
print("H v by forward-over-reverse:", hv.value)
print("H v from the full Hessian:  ", mg.hessian(f, x0).value @ v)
