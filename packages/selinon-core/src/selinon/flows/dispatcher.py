"""The dispatcher's decisions for one flow run, whoever runs it.

A :class:`FlowState` is one run of one flow as plain JSON data: the nodes it started and how they ended, the edge
firings done and still to do, the failures not handled yet. Its driver (the local executor, or a Celery
dispatcher that carries the state in its own messages) reports how nodes ended and starts what
:meth:`FlowState.advance` returns; every decision of Selinon's flow language is taken here: edges, conditions,
``foreach``, ``nowait``, fallbacks and ``eager_failures``, the ``propagate_*`` options, throttling, selective runs
and sampling. A sub-flow is a run of its own; its parent sees it as one node that ends with a summary of its nodes.
"""

from __future__ import annotations

import copy
import functools
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from selinon import events, runtime, strategies
from selinon.errors import SelectiveNoPathError
from selinon.flows import Flow, System
from selinon.flows.graph import covers
from selinon.flows.migrations import Migrated, MigrationError, Taint, migrate_selective, migrate_state, skew, version_of
from selinon.pool import StoragePool

log = logging.getLogger(__name__)

_NAMESPACE = uuid.UUID("5e1a0c2e-7d3b-4c1e-9f0a-2b6d8e4f1a37")
ENDED = ("succeeded", "failed")
_UNSET: Any = object()

#: ``throttle(key, seconds)``: the seconds to wait before a start, so that starts of ``key`` are that far apart.
Throttle = Callable[[str, float], float]


@dataclass
class Start:
    """A node to start: a task (its envelope gets ``node_args`` and ``parent``) or a sub-flow (a run of its own)."""

    name: str
    id: str
    kind: str  # "task" or "flow"
    node_args: Any
    parent: dict[str, Any]
    countdown: float | None = None
    #: For a sub-flow run selectively: its share of the selective run.
    selective: dict[str, Any] | None = None
    #: The starting flow's event context (selinon.events), for the node's own start event; empty without observers.
    context: dict[str, str] = field(default_factory=dict)


class LocalThrottle:
    """Throttling within this process: each key's next start is at least its interval after the previous one."""

    def __init__(self) -> None:
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, key: str, interval: float) -> float:
        now = time.monotonic()
        with self._lock:
            start = max(now, self._next.get(key, now))
            self._next[key] = start + interval
        return start - now


