"""Optimizers and gradient clipping: what turns BPTT's gradients into training.

* :class:`Optimizer`, the base: parameters, per-parameter state of NumPy arrays, ``step()``
  (rebinds ``p.value``; never changes an array in place), ``zero_grad()``, and
  ``state_dict()`` / ``load_state_dict()`` for checkpoints in one ``.npz`` file;
* :class:`SGD` (momentum, Nesterov), :class:`Adagrad`, :class:`RMSprop`, :class:`Adam`
  (AMSGrad), each with its update written as maths in its docstring;
* :func:`clip_grad_norm` (Pascanu et al. 2013) and :func:`clip_grad_value`;
* :class:`HessianFree` (Martens 2010; Martens & Sutskever 2011), second order: CG on the
  damped Gauss-Newton system, ``step(closure)`` with an :class:`HFProblem` per update.

A typical step::

    loss = model(xs, ys); opt.zero_grad(); loss.backward()
    optim.clip_grad_norm(params, 5.0); opt.step()

Where scale-invariance stops: a mean loss over T time steps has the gradient of the summed loss
divided by T. SGD (with or without momentum) with learning rate ``lr * T`` on the mean takes
exactly the steps of ``lr`` on the sum. Adagrad, RMSprop and Adam divide by a running root mean
square of the gradient, which removes its scale: on the mean they take (up to ``eps``) the same
steps as on the sum with the *same* ``lr``, so ``lr * T`` is T times too large. Clipping
thresholds are absolute, so they too must be retuned when the loss is rescaled.
"""
from .base import Optimizer
from .clip import clip_grad_norm, clip_grad_value
from .hessian_free import HessianFree, HFProblem, HFStep
from .optimizers import SGD, Adagrad, Adam, RMSprop

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "clip_grad_norm",
           "clip_grad_value", "HessianFree", "HFProblem", "HFStep"]
