"""Training loops used by the command line and the examples: min-char-rnn on the bundled text
(:class:`CharRNN`, resumable bit-exactly from a checkpoint), the sequence tasks
(:func:`train_task`), and a loss-curve plot."""
from __future__ import annotations

import json
import math

import numpy as np

from .autodiff import no_grad
from .bptt import TruncatedBPTT, sequence_loss
from .functional import cross_entropy, mse, softmax
from .nn import GRUCell, Linear, LSTMCell, RNNCell, RNNModel, load, save
from .ops._core import value_of
from .optim import SGD, Adagrad, Adam, RMSprop, clip_grad_norm, clip_grad_value
from .rtrl import RTRL
from .tasks import TASKS, CharVocabulary, char_chunks, error_rate, load_text, output_size
from .tensor import tensor

__all__ = ["CELLS", "CharRNN", "train_task", "plot_curve", "RTRL_MAX_SENSITIVITIES"]

CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSprop, "adam": Adam}


def _state_arrays(state):
    return [value_of(s) for s in (state if isinstance(state, tuple) else (state,))]


def _state_from(arrays):
    parts = tuple(tensor(a) for a in arrays)
    return parts if len(parts) > 1 else parts[0]


class CharRNN:
    """Karpathy's min-char-rnn, with this engine doing the backpropagation.

    The defaults are min-char-rnn's: a tanh RNN with 100 hidden units, weights N(0, 0.01^2) and
    zero biases, chunks of 25 characters with the hidden state carried from chunk to chunk
    (truncated BPTT, k = 25), the loss summed over a chunk, Adagrad with learning rate 0.1
    (``p -= lr g / sqrt(mem + 1e-8)``), gradients clipped elementwise to [-5, 5], and a smooth
    loss that starts at 25 ln V (the loss of a uniform guess). At the end of the text the data
    and the hidden state start over.
    """

    def __init__(self, text=None, *, cell="rnn", hidden_size=100, seq_length=25, batch_size=1,
                 k=None, lr=0.1, clip=5.0, seed=0):
        text = load_text() if text is None else text
        self.vocab = CharVocabulary(text)
        V = self.vocab.size
        rng = np.random.default_rng(seed)
        self.model = RNNModel(CELLS[cell](V, hidden_size, rng=rng), Linear(hidden_size, V, rng=rng))
        if cell == "rnn":  # min-char-rnn's initialisation
            for name, p in self.model.named_parameters():
                p.value = (0.01 * rng.standard_normal(p.shape) if p.ndim == 2
                           else np.zeros(p.shape))
        self.optimizer = Adagrad(self.model.parameters(), lr=lr, eps=1e-8, eps_inside_sqrt=True)
        k = seq_length if k is None else k
        if seq_length % k:
            raise ValueError(f"CharRNN: the truncation k={k} must divide seq_length={seq_length}"
                             " (so that an iteration ends on an update)")
        clipper = (lambda ps: clip_grad_value(ps, clip)) if clip else None
        self.trainer = TruncatedBPTT(self.model, self._loss, self.optimizer, k1=k,
                                     batch=batch_size, clip=clipper)
        inputs, targets = zip(*char_chunks(self.vocab.encode(text), seq_length, batch_size))
        self.inputs, self.targets = np.stack(inputs), np.stack(targets)
        self.seq_length, self.batch_size = seq_length, batch_size
        self.position = 0      # the next chunk of the text
        self.iteration = 0
        self.smooth_loss = seq_length * math.log(V)
        self.sample_rng = np.random.default_rng(seed + 1)
        self._eye = np.eye(V)

    def _loss(self, logits, targets):
        return cross_entropy(logits, targets)  # the mean over the batch (= the sum for one)

    def train_step(self):
        """One chunk: seq_length characters, one update. Returns the chunk's summed loss."""
        if self.position == len(self.inputs):  # the end of the text: start over
            self.position = 0
            self.trainer.state = self.model.initial_state(self.batch_size)
        inputs, targets = self.inputs[self.position], self.targets[self.position]
        loss = sum(self.trainer.step(self._eye[inputs[t]], targets[t])
                   for t in range(self.seq_length))
        self.smooth_loss = 0.999 * self.smooth_loss + 0.001 * loss
        self.position += 1
        self.iteration += 1
        return loss

    def train(self, iterations, *, sample_every=0, sample_length=200, progress=True,
              out=None):
        """Run ``iterations`` chunks; every ``sample_every`` iterations print a sample.
        Returns the smooth loss after each iteration."""
        from tqdm import tqdm

        history = []
        bar = tqdm(range(iterations), desc="char-rnn", disable=not progress, leave=False)
        for _ in bar:
            self.train_step()
            history.append(self.smooth_loss)
            bar.set_postfix(loss=f"{self.smooth_loss:.3f}")
            if sample_every and self.iteration % sample_every == 0:
                text = self.sample(sample_length)
                message = f"iter {self.iteration}, loss {self.smooth_loss:.3f}\n----\n{text}\n----"
                if progress:
                    bar.write(message)
                else:
                    print(message, file=out)
        return history

    def sample(self, length=200, temperature=1.0):
        """Characters drawn one at a time from the model, starting from the carried state
        and the last character read (the training state is left untouched)."""
        state = self.trainer.state
        last = self.inputs[max(self.position - 1, 0)][-1]
        ids = []
        with no_grad():
            x = self._eye[last[:1]]
            for _ in range(length):
                logits, state = self.model.step(x, tuple(s[:1] for s in state)
                                                if isinstance(state, tuple) else state[:1], 0)
                p = softmax(logits * (1.0 / temperature)).value[0]
                choice = self.sample_rng.choice(len(p), p=p / p.sum())
                ids.append(choice)
                x = self._eye[[choice]]
        return self.vocab.decode(ids)

    # -- checkpoints -----------------------------------------------------------------------------

    def save(self, path):
        """Everything a resumed run needs to continue bit-exactly: the model, the optimizer's
        state, the sampling generator, the data position and the carried hidden state."""
        extra = {f"optimizer.{k}": v for k, v in self.optimizer.state_dict().items()}
        extra.update({f"hidden.{i}": a for i, a in enumerate(_state_arrays(self.trainer.state))})
        extra.update(position=self.position, iteration=self.iteration, t=self.trainer.t,
                     updates=self.trainer.updates, smooth_loss=self.smooth_loss,
                     sample_rng=json.dumps(self.sample_rng.bit_generator.state))
        save(self.model, path, **extra)

    def load(self, path):
        """Restore a checkpoint written by :meth:`save` (checked; see ``mg.load``)."""
        extra = load(self.model, path)
        self.optimizer.load_state_dict({k[len("optimizer."):]: v for k, v in extra.items()
                                        if k.startswith("optimizer.")})
        hidden = [extra[f"hidden.{i}"] for i in range(sum(k.startswith("hidden.")
                                                             for k in extra))]
        self.trainer.state = _state_from(hidden)
        self.position, self.iteration = int(extra["position"]), int(extra["iteration"])
        self.trainer.t, self.trainer.updates = int(extra["t"]), int(extra["updates"])
        self.smooth_loss = float(extra["smooth_loss"])
        self.sample_rng.bit_generator.state = json.loads(str(extra["sample_rng"]))


