"""microgradrnn.tasks: every generator against its published definition, recomputed here from
the generated inputs; the success rules on predictors whose verdict is known in advance; the
character pipeline (vocabulary round trip, chunk continuity) on the bundled text.

Each definition check reads the inputs back (where the markers are, which symbols were shown)
and derives the target independently, so a wrong window, a wrong marker or a wrong formula in
a generator fails here.
"""
import hashlib
import re
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, strategies as st

import microgradrnn
from microgradrnn import tasks
from microgradrnn.tasks import (TASKS, CharVocabulary, char_chunks, error_rate, is_correct,
                                load_text, output_size, success)

SEEDS = st.integers(0, 2**32 - 1)
BATCHES = st.integers(1, 12)
MIN_T = {"adding": 4, "adding_halves": 2, "multiplication": 4, "xor": 4, "temporal_order": 10,
         "memorization": 11, "sine": 1}
INPUT_SIZE = {"adding": 2, "adding_halves": 2, "multiplication": 2, "xor": 2,
              "temporal_order": 8, "memorization": 4, "sine": 1}
ALL_TASKS = pytest.mark.parametrize("name", sorted(TASKS))


def _targets_shape(name, T, batch):
    if name in ("adding", "adding_halves", "multiplication"):
        return (batch, 1)
    if name in ("xor", "temporal_order"):
        return (batch,)
    return (T, batch) if name == "memorization" else (T, batch, 1)


def _perfect_predictions(name, targets):
    """What a model that is always right would output: the targets themselves for regression,
    one-hot class scores for classification."""
    if np.issubdtype(targets.dtype, np.integer):
        return (targets[..., None] == np.arange(output_size(name))).astype(np.float64)
    return targets.copy()


# -- shapes, dtypes, registry ------------------------------------------------------------------

@ALL_TASKS
@given(data=st.data())
def test_every_task_has_the_documented_shapes_and_dtypes(name, data):
    """inputs (T, batch, D) float64; targets as documented, class ids below output_size."""
    T = data.draw(st.integers(MIN_T[name], 80), label="T")
    batch = data.draw(BATCHES, label="batch")
    inputs, targets = TASKS[name](T, batch, seed=data.draw(SEEDS, label="seed"))
    assert inputs.shape == (T, batch, INPUT_SIZE[name]) and inputs.dtype == np.float64
    assert np.isfinite(inputs).all()
    assert targets.shape == _targets_shape(name, T, batch)
    if np.issubdtype(targets.dtype, np.integer):
        assert targets.dtype == np.int64
        assert targets.min() >= 0 and targets.max() < output_size(name)
    else:
        assert targets.dtype == np.float64 and output_size(name) == targets.shape[-1] == 1


@ALL_TASKS
def test_too_short_sequences_are_refused(name):
    """Each task needs a minimum length for its windows; below it, a ValueError, not garbage."""
    with pytest.raises(ValueError, match="T must be at least"):
        TASKS[name](MIN_T[name] - 1, 3, seed=0)


# -- the definitions, recomputed ---------------------------------------------------------------

def _in_unit_interval(values):
    return (values >= 0).all() and (values <= 1).all()


HS_SCHEME = pytest.mark.parametrize("name, values_ok, step0_value, target_of", [
    ("adding", lambda v: (np.abs(v) <= 1).all(), 0.0, lambda a, b: 0.5 + (a + b) / 4),
    ("multiplication", _in_unit_interval, 1.0, lambda a, b: a * b),
    ("xor", lambda v: np.isin(v, (0.0, 1.0)).all(), None, lambda a, b: int(a != b)),
])


