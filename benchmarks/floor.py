"""How close the engine's char-RNN step is to the floor of recording a graph in Python:
``python benchmarks/floor.py [--quick] [S M L]`` (default S and M).

Three versions of the same step (section 5's model: an Elman RNN over one-hot inputs, the
logits of every step stacked, mean cross-entropy, the gradient of all five parameters):

* the engine, as a user writes it (``mg.nn.RNNModel``, ``cross_entropy``, ``loss.backward()``);
* ``MinimalRecorder``: a reverse-mode recorder written for this model alone, with nothing the
  engine offers beyond the gradient (no modules, scope tags, modes, copies of writable
  constants, explained errors, second order, forward mode): a node per operation, the same
  NumPy calls as the engine, one walk in reverse creation order with the fan-in sums;
* the hand-written NumPy BPTT of ``rnn.py`` (section 5's reference).

For each: the time per step as a ratio to the hand-written one (median of per-round ratios,
the three timed back to back in every round), and the Python bytecodes executed in one step
(``sys.settrace`` with opcode events: exact and repeatable, whatever the machine is doing);
then each one's forward and backward timed apart (where the engine's distance lies). The
minimal recorder's ratio is about the best a Python-level recorder can do at that size; the
engine's distance from it is the price of its features. Not part of ``run.py``: it is a
diagnostic, with no target of its own.
"""
from __future__ import annotations

import itertools
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from _threads import one_blas_thread  # noqa: E402

if __name__ == "__main__":
    one_blas_thread()

import numpy as np  # noqa: E402

from _common import Section, run_alone, table, x  # noqa: E402
from bench_charstep import CHAR_SIZES, CharStep  # noqa: E402


class MinimalRecorder:
    """Reverse mode for exactly this model, and nothing else: each operation returns a node
    (value, parents, one rule per parent); ``gradients`` walks the nodes in reverse creation
    order and sums what each consumer sends (the rules are the engine's, in NumPy)."""

    class Node:
        __slots__ = ("value", "parents", "rules", "serial")

        def __init__(self, value, parents=(), rules=()):
            self.value, self.parents, self.rules = value, parents, rules
            self.serial = MinimalRecorder.next_serial()

    next_serial = itertools.count().__next__

    @classmethod
    def affine(cls, x, W, c):
        """x @ W + c; x may be a constant array (the one-hot input, the initial state)."""
        x_value = x.value if isinstance(x, cls.Node) else x
        out = x_value @ W.value
        out += c.value
        bias = c.value.shape != out.shape
        return cls.Node(out, (x if isinstance(x, cls.Node) else None, W, c), (
            lambda g: g @ W.value.T,
            lambda g: x_value.T @ g,
            (lambda g: g.sum(axis=0)) if bias else (lambda g: g)))

    @classmethod
    def tanh(cls, x):
        out = np.tanh(x.value)
        return cls.Node(out, (x,), (lambda g: g * (1.0 - out * out),))

    @classmethod
    def stack(cls, xs):
        return cls.Node(np.stack([x.value for x in xs]), tuple(xs),
                        tuple((lambda g, i=i: g[i]) for i in range(len(xs))))

    @classmethod
    def mean_cross_entropy(cls, logits, targets):
        x = logits.value
        shift = x.max(axis=-1, keepdims=True)
        exps = np.exp(x - shift)
        sums = exps.sum(axis=-1, keepdims=True)
        picked = tuple(np.indices(targets.shape, sparse=True)) + (targets,)
        loss = (np.log(sums[..., 0]) + shift[..., 0] - x[picked]).mean()

        def rule(g):
            slope = exps / sums
            slope[picked] -= 1.0
            slope *= g / targets.size
            return slope
        return cls.Node(np.asarray(loss), (logits,), (rule,))

    @classmethod
    def loss(cls, params, xs, targets, h0):
        W_xh, W_hh, b, W_hy, b_y = params
        h, logits = h0, []
        for t in range(len(xs)):
            h = cls.tanh(cls.affine(h, W_hh, cls.affine(xs[t], W_xh, b)))
            logits.append(cls.affine(h, W_hy, b_y))
        return cls.mean_cross_entropy(cls.stack(logits), targets)

    @staticmethod
    def gradients(loss):
        """{leaf: gradient}: the nodes reachable from ``loss``, in reverse creation order (a
        node is made after its inputs), each passing its cotangent to its parents."""
        seen, stack = {None, loss}, [loss]
        while stack:
            for parent in stack.pop().parents:
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        seen.discard(None)
        grads, summed, leaves = {loss: np.ones(())}, set(), {}
        for node in sorted(seen, key=lambda n: n.serial, reverse=True):
            g = grads.pop(node)
            if not node.rules:
                leaves[node] = g
                continue
            for parent, rule in zip(node.parents, node.rules):
                if parent is None:
                    continue
                contribution = rule(g)
                previous = grads.get(parent)
                if previous is None:
                    grads[parent] = contribution
                elif parent in summed:
                    previous += contribution
                else:
                    grads[parent] = previous + contribution
                    summed.add(parent)
        return leaves


