"""Add your own primitive: a forward function with its VJP and JVP rules side by side.

Write the rules with microgradrnn operations, not np.* functions: then they run on arrays in an
ordinary backward pass and on Tensors under create_graph=True, so second derivatives come free.
``check_primitive`` compares both rules, and their derivatives, with finite differences.
"""
import numpy as np

import microgradrnn as mg

softplus = mg.defprimitive(
    lambda x: np.logaddexp(0.0, x),                       # log(1 + e^x), stably
    vjp=lambda g, out, x: g * mg.sigmoid(x),              # d/dx softplus = sigmoid
    jvp=lambda x_dot, out, x: x_dot * mg.sigmoid(x),
    name="softplus")

x = mg.tensor([-2.0, 0.0, 3.0], requires_grad=True)
softplus(x).sum().backward()
print("gradient:", x.grad, " sigmoid:", 1 / (1 + np.exp(-x.value)))
print("all checks pass:", mg.check_primitive(softplus, (np.array([-2.0, 0.0, 3.0]),)))