@HS_SCHEME
@given(T=st.integers(4, 120), batch=BATCHES, seed=SEEDS)
def test_marker_scheme_of_hochreiter_schmidhuber(name, values_ok, step0_value, target_of, T,
                                                 batch, seed):
    """H&S experiments 4 and 5 (and M&S's XOR): exactly two +1 markers, one among the first
    min(10, T/2) steps and both among the first T/2; -1 on the first and last step unless
    marked; a marked step 0 holds the neutral value; the target is recomputed from the two
    marked values."""
    inputs, targets = TASKS[name](T, batch, seed=seed)
    values, marker = inputs[..., 0], inputs[..., 1]
    assert values_ok(values)
    for b in range(batch):
        marked = np.flatnonzero(marker[:, b] == 1.0)
        assert len(marked) == 2
        assert marked.min() < min(10, T // 2) and marked.max() < T // 2
        expected_marker = np.zeros(T)
        expected_marker[[0, T - 1]] = -1.0
        expected_marker[marked] = 1.0
        np.testing.assert_array_equal(marker[:, b], expected_marker)
        if step0_value is not None and 0 in marked:
            assert values[0, b] == step0_value
        expected = target_of(values[marked[0], b], values[marked[1], b])
        np.testing.assert_allclose(targets[b], expected, rtol=1e-14, atol=0)


@given(T=st.integers(2, 120), batch=BATCHES, seed=SEEDS)
def test_adding_halves_definition(T, batch, seed):
    """Le et al. 2015: values in [0, 1], one marker in each half, target the marked sum."""
    inputs, targets = tasks.adding_halves(T, batch, seed=seed)
    values, marker = inputs[..., 0], inputs[..., 1]
    assert _in_unit_interval(values) and np.isin(marker, (0.0, 1.0)).all()
    half = T // 2
    for b in range(batch):
        first = np.flatnonzero(marker[:half, b])
        second = half + np.flatnonzero(marker[half:, b])
        assert len(first) == 1 and len(second) == 1
        np.testing.assert_allclose(targets[b, 0], values[first[0], b] + values[second[0], b],
                                   rtol=1e-14, atol=0)


@given(T=st.integers(10, 150), batch=BATCHES, seed=SEEDS)
def test_temporal_order_definition(T, batch, seed):
    """H&S 6a: one-hot symbols a b c d X Y E B; E first, B last, exactly two X/Y (one in
    [T/10, 2T/10], one in [T/2, 6T/10]), distractors elsewhere; class XX=0 XY=1 YX=2 YY=3."""
    inputs, targets = tasks.temporal_order(T, batch, seed=seed)
    assert np.isin(inputs, (0.0, 1.0)).all() and (inputs.sum(axis=-1) == 1).all()
    symbols = np.array(tasks.TEMPORAL_ORDER_SYMBOLS)[inputs.argmax(axis=-1)]
    assert (symbols[0] == "E").all() and (symbols[-1] == "B").all()
    for b in range(batch):
        relevant = np.flatnonzero(np.isin(symbols[:, b], ("X", "Y")))
        assert len(relevant) == 2
        t1, t2 = relevant
        assert T // 10 <= t1 <= 2 * T // 10 and T // 2 <= t2 <= 6 * T // 10
        others = np.delete(symbols[1:-1, b], relevant - 1)
        assert np.isin(others, ("a", "b", "c", "d")).all()
        pair = symbols[t1, b] + symbols[t2, b]
        assert tasks.TEMPORAL_ORDER_CLASSES[targets[b]] == pair


@given(data=st.data())
def test_memorization_definition(data):
    """M&S noiseless memorization: the pattern on the first `length` steps, `go` at step
    T-length-1, blanks elsewhere; the targets are blank except the last `length` steps, which
    repeat the pattern."""
    length = data.draw(st.integers(1, 6), label="length")
    n_symbols = data.draw(st.integers(1, 5), label="n_symbols")
    T = data.draw(st.integers(2 * length + 1, 60), label="T")
    batch = data.draw(BATCHES, label="batch")
    inputs, targets = tasks.memorization(T, batch, length=length, n_symbols=n_symbols,
                                         seed=data.draw(SEEDS, label="seed"))
    assert inputs.shape == (T, batch, n_symbols + 2)
    assert (inputs.sum(axis=-1) == 1).all()
    blank, go = n_symbols, n_symbols + 1
    symbols = inputs.argmax(axis=-1)
    pattern = symbols[:length]
    assert (pattern < n_symbols).all()
    expected_symbols = np.full((T, batch), blank)
    expected_symbols[:length] = pattern
    expected_symbols[T - length - 1] = go
    np.testing.assert_array_equal(symbols, expected_symbols)
    expected_targets = np.full((T, batch), blank)
    expected_targets[T - length:] = pattern
    np.testing.assert_array_equal(targets, expected_targets)


@given(T=st.integers(4, 120), batch=BATCHES, seed=SEEDS)
def test_sine_waves_are_sinusoids_and_targets_are_the_next_value(T, batch, seed):
    """One component: s(t+1) + s(t-1) = 2 cos(omega) s(t) with omega in the period range
    (fitted here by least squares); targets are the inputs shifted by one step."""
    inputs, targets = tasks.sine_waves(T, batch, min_period=8.0, max_period=64.0, seed=seed)
    np.testing.assert_array_equal(targets[:-1], inputs[1:])
    signal = np.concatenate([inputs[:, :, 0], targets[-1:, :, 0]])     # s(0) .. s(T)
    assert (np.abs(signal) <= 1).all()
    middle, around = signal[1:-1], signal[2:] + signal[:-2]
    c = (middle * around).sum(axis=0) / (middle * middle).sum(axis=0)
    np.testing.assert_allclose(around, c * middle, atol=1e-9)
    omega = np.arccos(np.clip(c / 2, -1, 1))
    assert (omega >= 2 * np.pi / 64 - 1e-6).all() and (omega <= 2 * np.pi / 8 + 1e-6).all()


@given(batch=BATCHES, seed=SEEDS, n_components=st.integers(2, 4))
def test_sine_waves_mixtures_stay_in_range(batch, seed, n_components):
    """A mean of K sinusoids is bounded by 1 and is not a single sinusoid in general."""
    inputs, _ = tasks.sine_waves(50, batch, n_components=n_components, seed=seed)
    assert (np.abs(inputs) <= 1).all()


# -- determinism -------------------------------------------------------------------------------

@ALL_TASKS
def test_same_seed_same_data_other_seed_other_data(name):
    """seed= fixes the data; rng= draws the same data from an equally seeded Generator and
    advances it; seed and rng together are refused; NumPy's global state is never touched."""
    generate = TASKS[name]
    first, again, other = (generate(40, 8, seed=s) for s in (3, 3, 4))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))

    rng = np.random.default_rng(3)
    for a, b in zip(first, generate(40, 8, rng=rng)):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, generate(40, 8, rng=rng)))

    with pytest.raises(ValueError, match="not both"):
        generate(40, 8, seed=1, rng=np.random.default_rng(1))

    np.random.seed(12345)
    state = np.random.get_state()[1].copy()
    generate(40, 8)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


