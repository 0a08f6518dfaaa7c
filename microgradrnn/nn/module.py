"""``Module``: parameters and sub-modules found by attribute, in definition order; their
names follow the attribute path (``rnn.cell.W_hh``), which drawings and tags use.

Saving and loading (``mg.save`` / ``mg.load``) store a module's ``state_dict`` in a ``.npz``
file of plain arrays: no pickle, so a file can never run code. Loading checks every name, shape
and dtype before it changes anything: on any mismatch the model is left as it was.
"""
from __future__ import annotations

import os

import numpy as np

from ..tensor import Parameter

__all__ = ["Module", "save", "load"]


def _join(prefix, name):
    return f"{prefix}.{name}" if prefix else name


class Module:
    """Base class: assign Parameters and Modules (or lists of them) as attributes.

    ``path`` is the module's place in its parent (``""`` for a root): assigning a module or a
    parameter as an attribute names it after that place, so ``model.rnn = RNN(cell)`` names the
    recurrent weight ``rnn.cell.W_hh``.
    """

    path = ""

    def __setattr__(self, name, value):
        if not name.startswith("_"):
            _place(value, _join(self.path, name))
        object.__setattr__(self, name, value)

    def __init_subclass__(cls, **kwargs):
        # Calling a module runs its forward. The class's __call__ *is* its forward, rather
        # than a method that calls it: an RNN calls its cell and its head at every time step,
        # and the extra call (with its packing of arguments) would be paid each time.
        super().__init_subclass__(**kwargs)
        if "forward" in cls.__dict__ and "__call__" not in cls.__dict__:
            cls.__call__ = cls.forward

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    # -- walking the tree ------------------------------------------------------------------------

    def named_parameters(self):
        """(name, parameter) pairs in definition order; a shared parameter is listed once."""
        seen = set()
        for name, value in _walk(self):
            if isinstance(value, Parameter) and id(value) not in seen:
                seen.add(id(value))
                yield name, value

    def parameters(self):
        """The parameters, in the order of :meth:`named_parameters` (what optimizers take)."""
        return [p for _, p in self.named_parameters()]

    def named_modules(self):
        """(name, module) pairs, this module first (as ``""``)."""
        yield "", self
        for name, value in _walk(self):
            if isinstance(value, Module):
                yield name, value

    def zero_grad(self):
        """Forget every parameter's accumulated gradient. (The tree is walked without naming
        anything, in any order: a training loop calls this at every step.)"""
        stack = [self]
        while stack:
            for name, value in _members(stack.pop()):
                if isinstance(value, Parameter):
                    value.grad = None
                elif isinstance(value, Module) or _is_module_list(value):
                    stack.append(value)

    # -- state -----------------------------------------------------------------------------------

    def state_dict(self):
        """{name: a copy of the parameter's array}, in definition order."""
        return {name: np.array(p.value) for name, p in self.named_parameters()}

    def load_state_dict(self, state):
        """Set every parameter from ``state`` (names, shapes and dtypes must match exactly).
        Everything is checked first: on any mismatch nothing changes and a ValueError lists
        what is wrong."""
        params = dict(self.named_parameters())
        problems = []
        missing = [name for name in params if name not in state]
        unexpected = [name for name in state if name not in params]
        if missing:
            problems.append(f"missing {missing}")
        if unexpected:
            problems.append(f"unexpected {unexpected}")
        for name, p in params.items():
            if name in state:
                array = np.asarray(state[name])
                if array.shape != p.shape:
                    problems.append(f"{name}: shape {array.shape}, the model has {p.shape}")
                elif array.dtype != p.dtype:
                    problems.append(f"{name}: dtype {array.dtype}, the model has {p.dtype}")
        if problems:
            raise ValueError(f"load_state_dict: the state does not fit {type(self).__name__} "
                             f"(nothing was changed): " + "; ".join(problems))
        for name, p in params.items():
            p.value = np.array(state[name])  # a copy the parameter owns

    def __repr__(self):
        lines = [f"{type(self).__name__}("]
        lines += [f"  {name}: {tuple(p.shape)}" for name, p in self.named_parameters()]
        return "\n".join(lines) + ")"


def _place(value, path):
    """Name a parameter, or a module and everything under it, after its attribute path."""
    if isinstance(value, Parameter):
        value.name = path
    elif isinstance(value, Module):
        object.__setattr__(value, "path", path)
        for name, child in vars(value).items():
            if not name.startswith("_"):
                _place(child, _join(path, name))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _place(item, _join(path, str(i)))


def _members(container):
    """The named members of a module (public attributes, in order) or of a list of modules."""
    if isinstance(container, Module):
        return [(n, v) for n, v in vars(container).items() if not n.startswith("_")]
    return [(str(i), v) for i, v in enumerate(container)]


def _is_module_list(value):
    return (isinstance(value, (list, tuple)) and len(value) > 0
            and all(isinstance(v, (Module, Parameter)) for v in value))


def _walk(module):
    """(relative name, value) for every Parameter and Module under ``module``, depth first in
    attribute order (lists of modules are entered as ``layers.0``...). Iterative."""
    stack = [("", iter(_members(module)))]
    while stack:
        prefix, members = stack[-1]
        for name, value in members:
            full = _join(prefix, name)
            if isinstance(value, Parameter):
                yield full, value
            elif isinstance(value, Module) or _is_module_list(value):
                if isinstance(value, Module):
                    yield full, value
                stack.append((full, iter(_members(value))))
                break
        else:
            stack.pop()


_EXTRA = "extra:"  # a prefix no parameter name can have (names are attribute paths)


def save(model, path, **extra):
    """Write ``model.state_dict()`` to a ``.npz`` file of plain arrays, with ``extra`` arrays
    or numbers beside it (an optimizer's state, a random generator's state, a data position)."""
    arrays = model.state_dict()
    arrays.update({_EXTRA + name: np.asarray(value) for name, value in extra.items()})
    np.savez(path, **arrays)


def load(model, path):
    """Load the parameters saved by :func:`save` into ``model``, checked (names, shapes,
    dtypes; nothing changes on a mismatch), and return the ``extra`` arrays saved with them."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no file at {path!r}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as error:
        raise ValueError(f"load: {path!r} holds pickled objects or is not a plain .npz of "
                         f"arrays ({error}); refused, the model is unchanged") from None
    except OSError as error:
        raise ValueError(f"load: {path!r} is not an .npz file ({error}); the model is "
                         "unchanged") from None
    model.load_state_dict({k: v for k, v in arrays.items() if not k.startswith(_EXTRA)})
    return {k[len(_EXTRA):]: v for k, v in arrays.items() if k.startswith(_EXTRA)}
