"""Data for training RNNs: pure NumPy, no engine needed.

* Character-level text (:mod:`.text`): :func:`load_text` (a bundled public-domain Shakespeare
  extract), :class:`CharVocabulary`, and :func:`char_chunks`, the batcher whose consecutive
  chunks continue each other so a hidden state can be carried across them.
* The pathological long-term-dependency problems (:mod:`.pathological`): :func:`adding`,
  :func:`adding_halves`, :func:`multiplication`, :func:`xor`, :func:`temporal_order`,
  :func:`memorization`; and :func:`sine_waves` (:mod:`.sine`).
* The signals of reservoir computing (:mod:`.reservoir`): :func:`mackey_glass` (and
  :func:`mackey_glass_series`), :func:`narma10`, :func:`sine_generator` (the ESN tutorial's),
  :func:`delay_line`, one target per step; :data:`RESERVOIR_TASKS` maps names to them.
* Success rules (:mod:`.scoring`): :func:`is_correct`, :func:`error_rate`, :func:`success`.

Every generator is ``f(T, batch, *, seed=None, rng=None, **options) -> (inputs, targets)``
with ``inputs`` float64 of shape ``(T, batch, D)``; :data:`TASKS` maps names to them.

    inputs, targets = TASKS["adding"](T=100, batch=32, seed=0)
    ...                                         # run a model, keep its last output
    success(outputs[-1], targets)               # at most 1% of sequences off by >= 0.04
"""
from .pathological import (TEMPORAL_ORDER_CLASSES, TEMPORAL_ORDER_SYMBOLS, adding,
                           adding_halves, memorization, multiplication, temporal_order, xor)
from .reservoir import (RESERVOIR_TASKS, delay_line, mackey_glass, mackey_glass_series,
                        narma10, sine_generator)
from .scoring import REGRESSION_ATOL, SUCCESS_TOLERANCE, error_rate, is_correct, success
from .sine import sine_waves
from .text import CharVocabulary, available_texts, char_chunks, load_text

TASKS = {
    "adding": adding,
    "adding_halves": adding_halves,
    "multiplication": multiplication,
    "xor": xor,
    "temporal_order": temporal_order,
    "memorization": memorization,
    "sine": sine_waves,
}


def output_size(name, **options):
    """Width of the model output the task ``name`` expects: 1 for a regression target, the
    number of classes for a classification target (``options`` as passed to the generator)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    if name == "memorization":
        return options.get("n_symbols", 2) + 1          # the symbols and the blank
    return {"xor": 2, "temporal_order": len(TEMPORAL_ORDER_CLASSES)}.get(name, 1)


__all__ = ["TASKS", "output_size", "adding", "adding_halves", "multiplication", "xor",
           "temporal_order", "memorization", "sine_waves", "TEMPORAL_ORDER_SYMBOLS",
           "TEMPORAL_ORDER_CLASSES", "is_correct", "error_rate", "success", "REGRESSION_ATOL",
           "SUCCESS_TOLERANCE", "load_text", "available_texts", "CharVocabulary", "char_chunks",
           "RESERVOIR_TASKS", "mackey_glass", "mackey_glass_series", "narma10", "sine_generator",
           "delay_line"]
