"""Drawing flows: each flow as a graph of its tasks, sub-flows, edges and fallbacks.

A flow is first turned into a :class:`Drawing` (nodes and lines, with what each one means), which is then written
as Graphviz DOT, rendered to SVG or PNG by Graphviz's ``dot`` through the optional ``graphviz`` package
(``pip install 'selinon-core[plot]'``), or written as Mermaid text. A Selinon edge from several nodes, or to
several, is drawn through a small junction point, so that its condition is written once.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from selinon.flows.conditions import All, AnyOf, Condition, Leaf, Not
from selinon.flows.graph import Edge, Flow, System

FORMATS = ("svg", "png", "dot", "mermaid")
EXTENSIONS = {"svg": "svg", "png": "png", "dot": "dot", "mermaid": "mmd"}
DIRECTIONS = ("TB", "LR")
HOW_TO_GET_PICTURES = (
    "pip install 'selinon-core[plot]' and install Graphviz's dot program (apt-get install graphviz, "
    "brew install graphviz, or https://graphviz.org/download/)"
)
#: Characters per line of a condition label before it is wrapped.
WIDTH = 44

FONT = "Helvetica,Arial,sans-serif"
#: How each kind of node and line looks: Graphviz attributes, and the colours the Mermaid and legend forms reuse.
NODE_STYLE: dict[str, dict[str, str]] = {
    "task": {"shape": "box", "style": "rounded,filled", "fillcolor": "#e3eefb", "color": "#2b6cb0"},
    "flow": {"shape": "box3d", "style": "filled", "fillcolor": "#fdecc8", "color": "#b7791f"},
    "start": {"shape": "circle", "style": "filled", "fillcolor": "#2f855a", "color": "#2f855a",
              "fontcolor": "white", "fontsize": "10", "width": "0.5", "fixedsize": "true"},
    "junction": {"shape": "point", "width": "0.09", "color": "#4a5568"},
    "failure": {"shape": "diamond", "style": "filled", "fillcolor": "#fde2e2", "color": "#c53030",
                "fontcolor": "#9b2c2c", "fontsize": "10", "margin": "0.02,0.02"},
    "handled": {"shape": "box", "style": "dashed,rounded", "color": "#c53030", "fontcolor": "#9b2c2c",
                "fontsize": "10"},
}  # fmt: skip
LINE_STYLE: dict[str, dict[str, str]] = {
    "edge": {"color": "#4a5568"},
    "foreach": {"color": "#2b6cb0", "penwidth": "2.2", "fontcolor": "#2b6cb0"},
    "failure": {"color": "#c53030", "style": "dashed", "fontcolor": "#9b2c2c"},
    "fallback": {"color": "#c53030", "style": "dashed", "fontcolor": "#9b2c2c"},
}
#: What the legend says of each kind, in its order; a drawing lists the kinds it uses.
LEGEND = {
    "task": "task",
    "flow": "sub-flow (a flow run of its own)",
    "nowait": "nowait: the flow does not wait for it",
    "edge": "edge; its label is the condition",
    "foreach": "foreach: one start per item",
    "failure": "failure, and the fallback it starts",
}


@dataclass
class Node:
    id: str
    kind: str  # task, flow, start, junction, failure, handled
    label: list[str] = field(default_factory=list)
    nowait: bool = False


@dataclass
class Line:
    tail: str
    head: str
    kind: str  # edge, foreach, failure, fallback
    label: list[str] = field(default_factory=list)
    arrow: bool = True


@dataclass
class Drawing:
    """One flow as nodes and lines; ids of the flow's own nodes are their names."""

    flow: str
    nodes: dict[str, Node] = field(default_factory=dict)
    lines: list[Line] = field(default_factory=list)

    def legend(self) -> list[str]:
        """The legend's entries this drawing uses."""
        used = {node.kind for node in self.nodes.values()} | {line.kind for line in self.lines}
        used |= {"nowait"} if any(node.nowait for node in self.nodes.values()) else set()
        used |= {"failure"} if "fallback" in used or "handled" in used else set()
        return [kind for kind in LEGEND if kind in used]


# -- from a flow to a drawing -----------------------------------------------------------------------------------