class FlowState:
    """One run of ``flow`` between two looks of its dispatcher; :meth:`dump` gives it back as JSON data."""

    def __init__(
        self,
        system: System,
        flow: Flow,
        flow_id: str,
        node_args: Any,
        parent: dict[str, Any] | None = None,
        selective: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        context: dict[str, str] | None = None,
        executor: str = "local",
    ) -> None:
        self.system = system
        self.flow = flow
        self.flow_id = flow_id
        self.node_args = node_args
        #: What the flow's starting nodes get as parents (``propagate_parent`` of the flow that started it).
        self.parent = parent or {}
        data = copy.deepcopy(data or {})
        data, self.selective, taints = self._migrate(data, selective)
        #: The migration this state is at (``selinon.flows.migrations``): the deployment's, once it is brought up.
        self.migration_version: int = system.migrations.version
        #: How often a tainted-flow strategy RETRY started the run again (node ids differ from one start to the next).
        self.restarts: int = data.get("restarts", 0)
        #: With ``node_args_from_first``: the node arguments the flow was started with, for such a restart.
        self.first_node_args: Any = data.get("first_node_args", _UNSET)
        self.started: bool = data.get("started", False)
        #: Every node started, in start order: name, id, kind, parent, state, and what its driver reported.
        self.nodes: list[dict[str, Any]] = data.get("nodes", [])
        #: Succeeded node instances whose edges were considered, by name.
        self.finished: dict[str, list[str]] = data.get("finished", {})
        #: Failed node instances no fallback has handled yet, by name.
        self.failed: dict[str, list[str]] = data.get("failed", {})
        self.fired: set[tuple[int, tuple[str, ...]]] = {(i, tuple(ids)) for i, ids in data.get("fired", [])}
        #: Edge firings whose condition is still to be evaluated (one that could not read a parent result).
        self.pending: list[tuple[int, tuple[str, ...]]] = [(i, tuple(ids)) for i, ids in data.get("pending", [])]
        self.retries: int = data.get("retries", 0)
        self.error: str | None = data.get("error")
        self.eager: bool = data.get("eager", False)
        self.fallbacks_run: int = data.get("fallbacks_run", 0)
        self.previous_retry: float | None = data.get("previous_retry")
        #: Event context (selinon.events): given by whoever started the flow until the flow starts, then its own.
        self.context: dict[str, str] = data.get("context") or dict(context or {})
        #: When the flow started (time.time()) and how many looks its dispatcher took, for events.
        self.started_at: float | None = data.get("started_at")
        self.passes: int = data.get("passes", 0)
        self.executor = executor
        self._end_told = False
        self._hooks: events.Observers | None = None
        #: Edges whose condition held at least once (a migration that removes one taints the run).
        self.triggered: set[int] = set(data["triggered"]) if "triggered" in data else {i for i, _ in self.fired}
        self._by_id = {node["id"]: node for node in self.nodes}
        self._new_started: list[str] = []
        self._new_fallbacks: list[str] = []
        self._new_finished: list[str] = []
        self._tainted(taints)

    def _migrate(
        self, data: dict[str, Any], selective: dict[str, Any] | None
    ) -> tuple[dict[str, Any], dict[str, Any] | None, Migrated]:
        """Bring a state and its selective run written under earlier migrations to this configuration; one written
        under later ones raises MigrationSkew (its driver hands it to a worker that has them)."""
        found = self.system.migrations
        what = f"flow {self.flow.name!r} ({self.flow_id})"
        version = version_of(data, selective, found.version)
        if selective is not None:
            at = int(selective.get("migration_version", 0))
            if at > found.version:
                raise skew(f"{what}: its selective run", at, found)
            if at < found.version:
                selective = migrate_selective(found, selective, at)
        if version > found.version:
            raise skew(what, version, found)
        if version == found.version or not data:
            return data, selective, Migrated(data)
        try:
            migrated = migrate_state(found, self.flow, data, version)
        except MigrationError as exc:
            migrated = Migrated(data)
            migrated.taints.append(Taint(found.version, "FAIL", f"it cannot be migrated: {exc}"))
            return data, selective, migrated
        log.info("%s: migrated from migration %d to %d", what, version, found.version)
        return migrated.data, selective, migrated

    def _tainted(self, migrated: Migrated) -> None:
        """Apply the tainted-flow strategy of the migrations that tainted the run (the strongest of them)."""
        strategy = migrated.strategy
        if strategy is None:
            return
        why = "; ".join(f"{taint.reason} ({taint.strategy})" for taint in migrated.taints)
        what = f"flow {self.flow.name!r} ({self.flow_id}) is tainted by migrations: {why}"
        if strategy == "IGNORE":
            log.warning("%s; it goes on", what)
        elif strategy == "RETRY":
            log.warning("%s; it starts again under the current configuration", what)
            self._restart()
        else:
            self.eager = True  # as 1.x: failed at once; what was started already still runs
            self.fail(what)

    def _restart(self) -> None:
        """Start the run again from nothing, but its dispatcher retries; nodes get new ids, so nothing is reused."""
        if self.first_node_args is not _UNSET:
            self.node_args = self.first_node_args
        self.first_node_args = _UNSET
        self.restarts += 1
        self.started, self.nodes, self.finished, self.failed = False, [], {}, {}
        self.fired, self.pending, self.triggered = set(), [], set()
        self.error, self.eager, self.fallbacks_run, self.previous_retry = None, False, 0, None
        self._by_id = {}

    def dump(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "nodes": self.nodes,
            "finished": self.finished,
            "failed": self.failed,
            "fired": [[i, list(ids)] for i, ids in sorted(self.fired)],
            "pending": [[i, list(ids)] for i, ids in self.pending],
            "retries": self.retries,
            "error": self.error,
            "eager": self.eager,
            "fallbacks_run": self.fallbacks_run,
            "previous_retry": self.previous_retry,
            **({"context": self.context} if self.context else {}),
            **({"started_at": self.started_at} if self.started_at is not None else {}),
            **({"passes": self.passes} if self.passes else {}),
            "triggered": sorted(self.triggered),
            "migration_version": self.migration_version,
            "restarts": self.restarts,
            **({} if self.first_node_args is _UNSET else {"first_node_args": self.first_node_args}),
        }

    # -- what drivers read -------------------------------------------------------------------------------------

    @property
    def failed_flow(self) -> bool:
        return self.error is not None

    @property
    def done(self) -> bool:
        """Final: nothing the flow waits for is running, and nothing is left to decide (or a failure was eager)."""
        if self.eager:
            return True
        unprocessed = any(n["state"] in ENDED and not n.get("processed") for n in self.nodes)
        return self.started and not self.waiting() and not self.pending and not unprocessed

    def waiting(self) -> list[dict[str, Any]]:
        """The nodes the flow waits for: started, not ended, not ``nowait``."""
        return [n for n in self.nodes if n["state"] not in ENDED and not n.get("nowait")]

    def watched(self) -> list[dict[str, Any]]:
        """The nodes whose end the driver must still report (``nowait`` ones too, for the record)."""
        return [n for n in self.nodes if n["state"] not in ENDED and not n.get("reused")]

    def node(self, node_id: str) -> dict[str, Any]:
        """The record of a started node, for its driver to note what it needs (kept in :meth:`dump`)."""
        record: dict[str, Any] = self._by_id[node_id]
        return record

    def ended(self, node_id: str, succeeded: bool, **details: Any) -> None:
        """Record how a node ended; for a sub-flow, ``details`` holds its ``summary``."""
        node = self._by_id[node_id]
        node.update(details)
        node["state"] = "succeeded" if succeeded else "failed"

    def summary(self) -> dict[str, Any]:
        """What a parent flow learns of this run: its finished and unhandled failed nodes, and its sub-flows'."""
        nested = {n["id"]: n["summary"] for n in self.nodes if n["kind"] == "flow" and "summary" in n}
        return {"finished": self.finished, "failed": self.failed, "nested": nested}

    # -- deciding ------------------------------------------------------------------------------------------------

    def advance(self, throttle: Throttle, look_again: bool = True) -> tuple[list[Start], bool]:
        """Take in the nodes that ended, fire edges, start fallbacks: the nodes to start, and whether a condition
        must be evaluated again later (after the flow's ``retry_countdown``). ``look_again=False`` leaves the
        evaluations already waiting for that retry alone."""
        held = set() if look_again else set(self.pending)
        hooks = events.observers()
        if hooks is None:
            starts, retry = self._advance(throttle, held, None)
            return starts, retry or bool(self.pending)
        began = time.perf_counter()
        self.passes += 1
        with events.scope(self.flow_id, self.context):
            starts, retry = self._advance(throttle, held, hooks)
        self._tell_end(hooks)
        fields = {
            **self._fields(),
            "executor": self.executor,
            "pass": self.passes,
            "started": len(starts),
            "waiting": len(self.waiting()),
            "done": self.done,
            "duration": time.perf_counter() - began,
        }
        events.tell(hooks, events.DISPATCHER_PASS, fields, self.context)
        return starts, retry or bool(self.pending)

    def _advance(
        self, throttle: Throttle, held: set[tuple[int, tuple[str, ...]]], hooks: events.Observers | None
    ) -> tuple[list[Start], bool]:
        starts: list[Start] = []
        self._new_started, self._new_fallbacks, self._new_finished = [], [], []
        self._hooks = hooks
        if self.done and self.started:
            return starts, False
        if not self.started:
            self.started = True
            self.pending = [(i, ()) for i in runtime.starting_edges(self.flow) if self._selected(i) is not False]
            if hooks is not None:
                self.started_at = time.time()
                fields = {**self._fields(), "executor": self.executor, "selective": self.selective is not None}
                events.tell(hooks, events.FLOW_STARTED, fields, self.context)
        retry = False
        while True:
            progressed, unread = self._take_ended()
            retry |= unread
            if self.eager:
                return starts, False
            pending, self.pending = self.pending, []
            for index, ids in pending:
                if (index, ids) in held:
                    self.pending.append((index, ids))
                elif not self._fire(index, ids, starts, throttle):
                    self.pending.append((index, ids))
                    held.add((index, ids))  # once per look: again only after the flow's retry_countdown
                    retry = True
            reused = any(n.get("reused") and not n.get("processed") for n in self.nodes)
            if not (progressed or reused):
                break
        if self.error is not None:  # out of dispatcher retries: nothing more starts
            self.pending = []
            return starts, False
        if self.failed and not self.waiting() and not self.pending:
            self._run_fallbacks(starts, throttle)
            if self.failed and not self.waiting():  # failures no fallback handles: the flow fails
                first = next(n for n in self.nodes if n["id"] in self.failed.get(n["name"], ()))
                self.error = first.get("why") or f"node {first['name']!r} failed"
                log.error("flow %s (%s) failed: %s", self.flow.name, self.flow_id, self.error)
        return starts, retry

    @property
    def changed(self) -> bool:
        """Whether the last :meth:`advance` took in a node's end or started a node."""
        return bool(self._new_started or self._new_fallbacks or self._new_finished)

    def next_look(self, start: float, ceiling: float) -> float:
        """Seconds until the dispatcher looks again: the flow's ``sampling`` strategy, else
        :func:`selinon.strategies.backoff` from ``start`` up to ``ceiling`` (``start`` when it gives ``None``)."""
        status = {
            "previous_retry": self.previous_retry,
            "active_nodes": [{"name": n["name"], "id": n["id"]} for n in self.waiting()],
            "failed_nodes": self.failed,
            "new_started_nodes": self._new_started,
            "new_fallback_nodes": self._new_fallbacks,
            "new_finished_nodes": self._new_finished,
            "finished_nodes": self.finished,
        }
        if self.flow.sampling is None:
            wait = strategies.backoff(status, start, ceiling)
        else:
            wait = self.flow.sampling.next_retry(status)
        self.previous_retry = wait
        return start if wait is None else float(wait)

    def count_retry(self, what: str) -> bool:
        """Use one of the flow's dispatcher retries; False (and the flow failed) when none is left."""
        if self.retries >= self.flow.max_retry:
            self.fail(what)
            self._tell_end(events.observers())
            return False
        self.retries += 1
        log.warning("%s; dispatcher retry %d in %ss", what, self.retries, self.flow.retry_countdown)
        hooks = events.observers()
        if hooks is not None:
            fields = {
                **self._fields(),
                "error": what,
                "retries": self.retries,
                "max_retry": self.flow.max_retry,
                "countdown": self.flow.retry_countdown,
            }
            events.tell(hooks, events.DISPATCHER_RETRY, fields, self.context)
        return True

    def fail(self, why: str) -> None:
        if self.error is None:
            self.error = why
            log.error("flow %s (%s) failed: %s", self.flow.name, self.flow_id, why)

    # -- events ------------------------------------------------------------------------------------------------

    def _fields(self) -> dict[str, Any]:
        return {"flow_name": self.flow.name, "flow_id": self.flow_id}

    def _tell_end(self, hooks: events.Observers | None) -> None:
        """``flow.succeeded`` or ``flow.failed``, once, when the flow is done."""
        if hooks is None or self._end_told or not (self.started and self.done):
            return
        self._end_told = True
        fields = {**self._fields(), "executor": self.executor}
        if self.started_at is not None:
            fields["duration"] = max(0.0, time.time() - self.started_at)
        if self.failed_flow:
            fields.update(error=self.error, eager=self.eager)
        events.tell(hooks, events.FLOW_FAILED if self.failed_flow else events.FLOW_SUCCEEDED, fields, self.context)

    def _tell(self, event: str, **fields: Any) -> None:
        """An event of this pass, if observers listen (``_advance`` looked them up)."""
        if self._hooks is not None:
            events.tell(self._hooks, event, {**self._fields(), **fields}, self.context)

    def _take_ended(self) -> tuple[bool, bool]:
        """Process nodes that ended since the last look: (one did, a result must be read again later)."""
        progressed = unread = False
        for node in list(self.nodes):
            if node["state"] not in ENDED or node.get("processed"):
                continue
            if node["state"] == "succeeded" and self.flow.node_args_from_first and node is self.nodes[0]:
                # The first task's result becomes the node arguments: read from its storage, never from a message.
                try:
                    first = StoragePool.retrieve(self.flow.name, node["name"], node["id"])
                    self.first_node_args, self.node_args = self.node_args, first
                except Exception as exc:
                    what = f"flow {self.flow.name!r}: cannot read the result of {node['name']!r}"
                    if self.count_retry(f"{what}: {runtime.describe(exc)}"):
                        unread = True
                        continue
            node["processed"] = True
            progressed = True
            self._new_finished.append(node["id"])
            if not node.get("reused"):
                self._tell_node_end(node)
            if node.get("nowait"):
                continue
            if node["state"] == "succeeded":
                self.finished.setdefault(node["name"], []).append(node["id"])
                for index, parents in runtime.firings(self.flow, node["name"], node["id"], self.finished):
                    if self._selected(index) is not False:
                        self.pending.append((index, parents))
            else:
                node.setdefault("why", _why(node))
                self.failed.setdefault(node["name"], []).append(node["id"])
                if covers(self.flow.eager_failures, node["name"]):
                    self.eager = True
                    self.fail(node["why"])
                    return True, False
        return progressed, unread

    def _tell_node_end(self, node: dict[str, Any]) -> None:
        if node["state"] == "succeeded":
            self._tell(events.NODE_SUCCEEDED, node_name=node["name"], node_id=node["id"], kind=node["kind"])
        else:
            error = node.get("error")
            self._tell(events.NODE_FAILED, node_name=node["name"], node_id=node["id"], kind=node["kind"], error=error)

    def _selected(self, index: int) -> list[str] | bool | None:
        """In a selective run: the nodes edge ``index`` starts (False: not at all); None outside selective runs."""
        if self.selective is None or self.flow.name not in self.selective["edges"]:
            return None
        return self.selective["edges"][self.flow.name].get(str(index), False)  # type: ignore[no-any-return]

    def _fire(self, index: int, ids: tuple[str, ...], starts: list[Start], throttle: Throttle) -> bool:
        """Evaluate one edge firing and start its nodes; False when its condition could not be evaluated."""
        if (index, ids) in self.fired or self.error is not None:
            return True
        edge = self.flow.edges[index]
        tasks = {name: node_id for name, node_id in zip(edge.from_, ids, strict=True) if name in self.system.tasks}
        try:
            go = runtime.condition_holds(self.flow, index, tasks, self.node_args)
            items = runtime.foreach_items(self.flow, index, tasks, self.node_args) if go else []
        except Exception as exc:
            return not self.count_retry(runtime.condition_error(self.flow, index, exc))
        self.fired.add((index, ids))
        if not go:
            return True
        self.triggered.add(index)
        parent = self.parent if not edge.from_ else self._parent_of(edge.from_, ids)
        only = self._selected(index)
        forced = edge.foreach is not None and edge.foreach.propagate_result
        for number, item in enumerate(items):
            for position, name in enumerate(edge.to):
                if isinstance(only, list) and name not in only:
                    continue
                key = f"{index}/{'/'.join(ids)}/{number}/{position}/{name}"
                node_args = item if forced else self.node_args
                self._start(name, key, node_args, parent, starts, throttle, forced_args=forced, edge=index)
        return True

    def _parent_of(self, names: tuple[str, ...], ids: tuple[str, ...]) -> dict[str, Any]:
        """The ``parent`` of the nodes an edge starts (see :meth:`_parent_entry`)."""
        return {name: self._parent_entry(name, node_id, "finished") for name, node_id in zip(names, ids, strict=True)}

    def _parent_entry(self, name: str, node_id: str, key: str) -> Any:
        """What ``parent`` holds for a parent node: a task's id; for a sub-flow, its ``key`` ("finished" or
        "failed") tasks with the ``propagate_*`` option for them (nested by sub-flow, or compound: flat), else its
        flow id."""
        summary = self._by_id[node_id].get("summary")
        if summary is None:
            return node_id
        flow = self.flow
        plain, compound = (
            (flow.propagate_finished, flow.propagate_compound_finished)
            if key == "finished"
            else (flow.propagate_failures, flow.propagate_compound_failures)
        )
        if covers(compound, name) or covers(plain, name):
            return _tree(summary, key, compound=covers(compound, name))
        return node_id

    def _start(
        self,
        name: str,
        key: str,
        node_args: Any,
        parent: dict[str, Any],
        starts: list[Start],
        throttle: Throttle,
        fallback: bool = False,
        forced_args: bool = False,
        edge: int | None = None,
    ) -> None:
        # Derived, not random: a look that is redone from the same state starts the same ids.
        restart = f"restart/{self.restarts}/" if self.restarts else ""
        node_id = str(uuid.uuid5(_NAMESPACE, f"{self.flow_id}/{restart}{key}"))
        is_flow = name in self.system.flows
        record: dict[str, Any] = {
            "name": name,
            "id": node_id,
            "kind": "flow" if is_flow else "task",
            "state": "scheduled",
        }
        if name in self.flow.nowait:
            record["nowait"] = True
        if fallback:
            record["fallback"] = True
        if is_flow:
            if not forced_args:
                propagate = self.flow.propagates_to(name)
                node_args = node_args if propagate else None
            share = covers(self.flow.propagate_parent_failures if fallback else self.flow.propagate_parent, name)
            selective = self._selective_for(name)
            on_edge = None if edge is None else self.flow.edges[edge].selective
            if on_edge is not None:  # an edge that runs its sub-flow selectively
                selective = selective_run(self.system, name, **on_edge)
            start = Start(name, node_id, "flow", node_args, parent if share else {}, None, selective)
            interval = self.system.flows[name].throttle
        else:
            record["parent"] = parent
            record["storage"] = self.system.tasks[name].config.storage
            if forced_args:  # a foreach item: not the flow's node arguments (a driver may have to send it again)
                record["node_args"] = node_args
            reused = self._reuse(name, node_args, parent)
            if reused is not None:
                record.update(id=reused, state="succeeded", reused=True)
                self._add(record)
                self._tell(events.TASK_REUSED, task_name=name, task_id=reused)
                return
            start = Start(name, node_id, "task", node_args, parent)
            interval = self.system.tasks[name].throttle
        if interval:
            start.countdown = throttle(f"{start.kind}:{name}", interval) or None
        self._add(record)
        (self._new_fallbacks if fallback else self._new_started).append(node_id)
        starts.append(start)
        if self._hooks is not None:
            start.context = dict(self.context)
            if is_flow:
                self._tell(
                    events.SUBFLOW_SCHEDULED,
                    subflow_name=name,
                    subflow_id=node_id,
                    countdown=start.countdown,
                    fallback=fallback,
                )
            else:
                self._tell(
                    events.TASK_SCHEDULED,
                    task_name=name,
                    task_id=node_id,
                    parent=parent,
                    countdown=start.countdown,
                    fallback=fallback,
                )

    def _add(self, record: dict[str, Any]) -> None:
        self.nodes.append(record)
        self._by_id[record["id"]] = record

    def _selective_for(self, subflow: str) -> dict[str, Any] | None:
        if self.selective is not None and subflow in self.selective["edges"]:
            return self.selective
        return None

    def _reuse(self, name: str, node_args: Any, parent: dict[str, Any]) -> str | None:
        """In a selective run, a task that was not asked for may reuse an earlier result (its task id)."""
        if self.selective is None or name in self.selective["task_names"]:
            return None
        function = self.system.tasks[name].selective_run
        if function is None:
            return None
        ids = {k: v for k, v in parent.items() if isinstance(v, str)}
        found = function(
            self.flow.name, name, node_args, list(self.selective["task_names"]), StoragePool(ids, self.flow.name)
        )
        return None if found is None else str(found)

    def _run_fallbacks(self, starts: list[Start], throttle: Throttle) -> None:
        """Start the fallbacks of the failed nodes, largest sets of failed nodes first, as long as one applies."""
        while self.failed:
            found = None
            names = sorted(self.failed)
            for size in range(len(names), 0, -1):
                for combination in itertools.combinations(names, size):
                    matching = [
                        f
                        for f in self.flow.failures
                        if f.nodes == frozenset(combination) and f.condition.evaluate(_no_result, self.node_args)
                    ]
                    if matching:
                        found = combination, matching
                        break
                if found:
                    break
            if found is None:
                return
            combination, matching = found
            parent = self._failed_parent(combination)
            for failure in matching:
                fallback = list(failure.fallback) if isinstance(failure.fallback, tuple) else []
                self._tell(events.FALLBACK_STARTED, failed=sorted(combination), fallback=fallback)
                if isinstance(failure.fallback, tuple):
                    for position, name in enumerate(failure.fallback):
                        key = f"fallback/{self.fallbacks_run}/{position}/{name}"
                        self._start(name, key, self.node_args, parent, starts, throttle, fallback=True)
                self.fallbacks_run += 1
            for name in combination:
                handled = self.failed[name].pop(0)
                self._by_id[handled]["handled"] = True
                if not self.failed[name]:
                    del self.failed[name]

    def _failed_parent(self, combination: tuple[str, ...]) -> dict[str, Any]:
        """The ``parent`` of fallbacks: the failed nodes, each as :meth:`_parent_entry` gives it."""
        return {name: self._parent_entry(name, self.failed[name][0], "failed") for name in combination}


