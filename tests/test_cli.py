"""The command line: --help, --version and the demo's numbers."""
import io

import pytest

import microgradrnn as mg
from microgradrnn.cli import demo, main


@pytest.mark.parametrize("steps, seed, weight", [(1, 0, 0.9), (6, 0, 0.9), (20, 3, 1.3)])
def test_demo_contributions_sum_to_the_gradient_and_match_finite_differences(steps, seed, weight):
    out = io.StringIO()
    total, gradient, numeric = demo(steps=steps, seed=seed, weight=weight, out=out)
    assert abs(total - gradient) <= 1e-12 * max(1.0, abs(gradient))
    assert abs(gradient - numeric) <= 1e-7 * max(1.0, abs(gradient))
    text = out.getvalue()
    assert f"{steps} consumers" in text and "central finite difference" in text


def test_main_runs_the_demo(capsys):
    assert main(["demo", "--steps", "3"]) == 0
    assert "sum of the 3 contributions" in capsys.readouterr().out


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert mg.__version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "demo" in capsys.readouterr().out
