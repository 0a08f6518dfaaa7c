"""``Optimizer``: the parameters, their gradients, the per-parameter state, and checkpoints.

An optimizer keeps an ordered list of parameters (leaf Tensors that require grad) and, for each
one, a small state dict of NumPy arrays (moment estimates, momentum buffers) and its step count
``t``. ``step()`` reads every ``p.grad`` that is not None and *rebinds* ``p.value`` to a new
array: the old array is never changed, so a graph recorded before the step still differentiates
the values it saw. The state holds arrays and numbers only — never a Tensor or a graph node — so
it keeps nothing alive and saves as one ``.npz`` file (:meth:`Optimizer.state_dict`).

A subclass declares its hyperparameters (:meth:`Optimizer.check_hyperparameters`), the names
of its per-parameter arrays (:meth:`Optimizer.state_names`) and the update of one parameter
(:meth:`Optimizer.update`).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np

from ..tensor import Tensor

__all__ = ["Optimizer"]


class Optimizer:
    """Base class: ``Optimizer(params, **hyperparameters)``.

    ``params``: an ordered iterable of leaf Tensors that require grad (a list, or a generator
    such as ``model.parameters()``); each at most once. Their position in it is their index in
    the state (``state[i]``, the keys ``"state.{i}.<name>"`` of :meth:`state_dict`).
    ``hyperparameters`` stay readable and changeable (a learning-rate schedule) in
    ``opt.hyperparameters``.
    """

    def __init__(self, params, **hyperparameters):
        self.params: list[Tensor] = _checked_params(params, type(self).__name__)
        self.hyperparameters: dict = self.check_hyperparameters(hyperparameters)
        self.state: list[dict] = [{} for _ in self.params]  # per parameter: "step" and arrays
        self.step_count: int = 0                              # calls of step()

    # -- what a subclass provides ------------------------------------------------------------

    @classmethod
    def check_hyperparameters(cls, hyperparameters: Mapping) -> dict:
        """The hyperparameters as plain Python values (float, int, bool, tuple of floats), or a
        TypeError / ValueError that names the one at fault. Subclasses add range checks."""
        return {name: _plain(cls.__name__, name, value) for name, value in hyperparameters.items()}

    def state_names(self, hyperparameters: Mapping) -> tuple:
        """The names of the per-parameter arrays that ``update`` keeps under these
        hyperparameters (besides the step count ``"step"``)."""
        return ()

    def update(self, theta: np.ndarray, g: np.ndarray, state: dict, t: int) -> np.ndarray:
        """The new value of one parameter, from its value ``theta``, its gradient ``g`` and its
        ``state`` (arrays to replace, never to change in place), at its ``t``-th update."""
        raise NotImplementedError(f"{type(self).__name__} does not define update()")

    # -- the training loop -------------------------------------------------------------------

    def step(self):
        """Update every parameter whose ``.grad`` is not None (the others keep their value and
        their state). Every gradient is checked before any parameter changes."""
        grads = [(i, p, _grad_array(p, i)) for i, p in enumerate(self.params) if p.grad is not None]
        for i, p, g in grads:
            state = self.state[i]
            t = state.get("step", 0) + 1
            p.value = self.update(p.value, g, state, t)
            state["step"] = t
        self.step_count += 1

    def zero_grad(self):
        """Forget every parameter's gradient (``p.grad = None``) before the next backward."""
        for p in self.params:
            p.grad = None

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """A flat dict of str -> NumPy array or Python number that ``np.savez(path, **d)`` stores
        and ``dict(np.load(path, allow_pickle=False))`` gives back:

        * ``"optimizer"``: the class name (a 0-d string array), ``"step"``: calls of ``step()``,
          ``"num_params"``: how many parameters;
        * each hyperparameter under its own name (a tuple such as ``betas`` as a 1-d array);
        * ``"state.{i}.step"`` and ``"state.{i}.<name>"`` for every parameter ``i`` updated so
          far (copies of its arrays).
        """
        d = {"optimizer": np.array(type(self).__name__), "step": self.step_count,
             "num_params": len(self.params)}
        for name, value in self.hyperparameters.items():
            d[name] = np.array(value, dtype=np.float64) if isinstance(value, tuple) else value
        for i, state in enumerate(self.state):
            for name, value in state.items():
                d[f"state.{i}.{name}"] = value.copy() if isinstance(value, np.ndarray) else value
        return d

    def load_state_dict(self, d: Mapping):
        """Continue from ``d`` (from :meth:`state_dict`, possibly through an ``.npz`` file): the
        hyperparameters, the step counts and the per-parameter state are replaced by copies of
        ``d``'s. Everything is checked first — the optimizer class, the keys, the hyperparameter
        values, every array's shape and dtype against its parameter — and on any mismatch a
        ValueError says what, and the optimizer is left as it was."""
        def fail(message):
            raise ValueError(f"{type(self).__name__}.load_state_dict: {message}")

        if not isinstance(d, Mapping):
            fail(f"expected a dict (or the result of np.load), got {type(d).__name__}")
        keys = set(d)
        missing = {"optimizer", "step", "num_params", *self.hyperparameters} - keys
        if missing:
            fail(f"missing keys {sorted(missing)}")
        found = d["optimizer"]
        found = str(found.item() if isinstance(found, np.ndarray) else found)
        if found != type(self).__name__:
            fail(f"the state was saved by {found}, not by {type(self).__name__}")
        num_params = _count(d["num_params"], "num_params", fail)
        if num_params != len(self.params):
            fail(f"the state is for {num_params} parameters; this optimizer has "
                 f"{len(self.params)}")
        step_count = _count(d["step"], "step", fail)
        try:
            hyperparameters = self.check_hyperparameters({k: d[k] for k in self.hyperparameters})
        except (TypeError, ValueError) as error:
            fail(f"invalid hyperparameters: {error}")
        expected = ("step", *self.state_names(hyperparameters))

        states = [{} for _ in self.params]
        for key in sorted(keys - {"optimizer", "step", "num_params", *self.hyperparameters}):
            parts = key.split(".")
            if len(parts) != 3 or parts[0] != "state" or not parts[1].isdigit():
                fail(f"unexpected key {key!r}")
            i, name = int(parts[1]), parts[2]
            if i >= len(self.params) or name not in expected:
                fail(f"unexpected key {key!r} (parameters 0..{len(self.params) - 1}, state "
                     f"names {list(expected)})")
            states[i][name] = d[key]
        for i, (p, state) in enumerate(zip(self.params, states)):
            if state and set(state) != set(expected):
                fail(f"parameter {i} has state {sorted(state)}; expected {sorted(expected)}")
            for name, value in state.items():
                if name == "step":
                    state[name] = _count(value, f"state.{i}.step", fail, least=1)
                    continue
                value = np.asarray(value)
                if value.shape != p.shape or value.dtype != p.dtype:
                    fail(f"state.{i}.{name} has shape {value.shape} and dtype {value.dtype}; "
                         f"parameter {i} has shape {p.shape} and dtype {p.dtype}")
                state[name] = np.array(value, copy=True)
        self.hyperparameters, self.state, self.step_count = hyperparameters, states, step_count

    def __repr__(self):
        hyper = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"{type(self).__name__}({len(self.params)} parameters, {hyper})"


