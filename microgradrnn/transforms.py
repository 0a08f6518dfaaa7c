"""Function transforms, each a few lines on top of the engine: ``grad``, ``vjp``, ``jvp``,
``hvp``, ``gnvp``, ``gauss_newton``, ``jacobian``, ``hessian`` and ``checkpoint``.

Tensors in, Tensors out; none of them writes ``.grad``. A function given to them takes Tensors
and returns a Tensor. When an input (or a cotangent or tangent) is itself a Tensor that
requires grad, the result stays connected to it and can be differentiated again.
"""
from __future__ import annotations

import numpy as np

from .autodiff import backward_pass, checked_seed, enable_grad, forward_pass, no_grad
from .graph import backward_order, forward_order
from .ops._core import Primitive, defprimitive, shape_of, value_of
from .tensor import Tensor, _leaf_node

__all__ = ["grad", "vjp", "jvp", "hvp", "gnvp", "gauss_newton", "jacobian", "hessian",
           "checkpoint"]


def _requires_grad(x):
    return isinstance(x, Tensor) and x.node is not None


def _leaf(value):
    """A new leaf that requires grad, around ``value`` (no copy)."""
    return Tensor._wrap(value, _leaf_node(value))


_alias = defprimitive(lambda x: x, vjp=lambda g, out, x: g, jvp=lambda x_dot, out, x: x_dot,
                      name="input", saves="-", saves_out=False,
                      doc="input(x) = x: one argument position of a transform")


def _trace_inputs(primals, op):
    """One distinct recorded node per argument position, and whether any primal belongs to an
    outer graph (then results must stay differentiable with respect to it)."""
    xs = []
    outer = False
    for i, p in enumerate(primals):
        if _requires_grad(p):
            outer = True
            xs.append(_alias(p))  # a node of its own, still connected to the outer graph
            continue
        value = np.asarray(value_of(p))
        if value.dtype.kind != "f":
            raise TypeError(f"{op}: input {i} has dtype {value.dtype}; differentiation needs "
                            "float data (for example np.asarray(x, dtype=float))")
        xs.append(_leaf(value))
    return xs, outer


def _tensor(value, like):
    """A result as a Tensor: a recorded Tensor as is, an array as a new constant; None as zeros
    shaped like ``like``."""
    if isinstance(value, Tensor):
        return value
    if value is None:
        return Tensor._wrap(np.zeros_like(like._value), None)
    return Tensor._wrap(np.array(value, dtype=like._value.dtype), None)


def grad(outputs, inputs, grad_outputs=None, create_graph=False, allow_unused=False):
    """d(outputs)/d(inputs) as a tuple, one Tensor per input (as ``torch.autograd.grad``).

    ``outputs``: a Tensor or a list; non-scalar outputs need ``grad_outputs`` (the cotangent
    to pull back). With ``create_graph=True`` the result is recorded and differentiable again.
    An input the outputs do not depend on is an error, or None with ``allow_unused=True``.
    """
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None or isinstance(grad_outputs, (Tensor, np.ndarray)):
        grad_outputs = [grad_outputs] * len(outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"grad: {len(outputs)} outputs but {len(grad_outputs)} grad_outputs")
    for i, x in enumerate(inputs):
        if not _requires_grad(x):
            raise RuntimeError(
                f"grad: input {i} (shape {shape_of(x)}) does not require grad, so no gradient "
                "can reach it; make it with requires_grad=True or mg.Parameter")
    seeds = [checked_seed(out, g, "grad") for out, g in zip(outputs, grad_outputs)]
    reached = backward_pass([out.node for out in outputs], seeds,
                            wanted={x.node for x in inputs}, create_graph=create_graph)
    results = []
    for i, x in enumerate(inputs):
        g = reached.get(x.node)
        if g is None and not allow_unused:
            label = f" ({x.name!r})" if x.name else ""
            raise RuntimeError(
                f"grad: input {i}{label} of shape {x.shape} is not used to compute the outputs, "
                "so its gradient is undefined; pass allow_unused=True to get None for it")
        results.append(None if g is None else _tensor(g, x))
    return tuple(results)


