"""When is a sequence right, and when has a run succeeded?

The rule follows from the dtype of the targets:

* float targets (regression), shape ``(..., batch, D)``: a sequence is correct when every
  prediction is within ``atol = 0.04`` of its target (Hochreiter & Schmidhuber 1997);
* int targets (class indices), shape ``(..., batch)``: predictions carry one more axis of class
  scores, ``(..., batch, C)``, and a sequence is correct when the argmax is the target at every
  judged position.

A run succeeds when at most 1% of the test sequences are wrong, the criterion used for these
problems since Martens & Sutskever (2011).
"""
import numpy as np

REGRESSION_ATOL = 0.04
SUCCESS_TOLERANCE = 0.01


def is_correct(predictions, targets, *, atol=REGRESSION_ATOL):
    """Boolean array of shape ``(batch,)``: which sequences are processed correctly.

    Float ``targets`` of shape ``(..., batch, D)`` need ``predictions`` of the same shape;
    correct means ``|prediction - target| < atol`` at every position. Int ``targets`` of shape
    ``(..., batch)`` need ``predictions`` of shape ``(..., batch, C)``; correct means
    ``argmax(prediction) == target`` at every position.
    """
    predictions = np.asarray(predictions)
    targets = np.asarray(targets)
    if np.issubdtype(targets.dtype, np.integer):
        if predictions.shape[:-1] != targets.shape or predictions.ndim != targets.ndim + 1:
            raise ValueError(f"class targets of shape {targets.shape} need scores of shape "
                             f"{targets.shape + ('C',)}, got {predictions.shape}")
        hits = np.argmax(predictions, axis=-1) == targets
        return hits.all(axis=tuple(range(targets.ndim - 1)))
    if np.issubdtype(targets.dtype, np.floating):
        if targets.ndim < 2 or predictions.shape != targets.shape:
            raise ValueError(f"regression targets of shape (..., batch, D) need predictions of "
                             f"the same shape, got targets {targets.shape}, predictions "
                             f"{predictions.shape}")
        close = np.abs(predictions - targets) < atol
        batch_axis = targets.ndim - 2
        return close.all(axis=tuple(a for a in range(targets.ndim) if a != batch_axis))
    raise TypeError(f"targets must be float (regression) or int (classes), got {targets.dtype}")


def error_rate(predictions, targets, *, atol=REGRESSION_ATOL):
    """Fraction of sequences that are not processed correctly (see :func:`is_correct`)."""
    return float(np.mean(~is_correct(predictions, targets, atol=atol)))


def success(predictions, targets, tolerance=SUCCESS_TOLERANCE, *, atol=REGRESSION_ATOL):
    """True when at most ``tolerance`` (default 1%) of the sequences are wrong."""
    return error_rate(predictions, targets, atol=atol) <= tolerance