# -- the sequence tasks --------------------------------------------------------------------------

def _unroll(model, xs, k=None):
    """All outputs of ``model`` over ``xs``; with ``k``, the state is cut every k steps, so a
    loss reaches back at most k steps (truncated BPTT within a sequence)."""
    state = model.initial_state(xs.shape[1])
    outputs = []
    for t in range(len(xs)):
        if k and t and t % k == 0:
            state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        output, state = model.step(xs[t], state, t)
        outputs.append(output)
    return outputs


def _task_loss(outputs, targets):
    """The loss the targets' shape asks for: the last output for a per-sequence target, every
    output for a per-step target; cross-entropy for classes, squared error for values."""
    targets = np.asarray(targets)
    classes = targets.dtype.kind in "iu"
    loss_fn = cross_entropy if classes else mse
    if targets.ndim == (1 if classes else 2):  # one target per sequence
        return loss_fn(outputs[-1], targets)
    return sequence_loss(outputs, targets, loss_fn, reduction="mean")


# RTRL carries P x B x |s| sensitivities (P parameter entries of the cell, B sequences, |s| state
# entries each), and a step costs about |s| + D multiply-adds per sensitivity: beyond this many
# (32 MB in float64; an RNN with H = 32 and B = 32 has 1.1 million, ~15 ms a step) use BPTT.
RTRL_MAX_SENSITIVITIES = 1 << 22