def _no_result(name: str) -> Any:
    raise AssertionError(f"a failure's condition cannot read results ({name})")  # refused when loaded


def _why(node: dict[str, Any]) -> str:
    if node["kind"] == "flow":
        return f"sub-flow {node['name']!r} failed: {node.get('error')}"
    return f"task {node['name']!r} failed: {node.get('error')}"


def _tree(summary: dict[str, Any], key: str, compound: bool) -> dict[str, Any]:
    """A sub-flow's ``finished`` or ``failed`` nodes as Selinon 1.x passes them in ``parent``: task -> ids, with
    sub-flows nested under their names, or, ``compound``, every task at the top."""
    out: dict[str, Any] = {}
    for name, ids in summary.get(key, {}).items():
        for node_id in ids:
            inner = summary.get("nested", {}).get(node_id)
            if inner is None:
                out.setdefault(name, []).append(node_id)
            else:
                _merge(out if compound else out.setdefault(name, {}), _tree(inner, key, compound))
    return out


def _merge(target: dict[str, Any], source: dict[str, Any]) -> None:
    for name, value in source.items():
        if isinstance(value, list):
            target.setdefault(name, []).extend(value)
        else:
            _merge(target.setdefault(name, {}), value)


def _stamped(compute: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """A selective run names edges by index: it carries the migration those indexes belong to (migrations.py)."""

    @functools.wraps(compute)
    def stamped(system: System, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {**compute(system, *args, **kwargs), "migration_version": system.migrations.version}

    return stamped


@_stamped
def selective_run(
    system: System,
    flow_name: str,
    task_names: list[str],
    follow_subflows: bool = False,
    run_subsequent: bool | list[str] = False,
) -> dict[str, Any]:
    """What a selective run of ``flow_name`` starts: per flow, edge index -> the nodes it starts.

    Only the named tasks run, with what they need (every node on a path from the start to them); with
    ``run_subsequent`` (true, or the flows where it applies) also what follows them; with ``follow_subflows``,
    sub-flows that hold a named task run selectively too (other sub-flows on the way run whole).
    """
    from selinon.errors import ConfigurationError

    system.flow(flow_name)
    names = list(dict.fromkeys(task_names))
    if not names:
        raise ConfigurationError("a selective run needs at least one task name")
    for name in names:
        if name not in system.tasks:
            raise ConfigurationError(f"selective run: {name!r} is not a task of the configuration")
    scope = [flow_name]
    if follow_subflows:
        for current in scope:
            for node in sorted(system.flows[current].nodes()):
                if node in system.flows and node not in scope:
                    scope.append(node)
    holds = {f: {n for n in names if n in system.flows[f].nodes()} for f in scope}
    changed = True
    while changed:  # a sub-flow that (transitively) holds a named task is a target of the flows that start it
        changed = False
        for f in scope:
            for node in system.flows[f].nodes():
                if node in holds and holds[node] and node not in holds[f]:
                    holds[f].add(node)
                    changed = True
    edges: dict[str, dict[str, list[str]]] = {}
    reached: set[str] = set()
    for f in scope:
        targets = holds[f]
        if not targets:
            continue
        flow = system.flows[f]
        chosen: dict[int, set[str]] = {}
        needed = set(targets)
        changed = True
        while changed:
            changed = False
            for index, edge in enumerate(flow.edges):
                wanted = set(edge.to) & needed
                if wanted - chosen.get(index, set()):
                    chosen.setdefault(index, set()).update(wanted)
                    needed.update(edge.from_)
                    changed = True
        if run_subsequent is True or (isinstance(run_subsequent, list) and f in run_subsequent):
            done = set(names) | (targets - set(system.tasks))
            changed = True
            while changed:
                changed = False
                for index, edge in enumerate(flow.edges):
                    if edge.from_ and set(edge.from_) <= done and set(edge.to) - chosen.get(index, set()):
                        chosen.setdefault(index, set()).update(edge.to)
                        done.update(edge.to)
                        changed = True
        started = {n for i in chosen for n in chosen[i]}
        if not any(not flow.edges[i].from_ for i in chosen):
            raise SelectiveNoPathError(
                f"selective run: no path from the start of flow {f!r} to {', '.join(sorted(targets))}"
            )
        reached |= started
        edges[f] = {str(i): [n for n in flow.edges[i].to if n in chosen[i]] for i in sorted(chosen)}
    for name in names:
        if name not in reached:
            where = "its flows" if follow_subflows else f"flow {flow_name!r} (to look in sub-flows, follow them)"
            raise SelectiveNoPathError(f"selective run: task {name!r} is not run by {where}")
    return {"task_names": names, "edges": edges}
