"""What `selinon run` shows while a flow runs.

On a terminal, :class:`GraphProgress` redraws the flow's graph as a list: every node of the flow in the order its
edges name them (sub-flows with their own nodes beneath), each waiting, running, retrying, done or failed.
Elsewhere (a pipe, a log file, CI), :class:`PlainProgress` writes one plain line per change instead, which reads
well in a log and never rewrites what it wrote.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from selinon.executor import FlowRun, NodeRun

#: How each state of a node reads; "waiting" is a node of the graph that has not started (and may never).
WORDS = {
    "scheduled": "scheduled",
    "running": "running",
    "retrying": "retrying",
    "succeeded": "done",
    "failed": "failed",
    "reused": "reused",
}
MARKS = {"waiting": " ", "scheduled": ".", "running": ">", "retrying": "~", "succeeded": "+", "failed": "!"}


def graph_lines(run: FlowRun, indent: str = "") -> Iterator[str]:
    """One line per node of ``run``'s flow, and, beneath a sub-flow, the lines of each of its runs."""
    instances: dict[str, list[NodeRun]] = {}
    for node in run.nodes:
        instances.setdefault(node.name, []).append(node)
    names = list(dict.fromkeys(n for edge in run.flow.edges for n in (*edge.from_, *edge.to)))
    names += sorted(n for n in run.flow.nodes() if n not in names)  # fallbacks
    width = max((len(n) for n in names), default=0)
    yield f"{indent}{run.name}: {run.state}"
    for name in names:
        found = instances.get(name, [])
        yield f"{indent}  {_mark(found)} {name.ljust(width)}  {_summary(found)}"
        for node in found:
            if node.subflow is not None:
                yield from graph_lines(node.subflow, indent + "    ")


def _mark(found: list[NodeRun]) -> str:
    if not found:
        return MARKS["waiting"]
    states = {node.state for node in found}
    for state in ("failed", "retrying", "running", "scheduled"):
        if state in states:
            return MARKS[state]
    return MARKS["succeeded"]


def _summary(found: list[NodeRun]) -> str:
    if not found:
        return "waiting"
    if len(found) == 1:
        return _word(found[0])
    counts = Counter(WORDS.get(node.state, node.state) for node in found)
    return f"{len(found)} runs: " + ", ".join(f"{count} {word}" for word, count in sorted(counts.items()))


def _word(node: NodeRun) -> str:
    word = WORDS.get(node.state, node.state)
    if node.state == "retrying":
        return f"{word} (try {node.tries} failed)"
    if node.state == "running" and node.tries > 1:
        return f"{word} (try {node.tries})"
    if node.state == "succeeded" and node.tries > 1:
        return f"{word} after {node.tries} tries"
    return word


class GraphProgress:
    """The flow's graph, redrawn in place on a terminal as its nodes move."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.drawn = 0

    def __call__(self, root: FlowRun) -> None:
        lines = list(graph_lines(root))
        self.clear()
        self.stream.write("".join(line + "\n" for line in lines))
        self.stream.flush()
        self.drawn = len(lines)

    def clear(self) -> None:
        if self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F\x1b[J")  # up to the first line drawn, and erase to the end
            self.stream.flush()
            self.drawn = 0


class PlainProgress:
    """One line per task whose state changed: ``selinon: FLOW: TASK STATE``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.seen: dict[str, tuple[Any, ...]] = {}

    def __call__(self, root: FlowRun) -> None:
        for node in root.tasks():
            now = (node.state, node.tries)
            if self.seen.get(node.id) != now and node.state != "scheduled":
                self.seen[node.id] = now
                self.stream.write(f"selinon: {node.flow_run.name}: {node.name} {_word(node)}\n")
        self.stream.flush()

    def clear(self) -> None:
        """Nothing to take back: plain lines stay."""
