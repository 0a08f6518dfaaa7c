"""The command line: --help, --version, the demo (its numbers and its pictures) and draw."""
import io
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import microgradrnn as mg
from microgradrnn.cli import main
from microgradrnn.demo import run_demo


def _is_png(path):
    data = Path(path).read_bytes()
    return data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5_000


@pytest.mark.parametrize("cell, steps", [("rnn", 6), ("lstm", 3), ("gru", 2)])
def test_demo_splits_the_gradient_exactly_and_writes_its_pictures(tmp_path, cell, steps):
    out = io.StringIO()
    result = run_demo(tmp_path / "demo", steps=steps, cell=cell, iterations=40, progress=False,
                      out=out)
    # the per-step contributions add up to the gradient, which finite differences confirm
    np.testing.assert_allclose(result.total, result.grad, rtol=0, atol=1e-14)
    index, total, gradient, difference = result.entry
    assert abs(total - gradient) <= 1e-14
    assert abs(gradient - difference) <= 1e-6 * max(1.0, abs(gradient))
    assert len(result.steps) == steps
    assert not np.any(result.steps[0])  # step 0 multiplies h_0 = 0
    # training made progress
    assert np.mean(result.losses[-5:]) < 0.5 * np.mean(result.losses[:5])
    # every picture exists and is a real image
    files = {Path(path).name for path in result.files.values()}
    assert files == {"unrolled_graph.svg", "unrolled_graph.png", "rolled_graph.png",
                     "loss_curve.png", "vanishing.png"}
    for path in result.files.values():
        if str(path).endswith(".png"):
            assert _is_png(path), path
    svg = ET.parse(tmp_path / "demo" / "unrolled_graph.svg").getroot()
    assert svg.tag.endswith("svg")
    assert "rnn.cell.W_hh" in (tmp_path / "demo" / "unrolled_graph.svg").read_text()
    text = out.getvalue()
    for part in ("1. Training", "sum of the", "W_hh.grad", "central finite difference",
                 "3. How far back", "4. Written to"):
        assert part in text


def test_main_runs_the_demo_with_its_options(tmp_path, capsys):
    folder = tmp_path / "pictures"
    assert main(["demo", "--out", str(folder), "--steps", "3", "--seed", "1", "--cell", "gru",
                 "--iterations", "5", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "sum of the 3 contributions" in text and str(folder) in text
    assert _is_png(folder / "unrolled_graph.png")


@pytest.mark.parametrize("options, expected", [
    ([], "cluster_t3"),
    (["--grads"], "headlabel"),
    (["--collapse", "step"], "box3d"),
    (["--rolled"], "h_(t-1)"),
])
def test_draw_command_writes_each_kind_of_drawing(tmp_path, capsys, options, expected):
    dot = tmp_path / "graph.dot"
    assert main(["draw", "--steps", "4", "--out", str(dot), *options]) == 0
    assert expected in dot.read_text()
    assert str(dot) in capsys.readouterr().out


def test_draw_command_renders_png(tmp_path):
    png = tmp_path / "graph.png"
    assert main(["draw", "--cell", "lstm", "--steps", "2", "--out", str(png), "--grads"]) == 0
    assert _is_png(png)


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert mg.__version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "demo" in capsys.readouterr().out


@pytest.mark.parametrize("task, measure, bound", [
    ("sine", "test MSE over 50 free-running steps", 1e-8),   # the tutorial reports 5.6e-12
    ("narma10", "NRMSE over 1000 test steps", 0.5),
])
def test_esn_command_fits_prints_the_error_and_plots(tmp_path, capsys, task, measure, bound):
    assert main(["esn", "--task", task, "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "readout fitted in closed form" in text
    error = float(text.split(measure + ": ")[1].split()[0])
    assert 0 <= error < bound
    assert _is_png(tmp_path / f"esn_{task}.png")


def test_train_with_rtrl_runs_a_task_and_refuses_the_char_model(tmp_path, capsys):
    assert main(["train", "--task", "adding", "--bptt", "rtrl", "--T", "6", "--iterations",
                 "4", "--batch", "4", "--quiet", "--out", str(tmp_path)]) == 0
    assert "error rate on fresh data" in capsys.readouterr().out
    assert _is_png(tmp_path / "loss_curve.png")
    with pytest.raises(SystemExit, match="rtrl trains the sequence tasks"):
        main(["train", "--bptt", "rtrl", "--quiet", "--out", str(tmp_path)])


def test_train_with_hessian_free_lowers_the_loss_and_refuses_the_char_model(tmp_path, capsys):
    assert main(["train", "--task", "adding_halves", "--optim", "hf", "--T", "8", "--hidden",
                 "10", "--iterations", "4", "--quiet", "--out", str(tmp_path)]) == 0
    losses = [float(line.split("loss ")[1].split()[0])
              for line in capsys.readouterr().out.splitlines() if line.startswith("update")]
    assert len(losses) == 4 and losses[-1] < losses[0]
    with pytest.raises(SystemExit, match="--optim hf trains the sequence tasks"):
        main(["train", "--optim", "hf", "--quiet", "--out", str(tmp_path)])
