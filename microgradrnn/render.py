"""Rendering drawings to files, with or without a system Graphviz.

Three ways, tried in order: the ``dot`` program when it is on PATH; else ``graphviz-pure``, a
self-contained port of dot installed by pip with this package (a dependency in
pyproject.toml), which renders SVG and PNG with bundled fonts; else the DOT source is written
next to the requested file, with the command that renders it.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import warnings
from pathlib import Path
from typing import NamedTuple

__all__ = ["render", "Rendered", "find_renderer", "to_svg", "FORMATS", "RENDERERS"]

FORMATS = ("svg", "png", "dot")  # chosen by the file's extension (.gv is DOT too)
RENDERERS = ("dot", "graphviz-pure")
_TIMEOUT = 300  # seconds; a layout of a few thousand nodes takes seconds


class Rendered(NamedTuple):
    """Where a drawing went: ``path`` (the file written) and ``renderer`` ("dot",
    "graphviz-pure", or None when only the DOT source could be written)."""
    path: Path
    renderer: str | None


def find_renderer(prefer=None):
    """(name, executable) of the first renderer available, or None. ``prefer`` names one
    (``"dot"`` or ``"graphviz-pure"``) to use only that, or ``"none"`` for none."""
    if prefer not in (None, "none", *RENDERERS):
        raise ValueError(f"render: renderer must be one of {', '.join(RENDERERS)}, 'none' or "
                         f"None (the first available), got {prefer!r}")
    if prefer == "none":
        return None
    for name in RENDERERS if prefer is None else (prefer,):
        executable = shutil.which(name) or _beside_python(name)
        if executable:
            return name, executable
    return None


def _beside_python(name):
    """A script installed with this Python (a venv's bin/ that is not on PATH)."""
    for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        for candidate in (name, name + ".exe"):
            path = Path(folder, candidate)
            if path.is_file() and os.access(path, os.X_OK):
                return str(path)
    return None


def render(what, path, renderer=None, **draw_options):
    """Write ``what`` (a Drawing or Digraph, DOT text, or anything :func:`mg.draw` accepts,
    with ``draw_options``) to ``path``: SVG, PNG or DOT by its extension. Returns
    :class:`Rendered`. With no renderer available, an SVG or PNG request writes ``path``'s
    ``.dot`` instead and warns with the command that renders it."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    fmt = "dot" if fmt == "gv" else fmt
    if fmt not in FORMATS:
        raise ValueError(f"render: cannot tell the format of {str(path)!r} from its extension; "
                         f"use one of {', '.join('.' + f for f in FORMATS)}")
    source = _source(what, draw_options)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "dot":
        path.write_text(source, encoding="utf-8")
        return Rendered(path, None)
    found = find_renderer(renderer)
    if found is None:
        dot_path = path.with_suffix(".dot")
        dot_path.write_text(source, encoding="utf-8")
        warnings.warn(f"render: no Graphviz renderer found (neither `dot` nor `graphviz-pure`), "
                      f"so the DOT source was written to {dot_path}. Render it with "
                      f"`pip install graphviz-pure && graphviz-pure -T{fmt} "
                      f"{shlex.quote(str(dot_path))} -o {shlex.quote(str(path))}`, or install "
                      "Graphviz and use `dot` the same way.", stacklevel=2)
        return Rendered(dot_path, None)
    name, executable = found
    path.write_bytes(_run(executable, name, fmt, source))
    return Rendered(path, name)


def to_svg(source, renderer=None):
    """The SVG text of DOT ``source``, or None when no renderer is available."""
    found = find_renderer(renderer)
    if found is None:
        return None
    name, executable = found
    return _run(executable, name, "svg", source).decode("utf-8")


def _source(what, draw_options):
    if isinstance(what, str):
        return what
    if hasattr(what, "source"):  # a graphviz Digraph, drawn already
        if draw_options:
            raise TypeError(f"render: {', '.join(draw_options)} are options of mg.draw; this "
                            "is a drawing already, so pass them to mg.draw instead")
        return what.source
    from .draw import draw
    return draw(*(what if isinstance(what, (list, tuple)) else (what,)), **draw_options).source


def _run(executable, name, fmt, source):
    result = subprocess.run([executable, f"-T{fmt}"], input=source.encode("utf-8"),
                            capture_output=True, timeout=_TIMEOUT)
    if result.returncode != 0 or not result.stdout:
        message = result.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"render: {name} could not render the drawing to {fmt} "
                           f"(exit status {result.returncode}): {message}")
    return result.stdout
