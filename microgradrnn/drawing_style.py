"""How a drawing looks, and how it is written as DOT text: the style of each kind of node, the
legend, edge colour and width by gradient norm, and labels made safe.

:mod:`microgradrnn.draw` decides *what* is drawn (which nodes, clusters and edges); this module
decides how each of them is spelled. Nodes and edges are written as DOT lines straight into a
``graphviz.Digraph``'s ``body`` (its verbatim source lines), quoted by graphviz's own functions:
the same text ``Digraph.node`` and ``Digraph.edge`` write, without re-quoting a kind's fixed
style for every one of 10,000 nodes.
"""
from __future__ import annotations

import math

import graphviz
import numpy as np
from graphviz import quoting

__all__ = ["STYLE", "CUT_EDGE", "RECURRENT_EDGE", "GradientScale", "norm", "legend", "cluster",
           "node_line", "edge_line", "label", "number", "shape_text", "index_text", "summary"]

STYLE = {  # the look of each kind of node (also the legend)
    "parameter": dict(shape="box", style="rounded,filled", fillcolor="#cfe2f3",
                      color="#3d85c6"),
    "leaf": dict(shape="box", style="filled", fillcolor="#d9ead3", color="#6aa84f"),
    "constant": dict(shape="box", style="filled", fillcolor="#f3f3f3", color="#999999",
                     fontcolor="#555555", fontsize="10"),
    "op": dict(shape="ellipse", style="filled", fillcolor="#ffffff", color="#444444"),
    "output": dict(shape="doubleoctagon", style="filled", fillcolor="#fce5cd",
                   color="#e69138"),
    "detached": dict(shape="box", style="dashed,filled", fillcolor="#fde9e7",
                     color="#cc0000", fontcolor="#990000"),
    "step": dict(shape="box3d", style="filled", fillcolor="#fff2cc", color="#bf9000"),
}
DESCRIBE = {
    "parameter": "parameter (a leaf that training updates)",
    "leaf": "leaf that requires grad (an input)",
    "constant": "constant (no gradient)",
    "op": "operation",
    "output": "output",
    "detached": "state cut by detach()",
}
CUT_EDGE = dict(style="dashed", color="#cc0000", penwidth="2", arrowhead="tee",
                 label="cut (detach)", fontcolor="#cc0000")
RECURRENT_EDGE = dict(style="dashed", color="#3d85c6", penwidth="2", constraint="false",
                       fontcolor="#3d85c6")
SMALL = 4  # tensors with at most this many entries are summarised by their numbers


def cluster(graph, name, t, members):
    """One time step's box and its nodes."""
    with graph.subgraph(name=name) as box:
        box.attr(label=label([f"t = {t}"]), style="rounded,filled", fillcolor="#fafafa",
                 color="#b7b7b7", fontcolor="#666666")
        for node_id, lines, kind in members:
            box.body.append(node_line(node_id, lines, kind))


def norm(g):
    g = np.asarray(g)
    return math.sqrt(float(np.vdot(g, g))) if g.size else 0.0


class GradientScale:
    """Edge colour and width from a gradient norm, on a log scale between the smallest and
    the largest non-zero norm of the drawing (zero gradients are dotted)."""

    _PALE, _STRONG = (0xd5, 0xd5, 0xd5), (0xb1, 0x0d, 0x1a)

    def __init__(self, norms):
        positive = [n for n in norms if 0 < n < math.inf]
        self.low = min(positive) if positive else None
        self.high = max(positive) if positive else None

    def fraction(self, norm):
        if self.low is None or self.high <= self.low:
            return 1.0
        return min(1.0, max(0.0, math.log(norm / self.low) / math.log(self.high / self.low)))

    def style(self, norm):
        if not norm > 0:
            return dict(style="dotted", color="#%02x%02x%02x" % self._PALE, penwidth="0.6")
        if norm == math.inf or norm != norm:
            return dict(color="#7f00ff", penwidth="5")  # inf or nan: cannot be missed
        f = self.fraction(norm)
        rgb = (round(a + f * (b - a)) for a, b in zip(self._PALE, self._STRONG))
        return dict(color="#%02x%02x%02x" % tuple(rgb), penwidth=f"{0.6 + 4.4 * f:.2f}")


def legend(graph, kinds, scale):
    with graph.subgraph(name="cluster_legend") as box:
        box.attr(label="legend", style="rounded", color="#cccccc", fontcolor="#666666")
        previous = None
        for kind in DESCRIBE:
            if kind in kinds:
                box.node(f"legend_{kind}", DESCRIBE[kind], **STYLE[kind])
                if previous is not None:  # stack the legend's boxes
                    box.edge(previous, f"legend_{kind}", style="invis")
                previous = f"legend_{kind}"
        if scale.low is not None:
            text = ["edges: |gradient| on a log scale,",
                    f"{number(scale.low)} (thin, pale) to {number(scale.high)} (thick, red)"]
            box.node("legend_gradient", label(text), shape="plaintext")


KIND_ATTRS = {kind: quoting.a_list(kwargs=style) for kind, style in STYLE.items()}


def node_line(node_id, lines, kind):
    return f"\t{node_id} [label={quoting.quote(label(lines))} {KIND_ATTRS[kind]}]\n"


def edge_line(tail, head, attrs):
    """Edge attributes are this module's own words, numbers and colours; only a label (which
    may carry a user's text) goes through graphviz's quoting."""
    if not attrs:
        return f"\t{tail} -> {head}\n"
    written = " ".join(f"{key}={quoting.quote(value)}" if key == "label" else f'{key}="{value}"'
                       for key, value in attrs.items())
    return f"\t{tail} -> {head} [{written}]\n"


def index_text(index):
    """``x[:, 4:8]``'s index as ``[:, 4:8]`` (an index array as ``[array (3,)]``)."""
    def one(i):
        if isinstance(i, slice):
            text = ("" if i.start is None else str(i.start)) + ":" + (
                "" if i.stop is None else str(i.stop))
            return text + (f":{i.step}" if i.step is not None else "")
        if i is None:
            return "None"
        if i is Ellipsis:
            return "..."
        if isinstance(i, np.ndarray) and i.ndim > 0:
            return f"array {shape_text(i.shape)}"
        return str(i)
    parts = index if isinstance(index, tuple) else (index,)
    return "[" + ", ".join(one(i) for i in parts) + "]"


def shape_text(shape):
    return "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def number(x):
    return f"{x:.3g}" if x == 0 or 1e-3 <= abs(x) < 1e4 else f"{x:.2e}"


def summary(value):
    value = np.asarray(value)
    if value.size <= SMALL:
        return "[" + ", ".join(number(float(v)) for v in value.ravel()) + "]"
    return (f"‖·‖={number(float(np.linalg.norm(value)))} min={number(float(value.min()))} "
            f"max={number(float(value.max()))}")


def safe(text):
    """One line of a label as DOT text: characters that cannot print (a tab, a NUL) are
    spelled out, and backslashes, quotes and ``<...>`` lose their DOT meaning."""
    text = str(text)
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return graphviz.escape(text)


def label(lines):
    """A multi-line label: each line made safe, then joined with DOT's line break."""
    parts = []
    for line in lines:
        parts.extend(str(line).splitlines() or [""])
    return graphviz.nohtml("\\n".join(safe(part) for part in parts))