def drawing(system: System, flow: Flow) -> Drawing:
    """The drawing of ``flow``: its start, nodes, edges (conditions, foreach, selective runs) and failures."""
    found = Drawing(flow.name)
    found.nodes["(start)"] = Node("(start)", "start", ["start"])
    for name in sorted(flow.nodes()):
        kind = "flow" if name in system.flows else "task"
        nowait = name in flow.nowait
        found.nodes[name] = Node(name, kind, [name, "(nowait)"] if nowait else [name], nowait)
    for index, edge in enumerate(flow.edges):
        _edge(found, index, edge)
    for index, failure in enumerate(flow.failures):
        point = f"(failure {index})"
        condition = [] if failure.condition.always_true else condition_lines(failure.condition)
        condition[:1] = [f"if {line}" for line in condition[:1]]
        fallback = failure.fallback
        handled = isinstance(fallback, bool)  # `fallback: true`: marked handled, nothing runs
        targets = [(f"(handled {index})", 1)] if isinstance(fallback, bool) else _counted(fallback)
        on_line = len(targets) == 1  # the condition on the one line to the fallback, else in the node
        found.nodes[point] = Node(point, "failure", ["fails"] if on_line or not condition else ["fails", *condition])
        for name in sorted(failure.nodes):
            found.lines.append(Line(name, point, "failure", arrow=False))
        if handled:
            found.nodes[targets[0][0]] = Node(targets[0][0], "handled", ["handled", "(nothing runs)"])
        for name, count in targets:
            label = (condition if on_line else []) + ([f"×{count}"] if count > 1 else [])
            found.lines.append(Line(point, name, "fallback", label))
    return found


def _edge(found: Drawing, index: int, edge: Edge) -> None:
    sources = list(edge.from_) or ["(start)"]
    label = edge_label(edge)
    kind = "edge" if edge.foreach is None else "foreach"
    targets = _counted(edge.to)
    if len(sources) == 1 and len(targets) == 1:
        name, count = targets[0]
        found.lines.append(Line(sources[0], name, kind, label + ([f"×{count}"] if count > 1 else [])))
        return
    point = f"(edge {index})"
    found.nodes[point] = Node(point, "junction")
    for source in sources:  # the label on the one line into the junction, or on the one line out of it
        found.lines.append(Line(source, point, kind, label if len(sources) == 1 else [], arrow=False))
    for name, count in targets:
        text = (label if len(sources) > 1 and len(targets) == 1 else []) + ([f"×{count}"] if count > 1 else [])
        found.lines.append(Line(point, name, kind, text))
    if len(sources) > 1 and len(targets) > 1 and label:
        found.nodes[point].label = label  # written beside the point


def _counted(names: Iterable[str]) -> list[tuple[str, int]]:
    """Each name once, with how often it is listed (a name listed twice starts twice, in parallel)."""
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return list(counts.items())


def edge_label(edge: Edge) -> list[str]:
    """The lines written on an edge: its foreach function, selective run and condition."""
    lines = []
    if edge.foreach is not None:
        lines.append(f"foreach {edge.foreach.text}")
        if edge.foreach.propagate_result:
            lines.append("(each item: the node arguments)")
    if edge.selective is not None:
        lines.append(f"selective: {', '.join(edge.selective['task_names'])}")
        if edge.selective["follow_subflows"]:
            lines.append("(follows sub-flows)")
        if edge.selective["run_subsequent"]:
            lines.append("(runs what follows)")
    if not edge.condition.always_true:
        lines += condition_lines(edge.condition, show_node=len(edge.from_) > 1)
    return lines


def condition_lines(condition: Condition, show_node: bool = False, width: int = WIDTH) -> list[str]:
    """The condition's short text, wrapped at ``and``/``or`` parts and arguments to lines of about ``width``."""
    return _wrap(condition, show_node, width, "")


def _wrap(condition: Condition, show_node: bool, width: int, indent: str) -> list[str]:
    text = condition.text(show_node)
    if len(indent) + len(text) <= width:
        return [indent + text]
    if isinstance(condition, All | AnyOf):
        lines = [f"{indent}{'and' if isinstance(condition, All) else 'or'}("]
        for number, part in enumerate(condition.parts, 1):
            inner = _wrap(part, show_node, width, indent + "  ")
            inner[-1] += "," if number < len(condition.parts) else ")"
            lines += inner
        return lines
    if isinstance(condition, Not):
        inner = _wrap(condition.part, show_node, width, indent + "  ")
        inner[-1] += ")"
        return [f"{indent}not(", *inner]
    assert isinstance(condition, Leaf)
    arguments = condition.text(show_node)[len(condition.name) + 1 : -1].split(", ") if condition.args else []
    lines, current = [], f"{indent}{condition.name}("
    for number, argument in enumerate(arguments):
        piece = argument + ("," if number < len(arguments) - 1 else ")")
        if current.endswith("(") or len(current) + 1 + len(piece) <= width:
            current += ("" if current.endswith("(") else " ") + piece
        else:
            lines.append(current)
            current = f"{indent}  {piece}"
    return [*lines, current if arguments else current + ")"]


# -- DOT ---------------------------------------------------------------------------------------------------------