def vjp(f, *primals):
    """``(f(*primals), pullback)``, where ``pullback(ct)`` is the tuple ``ct^T J`` (one
    cotangent per primal): reverse mode as a function."""
    xs, outer = _trace_inputs(primals, "vjp")
    out = f(*xs)

    def pullback(cotangent):
        if not _requires_grad(out):
            return tuple(_tensor(None, x) for x in xs)
        seed = checked_seed(out, cotangent, "vjp pullback")
        create_graph = outer or _requires_grad(cotangent)
        reached = backward_pass([out.node], [seed], wanted={x.node for x in xs},
                                create_graph=create_graph)
        return tuple(_tensor(reached.get(x.node), x) for x in xs)

    return (out if outer else _detached(out)), pullback


def _detached(out):
    return tuple(o.detach() for o in out) if isinstance(out, tuple) else out.detach()


def _tangent_seeds(xs, tangents, op):
    if len(tangents) != len(xs):
        raise ValueError(f"{op}: {len(xs)} primals but {len(tangents)} tangents")
    seeds = {}
    for i, (x, t) in enumerate(zip(xs, tangents)):
        if shape_of(t) != x.shape:
            raise ValueError(f"{op}: tangent {i} has shape {shape_of(t)} but its primal has "
                             f"shape {x.shape}; they must be equal")
        if not isinstance(t, Tensor):
            t = np.array(t, dtype=x._value.dtype)  # our own copy, read-only: recorded ops
            t.flags.writeable = False               # may keep it without copying it again
        seeds[x.node] = t
    return seeds


def jvp(f, primals, tangents):
    """``(f(*primals), J @ tangents)``: forward mode, with each primitive's own JVP rule.

    ``f`` may return a Tensor or a tuple of Tensors (then both results are tuples). Composes
    with ``grad(..., create_graph=True)`` inside ``f`` (forward-over-reverse, as in ``hvp``).
    """
    primals, tangents = tuple(primals), tuple(tangents)
    xs, outer = _trace_inputs(primals, "jvp")
    seeds = _tangent_seeds(xs, tangents, "jvp")
    differentiable = outer or any(_requires_grad(t) for t in tangents)
    out = f(*xs)
    outs = out if isinstance(out, tuple) else (out,)
    recorded = [o.node for o in outs if _requires_grad(o)]
    tangent_of = forward_pass(forward_order(recorded), seeds, create_graph=differentiable)
    out_tangents = tuple(_tensor(tangent_of.get(o.node), o) for o in outs)
    if not differentiable:
        out = _detached(out)
    return out, (out_tangents if isinstance(out, tuple) else out_tangents[0])


def hvp(f, primals, tangents):
    """The exact Hessian-vector product ``H v`` of scalar ``f``, as a tuple (one per primal).

    ``H v = grad_x <grad f(x), v> = grad_x (J_f(x) v)``: reverse mode over forward mode
    (Pearlmutter 1994). The directional derivative is one recorded tangent sweep; its gradient
    is one reverse sweep. Unlike forward over reverse, it never computes the gradient itself,
    only its change along ``v``; no Hessian is ever formed.

    Pass arrays (or detached tensors) as primals unless you will differentiate ``H v`` itself:
    primals that require grad keep the result connected to them, which costs more.
    """
    primals, tangents = tuple(primals), tuple(tangents)

    def directional_derivative(*xs):
        return jvp(f, xs, tangents)[1]
    out, pullback = vjp(directional_derivative, *primals)
    return pullback(np.ones_like(out._value))


