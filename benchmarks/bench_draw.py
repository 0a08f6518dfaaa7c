"""Section 8, drawing (``--draw``): ``mg.draw`` building the DOT source of an unrolled RNN's
graph of ~10,000 nodes (without and with recorded edge gradients) against a naive drawer that
calls ``graphviz.Digraph.node`` / ``.edge`` once per node and edge, timed in the same rounds;
what the default ``max_nodes`` guard does with ~100,000 nodes and how long it takes; and
``mg.render`` writing the demo's figures (an unrolled RNN of 6 steps with its gradient flow,
to SVG and PNG; the rolled view, to PNG) with whichever renderer is available.
"""
from __future__ import annotations

import importlib
import os
import re
import struct
import sys
import tempfile
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import graphviz  # noqa: E402

import microgradrnn as mg  # noqa: E402
from microgradrnn.graph import forward_order  # noqa: E402
from microgradrnn.nn import Linear, RNNCell, RNNModel  # noqa: E402
from _common import Section, compare, table, x  # noqa: E402

DOT_NODES = 10_000      # the graph: "well under a second"
BIG_NODES = 100_000     # the default max_nodes must collapse or refuse it, quickly
DOT_LIMIT, DOT_AIM = 1.0, 0.5    # seconds: the target, and "well under a second"
GUARD_LIMIT = 1.0       # seconds: "quickly" (this section's reading of the issue)
RENDER_STEPS = 6        # the demo's figures
RENDER_LIMIT = 5.0      # seconds per file: "within a few seconds"


# -- the graphs ---------------------------------------------------------------------------------

class Unrolled:
    """``RNNModel(RNNCell(1, 4), Linear(4, 1))`` unrolled over T steps, its loss
    ``mg.bptt.sequence_loss(outputs, targets, mse)``, and the graph's node count."""

    def __init__(self, T, seed=0):
        rng = np.random.default_rng(seed)
        self.T = T
        self.model = RNNModel(RNNCell(1, 4), Linear(4, 1))
        xs = rng.standard_normal((T, 1, 1))
        targets = rng.standard_normal((T, 1, 1))
        outputs, _ = self.model(xs)
        self.loss = mg.bptt.sequence_loss(outputs, targets, mg.functional.mse)
        self.order = forward_order([self.loss.node])
        self.nodes = len(self.order)
        self.edge_grads = None

    def backward(self):
        """Backpropagate once, recording what every consumer sent each input."""
        with mg.record_edge_grads() as rec:
            self.loss.backward()
        self.edge_grads = rec
        return rec


def steps_for(nodes):
    """The T whose graph has about ``nodes`` nodes (the count grows linearly with T)."""
    a, b = Unrolled(10).nodes, Unrolled(20).nodes
    per_step = (b - a) / 10
    return max(1, round((nodes - (a - 10 * per_step)) / per_step))


# -- the naive reference ------------------------------------------------------------------------

def naive_draw(loss):
    """What a drawer written on graphviz's API spends: ``forward_order``, then one
    ``Digraph.node`` per graph node (label: primitive or name, and shape; a style per kind) and
    per constant input, one ``Digraph.edge`` per input slot, and ``.source``. No clusters, no
    legend, no gradients."""
    order = forward_order([loss.node])
    ids = {node: f"n{i}" for i, node in enumerate(order)}
    g = graphviz.Digraph(name="naive")
    constants = 0
    for node in order:
        if node.primitive is None:
            g.node(ids[node], f"{node.name or 'input'}\\n{node.shape}", shape="box",
                   style="filled")
        else:
            g.node(ids[node], f"{node.primitive.name}\\n{node.shape}", shape="ellipse")
    for node in order:
        if node.primitive is None:
            continue
        for parent in node.parents:
            if parent is None:
                g.node(f"c{constants}", "constant", shape="box")
                g.edge(f"c{constants}", ids[node])
                constants += 1
            else:
                g.edge(ids[parent], ids[node])
    return g.source


