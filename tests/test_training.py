"""The training loops: min-char-rnn reproduced step for step, a resumed run that continues
bit-exactly, the sequence tasks, and the commands that drive them."""
import numpy as np
import pytest

from microgradrnn.cli import main
from microgradrnn.training import CharRNN, train_task

from references import min_char_rnn_gradient

TEXT = "to be, or not to be, that is the question: whether tis nobler in the mind " * 4


def test_one_iteration_is_min_char_rnn_s_iteration():
    model = CharRNN(TEXT, hidden_size=16, seq_length=10, seed=3)
    V = model.vocab.size
    cell, head = model.model.rnn.cell, model.model.head
    before = {name: p.value.copy() for name, p in model.model.named_parameters()}
    ids = model.vocab.encode(TEXT)
    # min-char-rnn works with column vectors: its W_xh is our W_xh.T, its bh our b[:, None]...
    loss, (dWxh, dWhh, dWhy, dbh, dby) = min_char_rnn_gradient(
        ids[:10], ids[1:11], np.zeros((16, 1)), cell.W_xh.value.T, cell.W_hh.value.T,
        head.W.value.T, cell.b.value[:, None], head.b.value[:, None], V)
    ours = model.train_step()
    np.testing.assert_allclose(ours, loss, rtol=1e-12)
    assert model.smooth_loss == pytest.approx(0.999 * 10 * np.log(V) + 0.001 * loss, rel=1e-13)
    # its update: clip to [-5, 5], then Adagrad p -= lr d / sqrt(mem + 1e-8), with mem = d^2
    gradients = {"rnn.cell.W_xh": dWxh.T, "rnn.cell.W_hh": dWhh.T, "rnn.cell.b": dbh[:, 0],
                 "head.W": dWhy.T, "head.b": dby[:, 0]}
    for name, p in model.model.named_parameters():
        d = np.clip(gradients[name], -5, 5)
        expected = before[name] - 0.1 * d / np.sqrt(d * d + 1e-8)
        np.testing.assert_allclose(p.value, expected, rtol=1e-12, atol=1e-15, err_msg=name)


def test_the_smooth_loss_starts_at_the_uniform_guess():
    model = CharRNN(seed=0)
    V = model.vocab.size
    assert model.smooth_loss == pytest.approx(25 * np.log(V))
    first = model.train_step()  # tiny weights: every prediction is nearly uniform
    assert first == pytest.approx(25 * np.log(V), rel=1e-3)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_a_resumed_run_continues_bit_exactly(tmp_path, cell):
    first = CharRNN(TEXT, cell=cell, hidden_size=8, seq_length=6, k=3, seed=1)
    for _ in range(5):
        first.train_step()
    first.sample(5)
    straight_first = CharRNN(TEXT, cell=cell, hidden_size=8, seq_length=6, k=3, seed=1)
    for _ in range(5):
        straight_first.train_step()
    straight_first.sample(5)  # the same sampling draws before the checkpoint
    first.save(tmp_path / "run.npz")
    resumed = CharRNN(TEXT, cell=cell, hidden_size=8, seq_length=6, k=3, seed=99)
    resumed.load(tmp_path / "run.npz")
    for _ in range(5):
        resumed.train_step()
        straight_first.train_step()
    for (name, a), (_, b) in zip(straight_first.model.named_parameters(),
                                 resumed.model.named_parameters()):
        assert np.array_equal(a.value, b.value), name
    assert resumed.smooth_loss == straight_first.smooth_loss
    assert resumed.sample(20) == straight_first.sample(20)
    assert resumed.iteration == 10 and resumed.trainer.t == 60


def test_a_run_wraps_around_the_text_and_resets_its_state():
    model = CharRNN(TEXT, hidden_size=8, seq_length=25, seed=2)
    chunks = len(model.inputs)
    for _ in range(chunks):
        model.train_step()
    model.trainer.state = model.trainer.state + 1.0  # would leak into the next pass
    model.train_step()
    assert model.position == 1
    np.testing.assert_array_equal(model.trainer.state.value.shape, (1, 8))


@pytest.mark.parametrize("bptt", ["full", "truncated"])
def test_a_task_trains_and_reports_error_rates(bptt):
    model, history = train_task("sine", hidden_size=16, T=20, batch_size=16, iterations=60,
                                lr=0.01, bptt=bptt, k=5, progress=False, eval_every=30,
                                eval_size=50)
    losses = [loss for _, loss, _ in history]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    assert [error is not None for _, _, error in history].count(True) == 2


def test_bad_task_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown task"):
        train_task("parity")
    with pytest.raises(ValueError, match="bptt must be"):
        train_task("adding", bptt="partial")
    with pytest.raises(ValueError, match="must divide"):
        CharRNN(TEXT, seq_length=25, k=7)


def test_the_train_and_vanishing_commands_write_their_plots(tmp_path, capsys):
    png = b"\x89PNG\r\n\x1a\n"
    assert main(["train", "--iterations", "3", "--quiet", "--hidden", "8",
                 "--out", str(tmp_path / "char")]) == 0
    assert (tmp_path / "char" / "loss_curve.png").read_bytes().startswith(png)
    assert main(["train", "--task", "adding", "--T", "10", "--batch", "8", "--iterations", "4",
                 "--quiet", "--bptt", "truncated", "--out", str(tmp_path / "adding")]) == 0
    assert (tmp_path / "adding" / "loss_curve.png").read_bytes().startswith(png)
    assert main(["vanishing", "--steps", "12", "--hidden", "6",
                 "--out", str(tmp_path / "v.png")]) == 0
    assert (tmp_path / "v.png").read_bytes().startswith(png)
    printed = capsys.readouterr().out
    assert "25 ln V" in printed and "error rate on fresh data" in printed
    assert all(f"rho={r}" in printed for r in ("0.5", "0.9", "1", "1.1", "1.5"))