# -- checks -------------------------------------------------------------------------------------

def _checked_params(params, who):
    if isinstance(params, Tensor):
        raise TypeError(f"{who}: params must be an iterable of Tensors (e.g. [W, b] or "
                        "model.parameters()), not a single Tensor: wrap it in a list")
    if isinstance(params, (set, frozenset, Mapping)):
        raise TypeError(f"{who}: params must be an ordered iterable (a list or a generator); a "
                        f"{type(params).__name__} has no stable order, and the state is keyed "
                        "by each parameter's position")
    try:
        params = list(params)
    except TypeError:
        raise TypeError(f"{who}: params must be an iterable of Tensors, got "
                        f"{type(params).__name__}") from None
    if not params:
        raise ValueError(f"{who}: got no parameters to optimize (an empty list or an exhausted "
                         "generator)")
    seen = {}
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"{who}: params[{i}] is a {type(p).__name__}, not a Tensor")
        label = f"params[{i}]" + (f" ({p.name!r})" if p.name is not None else "")
        if not p.requires_grad:
            raise ValueError(f"{who}: {label} does not require grad, so it never has a gradient "
                             "to follow; use mg.Parameter or requires_grad=True")
        if not p.is_leaf:
            raise ValueError(f"{who}: {label} is not a leaf (it was computed by "
                             f"{p.node.primitive.name}); only leaves such as mg.Parameter can be "
                             "optimized: their value can be replaced")
        if id(p) in seen:
            raise ValueError(f"{who}: {label} is the same Tensor as params[{seen[id(p)]}]; each "
                             "parameter may appear once (it would be updated twice per step)")
        seen[id(p)] = i
    return params


def _grad_array(p, i):
    """``p.grad`` as an array of ``p``'s shape and dtype (a Tensor gradient gives its value)."""
    grad = p.grad
    g = np.asarray(grad.value if isinstance(grad, Tensor) else grad, dtype=p.dtype)
    if g.shape != p.shape:
        raise ValueError(f"step: params[{i}] has shape {p.shape} but its .grad has shape "
                         f"{g.shape}; no parameter was changed")
    return g


def _scalar(value):
    """A 0-d array or NumPy scalar as the Python value it holds; anything else unchanged."""
    if isinstance(value, (np.ndarray, np.generic)) and np.ndim(value) == 0:
        return value.item()
    return value


def _plain(who, name, value):
    """A hyperparameter as a plain Python value: bool, int, float, or a tuple of floats."""
    value = _scalar(value)
    if isinstance(value, (bool, numbers.Integral, numbers.Real)):
        return value if isinstance(value, (bool, int)) else float(value)
    if isinstance(value, (tuple, list, np.ndarray)) and np.ndim(value) == 1:
        items = [_scalar(v) for v in value]
        if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in items):
            return tuple(float(v) for v in items)
    raise TypeError(f"{who}: hyperparameter {name} must be a number, a bool or a tuple of "
                    f"numbers, got {type(value).__name__}")


def real(who, name, value, low=0.0, high=math.inf, high_open=False):
    """``value`` as a finite float in ``[low, high]`` (``[low, high)`` with ``high_open``), or
    an error naming the hyperparameter."""
    value = _scalar(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{who}: {name} must be a real number, got {type(value).__name__}")
    value = float(value)
    above = value >= high if high_open else value > high
    if not math.isfinite(value) or value < low or above:
        interval = f"[{low:g}, {high:g}{')' if high_open else ']'}".replace("inf]", "inf)")
        raise ValueError(f"{who}: {name} must be in {interval}, got {value!r}")
    return value


def flag(who, name, value):
    """``value`` as a bool (True/False, or a saved 0-d bool array), or a TypeError."""
    value = _scalar(value)
    if not isinstance(value, bool):
        raise TypeError(f"{who}: {name} must be True or False, got {value!r}")
    return value


def _count(value, name, fail, least=0):
    value = _scalar(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        fail(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)