class Floor:
    """One size: the three steps on the same data and parameter values."""

    def __init__(self, H, B, T):
        self.char = CharStep(H, B, T)
        self.xs = self.char.xs.copy()
        self.xs.flags.writeable = False   # the minimal recorder copies nothing
        self.h0 = np.zeros((B, H))
        self.leaves = [MinimalRecorder.Node(v) for v in self.char.values]

    def minimal_step(self):
        loss = MinimalRecorder.loss(self.leaves, self.xs, self.char.targets, self.h0)
        return loss, MinimalRecorder.gradients(loss)

    def steps(self):
        return {"engine": self.char.engine_step, "minimal": self.minimal_step,
                "hand": self.char.numpy_step}

    def check(self):
        """The minimal recorder's loss and gradients are the hand-written ones."""
        loss, grads = self.minimal_step()
        want_loss, want_grads = self.char.numpy_step()
        return np.isclose(float(loss.value), want_loss, rtol=1e-12) and all(
            np.allclose(grads[leaf], want, rtol=1e-10, atol=1e-14)
            for leaf, want in zip(self.leaves, want_grads))


def bytecodes(fn):
    """The Python bytecodes executed by one call of ``fn`` (after two calls to warm up)."""
    fn(), fn()
    count = 0

    def trace(frame, event, arg):
        nonlocal count
        if event == "call":
            frame.f_trace_opcodes = True
            frame.f_trace_lines = False
        elif event == "opcode":
            count += 1
        return trace
    sys.settrace(trace)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count


def ratios_to_hand(steps, seconds):
    """Median over rounds of each step's time / the hand-written one's, in the same round."""
    names = list(steps)
    rounds, start, k = [], time.perf_counter(), 0
    while time.perf_counter() - start < seconds or len(rounds) < 5:
        times = {}
        for name in names[k % 3:] + names[:k % 3]:
            t0 = time.perf_counter()
            steps[name]()
            times[name] = time.perf_counter() - t0
        rounds.append(times)
        k += 1
    return {name: statistics.median(r[name] / r["hand"] for r in rounds) for name in names}, \
        len(rounds)


def phase_times(floor, seconds):
    """Median microseconds of each phase of the three steps, timed back to back in rounds:
    the forward (recorded) and the backward (zero_grad included for the engine) apart."""
    char, leaves = floor.char, floor.leaves

    def engine():
        t0 = time.perf_counter()
        loss = char.forward()
        t1 = time.perf_counter()
        char.backward(loss)
        return t1 - t0, time.perf_counter() - t1

    def minimal():
        t0 = time.perf_counter()
        loss = MinimalRecorder.loss(leaves, floor.xs, char.targets, floor.h0)
        t1 = time.perf_counter()
        MinimalRecorder.gradients(loss)
        return t1 - t0, time.perf_counter() - t1

    def hand():
        t0 = time.perf_counter()
        cache = char.numpy_forward()[1]
        t1 = time.perf_counter()
        char.numpy_backward(cache)
        return t1 - t0, time.perf_counter() - t1

    phases = {"engine": engine, "minimal": minimal, "hand": hand}
    names, rounds, start = list(phases), [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(rounds) < 5:
        k = len(rounds) % 3
        rounds.append({name: phases[name]() for name in names[k:] + names[:k]})
    return {name: tuple(statistics.median(r[name][i] for r in rounds) * 1e6 for i in (0, 1))
            for name in names}


def run(quick=False, sizes=("S", "M")):
    section = Section("floor", "the char-RNN step against a minimal recorder and the "
                               "hand-written NumPy BPTT: time and Python bytecodes per step")
    rows, split = [], []
    for name in sizes:
        H, B, T, target = CHAR_SIZES[name]
        floor = Floor(H, B, T)
        section.check(f"{name}: the minimal recorder gives the hand-written loss and gradients",
                      floor.check(), "rtol 1e-10")
        steps = floor.steps()
        counts = {k: bytecodes(fn) for k, fn in steps.items()}
        ratios, rounds = ratios_to_hand(steps, 3.0 if quick else 15.0)
        rows.append((f"{name}: H={H}, B={B}, T={T}", x(ratios["engine"]), x(ratios["minimal"]),
                     f"<= {target:g}x", f"{counts['engine']:,}", f"{counts['minimal']:,}",
                     f"{counts['hand']:,}", str(rounds)))
        phases = phase_times(floor, 1.0 if quick else 5.0)
        split.append((name,) + tuple(f"{phases[k][i]:,.0f}" for k in phases for i in (0, 1)))
        section.data[name] = {"ratios": ratios, "bytecodes": counts, "rounds": rounds,
                              "phases_us": phases}
    section.say(table(["size", "engine", "minimal", "target", "engine bytecodes",
                       "minimal bytecodes", "hand bytecodes", "rounds"], rows))
    section.say("  engine / minimal: time per step over the hand-written step's, median of "
                "per-round ratios; bytecodes: executed in one step (exact).")
    section.say("\n" + table(["size", "engine fwd us", "engine bwd us", "minimal fwd us",
                              "minimal bwd us", "hand fwd us", "hand bwd us"], split))
    section.say("  each phase timed apart, the three steps back to back in rounds (medians); the "
                "engine's backward includes model.zero_grad().")
    return section


if __name__ == "__main__":
    chosen = tuple(a for a in sys.argv[1:] if a in CHAR_SIZES) or ("S", "M")
    sys.exit(run_alone("floor", "floor", lambda quick: run(quick, chosen), sys.argv[1:]))
