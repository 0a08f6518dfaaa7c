"""Character-level text: the bundled corpus, a character vocabulary, and the streaming batcher
that carries a hidden state from one chunk to the next (as in Karpathy's min-char-rnn).

    text = load_text()                      # ~174 KB of Shakespeare, shipped with the package
    vocab = CharVocabulary(text)            # sorted characters <-> ids
    for inputs, targets in char_chunks(vocab.encode(text), seq_length=25, batch_size=16):
        ...                                 # (25, 16) int arrays; targets = next characters
"""
from importlib import resources

import numpy as np

from ._random import check_size

_DATA = "data"


def _data_dir():
    return resources.files("microgradrnn").joinpath(_DATA)


def available_texts():
    """Names accepted by :func:`load_text` (the ``.txt`` files under ``microgradrnn/data``)."""
    return sorted(entry.name[:-len(".txt")] for entry in _data_dir().iterdir()
                  if entry.name.endswith(".txt"))


def load_text(name="shakespeare"):
    """Return a bundled text as a ``str``, read from the installed package.

    ``"shakespeare"``: the first 173,858 characters of tinyshakespeare (Karpathy's char-rnn),
    that is *Coriolanus* and the first two scenes of *Richard III*; public domain. Its source,
    checksum and status are recorded in ``microgradrnn/data/README.md``.
    """
    names = available_texts()
    if name not in names:
        raise ValueError(f"no bundled text {name!r}; available: {', '.join(names)}")
    return _data_dir().joinpath(f"{name}.txt").read_text(encoding="utf-8")


class CharVocabulary:
    """The characters of a text, sorted, numbered 0 .. size-1.

    ``encode(s)`` maps a string to an int64 array of ids, ``decode(ids)`` maps ids back, and
    ``decode(encode(s)) == s`` for every string made of the vocabulary's characters.
    """

    def __init__(self, text):
        if not isinstance(text, str):
            raise TypeError(f"CharVocabulary is built from a str, got {type(text).__name__}")
        if not text:
            raise ValueError("CharVocabulary needs a non-empty text")
        self.chars = tuple(sorted(set(text)))
        self._ids = {c: i for i, c in enumerate(self.chars)}

    @property
    def size(self):
        """Number of distinct characters (the width of a one-hot input)."""
        return len(self.chars)

    def __len__(self):
        return self.size

    def __repr__(self):
        return f"CharVocabulary(size={self.size})"

    def encode(self, text):
        """``text`` -> int64 array of character ids, shape ``(len(text),)``."""
        try:
            return np.fromiter((self._ids[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError as missing:
            raise KeyError(f"character {missing.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids):
        """Sequence of ids -> string."""
        ids = np.asarray(ids)
        if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
            raise ValueError(f"decode takes a 1-D sequence of int ids, got {ids.dtype}{ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.size):
            raise ValueError(f"ids must lie in [0, {self.size}), got [{ids.min()}, {ids.max()}]")
        return "".join(self.chars[i] for i in ids.tolist())


def char_chunks(ids, seq_length, batch_size):
    """Yield ``(inputs, targets)`` int64 arrays of shape ``(seq_length, batch_size)``, in order.

    The id sequence is cut into ``batch_size`` contiguous columns of equal length
    ``L = (len(ids) - 1) // batch_size``: column ``b`` reads ``ids[b*L : b*L + L]`` and its targets
    are the next characters ``ids[b*L + 1 : b*L + L + 1]``. The k-th chunk is rows
    ``k*seq_length .. (k+1)*seq_length - 1`` of those columns, so chunk k+1 continues chunk k in
    every column: the last target of chunk k is the first input of chunk k+1. That is what lets
    a training loop carry the hidden state across chunks (truncated BPTT, as in min-char-rnn).
    The ``L % seq_length`` leftover steps of each column are dropped.
    """
    check_size("seq_length", seq_length, 1)
    check_size("batch_size", batch_size, 1)
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be a 1-D int sequence, got {ids.dtype}{ids.shape}")
    column = (len(ids) - 1) // batch_size
    n_chunks = column // seq_length
    if n_chunks == 0:
        raise ValueError(f"{len(ids)} ids are too few for one chunk of {seq_length} steps "
                         f"x {batch_size} columns (need {seq_length * batch_size + 1})")
    ids = ids.astype(np.int64, copy=False)
    starts = np.arange(batch_size) * column
    for k in range(n_chunks):
        rows = k * seq_length + np.arange(seq_length)
        index = rows[:, None] + starts[None, :]
        yield ids[index], ids[index + 1]
