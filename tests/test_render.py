"""Labels and rendering: any text survives the trip through DOT to the renderer's parser
(graphviz-pure -Tjson); mg.render writes SVG, PNG or DOT by extension, through graphviz-pure,
dot, or (with none) the DOT source and the command that renders it. :class:`Layout`, the
drawing read back through the renderer, is shared with test_draw."""
import importlib
import json
import re
import shlex
import shutil
import struct
import subprocess
import sysconfig
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, strategies as st

import microgradrnn as mg

render_module = importlib.import_module("microgradrnn.render")  # mg.render is the function
to_svg, find_renderer = render_module.to_svg, render_module.find_renderer
SVG = "{http://www.w3.org/2000/svg}"


# -- reading a drawing back through the renderer ------------------------------------------------

def _find_graphviz_pure():
    found = shutil.which("graphviz-pure")
    script = Path(sysconfig.get_path("scripts"), "graphviz-pure")
    return found or (str(script) if script.is_file() else None)


GRAPHVIZ_PURE = _find_graphviz_pure()


def unescape(raw):
    """A DOT label (escString) as Graphviz shows it: ``\\n``, ``\\l``, ``\\r`` end a line,
    ``\\\\`` and ``\\"`` are the character. Any other backslash escape (``\\N`` is the node's
    name, ``\\G`` the graph's) means the label was not escaped: an AssertionError."""
    out, i = [], 0
    while i < len(raw):
        if raw[i] != "\\":
            out.append(raw[i])
            i += 1
            continue
        assert i + 1 < len(raw), f"a label ends in a lone backslash: {raw!r}"
        escaped = raw[i + 1]
        assert escaped in 'nlr\\"', f"unescaped backslash sequence \\{escaped} in {raw!r}"
        out.append("\n" if escaped in "nlr" else escaped)
        i += 2
    return "".join(out)


class Layout:
    """A drawing as ``graphviz-pure -Tjson`` parsed it: ``nodes`` and ``clusters`` by name,
    ``members`` (cluster name -> node names), ``edges`` as (tail, head, attributes)."""

    def __init__(self, drawing):
        assert GRAPHVIZ_PURE, "graphviz-pure (a dependency in pyproject.toml) is not installed"
        source = getattr(drawing, "source", drawing)
        result = subprocess.run([GRAPHVIZ_PURE, "-Tjson"], input=source.encode("utf-8"),
                                capture_output=True, timeout=120)
        assert result.returncode == 0, result.stderr.decode("utf-8", "replace")
        data = json.loads(result.stdout)
        self.label = unescape(data["label"]) if "label" in data else None
        self.rankdir = data.get("rankdir")
        objects = {o["_gvid"]: o for o in data.get("objects", [])}
        subgraphs = data.get("_subgraph_cnt", 0)  # subgraphs come first among the objects
        self.nodes = {o["name"]: o for gvid, o in objects.items() if gvid >= subgraphs}
        self.clusters = {o["name"]: o for gvid, o in objects.items() if gvid < subgraphs}
        self.members = {name: {objects[i]["name"] for i in c.get("nodes", [])}
                        for name, c in self.clusters.items()}
        self.edges = [(objects[e["tail"]]["name"], objects[e["head"]]["name"],
                       {k: v for k, v in e.items() if not k.startswith("_")
                        and k not in ("tail", "head", "pos")})
                      for e in data.get("edges", [])]

    def text(self, name):
        return unescape(self.nodes[name]["label"])

    def first_line(self, name):
        return self.text(name).split("\n")[0]

    def named(self, first_line):
        """The one node whose label starts with the line ``first_line``."""
        found = [n for n in self.nodes if self.first_line(n) == first_line]
        assert len(found) == 1, f"{len(found)} nodes labelled {first_line!r}"
        return found[0]

    def out_edges(self, name):
        return [e for e in self.edges if e[0] == name]

    def home(self, name):
        homes = [c for c, members in self.members.items() if name in members]
        assert len(homes) <= 1
        return homes[0] if homes else None

    def time_clusters(self):
        """{cluster name: its time step} for the clusters cluster_t0, cluster_t1, ..."""
        return {name: _step_label(unescape(c["label"])) for name, c in self.clusters.items()
                if re.fullmatch(r"cluster_t\d+", name)}

    def step_of(self, name):
        """The time step a node is drawn in: its cluster's, or a collapsed box's own."""
        home = self.home(name)
        if home is not None:
            return _step_label(unescape(self.clusters[home]["label"]))
        return _step_label(self.first_line(name)) if re.fullmatch(r"t\d+", name) else None


def _step_label(text):
    match = re.fullmatch(r"t = (\d+)", text.split("\n")[0])
    assert match, f"not a time step label: {text!r}"
    return int(match.group(1))


# -- labels ---------------------------------------------------------------------------------------

_AWKWARD = ['"', "\\", "\\\\", "{", "}", "<", ">", "<b>html</b>", "<<i>x</i>>", "\n", "\r\n",
            "\r", "\t", "\x00", "\x7f", "\x1b", "\x0c", "\u2028", "\u200b", "\xa0", "\ud800",
            "é", "漢字", "😀", "\\N", "\\G", "\\n", "\\l", '\\"', "&amp;", ";", "|",
            "[label=x]", "->", " ", "'"]
