"""The flow graph: tasks, flows and their edges as validated, and the checks that need the whole graph."""

from __future__ import annotations

import graphlib
from dataclasses import dataclass, field
from typing import Any

from selinon.config import Configuration, TaskConfig, _suggest
from selinon.errors import ConfigurationError
from selinon.flows.conditions import ALWAYS, Condition


@dataclass(frozen=True)
class TaskSpec:
    """What the runtime needs of one ``tasks:`` entry besides its storage keys."""

    config: TaskConfig
    import_path: str | None
    classname: str
    max_retry: int = 0
    retry_countdown: float = 0.0
    output_schema: str | dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def where(self) -> str:
        return f"{self.config.source}: task {self.name!r}"


@dataclass(frozen=True)
class Edge:
    from_: tuple[str, ...]
    to: tuple[str, ...]
    condition: Condition = ALWAYS


@dataclass(frozen=True)
class Flow:
    name: str
    edges: tuple[Edge, ...]
    node_args_from_first: bool = False
    #: True, False, or the names of the sub-flows that receive the flow's node arguments.
    propagate_node_args: bool | tuple[str, ...] = False
    max_retry: int = 0
    retry_countdown: float = 0.0
    source: str = "<configuration>"
    #: The Celery queue of the flow's dispatcher (environment references expanded); unused by the local executor.
    queue: str | None = None

    @property
    def where(self) -> str:
        return f"{self.source}: flow {self.name!r}"

    def nodes(self) -> set[str]:
        return {name for edge in self.edges for name in (*edge.from_, *edge.to)}

    def propagates_to(self, subflow: str) -> bool:
        if isinstance(self.propagate_node_args, bool):
            return self.propagate_node_args
        return subflow in self.propagate_node_args


@dataclass(frozen=True)
class System:
    """Storages, tasks and flows of a set of configuration files, all validated."""

    configuration: Configuration
    tasks: dict[str, TaskSpec] = field(default_factory=dict)
    flows: dict[str, Flow] = field(default_factory=dict)

    def flow(self, name: str) -> Flow:
        try:
            return self.flows[name]
        except KeyError:
            defined = f"defined flows: {', '.join(self.flows) or 'none'}"
            raise ConfigurationError(f"no flow named {name!r}; {_suggest(name, self.flows, defined)}") from None


def check_cycles(flow: Flow) -> None:
    """A cycle whose edges all fire unconditionally would run forever: one of them needs a condition."""
    graph: dict[str, set[str]] = {}
    for edge in flow.edges:
        if edge.condition.always_true:
            for source in edge.from_:
                for target in edge.to:
                    graph.setdefault(target, set()).add(source)
    cycle = find_cycle(graph)
    if cycle:
        raise ConfigurationError(
            f"{flow.where}: cycle {cycle} has no way out (no edge on it has a condition); "
            "add a condition to one of its edges"
        )


def check_recursion(flows: dict[str, Flow]) -> None:
    graph = {name: {node for node in flow.nodes() if node in flows} for name, flow in flows.items()}
    cycle = find_cycle(graph)
    if cycle:
        flow = flows[cycle.split(" -> ")[0]]
        raise ConfigurationError(
            f"{flow.where}: flows run each other in a loop ({cycle}); recursive sub-flows are not supported"
        )


def find_cycle(predecessors: dict[str, set[str]]) -> str | None:
    """A cycle of the graph as "A -> B -> A", starting at its first name in sorted order; None if it has none."""
    graph = {node: sorted(predecessors[node]) for node in sorted(predecessors)}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        nodes = exc.args[1][:-1]
        start = nodes.index(min(nodes))
        nodes = nodes[start:] + nodes[:start]
        return " -> ".join([*nodes, nodes[0]])
    return None
