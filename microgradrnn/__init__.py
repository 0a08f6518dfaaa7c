"""microgradrnn: backpropagation through time, made visible.

A reverse-mode (and forward-mode) automatic differentiation engine on NumPy, in which an RNN
unrolled in time is an ordinary graph: a recurrent weight is one node with one consumer per
time step, and its gradient is the sum of what those consumers send it.
"""
from importlib.metadata import PackageNotFoundError, version as _version

from . import bptt, diagnostics, esn, functional, nn, ops, optim, tasks
from .nn import load, save
from .draw import draw, draw_rolled
from .render import render
from .autodiff import (EdgeGrad, detect_anomaly, enable_grad, is_grad_enabled, no_grad,
                       record_edge_grads, scope)
from .gradcheck import GradcheckError, check_primitive, gradcheck, gradgradcheck, jvpcheck
from .ops import *  # noqa: F401,F403  (the operations: mg.tanh, mg.sum, mg.matmul, ...)
from .ops import AnomalyError, Primitive, defprimitive
from .tensor import Parameter, Tensor, tensor
from .transforms import (checkpoint, gauss_newton, gnvp, grad, hessian, hvp, jacobian, jvp,
                         vjp)

try:
    __version__ = _version("microgradrnn")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