label_texts = st.lists(st.one_of(st.sampled_from(_AWKWARD), st.text(max_size=4)),
                       min_size=1, max_size=8).map("".join).filter(bool)


def _shown(text):
    """What a label shows for ``text``: its lines (split as str.splitlines splits them), each
    character that cannot print spelled as Python's repr spells it (a tab as \\t, NUL as
    \\x00), everything else as it is; joined by newlines."""
    lines = text.splitlines() or [""]
    return "\n".join("".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in line)
                     for line in lines)


@given(label_texts)
@example('a"b\\c{d}<b>html</b>\n\tx\x00é\\N\\"q\\')
@example("<b>html</b>")
@example("\\")
@example("\n")
def test_labels_round_trip_through_the_renderer(text):
    """Any text as a parameter's name, a scope tag and a title: the DOT renders (SVG) and the
    labels graphviz-pure parses are the text, line breaks and spelled-out unprintables aside."""
    p = mg.Parameter(np.ones(2), name=text)
    with mg.scope(t=text):
        out = (p * 2.0).sum()
    drawing = mg.draw(out, title=text, legend=False)
    assert to_svg(drawing.source, "graphviz-pure").lstrip().startswith(("<?xml", "<svg"))
    lay = Layout(drawing)
    assert lay.text("n0") == _shown(text) + "\n(2,)"  # p: the first node in forward order
    assert unescape(lay.clusters["cluster_t0"]["label"]) == _shown(f"t = {text}")
    assert lay.label == _shown(text)


def test_values_and_grads_in_labels():
    """values=True shows small values entry by entry and big ones as norm, min, max;
    grads=True shows .grad of the leaves after backward."""
    a = mg.Parameter(np.array([1.0, 2.0]), name="a")
    big = mg.Parameter(np.arange(6.0).reshape(2, 3), name="big")
    out = (a * a).sum() + big.sum()
    out.backward()
    lay = Layout(mg.draw(out, params=[a, big], values=True, grads=True, legend=False))
    assert lay.text(lay.named("a")) == "a\n(2,)\nvalue [1, 2]\ngrad [2, 4]"
    assert lay.text(lay.named("big")).split("\n")[2] == "value ‖·‖=7.42 min=0 max=5"
    assert "value [20]" in lay.text(lay.named("add"))


# -- constants ------------------------------------------------------------------------------------

def test_a_scalar_constant_is_drawn_as_its_value_however_it_was_written():
    """x * 3.0 and x * np.array(3.0) draw the constant the same way (as the number 3)."""
    def constant_labels(out):
        lay = Layout(mg.draw(out, legend=False))
        return [lay.text(n) for n in lay.nodes if n.startswith("c")]
    x = mg.Parameter(np.ones(2), name="x")
    assert constant_labels(x * np.array(3.0)) == ["3"]
    assert constant_labels(x * 3.0) == ["3"]


# -- rendering to files -------------------------------------------------------------------------

def _tiny():
    a = mg.Parameter(np.array([1.0, 2.0]), name="a")
    return (a * a).sum()


