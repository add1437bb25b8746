"""The local executor: runs a flow in this process, tasks on a thread pool, results through the storage pool.

One thread (the caller's) is the dispatcher: it evaluates conditions, starts nodes and schedules retries; tasks
run on worker threads. An edge fires once per combination of finished parent instances, and the combination is
marked fired only after its condition was evaluated: when a storage read keeps a condition from being evaluated,
that evaluation (and only it) is retried after the flow's ``retry_countdown``, so no task runs twice and no stored
result is lost because of it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from selinon import runtime
from selinon.flows import Flow, System
from selinon.pool import StoragePool
from selinon.runtime import Outcome, OutputSchemaError

__all__ = ["Executor", "FlowRun", "NodeRun", "OutputSchemaError"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class NodeRun:
    """One instance of a node (a task, or a sub-flow) in a flow run."""

    flow_run: FlowRun
    name: str
    id: str
    parent: dict[str, str]
    state: str = "scheduled"  # scheduled, running, retrying, succeeded, failed
    tries: int = 0
    storage: str | None = None
    record_id: Any = None
    error: str | None = None
    #: For a failed task: "stored", "not supported" by its storage, "no storage", or why storing it failed.
    error_record: str | None = None
    subflow: FlowRun | None = None


@dataclass(eq=False)
class FlowRun:
    flow: Flow
    id: str
    node_args: Any
    parent_node: NodeRun | None = None
    nodes: list[NodeRun] = field(default_factory=list)
    failed: bool = False
    done: bool = False
    error: str | None = None
    dispatcher_retries: int = 0
    _finished: dict[str, list[NodeRun]] = field(default_factory=dict)
    _fired: set[tuple[int, tuple[str, ...]]] = field(default_factory=set)
    _outstanding: int = 0  # nodes not finished, plus condition evaluations waiting for a retry

    @property
    def name(self) -> str:
        return self.flow.name

    @property
    def state(self) -> str:
        return "failed" if self.failed else "succeeded" if self.done else "running"

    def tasks(self) -> Iterator[NodeRun]:
        """Every task instance of this run, those of its sub-flows included, in start order."""
        for node in self.nodes:
            if node.subflow is not None:
                yield from node.subflow.tasks()
            else:
                yield node


class Executor:
    """Runs flows of a :class:`~selinon.flows.System`; configures the process's StoragePool with its storages."""

    def __init__(
        self, system: System, concurrency: int = 4, on_change: Callable[[FlowRun], None] | None = None
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.system = system
        self.concurrency = concurrency
        self.on_change = on_change
        self._tasks = runtime.TaskRunner(system)
        StoragePool.configure(system.configuration)

    def run(self, flow_name: str, node_args: Any = None) -> FlowRun:
        """Run the flow to its end and return what happened; a failed flow is a state, not an exception."""
        self.system.flow(flow_name)
        self._tasks.prepare(flow_name)
        self._futures: dict[Future[Outcome], NodeRun] = {}
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._root = FlowRun(self.system.flows[flow_name], str(uuid.uuid4()), node_args)
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="selinon-task") as self._threads:
            self._begin(self._root)
            while self._futures or self._timers:
                timeout = max(0.0, self._timers[0][0] - time.monotonic()) if self._timers else None
                if self._futures:
                    finished, _ = wait(self._futures, timeout, FIRST_COMPLETED)
                    for future in finished:
                        self._finished_attempt(self._futures.pop(future), future.result())
                elif timeout:
                    time.sleep(timeout)
                while self._timers and self._timers[0][0] <= time.monotonic():
                    heapq.heappop(self._timers)[2]()
        return self._root

    # -- dispatching (the caller's thread) ----------------------------------------------------------------------

    def _begin(self, flow_run: FlowRun) -> None:
        for index in runtime.starting_edges(flow_run.flow):
            self._fire(flow_run, index, ())
        self._settle(flow_run)

    def _fire(self, flow_run: FlowRun, index: int, parents: tuple[NodeRun, ...]) -> None:
        key = (index, tuple(node.id for node in parents))
        if key in flow_run._fired or flow_run.failed:
            return
        ids = {node.name: node.id for node in parents}
        try:
            go = runtime.condition_holds(flow_run.flow, index, ids, flow_run.node_args)
        except Exception as exc:
            what = runtime.condition_error(flow_run.flow, index, exc)
            if flow_run.dispatcher_retries >= flow_run.flow.max_retry:
                self._fail_flow(flow_run, what)
                return
            flow_run.dispatcher_retries += 1
            flow_run._outstanding += 1
            countdown = flow_run.flow.retry_countdown
            log.warning("%s; dispatcher retry %d in %ss", what, flow_run.dispatcher_retries, countdown)
            self._later(countdown, lambda: self._retry_fire(flow_run, index, parents))
            return
        flow_run._fired.add(key)
        if go:
            for name in flow_run.flow.edges[index].to:
                self._start_node(flow_run, name, dict(ids))

    def _retry_fire(self, flow_run: FlowRun, index: int, parents: tuple[NodeRun, ...]) -> None:
        flow_run._outstanding -= 1
        self._fire(flow_run, index, parents)
        self._settle(flow_run)

    def _start_node(self, flow_run: FlowRun, name: str, parent: dict[str, str]) -> None:
        node = NodeRun(flow_run, name, str(uuid.uuid4()), parent)
        flow_run.nodes.append(node)
        flow_run._outstanding += 1
        if name in self.system.flows:
            node.state = "running"
            node_args = flow_run.node_args if flow_run.flow.propagates_to(name) else None
            node.subflow = FlowRun(self.system.flows[name], node.id, node_args, parent_node=node)
            self._begin(node.subflow)
        else:
            task = self.system.tasks[name].config
            node.storage = task.storage
            self._submit(node)

    def _submit(self, node: NodeRun) -> None:
        node.tries += 1
        node.state = "running"
        self._futures[self._threads.submit(self._attempt, node)] = node
        self._changed()

    def _finished_attempt(self, node: NodeRun, outcome: Outcome) -> None:
        node.error = outcome.error
        if outcome.retry_in is not None:
            node.state = "retrying"
            log.warning("task %s (%s) failed, retrying in %ss: %s", node.name, node.id, outcome.retry_in, node.error)
            self._later(outcome.retry_in, lambda: self._submit(node))
        elif outcome.error is not None:
            node.state = "failed"
            node.error_record, node.record_id = outcome.error_record, outcome.record_id
            log.error("task %s (%s) failed: %s", node.name, node.id, node.error)
            self._node_failed(node, f"task {node.name!r} failed: {node.error}")
        else:
            node.state = "succeeded"
            node.record_id = outcome.record_id
            self._node_succeeded(node, outcome.result)
        self._changed()

    def _node_succeeded(self, node: NodeRun, result: Any) -> None:
        flow_run = node.flow_run
        flow_run._finished.setdefault(node.name, []).append(node)
        if flow_run.flow.node_args_from_first and node is flow_run.nodes[0]:
            flow_run.node_args = result
        for index, parents in runtime.firings(flow_run.flow, node.name, node, flow_run._finished):
            self._fire(flow_run, index, parents)
        flow_run._outstanding -= 1
        self._settle(flow_run)

    def _node_failed(self, node: NodeRun, why: str) -> None:
        self._fail_flow(node.flow_run, why)
        node.flow_run._outstanding -= 1
        self._settle(node.flow_run)

    def _fail_flow(self, flow_run: FlowRun, why: str) -> None:
        """No new node starts in a failed flow; those running end (and store) normally."""
        if not flow_run.failed:
            flow_run.failed, flow_run.error = True, why

    def _settle(self, flow_run: FlowRun) -> None:
        if flow_run._outstanding or flow_run.done:
            return
        flow_run.done = True
        node = flow_run.parent_node
        if node is None:
            return
        if flow_run.failed:
            node.state, node.error = "failed", f"sub-flow {flow_run.name!r} failed: {flow_run.error}"
            self._node_failed(node, node.error)
        else:
            node.state = "succeeded"
            self._node_succeeded(node, None)

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._sequence), action))

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self._root)

    # -- one try of a task (a worker thread) ----------------------------------------------------------------------

    def _attempt(self, node: NodeRun) -> Outcome:
        flow_run = node.flow_run
        return self._tasks.attempt(
            node.name, flow_run.name, flow_run.id, node.id, node.parent, flow_run.node_args, node.tries
        )