class Html(str):
    """A Graphviz HTML-like label, written between ``<`` and ``>`` instead of quotes."""


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _text(lines: Sequence[str], left: bool) -> str:
    """Lines as a DOT label (escaped, not quoted): left-justified lines end with ``\\l``; Graphviz reads
    ``&name;`` entities in labels too, so ``&`` is written as one."""
    end = "\\l" if left else "\\n"
    escaped = [_escape(line).replace("&", "&amp;") for line in lines]
    return end.join(escaped) + (end if left and escaped else "")


def _safe_id(name: str) -> str:
    """A node id that the graphviz package does not read as ``node:port``."""
    return name.replace(":", "\u2236")


def graph_attributes(drawing: Drawing, direction: str) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Attributes of the graph, and defaults of its nodes and lines."""
    graph = {
        "rankdir": direction,
        "label": f"flow {drawing.flow}",
        "labelloc": "t",
        "fontname": FONT,
        "fontsize": "16",
        "nodesep": "0.45",
        "ranksep": "0.5",
        "pad": "0.3",
        "newrank": "true",
    }
    node = {"fontname": FONT, "fontsize": "12", "margin": "0.15,0.06"}
    edge = {"fontname": FONT, "fontsize": "10", "arrowsize": "0.7"}
    return graph, node, edge


def node_attributes(node: Node) -> dict[str, str]:
    found = dict(NODE_STYLE[node.kind])
    if node.kind == "junction":
        if node.label:
            found["xlabel"] = _text(node.label, left=True)
            found["fontsize"] = "10"
        return found
    found["label"] = _text(node.label, left=False)
    if node.kind == "failure" and len(node.label) > 1:  # a condition: a diamond would grow too large
        found.update(shape="box", style="rounded,filled")
    if node.nowait:
        found["style"] += ",dashed"
    return found


def line_attributes(line: Line) -> dict[str, str]:
    found = dict(LINE_STYLE[line.kind])
    if line.label:
        found["label"] = _text(line.label, left=True)
    if not line.arrow:
        found["arrowhead"] = "none"
    return found


def legend_label(drawing: Drawing) -> Html | None:
    """An HTML-like table that explains the node shapes and line styles the drawing uses."""
    rows = []
    for kind in drawing.legend():
        if kind in ("task", "flow", "nowait"):
            style = NODE_STYLE["task" if kind == "nowait" else kind]
            sample = "name"
            border = ' STYLE="dashed"' if kind == "nowait" else ""
            cell = f'<TD BGCOLOR="{style["fillcolor"]}" COLOR="{style["color"]}" BORDER="1"{border}>{sample}</TD>'
        else:
            style = LINE_STYLE[kind]
            glyph = "╌╌╌▶" if style.get("style") == "dashed" else ("━━━▶" if kind == "foreach" else "───▶")
            cell = f'<TD><FONT COLOR="{style["color"]}">{glyph}</FONT></TD>'
        rows.append(f'<TR>{cell}<TD ALIGN="LEFT">{_html(LEGEND[kind])}</TD></TR>')
    if not rows:
        return None
    table = '<TABLE BORDER="1" COLOR="#a0aec0" CELLBORDER="0" CELLSPACING="3" CELLPADDING="3">'
    return Html(f'{table}<TR><TD COLSPAN="2"><B>legend</B></TD></TR>{"".join(rows)}</TABLE>')


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


LEGEND_ID = "(legend)"


def dot_source(drawing: Drawing, direction: str = "TB", legend: bool = True) -> str:
    """The drawing as DOT text: through the graphviz package when it is installed, else written here."""
    graph = _graphviz_graph(drawing, direction, legend)
    return str(graph.source) if graph is not None else _dot_text(drawing, direction, legend)


def _dot_text(drawing: Drawing, direction: str, legend: bool) -> str:
    def attributes(values: dict[str, str]) -> str:
        return ", ".join(
            f"{key}=<{value}>" if isinstance(value, Html) else f'{key}="{value}"' for key, value in values.items()
        )

    graph, node_defaults, edge_defaults = graph_attributes(drawing, direction)
    out = [f'digraph "{_escape(drawing.flow)}" {{']
    out.append(f"  graph [{attributes({k: _escape(v) for k, v in graph.items()})}];")
    out.append(f"  node [{attributes(node_defaults)}];")
    out.append(f"  edge [{attributes(edge_defaults)}];")
    for node in drawing.nodes.values():
        out.append(f'  "{_escape(_safe_id(node.id))}" [{attributes(node_attributes(node))}];')
    table = legend_label(drawing) if legend else None
    if table is not None:
        out.append(f'  "{LEGEND_ID}" [shape=plaintext, margin=0, label=<{table}>];')
    for line in drawing.lines:
        tail, head = _escape(_safe_id(line.tail)), _escape(_safe_id(line.head))
        out.append(f'  "{tail}" -> "{head}" [{attributes(line_attributes(line))}];')
    out.append("}")
    return "\n".join(out) + "\n"


def _graphviz() -> Any:
    """The graphviz package, or None when it is not installed (it is the optional `plot` extra)."""
    try:
        return importlib.import_module("graphviz")
    except ImportError:
        return None


def _graphviz_graph(drawing: Drawing, direction: str, legend: bool) -> Any:
    graphviz = _graphviz()
    if graphviz is None:
        return None

    def values(attributes: dict[str, str]) -> dict[str, Any]:
        # Already escaped for DOT: the package must neither read them as HTML nor escape them again.
        return {k: graphviz.nohtml(v) if not isinstance(v, Html) else f"<{v}>" for k, v in attributes.items()}

    graph, node_defaults, edge_defaults = graph_attributes(drawing, direction)
    found = graphviz.Digraph(
        name=drawing.flow,
        graph_attr={k: graphviz.nohtml(_escape(v)) for k, v in graph.items()},
        node_attr=node_defaults,
        edge_attr=edge_defaults,
    )
    for node in drawing.nodes.values():
        found.node(_safe_id(node.id), **values(node_attributes(node)))
    table = legend_label(drawing) if legend else None
    if table is not None:
        found.node(LEGEND_ID, shape="plaintext", margin="0", label=f"<{table}>")
    for line in drawing.lines:
        found.edge(_safe_id(line.tail), _safe_id(line.head), **values(line_attributes(line)))
    return found


class CannotRender(Exception):
    """SVG or PNG cannot be made here: the graphviz package or Graphviz's dot program is missing."""


