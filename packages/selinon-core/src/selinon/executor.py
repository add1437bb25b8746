"""The local executor: runs a flow in this process, tasks on a thread pool, results through the storage pool.

One thread (the caller's) drives the dispatcher of every flow run (:class:`selinon.flows.dispatcher.FlowState`, the
decisions Celery dispatchers take too): it reports how nodes ended, starts what the state asks for, and keeps
timers for retries, throttled starts and condition evaluations that wait for a dispatcher retry. Tasks run on
worker threads. ``sampling:`` does not change timing here: this driver looks at a flow as soon as a node ends.
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

from selinon import events, runtime, trace
from selinon.flows import Flow, System, dispatcher
from selinon.flows.dispatcher import FlowState, Start
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
    parent: dict[str, Any]
    state: str = "scheduled"  # scheduled, running, retrying, succeeded, failed; "reused" in selective runs
    tries: int = 0
    storage: str | None = None
    record_id: Any = None
    error: str | None = None
    #: For a failed task: "stored", "not supported" by its storage, "no storage", or why storing it failed.
    error_record: str | None = None
    subflow: FlowRun | None = None
    node_args: Any = None
    #: Its flow's event context (selinon.events), for its tries.
    context: dict[str, str] = field(default_factory=dict, repr=False)


@dataclass(eq=False)
class FlowRun:
    flow: Flow
    id: str
    node_args: Any
    parent_node: NodeRun | None = None
    nodes: list[NodeRun] = field(default_factory=list)
    done: bool = False
    dispatch: FlowState | None = None
    _look_scheduled: bool = False

    @property
    def name(self) -> str:
        return self.flow.name

    @property
    def failed(self) -> bool:
        return self.dispatch is not None and self.dispatch.failed_flow

    @property
    def error(self) -> str | None:
        return None if self.dispatch is None else self.dispatch.error

    @property
    def migration_version(self) -> int:
        """The migration its dispatcher state is at: this configuration's (a local run does not outlive it)."""
        return 0 if self.dispatch is None else self.dispatch.migration_version

    @property
    def dispatcher_retries(self) -> int:
        return 0 if self.dispatch is None else self.dispatch.retries

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
        self._throttle = dispatcher.LocalThrottle()
        self._tasks = runtime.TaskRunner(system, self._throttle)
        StoragePool.configure(system.configuration)
        trace.configure(system.configuration)

    def run(self, flow_name: str, node_args: Any = None) -> FlowRun:
        """Run the flow to its end and return what happened; a failed flow is a state, not an exception."""
        return self._run(flow_name, node_args, None)

    def run_flow_selective(
        self,
        flow_name: str,
        task_names: list[str],
        node_args: Any = None,
        follow_subflows: bool = False,
        run_subsequent: bool = False,
    ) -> FlowRun:
        """Run only ``task_names`` of the flow and what they need (:func:`selinon.flows.dispatcher.selective_run`)."""
        selective = dispatcher.selective_run(self.system, flow_name, task_names, follow_subflows, run_subsequent)
        return self._run(flow_name, node_args, selective)

    def _run(self, flow_name: str, node_args: Any, selective: dict[str, Any] | None) -> FlowRun:
        self.system.check_startable(flow_name)
        self._tasks.prepare(flow_name)
        self._futures: dict[Future[Outcome], NodeRun] = {}
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._root = FlowRun(self.system.flows[flow_name], str(uuid.uuid4()), node_args)
        context: dict[str, str] = {}
        events.emit(
            events.FLOW_SCHEDULED,
            context,
            flow_name=flow_name,
            flow_id=self._root.id,
            executor="local",
            selective=selective is not None,
        )
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="selinon-task") as self._threads:
            self._begin(self._root, {}, selective, context)
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

    def _begin(
        self, flow_run: FlowRun, parent: dict[str, Any], selective: dict[str, Any] | None, context: dict[str, str]
    ) -> None:
        flow_run.dispatch = FlowState(
            self.system, flow_run.flow, flow_run.id, flow_run.node_args, parent=parent, selective=selective,
            context=context,
        )  # fmt: skip
        self._look(flow_run)

    def _look(self, flow_run: FlowRun, look_again: bool = False) -> None:
        """Let the flow's dispatcher decide; start what it asks for; end the flow run when it is done."""
        state = flow_run.dispatch
        assert state is not None
        if flow_run.done:
            return
        known = {node.id for node in flow_run.nodes}
        starts, retry = state.advance(self._throttle, look_again=look_again)
        flow_run.node_args = state.node_args
        for record in state.nodes:  # tasks a selective run reused: reported, never run
            if record.get("reused") and record["id"] not in known:
                node = NodeRun(flow_run, record["name"], record["id"], record.get("parent", {}), state="reused")
                node.storage = record.get("storage")
                flow_run.nodes.append(node)
        for start in starts:
            self._start_node(flow_run, start)
        if retry and not flow_run._look_scheduled:
            flow_run._look_scheduled = True
            self._later(flow_run.flow.retry_countdown, lambda: self._look_later(flow_run))
        if state.done:
            self._end_flow(flow_run)
        self._changed()

    def _look_later(self, flow_run: FlowRun) -> None:
        flow_run._look_scheduled = False
        self._look(flow_run, look_again=True)

    def _start_node(self, flow_run: FlowRun, start: Start) -> None:
        node = NodeRun(flow_run, start.name, start.id, start.parent, node_args=start.node_args)
        flow_run.nodes.append(node)
        if start.kind == "flow":
            node.state = "running"
            node.subflow = FlowRun(self.system.flows[start.name], node.id, start.node_args, parent_node=node)
            subflow = node.subflow
            self._after(start.countdown, lambda: self._begin(subflow, start.parent, start.selective, start.context))
        else:
            node.storage = self.system.tasks[start.name].config.storage
            node.context = start.context
            self._after(start.countdown, lambda: self._submit(node))

    def _after(self, countdown: float | None, action: Callable[[], None]) -> None:
        if countdown:
            self._later(countdown, action)
        else:
            action()

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
            self._changed()
            return
        if outcome.error is not None:
            node.state = "failed"
            node.error_record, node.record_id = outcome.error_record, outcome.record_id
            log.error("task %s (%s) failed: %s", node.name, node.id, node.error)
        else:
            node.state = "succeeded"
            node.record_id = outcome.record_id
        self._node_ended(node, node.state == "succeeded", error=node.error)

    def _node_ended(self, node: NodeRun, succeeded: bool, **details: Any) -> None:
        state = node.flow_run.dispatch
        assert state is not None
        state.ended(node.id, succeeded, **details)
        self._look(node.flow_run)

    def _end_flow(self, flow_run: FlowRun) -> None:
        flow_run.done = True
        node = flow_run.parent_node
        if node is None:
            return
        assert flow_run.dispatch is not None
        summary = flow_run.dispatch.summary()
        if flow_run.failed:
            node.state, node.error = "failed", flow_run.error
            self._node_ended(node, False, error=flow_run.error, summary=summary)
        else:
            node.state = "succeeded"
            self._node_ended(node, True, summary=summary)

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._sequence), action))

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self._root)

    # -- one try of a task (a worker thread) ----------------------------------------------------------------------

    def _attempt(self, node: NodeRun) -> Outcome:
        flow_run = node.flow_run
        return self._tasks.attempt(
            node.name, flow_run.name, flow_run.id, node.id, node.parent, node.node_args, node.tries, node.context
        )