# -- success rules -----------------------------------------------------------------------------

@ALL_TASKS
def test_a_perfect_predictor_succeeds(name):
    """Outputs equal to the targets (one-hot scores for classes) are correct on every
    sequence."""
    _, targets = TASKS[name](60, 50, seed=0)
    predictions = _perfect_predictions(name, targets)
    assert is_correct(predictions, targets).all()
    assert error_rate(predictions, targets) == 0.0 and success(predictions, targets)


def test_a_constant_predictor_fails_on_adding():
    """Always answering the mean 0.5 is within 0.04 only when |X1 + X2| < 0.16: about 16% of
    sequences for X1 + X2 triangular on [-2, 2]; far from success."""
    _, targets = tasks.adding(100, 2000, seed=0)
    rate = error_rate(np.full_like(targets, 0.5), targets)
    assert 0.8 < rate < 0.88
    assert not success(np.full_like(targets, 0.5), targets)


def test_the_regression_tolerance_is_strict_at_0_04():
    """|error| < 0.04 is correct, a larger error is not, whichever its sign."""
    targets = np.zeros((4, 1))
    predictions = np.array([[0.039], [-0.039], [0.041], [-0.041]])
    np.testing.assert_array_equal(is_correct(predictions, targets), [True, True, False, False])


def test_sequence_outputs_are_correct_only_if_every_step_is():
    """One wrong step (regression) or one wrong class (memorization-style) spoils the
    sequence, and only that sequence."""
    targets = np.zeros((5, 3, 1))
    predictions = targets.copy()
    predictions[2, 1, 0] = 0.5
    np.testing.assert_array_equal(is_correct(predictions, targets), [True, False, True])

    classes = np.array([[0, 1, 2], [2, 1, 0]])                          # (L=2, batch=3)
    scores = (classes[..., None] == np.arange(3)).astype(float)
    scores[1, 2] = [0.0, 1.0, 0.0]                                      # sequence 2, step 1
    np.testing.assert_array_equal(is_correct(scores, classes), [True, True, False])


@given(n_wrong=st.integers(0, 200))
@example(n_wrong=2)
@example(n_wrong=3)
def test_success_allows_at_most_one_percent_wrong(n_wrong):
    """Of 200 sequences, 2 wrong is still a success (1%), 3 wrong is not."""
    targets = np.zeros((200, 1))
    predictions = np.zeros((200, 1))
    predictions[:n_wrong] = 1.0
    assert error_rate(predictions, targets) == n_wrong / 200
    assert success(predictions, targets) == (n_wrong <= 2)


