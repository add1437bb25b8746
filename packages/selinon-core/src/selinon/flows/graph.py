"""The flow graph: tasks, flows and their edges as validated, and the checks that need the whole graph."""

from __future__ import annotations

import graphlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from selinon.config import Configuration, TaskConfig, _suggest, expand
from selinon.errors import ConfigurationError, UnknownFlowError
from selinon.flows.conditions import ALWAYS, Condition
from selinon.flows.migrations import Migrations


@dataclass(frozen=True)
class TaskSpec:
    """What the runtime needs of one ``tasks:`` entry besides its storage keys."""

    config: TaskConfig
    import_path: str | None
    classname: str
    max_retry: int = 0
    retry_countdown: float = 0.0
    output_schema: str | dict[str, Any] | None = None
    #: Seconds between the starts of two instances of this task (``throttling:``); None when not throttled.
    throttle: float | None = None
    #: ``selective_run_function:``, called in selective runs to reuse an earlier result instead of running.
    selective_run: Callable[..., Any] | None = None
    #: The Celery queue (``queue:``), environment references not expanded yet: they are expanded when sending.
    queue: str | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def where(self) -> str:
        return f"{self.config.source}: task {self.name!r}"


@dataclass(frozen=True)
class Foreach:
    """``foreach:`` of an edge: ``function(storage_pool, node_args)`` returns the items, one start of each
    destination per item; with ``propagate_result`` each item becomes the node arguments of the sub-flows."""

    function: Callable[..., Any]
    propagate_result: bool = False
    text: str = ""


@dataclass(frozen=True)
class Edge:
    from_: tuple[str, ...]
    to: tuple[str, ...]
    condition: Condition = ALWAYS
    foreach: Foreach | None = None
    #: ``selective:`` of an edge to one sub-flow: it runs selectively (``task_names``, ``follow_subflows``,
    #: ``run_subsequent``, the arguments of :func:`selinon.flows.dispatcher.selective_run`).
    selective: dict[str, Any] | None = None


@dataclass(frozen=True)
class Failure:
    """One ``failures:`` entry: when exactly ``nodes`` failed, start ``fallback`` (``True``: only mark them handled)."""

    nodes: frozenset[str]
    fallback: tuple[str, ...] | bool
    condition: Condition = ALWAYS


@dataclass(frozen=True)
class Sampling:
    """``sampling:``: the strategy that gives the seconds until a dispatcher looks at its flow again."""

    name: str
    function: Callable[..., Any]
    args: dict[str, Any] = field(default_factory=dict)

    def next_retry(self, status: dict[str, Any]) -> float | None:
        return self.function(status, **self.args)  # type: ignore[no-any-return]


#: A ``propagate_*`` option: True, False, or the names of the nodes it applies to.
Propagate = bool | tuple[str, ...]


def covers(option: Propagate, name: str) -> bool:
    return option if isinstance(option, bool) else name in option


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
    #: The Celery queue of the flow's dispatcher, environment references not expanded yet (see TaskSpec.queue).
    queue: str | None = None
    failures: tuple[Failure, ...] = ()
    #: Nodes whose failure fails the flow at once, without waiting for running nodes or trying fallbacks.
    eager_failures: Propagate = False
    #: Nodes started without the flow waiting for them.
    nowait: frozenset[str] = frozenset()
    propagate_parent: Propagate = False
    propagate_parent_failures: Propagate = False
    propagate_finished: Propagate = False
    propagate_compound_finished: Propagate = False
    propagate_failures: Propagate = False
    propagate_compound_failures: Propagate = False
    #: Seconds between the starts of two runs of this flow as a sub-flow (``throttling:``).
    throttle: float | None = None
    sampling: Sampling | None = None
    #: ``cache:``: the cache of parent results its dispatcher reads for conditions and foreach functions.
    cache: Any = None

    @property
    def where(self) -> str:
        return f"{self.source}: flow {self.name!r}"

    def nodes(self) -> set[str]:
        """Every node of the flow, fallbacks included."""
        found = {name for edge in self.edges for name in (*edge.from_, *edge.to)}
        for failure in self.failures:
            found |= failure.nodes
            if not isinstance(failure.fallback, bool):
                found.update(failure.fallback)
        return found

    def propagates_to(self, subflow: str) -> bool:
        return covers(self.propagate_node_args, subflow)


