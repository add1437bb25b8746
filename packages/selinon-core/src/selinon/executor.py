"""The local executor: runs a flow in this process, tasks on a thread pool, results through the storage pool.

One thread (the caller's) is the dispatcher: it evaluates conditions, starts nodes and schedules retries; tasks
run on worker threads. An edge fires once per combination of finished parent instances, and the combination is
marked fired only after its condition was evaluated: when a storage read keeps a condition from being evaluated,
that evaluation (and only it) is retried after the flow's ``retry_countdown``, so no task runs twice and no stored
result is lost because of it.
"""

from __future__ import annotations

import functools
import heapq
import importlib
import itertools
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selinon.errors import ConfigurationError, SelinonError, StorageError
from selinon.flows import Flow, System, TaskSpec
from selinon.pool import StoragePool
from selinon.task import Retry, SelinonTask

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


@dataclass
class _Outcome:
    result: Any = None
    record_id: Any = None
    retry_in: float | None = None
    error: str | None = None
    error_record: str | None = None


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
        self._classes: dict[str, type[SelinonTask]] = {}
        self._validators: dict[str, Any] = {}
        StoragePool.configure(system.configuration)

    def run(self, flow_name: str, node_args: Any = None) -> FlowRun:
        """Run the flow to its end and return what happened; a failed flow is a state, not an exception."""
        self.system.flow(flow_name)
        self._prepare(flow_name)
        self._futures: dict[Future[_Outcome], NodeRun] = {}
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

    # -- resolution (when a flow runs, not when the configuration loads) ---------------------------------------

    def _prepare(self, flow_name: str) -> None:
        """Import every task class and load every output schema the flow can reach, before anything runs."""
        pending, seen = [flow_name], set()
        while pending:
            flow = self.system.flows[pending.pop()]
            seen.add(flow.name)
            for node in sorted(flow.nodes()):
                if node in self.system.flows:
                    if node not in seen:
                        pending.append(node)
                elif node not in self._classes:
                    spec = self.system.tasks[node]
                    self._classes[node] = _task_class(spec)
                    if spec.output_schema is not None:
                        self._validators[node] = _validator(spec)

    # -- dispatching (the caller's thread) ----------------------------------------------------------------------

    def _begin(self, flow_run: FlowRun) -> None:
        for index, edge in enumerate(flow_run.flow.edges):
            if not edge.from_:
                self._fire(flow_run, index, ())
        self._settle(flow_run)

    def _fire(self, flow_run: FlowRun, index: int, parents: tuple[NodeRun, ...]) -> None:
        key = (index, tuple(node.id for node in parents))
        if key in flow_run._fired or flow_run.failed:
            return
        edge = flow_run.flow.edges[index]
        ids = {node.name: node.id for node in parents}
        read = functools.cache(lambda name: StoragePool.retrieve(flow_run.name, name, ids[name]))
        try:
            go = edge.condition.evaluate(read, flow_run.node_args)
        except Exception as exc:
            what = f"flow {flow_run.name!r}: cannot evaluate the condition of edges[{index}]: {_describe(exc)}"
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
            for name in edge.to:
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

    def _finished_attempt(self, node: NodeRun, outcome: _Outcome) -> None:
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
        for index, edge in enumerate(flow_run.flow.edges):
            if node.name in edge.from_:
                choices = [[node] if name == node.name else flow_run._finished.get(name, []) for name in edge.from_]
                for parents in itertools.product(*choices):
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

    def _attempt(self, node: NodeRun) -> _Outcome:
        spec = self.system.tasks[node.name]
        flow_run = node.flow_run
        node_args = flow_run.node_args
        try:
            task = self._classes[node.name](flow_run.name, node.name, node.parent, node.id, flow_run.id)
            result = task.run(node_args)
            if node.name in self._validators:
                _check_schema(self._validators[node.name], result)
            record_id = None
            if spec.config.storage is not None and not spec.config.storage_read_only:
                record_id = StoragePool.set(node_args, flow_run.name, node.name, node.id, result)
            return _Outcome(result=result, record_id=record_id)
        except Retry as exc:
            if node.tries <= spec.max_retry:
                countdown = spec.retry_countdown if exc.countdown is None else exc.countdown
                return _Outcome(retry_in=countdown, error="the task asked to be retried")
            error: Exception = RuntimeError(f"asked to be retried with no tries left (max_retry: {spec.max_retry})")
            error.__traceback__ = exc.__traceback__
        except Exception as exc:
            if node.tries <= spec.max_retry:
                return _Outcome(retry_in=spec.retry_countdown, error=_describe(exc))
            error = exc
        record_id, error_record = _store_error(node, spec, error)
        return _Outcome(error=_describe(error), record_id=record_id, error_record=error_record)