def test_mismatched_predictions_are_refused():
    """A shape that cannot be judged raises instead of broadcasting into a wrong verdict."""
    with pytest.raises(ValueError):
        is_correct(np.zeros((4, 1)), np.zeros((4,)))                   # regression needs (B, D)
    with pytest.raises(ValueError):
        is_correct(np.zeros((4,)), np.zeros((4,), dtype=np.int64))     # classes need scores
    with pytest.raises(ValueError):
        is_correct(np.zeros((3, 1)), np.zeros((4, 1)))


# -- text --------------------------------------------------------------------------------------

def test_bundled_text_ships_in_the_package_matches_its_record_and_is_small():
    """The text is read from the installed package's data folder, is under 400 KB, and its
    SHA-256 is the one recorded with its source in microgradrnn/data/README.md."""
    data = resources.files("microgradrnn").joinpath("data")
    assert Path(str(data)).resolve() == (Path(microgradrnn.__file__).parent / "data").resolve()
    raw = data.joinpath("shakespeare.txt").read_bytes()
    assert len(raw) < 400_000
    text = load_text("shakespeare")
    assert text == raw.decode("utf-8") and text.startswith("First Citizen:\n")
    readme = data.joinpath("README.md").read_text(encoding="utf-8")
    recorded = re.search(r"SHA-256 \| `([0-9a-f]{64})`", readme).group(1)
    assert hashlib.sha256(raw).hexdigest() == recorded
    assert "shakespeare" in tasks.available_texts()
    with pytest.raises(ValueError, match="available"):
        load_text("no-such-text")


def test_vocabulary_round_trip_on_the_bundled_text():
    """Sorted distinct characters; encode gives each its rank; decode(encode(text)) == text."""
    text = load_text()
    vocab = CharVocabulary(text)
    assert list(vocab.chars) == sorted(set(text)) and vocab.size == len(set(text)) == len(vocab)
    ids = vocab.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (len(text),)
    ranks = {c: i for i, c in enumerate(sorted(set(text)))}
    assert all(ids[i] == ranks[text[i]] for i in range(0, len(text), 997))
    assert vocab.decode(ids) == text
    with pytest.raises(KeyError, match="not in the vocabulary"):
        vocab.encode("~")
    with pytest.raises(ValueError):
        vocab.decode([vocab.size])


@given(snippet=st.text(alphabet=CharVocabulary(load_text()).chars, max_size=200))
def test_vocabulary_round_trip_on_any_string_of_its_characters(snippet):
    vocab = CharVocabulary(load_text())
    assert vocab.decode(vocab.encode(snippet)) == snippet


@given(n=st.integers(2, 400), seq_length=st.integers(1, 12), batch_size=st.integers(1, 6),
       seed=SEEDS)
def test_char_chunks_are_contiguous_columns_that_continue_each_other(n, seq_length,
                                                                    batch_size, seed):
    """Distinct ids (a permutation), so every equality below pins one position: each column is
    a contiguous segment of the ids; the targets are the inputs shifted by one; the last target
    of chunk k is the first input of chunk k+1 in every column."""
    ids = np.random.default_rng(seed).permutation(n)
    column = (n - 1) // batch_size
    n_chunks = column // seq_length
    if n_chunks == 0:
        with pytest.raises(ValueError, match="too few"):
            next(char_chunks(ids, seq_length, batch_size))
        return
    chunks = list(char_chunks(ids, seq_length, batch_size))
    assert len(chunks) == n_chunks
    for inputs, targets in chunks:
        assert inputs.shape == targets.shape == (seq_length, batch_size)
        assert inputs.dtype == targets.dtype == np.int64
        np.testing.assert_array_equal(targets[:-1], inputs[1:])
    for (_, targets), (next_inputs, _) in zip(chunks, chunks[1:]):
        np.testing.assert_array_equal(targets[-1], next_inputs[0])
    all_inputs = np.concatenate([inputs for inputs, _ in chunks])
    all_targets = np.concatenate([targets for _, targets in chunks])
    for b in range(batch_size):
        start = b * column
        np.testing.assert_array_equal(all_inputs[:, b], ids[start:start + n_chunks * seq_length])
        np.testing.assert_array_equal(all_targets[:, b],
                                      ids[start + 1:start + n_chunks * seq_length + 1])


def test_char_chunks_on_the_bundled_text_read_the_text():
    """The first column of the first chunk spells the text's opening characters, and its
    targets the same characters one further on."""
    text = load_text()
    vocab = CharVocabulary(text)
    inputs, targets = next(char_chunks(vocab.encode(text), seq_length=30, batch_size=8))
    assert vocab.decode(inputs[:, 0]) == text[:30]
    assert vocab.decode(targets[:, 0]) == text[1:31]