def _rtrl_learner(model, batch_size, targets, T):
    """An RTRL learner (no optimizer: gradients accumulate over a sequence) whose per-step
    losses add up to :func:`_task_loss`; refuses a model whose sensitivities are too many."""
    P = sum(p.size for p in model.rnn.cell.parameters())
    state = model.initial_state(batch_size)
    width = sum(value_of(s).size for s in (state if isinstance(state, tuple) else (state,))) \
        // batch_size
    count = P * batch_size * width
    if count > RTRL_MAX_SENSITIVITIES:
        raise ValueError(
            f"train_task: RTRL would carry P x B x |s| = {P:,} x {batch_size} x {width} = "
            f"{count:,} sensitivities (P: the cell's parameter entries, B: the batch, |s|: the "
            f"state entries per sequence), above the limit of {RTRL_MAX_SENSITIVITIES:,}; "
            "RTRL is for small models: lower hidden_size or batch_size, or use bptt='full'")
    targets = np.asarray(targets)
    classes = targets.dtype.kind in "iu"
    loss_fn = cross_entropy if classes else mse
    per_step = targets.ndim == (2 if classes else 3)
    step_loss = (lambda output, target: loss_fn(output, target) * (1.0 / T)) if per_step \
        else loss_fn  # sequence_loss(..., reduction="mean") is the mean over the T steps
    return RTRL(model, step_loss, batch=batch_size), per_step


def _rtrl_sequence(learner, per_step, xs, targets):
    """One batch of sequences through RTRL from a fresh state: the loss of :func:`_task_loss`,
    its gradient accumulated in the parameters' ``.grad``."""
    learner.reset(batch=xs.shape[1])
    T, total = len(xs), 0.0
    for t in range(T):
        target = targets[t] if per_step else (targets if t == T - 1 else None)
        loss = learner.step(xs[t], target)
        total += 0.0 if loss is None else loss
    return total


def _predictions(outputs, targets):
    targets = np.asarray(targets)
    per_step = targets.ndim == (2 if targets.dtype.kind in "iu" else 3)
    if per_step:
        return np.stack([value_of(o) for o in outputs])
    return value_of(outputs[-1])


def train_task(task="adding", *, cell="rnn", hidden_size=64, T=50, batch_size=32,
               iterations=500, optimizer="adam", lr=1e-3, bptt="full", k=5, clip=1.0, seed=0,
               progress=True, eval_every=100, eval_size=1000):
    """Train an RNN with a linear readout on one of the sequence tasks; returns
    ``(model, history)`` where history lists (iteration, loss, error rate on fresh data).

    ``bptt``: "full" (backpropagation through the whole sequence), "truncated" (the state is
    cut every ``k`` steps) or "rtrl" (real-time recurrent learning, forward in time: the same
    gradient as "full", with memory independent of T; for small models, see
    :data:`RTRL_MAX_SENSITIVITIES`). RTRL updates once per batch of sequences, at its end, so
    it makes full BPTT's updates; for online updates at every step use :class:`~.rtrl.RTRL`.
    """
    from tqdm import tqdm

    if task not in TASKS:
        raise ValueError(f"train_task: unknown task {task!r}; known: {', '.join(TASKS)}")
    if bptt not in ("full", "truncated", "rtrl"):
        raise ValueError(f"train_task: bptt must be 'full', 'truncated' or 'rtrl', got {bptt!r}")
    generate = TASKS[task]
    rng = np.random.default_rng(seed)
    xs, ys = generate(T, 1, rng=rng)  # the input width, and the kind of targets
    model = RNNModel(CELLS[cell](xs.shape[2], hidden_size, rng=rng),
                     Linear(hidden_size, output_size(task), rng=rng))
    opt = OPTIMIZERS[optimizer](model.parameters(), lr=lr)
    cut = k if bptt == "truncated" else None
    learner = None
    if bptt == "rtrl":
        learner, per_step = _rtrl_learner(model, batch_size, ys, T)
    history = []
    bar = tqdm(range(1, iterations + 1), desc=task, disable=not progress, leave=False)
    for it in bar:
        xs, ys = generate(T, batch_size, rng=rng)
        if learner is None:
            loss = _task_loss(_unroll(model, xs, cut), ys)
            loss.backward()
            loss = loss.item()
        else:
            loss = _rtrl_sequence(learner, per_step, xs, ys)
        if clip:
            clip_grad_norm(model.parameters(), clip)
        opt.step()
        opt.zero_grad()
        error = None
        if eval_every and (it % eval_every == 0 or it == iterations):
            test_x, test_y = generate(T, eval_size, rng=rng)
            with no_grad():
                error = error_rate(_predictions(_unroll(model, test_x), test_y), test_y)
        history.append((it, loss, error))
        bar.set_postfix(loss=f"{loss:.4f}")
    return model, history


def plot_curve(values, path, *, title, ylabel, xlabel="iteration", log=False):
    """A line plot written to ``path`` (PNG); returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.0))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(np.arange(1, len(values) + 1), values)
    if log:
        axes.set_yscale("log")
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    return path
