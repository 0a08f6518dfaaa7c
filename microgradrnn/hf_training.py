"""Training RNNs on the pathological long-term problems with Hessian-free optimization, the
setting of Martens & Sutskever (2011), "Learning recurrent neural networks with Hessian-free
optimization", ICML, section 5.

* :func:`train_hf`: a tanh RNN (or LSTM / GRU) with a linear readout, sparsely initialised
  (Martens 2010) with its recurrent matrix scaled to a chosen spectral radius, trained by
  :class:`~microgradrnn.optim.HessianFree` on fresh sequences every update (the problems have
  unlimited data); returns ``(model, history)`` like :func:`microgradrnn.training.train_task`.
* :func:`hf_problem`: the closure's :class:`~microgradrnn.optim.HFProblem` for a model and a
  batch (output at the last step, or at every step; the hidden states for structural damping).
* :func:`using_parameters`: run a :class:`~microgradrnn.nn.Module` with other Tensors in
  place of its parameters (what turns a module into the ``model_fn(params, batch)`` HF needs).
* :func:`evaluate`: error rate (the 0.04 rule) and mean squared error on fresh sequences.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time

import numpy as np

from .autodiff import no_grad
from .nn import GRUCell, Linear, LSTMCell, RNNCell, RNNModel, load, save, sparse_init
from .ops import reshape, stack
from .ops._core import value_of
from .optim import HessianFree, HFProblem
from .optim.hessian_free import softmax_cross_entropy, squared_error
from .tasks import TASKS, error_rate, output_size

__all__ = ["train_hf", "hf_problem", "using_parameters", "evaluate", "build_model",
           "sparse_initialise"]

CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}


@contextlib.contextmanager
def using_parameters(model, tensors):
    """Within the block, ``model``'s parameters (in ``model.parameters()`` order) are replaced
    by ``tensors``, so running the model records a graph of those tensors; restored after.

    The attributes are swapped, the Parameters themselves are untouched (so nothing a graph
    saved is ever changed)."""
    names = [name for name, _ in model.named_parameters()]
    if len(names) != len(tensors):
        raise ValueError(f"using_parameters: the model has {len(names)} parameters, got "
                         f"{len(tensors)} tensors")
    places = []
    for name in names:
        *path, attribute = name.split(".")
        owner = model
        for part in path:
            owner = owner[int(part)] if part.isdigit() else getattr(owner, part)
        places.append((owner, attribute, getattr(owner, attribute)))
    try:
        for (owner, attribute, _), t in zip(places, tensors):
            object.__setattr__(owner, attribute, t)
        yield model
    finally:
        for owner, attribute, original in places:
            object.__setattr__(owner, attribute, original)


def _per_step(targets):
    """Whether the task has a target at every step (memorization: (T, B) classes; sine:
    (T, B, D) values) rather than one at the last step."""
    targets = np.asarray(targets)
    return targets.ndim == (2 if targets.dtype.kind in "iu" else 3)


def _run(model, xs, per_step):
    """(z, hidden states): the readout at the last step (or at every step, flattened to
    (T * B, C)), and the list of the T hidden vectors."""
    hs, _ = model.rnn(xs)
    if per_step:
        z = stack([model.head(h) for h in hs])
        return reshape(z, (-1, z.shape[-1])), hs
    return model.head(hs[-1]), hs


def _matching_loss(targets):
    classes = np.asarray(targets).dtype.kind in "iu"
    return softmax_cross_entropy if classes else squared_error


def hf_problem(model, gradient_batch, curvature_batch=None, structural_damping=True):
    """The :class:`~microgradrnn.optim.HFProblem` of ``model`` on batches ``(inputs,
    targets)`` of a task: the readout is linear, so the matching loss is squared error for
    values and softmax cross-entropy for classes; ``model_fn`` also returns the hidden states
    when ``structural_damping`` (the optimizer's mu weighs them)."""
    per_step = _per_step(gradient_batch[1])
    loss = _matching_loss(gradient_batch[1])

    def model_fn(params, batch):
        with using_parameters(model, params):
            z, hs = _run(model, batch[0], per_step)
        return (z, hs) if structural_damping else z

    def loss_fn(z, batch):
        targets = np.asarray(batch[1])
        if not per_step:
            return loss(z, targets)
        # summed over the T steps, averaged over the sequences (Martens & Sutskever's loss)
        T = targets.shape[0]
        return loss(z, targets.reshape((z.shape[0],) + targets.shape[2:])) * T

    return HFProblem(model_fn, loss_fn, gradient_batch, curvature_batch)


def build_model(task, *, T, hidden_size, cell="rnn", rng):
    xs, _ = TASKS[task](T, 1, rng=rng)
    return RNNModel(CELLS[cell](xs.shape[2], hidden_size, rng=rng),
                    Linear(hidden_size, output_size(task), rng=rng))


def sparse_initialise(model, rng, spectral_radius=1.1, nonzero=15):
    """Martens' sparse initialisation of every weight matrix of ``model`` (15 non-zero
    N(0, 1) incoming weights per unit; see :func:`microgradrnn.nn.sparse_init`), biases 0, and
    the recurrent matrix ``W_hh`` rescaled to ``spectral_radius`` (Martens & Sutskever 2011).
    Gated cells' stacked recurrent matrices are not square and are left sparse, unscaled."""
    for name, p in model.named_parameters():
        if p.ndim == 1:
            p.value = np.zeros(p.shape)
            continue
        square = name.endswith("W_hh") and p.shape[0] == p.shape[1]
        p.value = sparse_init(rng, p.shape, nonzero,
                              spectral_radius=spectral_radius if square else None)


def evaluate(model, task, T, size=10_000, *, seed=None, rng=None, chunk=1000):
    """``(error rate, mean squared error)`` on ``size`` fresh sequences. The error rate follows
    the tasks' rule (:func:`microgradrnn.tasks.is_correct`: |error| >= 0.04, or a wrong class,
    at any judged step; for memorization that is every step, stricter than M&S's last
    ``length`` steps). The MSE is the mean over all target entries (None for classes)."""
    generate = TASKS[task]
    rng = np.random.default_rng(seed) if rng is None else rng
    wrong, squared, count = 0.0, 0.0, 0
    with no_grad():
        for start in range(0, size, chunk):
            n = min(chunk, size - start)
            xs, ys = generate(T, n, rng=rng)
            per_step = _per_step(ys)
            z, _ = _run(model, xs, per_step)
            z = value_of(z)
            if per_step:
                z = z.reshape(T, n, -1)
            wrong += error_rate(z, ys) * n
            if np.asarray(ys).dtype.kind == "f":
                squared += float(np.mean((z - ys) ** 2)) * n
            count += n
    classes = np.asarray(ys).dtype.kind in "iu"
    return wrong / count, (None if classes else squared / count)


def train_hf(task="adding_halves", *, T=50, hidden_size=100, cell="rnn", updates=100, seed=0,
             progress=True, gradient_batch=1000, curvature_batch=250, damping=1.0,
             structural_damping=0.03, spectral_radius=1.1, max_cg_iterations=250,
             preconditioner=False, time_budget=None, eval_every=10, eval_size=1000,
             checkpoint=None, log=None):
    """Train an RNN with Hessian-free optimization on ``task``; returns ``(model, history)``,
    history a list of (update, loss, error rate on ``eval_size`` fresh sequences or None) as in
    :func:`microgradrnn.training.train_task`. The loss is HF's objective on the update's
    gradient batch after the update: for values 1/2 the squared error (half of ``mse`` for one
    output), for classes the cross-entropy; summed over steps for per-step targets.

    Every update draws ``gradient_batch`` fresh sequences; the first ``curvature_batch`` of
    them are the curvature batch. Training stops after ``updates`` updates, or once
    ``time_budget`` seconds have passed (then the error is measured once more). ``checkpoint``:
    a ``.npz`` path written after every update (model, optimizer, data generators, history);
    when it exists at the start, training resumes from it and continues exactly as an
    uninterrupted run would. ``log(step_number, hfstep)`` is called after every update.
    """
    from tqdm import tqdm

    if task not in TASKS:
        raise ValueError(f"train_hf: unknown task {task!r}; known: {', '.join(TASKS)}")
    generate = TASKS[task]
    rng = np.random.default_rng(seed)
    model = build_model(task, T=T, hidden_size=hidden_size, cell=cell, rng=rng)
    sparse_initialise(model, rng, spectral_radius)
    test_rng = np.random.default_rng([seed, 1])
    optimizer = HessianFree(model.parameters(), damping=damping,
                            structural_damping=structural_damping,
                            max_cg_iterations=max_cg_iterations, preconditioner=preconditioner)
    history, done = [], 0
    if checkpoint and os.path.exists(checkpoint):
        done, history = _resume(checkpoint, model, optimizer, rng, test_rng)

    def closure():
        xs, ys = generate(T, gradient_batch, rng=rng)
        n = curvature_batch          # the curvature batch: the first n of these sequences
        small = (xs[:, :n], ys[:, :n] if _per_step(ys) else ys[:n])
        return hf_problem(model, (xs, ys), small, structural_damping=structural_damping > 0)

    started = time.perf_counter()
    bar = tqdm(range(done + 1, updates + 1), desc=f"HF {task} T={T}", disable=not progress,
               leave=False)
    for u in bar:
        info = optimizer.step(closure)
        out_of_time = time_budget is not None and time.perf_counter() - started >= time_budget
        error = None
        if eval_every and (u % eval_every == 0 or u == updates or out_of_time):
            error, _ = evaluate(model, task, T, eval_size, rng=test_rng)
        history.append((u, info.new_loss, error))
        bar.set_postfix(loss=f"{info.new_loss:.4g}", lam=f"{info.damping:.3g}",
                        rho=f"{info.rho:.2f}", cg=info.cg_iterations)
        if log is not None:
            log(u, info)
        if checkpoint:
            _save(checkpoint, model, optimizer, rng, test_rng, u, history)
        if out_of_time:
            break
    return model, history


def _save(path, model, optimizer, rng, test_rng, update, history):
    extra = {f"optimizer.{k}": v for k, v in optimizer.state_dict().items()}
    rows = np.array([(u, loss, np.nan if e is None else e) for u, loss, e in history],
                    dtype=np.float64).reshape(-1, 3)
    extra.update(update=update, history=rows,
                 rng=json.dumps(rng.bit_generator.state),
                 test_rng=json.dumps(test_rng.bit_generator.state))
    temporary = path + ".tmp.npz"      # write, then rename: a crash never leaves half a file
    save(model, temporary, **extra)
    os.replace(temporary, path)


def _resume(path, model, optimizer, rng, test_rng):
    extra = load(model, path)
    optimizer.load_state_dict({k[len("optimizer."):]: v for k, v in extra.items()
                               if k.startswith("optimizer.")})
    rng.bit_generator.state = json.loads(str(extra["rng"]))
    test_rng.bit_generator.state = json.loads(str(extra["test_rng"]))
    history = [(int(u), float(loss), None if math.isnan(e) else float(e))
               for u, loss, e in extra["history"]]
    return int(extra["update"]), history