def gauss_newton(model_fn, loss_fn, params):
    """``v -> G v`` with ``G = J^T H_L J`` at fixed ``params``, reusing one forward pass.

    ``J`` is the Jacobian of ``z = model_fn(*params)`` and ``H_L`` the Hessian of ``loss_fn``
    at ``z``. Each product is a tangent sweep through the recorded model (``J v``), a
    Hessian-vector product of the loss at ``z`` (``H_L J v``, a small graph), and a reverse
    sweep back through the same model graph (``J^T ...``): Schraudolph (2002), Martens (2010).
    Conjugate gradient calls it many times; the model is evaluated once.

    ``model_fn`` may return a tuple of outputs ``(z_1, ..., z_k)``; ``loss_fn`` then takes
    them as k arguments, ``H_L`` is the Hessian in all of them together, and one tangent sweep
    and one reverse sweep still serve every output (Hessian-free's structural damping adds a
    penalty on the hidden states this way, without joining them to z in one array).
    """
    params = tuple(params)
    xs, _ = _trace_inputs([value_of(p) for p in params], "gauss_newton")
    out = model_fn(*xs)
    outs = out if isinstance(out, tuple) else (out,)
    if not any(_requires_grad(z) for z in outs):
        raise ValueError("gauss_newton: model_fn's output does not depend on the parameters")
    model_forward = forward_order([z.node for z in outs if _requires_grad(z)])
    model_backward = model_forward[::-1]
    leaves = tuple(_leaf(value_of(z)) for z in outs)
    slopes = grad(loss_fn(*leaves), list(leaves), create_graph=True,  # dL/dz_i, recorded
                  allow_unused=True)
    recorded = [g.node for g in slopes if _requires_grad(g)]
    loss_forward = forward_order(recorded) if recorded else None

    def product(v):
        seeds = _tangent_seeds(xs, tuple(value_of(t) for t in v), "gauss_newton")
        tangents = forward_pass(model_forward, seeds)
        jv = {leaf.node: tangents[z.node] for leaf, z in zip(leaves, outs)
              if _requires_grad(z) and z.node in tangents}
        if not jv or loss_forward is None:
            return tuple(_tensor(None, x) for x in xs)
        h_jv = forward_pass(loss_forward, jv)
        ends, cotangents = [], []
        for z, g in zip(outs, slopes):
            if _requires_grad(z) and _requires_grad(g) and g.node in h_jv:
                ends.append(z.node)
                cotangents.append(h_jv[g.node])
        if not ends:  # the loss is linear in z: H_L = 0
            return tuple(_tensor(None, x) for x in xs)
        reached = backward_pass(ends, cotangents, order=model_backward)
        return tuple(_tensor(reached.get(x.node), x) for x in xs)

    return product


def gnvp(model_fn, loss_fn, params, v):
    """The Gauss-Newton-vector product ``G v = J^T H_L J v`` of ``loss_fn(model_fn(*params))``,
    as a tuple (one per parameter). See :func:`gauss_newton` for many products at one point."""
    return gauss_newton(model_fn, loss_fn, params)(v)


def jacobian(f, inputs):
    """The Jacobian of ``f`` at ``inputs`` (a Tensor or a tuple of them), of shape
    ``out.shape + input.shape``, by one reverse pass per output entry: for small problems."""
    single = not isinstance(inputs, (tuple, list))
    xs, _ = _trace_inputs((inputs,) if single else tuple(inputs), "jacobian")
    out = f(*xs)
    out_shape = out.shape
    jac = [np.zeros(out_shape + x.shape, dtype=x._value.dtype) for x in xs]
    if _requires_grad(out):
        order = backward_order([out.node])
        wanted = {x.node for x in xs}
        for k in np.ndindex(*out_shape):
            seed = np.zeros(out_shape, dtype=out._value.dtype)
            seed[k] = 1.0
            reached = backward_pass([out.node], [seed], wanted=wanted, order=order)
            for j, x in zip(jac, xs):
                if x.node in reached:
                    j[k] = value_of(reached[x.node])
    results = tuple(Tensor._wrap(j, None) for j in jac)
    return results[0] if single else results


def hessian(f, x):
    """The Hessian of scalar ``f`` at ``x``, of shape ``x.shape + x.shape`` (the Jacobian of
    the gradient, the gradient recorded with create_graph=True): for small problems."""
    def gradient(x):
        (g,) = grad(f(x), [x], create_graph=True, allow_unused=True)
        return _tensor(g, x) if g is None else g
    return jacobian(gradient, x)


# -- checkpointing ------------------------------------------------------------------------------