@dataclass(frozen=True)
class System:
    """Storages, tasks and flows of a set of configuration files, all validated."""

    configuration: Configuration
    tasks: dict[str, TaskSpec] = field(default_factory=dict)
    flows: dict[str, Flow] = field(default_factory=dict)
    #: Where ``{NAME}`` references in queue names are looked up, when a message is sent.
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False)
    #: ``global: migration_dir``: how dispatcher states of earlier configurations are brought to this one.
    migrations: Migrations = field(default_factory=Migrations)
    #: Flows that would run forever, and why: they load (to be drawn and inspected) but are not started.
    endless: dict[str, str] = field(default_factory=dict)

    def task_queue(self, name: str) -> str | None:
        """The Celery queue of task ``name``: its ``queue:``, else ``global: default_task_queue``, expanded."""
        task = self.tasks[name]
        if task.queue is not None:
            return str(expand(task.queue, self.environ, f"{task.where}: queue"))
        return self._default("default_task_queue")

    def flow_queue(self, name: str) -> str | None:
        """The queue of the dispatcher of flow ``name``: its ``queue:``, else ``global: default_dispatcher_queue``."""
        flow = self.flow(name)
        if flow.queue is not None:
            return str(expand(flow.queue, self.environ, f"{flow.where}: queue"))
        return self._default("default_dispatcher_queue")

    def _default(self, key: str) -> str | None:
        options = self.configuration.global_options
        value = getattr(options, key)
        return None if value is None else str(expand(value, self.environ, options.where(key)))

    def check_startable(self, name: str) -> None:
        """Refuse to start a flow that could never end (it, or a flow it can start, loops unconditionally); such
        flows still load, so that they can be drawn and inspected, as Selinon 1.x's documentation draws some."""
        pending, seen = [name], set()
        while pending:
            current = pending.pop()
            seen.add(current)
            if current in self.endless:
                raise ConfigurationError(f"flow {name!r} cannot be started: {self.endless[current]}")
            pending.extend(n for n in self.flow(current).nodes() if n in self.flows and n not in seen)

    def flow(self, name: str) -> Flow:
        try:
            return self.flows[name]
        except KeyError:
            defined = f"defined flows: {', '.join(self.flows) or 'none'}"
            raise UnknownFlowError(f"no flow named {name!r}; {_suggest(name, self.flows, defined)}") from None


def endless_cycle(flow: Flow) -> str | None:
    """Why the flow would run forever, if it would: a cycle whose edges all fire unconditionally."""
    graph: dict[str, set[str]] = {}
    for edge in flow.edges:
        if edge.condition.always_true:
            for source in edge.from_:
                for target in edge.to:
                    graph.setdefault(target, set()).add(source)
    cycle = find_cycle(graph)
    if cycle:
        return (
            f"{flow.where}: cycle {cycle} has no way out (no edge on it has a condition); "
            "add a condition to one of its edges"
        )
    return None


def endless_recursion(flows: dict[str, Flow]) -> dict[str, str]:
    """Flows may start each other (recursive sub-flows), but a loop of unconditional starts would never end: each
    flow of such a loop, and why."""
    graph: dict[str, set[str]] = {name: set() for name in flows}
    for name, flow in flows.items():
        for node in surely_started(flow) & set(flows):
            graph[node].add(name)
    cycle = find_cycle(graph)
    if not cycle:
        return {}
    names = cycle.split(" -> ")
    why = (
        f"{flows[names[0]].where}: flows start each other in a loop with no way out ({cycle}: every run starts the "
        "next one unconditionally); add a condition to one of the edges that starts a flow of that loop"
    )
    return dict.fromkeys(names, why)


def surely_started(flow: Flow) -> set[str]:
    """The nodes every run of the flow starts: reached from its start by edges without a condition or foreach."""
    reached: set[str] = set()
    changed = True
    while changed:
        changed = False
        for edge in flow.edges:
            plain = edge.condition.always_true and edge.foreach is None
            if plain and set(edge.from_) <= reached and not set(edge.to) <= reached:
                reached.update(edge.to)
                changed = True
    return reached


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