def _store_error(node: NodeRun, spec: TaskSpec, error: Exception) -> tuple[Any, str]:
    """Record a task's final failure in its storage: (record id, what became of the error record)."""
    if spec.config.storage is None or spec.config.storage_read_only:
        return None, "no storage" if spec.config.storage is None else "read-only storage"
    flow_run = node.flow_run
    exc_info = (type(error), error, error.__traceback__)
    try:
        return StoragePool.set_error(flow_run.node_args, flow_run.name, node.name, node.id, exc_info), "stored"
    except StorageError as exc:
        if isinstance(exc.__cause__, NotImplementedError):
            return None, "not supported"
        log.error("task %s (%s): its error could not be stored: %s", node.name, node.id, exc)
        return None, f"not stored: {exc}"


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, SelinonError) else f"{type(exc).__name__}: {exc}"


def _task_class(spec: TaskSpec) -> type[SelinonTask]:
    if spec.import_path is None:
        raise ConfigurationError(
            f"{spec.where}: `import:` is missing; name the module that defines class {spec.classname!r}"
        )
    try:
        module = importlib.import_module(spec.import_path)
    except Exception as exc:
        raise ConfigurationError(
            f"{spec.where}: cannot import {spec.import_path!r}: {_describe(exc)}; check `import:` and that the "
            "module is on the Python path"
        ) from None
    cls = getattr(module, spec.classname, None)
    if cls is None:
        raise ConfigurationError(
            f"{spec.where}: module {spec.import_path!r} has no class {spec.classname!r}; set `classname:`"
        )
    if not (isinstance(cls, type) and issubclass(cls, SelinonTask)):
        raise ConfigurationError(
            f"{spec.where}: {spec.import_path}.{spec.classname} is not a SelinonTask; "
            "derive it from selinon.task.SelinonTask"
        )
    return cls


def _validator(spec: TaskSpec) -> Any:
    """A jsonschema validator for the task's ``output_schema`` (a file path, relative to its YAML, or a mapping)."""
    try:
        jsonschema = importlib.import_module("jsonschema")  # optional (selinon-core[schema]), and untyped
    except ImportError:
        raise ConfigurationError(
            f"{spec.where}: `output_schema:` needs the jsonschema package; install it: "
            "pip install 'selinon-core[schema]'"
        ) from None
    schema = spec.output_schema
    if isinstance(schema, str):
        path = Path(spec.config.source).parent / schema
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"{spec.where}: cannot read output_schema {str(path)!r}: {exc}") from None
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigurationError(f"{spec.where}: output_schema is not a valid JSON schema: {exc.message}") from None
    return cls(schema)


class OutputSchemaError(ValueError):
    """A task's result does not match its ``output_schema``; it is not stored."""


def _check_schema(validator: Any, result: Any) -> None:
    error = importlib.import_module("jsonschema.exceptions").best_match(validator.iter_errors(result))
    if error is not None:
        at = "/".join(str(part) for part in error.absolute_path) or "the top level"
        raise OutputSchemaError(f"the result does not match output_schema at {at}: {error.message}")