class _Recomputation:
    """The last recomputation of a checkpointed function: the engine asks for the cotangent of
    each input in turn with the same ``g`` and ``args``, and the function runs once for all."""
    key = None
    grads = None


_last = _Recomputation()


def _checkpoint_forward(*args):
    *values, fn, params = args
    with no_grad():
        out = fn(*(Tensor._wrap(np.asarray(v), None) for v in values[:len(values) - len(params)]))
    return value_of(out)


def _recompute(args):
    """Run the checkpointed function again, recording: (output, traced inputs, params,
    whether the result must stay differentiable)."""
    *values, fn, params = args
    with enable_grad():
        xs, outer = _trace_inputs(values[:len(values) - len(params)], "checkpoint")
        out = fn(*xs)
    strays = _leaves_outside(out, [*xs, *params])
    if strays:
        names = ", ".join(f"{n.name or 'unnamed'} {n.shape}" for n in strays)
        raise RuntimeError(
            f"checkpoint: the function uses tensors that require grad but are neither among "
            f"its arguments nor in params= ({names}); they would get no gradient. Pass them as "
            "arguments, or list the parameters it closes over: checkpoint(fn, *args, "
            "params=model.parameters())")
    return out, xs, params, outer


def _same_call(key, g, args):
    """Whether the engine is asking about the node it asked about last (same g, same args)."""
    return (key is not None and key[0] is g and len(key[1]) == len(args)
            and all(a is b for a, b in zip(key[1], args)))


def _checkpoint_vjp(i, g, out, *args):
    if not _same_call(_last.key, g, args):
        recomputed, xs, params, outer = _recompute(args)
        inputs = [*xs, *params]
        reached = backward_pass([recomputed.node], [g], wanted={x.node for x in inputs},
                                create_graph=outer or _requires_grad(g))
        _last.key, _last.grads = (g, args), [reached.get(x.node) for x in inputs]
    result = _last.grads[i]
    return result if result is not None else np.zeros(shape_of(args[i]))


def _leaves_outside(output, inputs):
    """Leaf nodes that reach the Tensor ``output`` other than through the Tensors ``inputs``."""
    if output.node is None:
        return []
    inputs = {x.node for x in inputs}
    seen, stack, strays = set(), [output.node], []
    while stack:
        node = stack.pop()
        if node in seen or node in inputs:
            continue
        seen.add(node)
        if node.primitive is None:
            strays.append(node)
        stack.extend(p for p in node.parents if p is not None)
    return strays


class _CheckpointRules:
    def __getitem__(self, i):
        return lambda g, out, *args: _checkpoint_vjp(i, g, out, *args)


def _checkpoint_jvp(tangents, out, *args):
    recomputed, xs, params, outer = _recompute(args)
    seeds = {x.node: t for x, t in zip([*xs, *params], tangents) if t is not None}
    differentiable = outer or any(_requires_grad(t) for t in tangents)
    order = forward_order([recomputed.node])
    return forward_pass(order, seeds, create_graph=differentiable).get(recomputed.node)


_checkpoint = Primitive(
    "checkpoint", _checkpoint_forward, vjps=_CheckpointRules(), jvp=_checkpoint_jvp, nin=None,
    statics=2, saves_out=False,
    doc="checkpoint(fn, *args): fn's value without its graph; the VJP runs fn again")


def checkpoint(fn, *args, params=()):
    """``fn(*args)`` without storing its graph: the backward pass runs ``fn`` again and
    differentiates the recomputed graph (memory for time; Chen et al. 2016).

    Every tensor ``fn`` should differentiate must be one of ``args`` or, for parameters it
    closes over (a model's weights), listed in ``params``; any other closed-over tensor that
    requires grad is reported in the backward pass. The parameters must not change between
    the forward and the backward pass (they are read again when ``fn`` reruns).
    """
    params = tuple(params)
    for p in params:
        if not (_requires_grad(p) and p.is_leaf):
            raise TypeError("checkpoint: params must be leaf tensors that require grad "
                            "(parameters)")
    return _checkpoint(*args, *params, fn, params)
