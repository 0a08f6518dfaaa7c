"""SGD (with momentum and Nesterov momentum), Adagrad, RMSprop and Adam.

Each update follows the algorithm box of the ``torch.optim`` class of the same name, written
below for one parameter ``theta`` with gradient ``g`` at its ``t``-th update (t = 1, 2, ...);
every state array starts at zero unless said otherwise. All arithmetic makes new arrays.

Which rescalings of the loss an update ignores: SGD is linear in ``g``, so SGD on a mean over T
time steps with learning rate ``lr * T`` is SGD on the sum with ``lr`` (with weight decay, divide
``weight_decay`` by T too). Adagrad, RMSprop and Adam divide by a running root mean square of
``g``, so multiplying the loss by c leaves their steps (nearly: up to ``eps``) unchanged, and
``lr * T`` on the mean is *not* the sum's ``lr``: it is a T times larger step.
"""
from __future__ import annotations

import math

import numpy as np

from .base import Optimizer, flag, real

__all__ = ["SGD", "Adagrad", "RMSprop", "Adam"]


def _decayed(g, theta, weight_decay):
    """``g + weight_decay * theta``: L2 weight decay, added to the gradient as PyTorch does."""
    return g + weight_decay * theta if weight_decay else g


class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with (Nesterov) momentum.

    ``SGD(params, lr, momentum=0.0, nesterov=False, weight_decay=0.0, dampening=0.0)``::

        g  <- g + weight_decay * theta
        b  <- g                                      (t = 1)
        b  <- momentum * b + (1 - dampening) * g     (t > 1)       if momentum > 0
        d  <- g + momentum * b  if nesterov  else  b               if momentum > 0, else d = g
        theta <- theta - lr * d

    Momentum as in Sutskever, Martens, Dahl & Hinton (2013), "On the importance of
    initialization and momentum in deep learning", in the form of ``torch.optim.SGD``; the
    Nesterov variant evaluates the step "ahead" through ``g + momentum * b`` and needs
    ``momentum > 0`` and ``dampening == 0``. SGD is linear in ``g``: on a mean loss over T steps
    ``lr * T`` gives exactly the steps of the summed loss with ``lr``.
    """

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0,
                 dampening=0.0):
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov,
                         weight_decay=weight_decay, dampening=dampening)

    @classmethod
    def check_hyperparameters(cls, h):
        h = super().check_hyperparameters(h)
        h["lr"] = real("SGD", "lr", h["lr"])
        h["momentum"] = real("SGD", "momentum", h["momentum"], high=1.0, high_open=True)
        h["nesterov"] = flag("SGD", "nesterov", h["nesterov"])
        h["weight_decay"] = real("SGD", "weight_decay", h["weight_decay"])
        h["dampening"] = real("SGD", "dampening", h["dampening"], high=1.0)
        if h["nesterov"] and (h["momentum"] == 0 or h["dampening"] != 0):
            raise ValueError("SGD: nesterov=True needs momentum > 0 and dampening = 0, got "
                             f"momentum={h['momentum']}, dampening={h['dampening']}")
        return h

    def state_names(self, h):
        return ("momentum_buffer",) if h["momentum"] else ()

    def update(self, theta, g, state, t):
        h = self.hyperparameters
        g = _decayed(g, theta, h["weight_decay"])
        mu = h["momentum"]
        if mu:
            b = state.get("momentum_buffer")
            b = np.array(g, copy=True) if b is None else mu * b + (1 - h["dampening"]) * g
            state["momentum_buffer"] = b
            g = g + mu * b if h["nesterov"] else b
        return theta - h["lr"] * g


class Adagrad(Optimizer):
    r"""Adagrad: each coordinate's step divided by the root of its summed squared gradients.

    ``Adagrad(params, lr=0.01, eps=1e-10, initial_accumulator_value=0.0,
    eps_inside_sqrt=False, weight_decay=0.0)``::

        g   <- g + weight_decay * theta
        s   <- s + g * g                       (s starts at initial_accumulator_value)
        theta <- theta - lr * g / (sqrt(s) + eps)          (torch.optim.Adagrad)
        theta <- theta - lr * g / sqrt(s + eps)            (eps_inside_sqrt=True)

    Duchi, Hazan & Singer (2011), "Adaptive Subgradient Methods for Online Learning and
    Stochastic Optimization". ``eps_inside_sqrt=True, eps=1e-8`` is Karpathy's min-char-rnn,
    ``mem += dparam * dparam; param += -learning_rate * dparam / np.sqrt(mem + 1e-8)``,
    reproduced bit for bit. The step is nearly invariant to the scale of the loss (not to ``lr``
    times T on a mean, see :mod:`microgradrnn.optim`).
    """

    def __init__(self, params, lr=0.01, eps=1e-10, initial_accumulator_value=0.0,
                 eps_inside_sqrt=False, weight_decay=0.0):
        super().__init__(params, lr=lr, eps=eps,
                         initial_accumulator_value=initial_accumulator_value,
                         eps_inside_sqrt=eps_inside_sqrt, weight_decay=weight_decay)

    @classmethod
    def check_hyperparameters(cls, h):
        h = super().check_hyperparameters(h)
        for name in ("lr", "eps", "initial_accumulator_value", "weight_decay"):
            h[name] = real("Adagrad", name, h[name])
        h["eps_inside_sqrt"] = flag("Adagrad", "eps_inside_sqrt", h["eps_inside_sqrt"])
        return h

    def state_names(self, h):
        return ("sum",)

    def update(self, theta, g, state, t):
        h = self.hyperparameters
        g = _decayed(g, theta, h["weight_decay"])
        s = state.get("sum")
        if s is None:
            s = np.full_like(theta, h["initial_accumulator_value"])
        s = s + g * g
        state["sum"] = s
        denom = np.sqrt(s + h["eps"]) if h["eps_inside_sqrt"] else np.sqrt(s) + h["eps"]
        return theta - h["lr"] * g / denom


class RMSprop(Optimizer):
    r"""RMSprop: the step divided by a running root mean square of the gradient.

    ``RMSprop(params, lr=0.01, alpha=0.99, eps=1e-8, momentum=0.0, centered=False,
    weight_decay=0.0)``::

        g   <- g + weight_decay * theta
        v   <- alpha * v + (1 - alpha) * g * g
        a   <- alpha * a + (1 - alpha) * g                        (centered)
        r   <- sqrt(v - a * a) + eps   if centered   else   sqrt(v) + eps
        b   <- momentum * b + g / r;   theta <- theta - lr * b    (momentum > 0)
        theta <- theta - lr * g / r                               (otherwise)

    Hinton, Lecture 6e of "Neural Networks for Machine Learning" (2012); the centered variant,
    which divides by an estimate of the gradient's standard deviation, is Graves (2013),
    "Generating Sequences With Recurrent Neural Networks", eq. 38-40; the form is
    ``torch.optim.RMSprop``'s (eps added after the square root). Nearly invariant to the scale
    of the loss.
    """

    def __init__(self, params, lr=0.01, alpha=0.99, eps=1e-8, momentum=0.0, centered=False,
                 weight_decay=0.0):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, momentum=momentum,
                         centered=centered, weight_decay=weight_decay)

    @classmethod
    def check_hyperparameters(cls, h):
        h = super().check_hyperparameters(h)
        for name in ("lr", "eps", "weight_decay"):
            h[name] = real("RMSprop", name, h[name])
        for name in ("alpha", "momentum"):
            h[name] = real("RMSprop", name, h[name], high=1.0, high_open=True)
        h["centered"] = flag("RMSprop", "centered", h["centered"])
        return h

    def state_names(self, h):
        return (("square_avg",) + (("momentum_buffer",) if h["momentum"] else ())
                + (("grad_avg",) if h["centered"] else ()))

    def update(self, theta, g, state, t):
        h = self.hyperparameters
        alpha = h["alpha"]
        g = _decayed(g, theta, h["weight_decay"])
        v = alpha * state.get("square_avg", np.zeros_like(theta)) + (1 - alpha) * g * g
        state["square_avg"] = v
        if h["centered"]:
            a = alpha * state.get("grad_avg", np.zeros_like(theta)) + (1 - alpha) * g
            state["grad_avg"] = a
            r = np.sqrt(v - a * a) + h["eps"]
        else:
            r = np.sqrt(v) + h["eps"]
        if h["momentum"]:
            b = h["momentum"] * state.get("momentum_buffer", np.zeros_like(theta)) + g / r
            state["momentum_buffer"] = b
            return theta - h["lr"] * b
        return theta - h["lr"] * g / r


class Adam(Optimizer):
    r"""Adam: momentum on ``g``, divided by the root of a running mean of ``g * g``, both
    corrected for their start at zero.

    ``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False)``::

        g   <- g + weight_decay * theta
        m   <- beta1 * m + (1 - beta1) * g
        v   <- beta2 * v + (1 - beta2) * g * g
        vmax <- max(vmax, v);  v <- vmax                              (amsgrad)
        theta <- theta - lr * m_hat / (sqrt(v_hat) + eps),
                 m_hat = m / (1 - beta1**t),   v_hat = v / (1 - beta2**t)

    Kingma & Ba (2015), "Adam: A Method for Stochastic Optimization", Algorithm 1; AMSGrad is
    Reddi, Kale & Kumar (2018), "On the Convergence of Adam and Beyond", with the maximum taken
    over the uncorrected ``v`` as ``torch.optim.Adam`` does. Computed as PyTorch does:
    ``theta - (lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)``. The step is
    nearly invariant to the scale of the loss (exactly, with eps = 0).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)

    @classmethod
    def check_hyperparameters(cls, h):
        h = super().check_hyperparameters(h)
        for name in ("lr", "eps", "weight_decay"):
            h[name] = real("Adam", name, h[name])
        betas = h["betas"]
        if not isinstance(betas, tuple) or len(betas) != 2:
            raise TypeError(f"Adam: betas must be a pair (beta1, beta2), got {betas!r}")
        h["betas"] = tuple(real("Adam", f"betas[{k}]", beta, high=1.0, high_open=True)
                           for k, beta in enumerate(betas))
        h["amsgrad"] = flag("Adam", "amsgrad", h["amsgrad"])
        return h

    def state_names(self, h):
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if h["amsgrad"] else ())

    def update(self, theta, g, state, t):
        h = self.hyperparameters
        beta1, beta2 = h["betas"]
        g = _decayed(g, theta, h["weight_decay"])
        m = beta1 * state.get("exp_avg", np.zeros_like(theta)) + (1 - beta1) * g
        v = beta2 * state.get("exp_avg_sq", np.zeros_like(theta)) + (1 - beta2) * g * g
        state["exp_avg"], state["exp_avg_sq"] = m, v
        if h["amsgrad"]:
            v = np.maximum(state.get("max_exp_avg_sq", np.zeros_like(theta)), v)
            state["max_exp_avg_sq"] = v
        denom = np.sqrt(v) / math.sqrt(1 - beta2 ** t) + h["eps"]
        return theta - (h["lr"] / (1 - beta1 ** t)) * m / denom