def _svg_root(text):
    """The parsed SVG (an AssertionError unless it is one)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    assert data.lstrip().startswith((b"<?xml", b"<svg")), data[:80]
    root = ET.fromstring(data)
    assert root.tag == SVG + "svg"
    return root


def _command_in(warning):
    """The render command the fallback warning suggests, as argv (graphviz-pure found here)."""
    match = re.search(r"&& (graphviz-pure [^`]*)`", str(warning.message))
    assert match, str(warning.message)
    argv = shlex.split(match.group(1))
    return [GRAPHVIZ_PURE] + argv[1:]


def test_graphviz_pure_renders_svg_and_png(tmp_path):
    """renderer="graphviz-pure": a parseable SVG with one node per graph node, and a PNG
    (magic bytes, an image of real size), from a Drawing or a Tensor, into a new folder."""
    loss = _tiny()
    result = mg.render(mg.draw(loss), tmp_path / "g.svg", renderer="graphviz-pure")
    assert result == (tmp_path / "g.svg", "graphviz-pure")
    root = _svg_root(result.path.read_bytes())
    assert {"n0", "n1", "n2"} <= {t.text for t in root.iter(SVG + "title")}
    png = mg.render(loss, tmp_path / "new" / "g.PNG", renderer="graphviz-pure")
    data = png.path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 50 and height > 20 and len(data) > 1000


@pytest.mark.skipif(shutil.which("dot") is None, reason="no system Graphviz `dot` installed")
def test_dot_renders_svg(tmp_path):
    """renderer="dot": a parseable SVG, and dot is the first choice when present."""
    result = mg.render(mg.draw(_tiny()), tmp_path / "g.svg", renderer="dot")
    assert result.renderer == "dot" and find_renderer()[0] == "dot"
    _svg_root(result.path.read_bytes())


def test_renderer_none_writes_the_dot_source_and_the_command(tmp_path):
    """renderer="none": the DOT source goes to g.dot, with a warning naming the
    graphviz-pure -Tsvg command; that command, run, makes g.svg."""
    drawing = mg.draw(_tiny())
    with pytest.warns(UserWarning, match=r"graphviz-pure -Tsvg") as record:
        result = mg.render(drawing, tmp_path / "g.svg", renderer="none")
    assert result == (tmp_path / "g.dot", None)
    assert result.path.read_text(encoding="utf-8") == drawing.source
    assert not (tmp_path / "g.svg").exists()
    subprocess.run(_command_in(record[0]), check=True, capture_output=True, cwd=tmp_path)
    _svg_root((tmp_path / "g.svg").read_bytes())


def test_the_suggested_command_works_in_a_folder_with_a_space(tmp_path):
    """The fallback command, run as the warning writes it, renders from "my drawings/"."""
    with pytest.warns(UserWarning) as record:
        mg.render(mg.draw(_tiny()), tmp_path / "my drawings" / "g.svg", renderer="none")
    subprocess.run(_command_in(record[0]), capture_output=True, cwd=tmp_path)
    assert (tmp_path / "my drawings" / "g.svg").is_file()


def test_a_dot_path_gets_the_source(tmp_path):
    """.dot and .gv (any case) write the DOT source, of a Drawing, of a Tensor drawn with
    the options given, or of DOT text; no renderer is involved."""
    loss = _tiny()
    source = mg.draw(loss, legend=False).source
    assert mg.render(mg.draw(loss, legend=False), tmp_path / "a.dot") == (tmp_path / "a.dot",
                                                                          None)
    mg.render(loss, tmp_path / "b.gv", legend=False)
    mg.render(source, tmp_path / "c.DOT")
    for name in ("a.dot", "b.gv", "c.DOT"):
        assert (tmp_path / name).read_text(encoding="utf-8") == source


@pytest.mark.parametrize("name", ["g.pdf", "g", "g.svg.txt"])
def test_an_unknown_extension_is_refused(tmp_path, name):
    """An extension other than .svg, .png, .dot, .gv: ValueError listing them, nothing
    written."""
    with pytest.raises(ValueError, match=r"\.svg, \.png, \.dot"):
        mg.render(mg.draw(_tiny()), tmp_path / name)
    assert not list(tmp_path.iterdir())


def test_an_unknown_renderer_or_a_failing_one_is_reported(tmp_path):
    """renderer="neato": ValueError naming the choices; DOT the renderer rejects:
    RuntimeError with the renderer's own message."""
    with pytest.raises(ValueError, match="graphviz-pure"):
        mg.render(mg.draw(_tiny()), tmp_path / "g.svg", renderer="neato")
    with pytest.raises(RuntimeError, match="graphviz-pure could not render.*syntax error"):
        mg.render("digraph { a -> }", tmp_path / "g.svg", renderer="graphviz-pure")


def test_a_drawing_shows_itself_as_svg():
    """_repr_mimebundle_ (Jupyter) gives the SVG of the drawing."""
    bundle = mg.draw(_tiny())._repr_mimebundle_()
    assert list(bundle) == ["image/svg+xml"]
    _svg_root(bundle["image/svg+xml"])


def test_with_no_renderer_anywhere_everything_falls_back(tmp_path, monkeypatch):
    """Nothing on PATH nor beside Python: find_renderer() and to_svg give None, a drawing
    shows itself as its DOT text, render writes the .dot and warns."""
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    monkeypatch.setattr(render_module, "_beside_python", lambda name: None)
    assert find_renderer() is None and find_renderer("graphviz-pure") is None
    drawing = mg.draw(_tiny())
    assert to_svg(drawing.source) is None
    assert drawing._repr_mimebundle_() == {"text/plain": drawing.source}
    with pytest.warns(UserWarning, match=r"graphviz-pure -Tpng"):
        result = mg.render(drawing, tmp_path / "g.png")
    assert result == (tmp_path / "g.dot", None)
    assert result.path.read_text(encoding="utf-8") == drawing.source


def test_renderers_are_found_in_order_on_path_or_beside_python(monkeypatch):
    """dot first, then graphviz-pure; prefer= picks one; a script installed beside this
    Python (a venv not on PATH) is found without PATH."""
    on_path = {"dot": "/usr/bin/dot", "graphviz-pure": "/opt/bin/graphviz-pure"}
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: on_path.get(name))
    assert find_renderer() == ("dot", "/usr/bin/dot")
    assert find_renderer("graphviz-pure") == ("graphviz-pure", "/opt/bin/graphviz-pure")
    assert find_renderer("none") is None
    script = Path(sysconfig.get_path("scripts"), "graphviz-pure")
    if script.is_file():
        monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
        name, found = find_renderer("graphviz-pure")
        assert name == "graphviz-pure" and Path(found).samefile(script)


def test_render_of_a_drawing_refuses_drawing_options(tmp_path):
    a = mg.Parameter(np.ones(3), name="a")
    drawing = mg.draw((a * 2).sum())
    with pytest.raises(TypeError, match="collapse are options of mg.draw"):
        mg.render(drawing, tmp_path / "x.dot", collapse="step")