def render(drawing: Drawing, image_format: str, direction: str = "TB", legend: bool = True) -> bytes:
    """The drawing as an SVG or PNG image; :class:`CannotRender` says what is missing."""
    graph = _graphviz_graph(drawing, direction, legend)
    if graph is None:
        raise CannotRender("the graphviz Python package is not installed")
    graphviz = _graphviz()
    try:
        return bytes(graph.pipe(format=image_format))
    except graphviz.ExecutableNotFound:
        raise CannotRender("Graphviz's dot program is not on the PATH") from None


# -- Mermaid -----------------------------------------------------------------------------------------------------


MERMAID_SHAPES = {
    "task": ('("', '")'),
    "flow": ('[["', '"]]'),
    "start": ('(("', '"))'),
    "junction": ('((" "))', ""),
    "failure": ('{"', '"}'),
    "handled": ('["', '"]'),
}
MERMAID_ARROWS = {
    ("edge", True): "-->",
    ("edge", False): "---",
    ("foreach", True): "==>",
    ("foreach", False): "===",
    ("failure", True): "-.->",
    ("failure", False): "-.-",
    ("fallback", True): "-.->",
    ("fallback", False): "-.-",
}


def _mermaid_text(lines: Sequence[str]) -> str:
    """Lines as the inside of a quoted Mermaid label."""
    escaped = [re.sub(r"[\"#<>&]", lambda m: f"#{ord(m[0])};", line) for line in lines]
    return "<br/>".join(escaped)


def mermaid_source(drawing: Drawing, direction: str = "TB") -> str:
    """The drawing as a Mermaid flowchart (GitHub and many editors show it without Graphviz)."""
    ids = {node_id: f"n{number}" for number, node_id in enumerate(drawing.nodes)}
    out = [f"%% flow {drawing.flow}", f"flowchart {direction}"]
    for node_id, node in drawing.nodes.items():
        opening, closing = MERMAID_SHAPES[node.kind]
        if node.kind == "junction":
            out.append(f"  {ids[node_id]}{opening}")
        else:
            out.append(f"  {ids[node_id]}{opening}{_mermaid_text(node.label)}{closing}")
    for line in drawing.lines:
        arrow = MERMAID_ARROWS[line.kind, line.arrow]
        label = f'|"{_mermaid_text(line.label)}"|' if line.label else ""
        out.append(f"  {ids[line.tail]} {arrow}{label} {ids[line.head]}")
    for kind, style in NODE_STYLE.items():
        members = [ids[i] for i, node in drawing.nodes.items() if node.kind == kind]
        if members and "fillcolor" in style:
            text = f",color:{style['fontcolor']}" if "fontcolor" in style else ""
            out.append(f"  classDef {kind} fill:{style['fillcolor']},stroke:{style['color']}{text}")
            out.append(f"  class {','.join(members)} {kind}")
    nowait = [ids[i] for i, node in drawing.nodes.items() if node.nowait]
    if nowait:
        out.append("  classDef nowait stroke-dasharray:5 4")
        out.append(f"  class {','.join(nowait)} nowait")
    for number, line in enumerate(drawing.lines):
        if line.kind != "edge":
            out.append(f"  linkStyle {number} stroke:{LINE_STYLE[line.kind]['color']}")
    return "\n".join(out) + "\n"
