"""The examples run, print what they claim, and the README shows the example that is tested."""
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


ARGUMENTS = {"char_rnn.py": ["--iterations", "20", "--sample-every", "10"],
             "draw_unrolled_rnn.py": ["--out", "{tmp}"],
             "echo_state_network.py": ["--out", "{tmp}"]}


def run(path, tmp="."):
    arguments = [a.format(tmp=tmp) for a in ARGUMENTS.get(path.name, [])]
    result = subprocess.run([sys.executable, str(path), *arguments],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path, tmp_path):
    assert run(path, tmp_path).strip()
    if path.name == "draw_unrolled_rnn.py":  # its four pictures, each a real SVG
        svgs = sorted(tmp_path.glob("*.svg"))
        assert [p.name for p in svgs] == ["collapsed.svg", "rolled.svg", "truncated.svg",
                                          "unrolled.svg"]
        assert all(p.read_text().lstrip().startswith("<?xml") for p in svgs)


def test_readme_example_is_the_tested_one_and_its_numbers_agree():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    script = (ROOT / "examples" / "gradient_vs_finite_difference.py").read_text()
    assert block.strip() in script
    gradient, numeric = map(float, run(ROOT / "examples" / "gradient_vs_finite_difference.py").split())
    assert abs(gradient - numeric) < 1e-8


def test_higher_order_example_agrees_with_the_closed_forms():
    lines = run(ROOT / "examples" / "higher_order.py").splitlines()
    numbers = [np.array(re.findall(r"-?\d+\.\d+", line), dtype=float) for line in lines]
    np.testing.assert_allclose(numbers[0], numbers[1], rtol=1e-7)
    np.testing.assert_allclose(numbers[2], numbers[3], rtol=1e-7)


def test_the_readme_rnn_example_splits_the_gradient_by_step():
    readme = (ROOT / "README.md").read_text()
    block = re.findall(r"```python\n(.*?)```", readme, re.S)[1]
    result = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) < 1e-12


def test_the_readme_drawing_example_writes_both_pictures(tmp_path):
    readme = (ROOT / "README.md").read_text()
    block = re.findall(r"```python\n(.*?)```", readme, re.S)[2]
    result = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["unrolled.svg", "rolled.png"]
    assert "rnn.cell.W_hh" in (tmp_path / "unrolled.svg").read_text()
    assert (tmp_path / "rolled.png").read_bytes().startswith(b"\x89PNG")


def test_the_readme_hessian_free_example_reaches_the_least_squares_solution():
    readme = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "HessianFree" in b)
    result = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    shown = re.search(r"```python\n" + re.escape(block) + r"```\n```\n(.*?)\n```", readme, re.S)
    assert result.stdout.strip() == shown.group(1).strip()