_NODE_LINE = re.compile(r"^\s+(\w+) \[", re.M)      # also inside the clusters' subgraphs
_EDGE_LINE = re.compile(r"^\s+(\w+) -> (\w+)", re.M)
_KEYWORDS = {"graph", "node", "edge"}  # attribute statements, not nodes


def _statements(source):
    """(node statements, edge statements) of a DOT source, the legend's left out."""
    nodes = [m for m in _NODE_LINE.findall(source)
             if not m.startswith("legend_") and m not in _KEYWORDS]
    edges = [e for e in _EDGE_LINE.findall(source) if not e[0].startswith("legend_")]
    return nodes, edges


def _guarded(*args, **kwargs):
    """mg.draw under the max_nodes guard: ("collapsed", warning, boxes) when it returns,
    ("refused", message, None) when it raises ValueError."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            drawing = mg.draw(*args, **kwargs)
            source = drawing.source
        except ValueError as error:
            return "refused", str(error), None
    nodes, _ = _statements(source)
    said = "; ".join(str(w.message) for w in caught) or None
    return "collapsed", said, len(nodes)


# -- the section --------------------------------------------------------------------------------

def run_draw(quick=False):
    section = Section("draw", "8. Drawing: mg.draw's DOT source for ~10,000 nodes (vs a naive "
                              "graphviz drawer), the max_nodes guard at ~100,000, and mg.render "
                              "of the demo's figures")
    repeats = 3 if quick else 7
    _dot_generation(section, repeats)
    _guard(section, 2 if quick else 5)
    _rendering(section, 2 if quick else 5)
    return section


def _dot_generation(section, repeats):
    T = steps_for(DOT_NODES)
    g = Unrolled(T)
    rec = g.backward()
    n = g.nodes
    section.say(f"  graph: RNNModel(RNNCell(1, 4), Linear(4, 1)) unrolled over T = {T} steps, "
                f"sequence_loss(..., mse): {n:,} nodes (forward_order), "
                f"{len(rec.edges):,} recorded edge gradients")
    section.check(f"the graph has about {DOT_NODES:,} nodes (within 2%)",
                  abs(n - DOT_NODES) <= 0.02 * DOT_NODES, f"{n:,} nodes at T = {T}")

    # what is timed, checked first
    plain = mg.draw(g.loss, params=g.model, max_nodes=None).source
    flow = mg.draw(g.loss, params=g.model, max_nodes=None, edge_grads=rec).source
    naive = naive_draw(g.loss)
    ids = {f"n{i}" for i in range(n)}
    p_nodes, p_edges = _statements(plain)
    links = sum(1 for node in g.order if node.primitive is not None
                for parent in node.parents if parent is not None)
    drawn_links = sum(1 for tail, head in p_edges if tail in ids and head in ids)
    drawn_ids = [i for i in p_nodes if i in ids]
    section.check("mg.draw writes every node once and one edge per use of an input",
                  len(drawn_ids) == len(set(drawn_ids)) == n and drawn_links == links,
                  f"{len(drawn_ids):,} node statements for the {n:,} nodes, {drawn_links:,} "
                  "edges between them "
                  f"(the graph: {links:,} input slots that are nodes)")
    coloured = sum(1 for line in flow.splitlines() if "->" in line and "penwidth=" in line)
    section.check("with edge_grads every edge between nodes carries its gradient's style",
                  coloured == links, f"{coloured:,} styled edges of {links:,}")
    n_nodes, n_edges = _statements(naive)
    section.say(f"  statements written: mg.draw {len(p_nodes):,} nodes + {len(p_edges):,} edges "
                f"({len(plain) / 1e6:.1f} MB; with edge_grads {len(flow) / 1e6:.1f} MB); "
                f"naive {len(n_nodes):,} nodes + {len(n_edges):,} edges "
                f"({len(naive) / 1e6:.1f} MB)")

    cases = {
        "draw": lambda: mg.draw(g.loss, params=g.model, max_nodes=None).source,
        "draw_edge_grads": lambda: mg.draw(g.loss, params=g.model, max_nodes=None,
                                           edge_grads=rec).source,
        "naive": lambda: naive_draw(g.loss),
    }
    timings = compare(cases, repeats)
    ref = timings["naive"]
    rows = []
    labels = {"draw": "mg.draw(loss, params=model, max_nodes=None).source",
              "draw_edge_grads": "  ... edge_grads=rec (gradient flow)",
              "naive": "naive: forward_order + Digraph.node/.edge + .source"}
    for name, tm in timings.items():
        best = tm.min
        if name == "draw":
            limit = f"<= {DOT_LIMIT:g} s (aim {DOT_AIM:g})"
            status = ("met" if best <= DOT_LIMIT else "MISSED") + \
                     (", aim met" if best <= DOT_AIM else ", aim missed")
        else:
            limit, status = "", ""
        ratio = "" if name == "naive" else x(tm.median / ref.median)
        ratio_min = "" if name == "naive" else x(best / ref.min)
        rows.append((labels[name], f"{best:.3f}", f"{tm.median:.3f}",
                     f"{best / n * 1e6:.1f}", ratio, ratio_min, limit, status))
    section.say(table(["case", "best s", "median s", "us/node", "ratio", "(min/min)",
                       "target", ""], rows))
    section.say(f"  best of {repeats} (one call per sample, the three round-robin); ratio = "
                "median over median against the naive drawer timed in the same rounds; the "
                f"target is on the best; {DOT_AIM:g} s is the aim behind \"well under a "
                "second\".")
    section.target(f"mg.draw DOT source, {n:,} nodes (best of {repeats})", timings["draw"].min,
                   DOT_LIMIT, "s")
    section.data["dot"] = {
        "T": T, "nodes": n, "edges_between_nodes": links, "recorded_edge_grads": len(rec.edges),
        "source_bytes": {"draw": len(plain), "draw_edge_grads": len(flow), "naive": len(naive)},
        "limit_s": DOT_LIMIT, "aim_s": DOT_AIM,
        **{name: tm.as_dict() for name, tm in timings.items()},
        "us_per_node_best": {name: tm.min / n * 1e6 for name, tm in timings.items()},
        "ratio_to_naive": {name: {"median": tm.median / ref.median, "min": tm.min / ref.min}
                           for name, tm in timings.items() if name != "naive"},
    }


def _guard(section, repeats):
    """The default max_nodes (mg.draw.MAX_NODES) on ~100,000 nodes: collapsed by step with a
    warning, or refused (ValueError); and for context the same guard on ~10,000 nodes and an
    explicit collapse="step" of the big graph."""
    max_nodes = importlib.import_module("microgradrnn.draw").MAX_NODES
    T_big, T_small = steps_for(BIG_NODES), steps_for(DOT_NODES)
    t = time.perf_counter()
    big = Unrolled(T_big)
    built = time.perf_counter() - t
    small = Unrolled(T_small)
    section.say(f"\n  the max_nodes guard (default max_nodes = {max_nodes:,}): a graph of "
                f"{big.nodes:,} nodes (T = {T_big}, built in {built:.1f} s) and one of "
                f"{small.nodes:,} (T = {T_small})")
    cases = {
        "big_default": lambda: _guarded(big.loss, params=big.model),
        "small_default": lambda: _guarded(small.loss, params=small.model),
        "big_collapse": lambda: _guarded(big.loss, params=big.model,
                                         collapse="step", max_nodes=None),
    }
    outcomes = {name: fn() for name, fn in cases.items()}
    big_outcome, big_said, _ = outcomes["big_default"]
    section.check(f"mg.draw(loss, params=model) on {big.nodes:,} nodes collapses with a "
                  "warning or refuses (ValueError)",
                  (big_outcome == "refused" and big_said)
                  or (big_outcome == "collapsed" and big_said is not None),
                  f"{big_outcome}: {(big_said or 'no warning').split('. ')[0]}")
    timings = compare(cases, repeats)
    labels = {"big_default": f"{big.nodes:,} nodes, default max_nodes",
              "small_default": f"{small.nodes:,} nodes, default max_nodes",
              "big_collapse": f"{big.nodes:,} nodes, collapse='step', max_nodes=None"}
    sizes = {"big_default": big.nodes, "small_default": small.nodes,
             "big_collapse": big.nodes}
    rows = []
    for name, tm in timings.items():
        outcome, said, boxes = outcomes[name]
        what = outcome + (f" to {boxes:,} node statements" if boxes is not None else "") + \
            (" + warning" if outcome == "collapsed" and said else "")
        limit = f"<= {GUARD_LIMIT:g} s" if name == "big_default" else ""
        status = ("met" if tm.min <= GUARD_LIMIT else "MISSED") if name == "big_default" else ""
        rows.append((labels[name], what, f"{tm.min:.3f}", f"{tm.median:.3f}",
                     f"{tm.min / sizes[name] * 1e6:.1f}", limit, status))
    section.say(table(["mg.draw(loss, params=model, ...)", "result", "best s", "median s",
                       "us/node", "target", ""], rows))
    section.say(f"  best of {repeats}, round-robin; the time includes the walk of the whole "
                "graph (forward_order) and the warning or the exception. 'quickly' is read as "
                f"<= {GUARD_LIMIT:g} s.")
    section.target(f"max_nodes guard on {big.nodes:,} nodes ({big_outcome})",
                   timings["big_default"].min, GUARD_LIMIT, "s")
    section.data["guard"] = {
        "max_nodes": max_nodes, "limit_s": GUARD_LIMIT,
        **{name: {"nodes": sizes[name], "outcome": outcomes[name][0],
                  "message": outcomes[name][1], "node_statements": outcomes[name][2],
                  **timings[name].as_dict()} for name in cases},
    }


def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", head[16:24])


def _rendering(section, repeats):
    render_module = importlib.import_module("microgradrnn.render")
    found = render_module.find_renderer()
    if found is None:
        section.say("\n  rendering: skipped, no renderer found (neither `dot` nor "
                    "`graphviz-pure`; `pip install graphviz-pure`)")
        section.data["render"] = {"renderer": None}
        return
    name, executable = found
    g = Unrolled(RENDER_STEPS)
    rec = g.backward()
    section.say(f"\n  rendering with {name} ({executable}): an unrolled RNN of T = "
                f"{RENDER_STEPS} steps ({g.nodes} nodes) with its gradient flow, and the rolled "
                "view; each file drawn and rendered by mg.render (draw included)")

    def unrolled():
        return mg.draw(g.loss, params=g.model, edge_grads=rec)

    with tempfile.TemporaryDirectory(prefix="mg-bench-draw-") as folder:
        files = {"unrolled_svg": (unrolled, "unrolled.svg"),
                 "unrolled_png": (unrolled, "unrolled.png"),
                 "rolled_png": (lambda: mg.draw(g.model), "rolled.png")}
        results = {}

        def make(key):
            make_drawing, filename = files[key]
            return lambda: results.__setitem__(
                key, mg.render(make_drawing(), os.path.join(folder, filename)))

        cases = {key: make(key) for key in files}
        cases["unrolled_dot_only"] = lambda: unrolled().source   # context: the drawing alone
        timings = compare(cases, repeats)
        details = {}
        for key, (_, filename) in files.items():
            out = results[key]
            data = out.path.read_bytes()
            if filename.endswith(".svg"):
                ok = data.lstrip().startswith((b"<?xml", b"<svg")) and b"</svg>" in data
                what = f"{len(data) / 1e3:.0f} KB SVG"
            else:
                size = _png_size(out.path)
                ok = size is not None
                what = f"{len(data) / 1e3:.0f} KB PNG" + (f", {size[0]}x{size[1]} px"
                                                        if size else "")
            details[key] = {"bytes": len(data), "renderer": out.renderer, "described": what}
            section.check(f"{filename}: a valid file from {name}",
                          ok and out.renderer == name and out.path.name == filename,
                          f"{out.path.name}, {what}, renderer {out.renderer}")
    labels = {"unrolled_svg": f"unrolled T={RENDER_STEPS} + gradient flow -> SVG",
              "unrolled_png": f"unrolled T={RENDER_STEPS} + gradient flow -> PNG",
              "rolled_png": "rolled view mg.draw(model) -> PNG",
              "unrolled_dot_only": "  (the unrolled drawing's DOT source alone)"}
    rows = []
    for key, tm in timings.items():
        is_file = key in files
        rows.append((labels[key], details[key]["described"] if is_file else "",
                     f"{tm.min:.3f}", f"{tm.median:.3f}",
                     f"<= {RENDER_LIMIT:g} s" if is_file else "",
                     ("met" if tm.min <= RENDER_LIMIT else "MISSED") if is_file else ""))
        if is_file:
            section.target(f"render {labels[key].split(' -> ')[0].split(' + ')[0]} to "
                           f"{key.rsplit('_', 1)[1].upper()} ({name})", tm.min, RENDER_LIMIT, "s")
    section.say(table(["file", "written", "best s", "median s", "target", ""], rows))
    section.say(f"  best of {repeats} per file, round-robin; seconds per file = mg.draw + "
                f"mg.render ({name} runs as a subprocess).")
    section.data["render"] = {
        "renderer": name, "executable": executable, "steps": RENDER_STEPS, "nodes": g.nodes,
        "limit_s": RENDER_LIMIT, "files": details,
        **{key: tm.as_dict() for key, tm in timings.items()},
    }
    _demo(section)


def _demo(section):
    """For context, when ``microgradrnn.demo.run_demo`` exists: the whole demo once (training,
    the gradient split, the vanishing table, the figures), with the time of each of its
    ``render`` calls. Not a target; skipped when the demo is missing or fails."""
    import inspect
    import io
    try:
        demo = importlib.import_module("microgradrnn.demo")
        run_demo = demo.run_demo
    except (ImportError, AttributeError):
        section.say("\n  the demo: skipped (no microgradrnn.demo.run_demo)")
        section.data["demo"] = None
        return
    accepted = inspect.signature(run_demo).parameters
    options = {key: value for key, value in (("progress", False), ("out", io.StringIO()))
               if key in accepted}
    renders = []
    original = getattr(demo, "render", None)

    def timed_render(what, path, *args, **kwargs):
        t = time.perf_counter()
        result = original(what, path, *args, **kwargs)
        renders.append((os.path.basename(str(path)), time.perf_counter() - t))
        return result

    with tempfile.TemporaryDirectory(prefix="mg-bench-demo-") as folder:
        if original is not None:
            demo.render = timed_render
        t = time.perf_counter()
        try:
            result = run_demo(out_dir=folder, **options)
        except Exception as error:  # someone else's code: report, do not fail the section
            section.say(f"\n  the demo: skipped, run_demo raised {type(error).__name__}: "
                        f"{error}")
            section.data["demo"] = {"error": repr(error)}
            return
        finally:
            if original is not None:
                demo.render = original
        total = time.perf_counter() - t
        files = getattr(result, "files", None) or {}
        sizes = {label: os.path.getsize(path) for label, path in files.items()
                 if os.path.exists(path)}
    shown = ", ".join(f"{k}={v!r}" for k, v in options.items() if k != "out")
    calls = ", ".join(f"{name} {seconds:.3f} s" for name, seconds in renders) or "none seen"
    section.say(f"\n  the demo, for context: run_demo({shown}) took {total:.2f} s in all "
                f"(training included), {len(files)} files; its mg.render calls: {calls}")
    section.data["demo"] = {"total_s": total, "render_calls_s": renders,
                            "files_bytes": sizes}
