"""Flows on Celery: the flows of a ``nodes.yaml`` attached to your Celery app (``pip install 'selinon-core[celery]'``).

Two Celery tasks do the work, both ``acks_late`` and requeued when their worker dies:

- ``selinon.dispatcher``, one chain per flow run whose Celery task id is the flow id: each pass polls the result
  backend for the states of the flow's running nodes, fires edges (conditions read parent results through the
  storage pool, exactly as in the local executor), sends the nodes to start, and then sends itself again, with a
  countdown, carrying the whole flow state in its own arguments. Nothing about a flow lives only in a worker's
  memory, so a worker killed mid-pass loses nothing: the unacknowledged message is delivered again and the pass is
  redone from the same state.
- ``selinon.task``, the envelope: one try of a :class:`~selinon.task.SelinonTask` through
  :class:`selinon.runtime.TaskRunner` (the local executor's code), which stores the result through
  :class:`~selinon.pool.StoragePool`. Retries are Celery retries (same task id, ``max_retry``/``retry_countdown``).

Messages carry flow and task ids, names and node arguments, never results: results travel through the storages.
Node ids are derived from the flow id and the edge firing that starts them, so a pass that is redone sends the same
ids, and an envelope whose id already succeeded does not run again.
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
import sys
import time
import uuid
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selinon.errors import ConfigurationError, SelinonError

try:  # imported by name: Celery has no type information, so everything of it is Any here
    Ignore: Any = importlib.import_module("celery.exceptions").Ignore
    _signals: Any = importlib.import_module("celery.signals")
except ImportError as exc:  # the optional dependency
    raise ConfigurationError(
        f"selinon.celery needs Celery ({exc}); install it: pip install 'selinon-core[celery]'"
    ) from None

from selinon import flows, runtime
from selinon.flows import Flow, System
from selinon.pool import CONFIG_ENV, StoragePool

__all__ = ["CeleryFlows", "FlowReport", "TaskFailedError", "attach", "flows_of"]

log = logging.getLogger(__name__)

DISPATCHER = "selinon.dispatcher"
TASK = "selinon.task"
#: The Celery state of a flow whose dispatcher is still passing; its meta is the flow's report.
RUNNING = "RUNNING"
_NAMESPACE = uuid.UUID("5e1a0c2e-7d3b-4c1e-9f0a-2b6d8e4f1a37")
_ATTACHED: weakref.WeakKeyDictionary[Any, CeleryFlows] = weakref.WeakKeyDictionary()


class TaskFailedError(SelinonError):
    """A task failed for good; its only argument is its report (error, error record, tries), kept by Celery."""


def attach(
    app: Any,
    config: System | str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None,
    *,
    poll_interval: float = 1.0,
    dispatcher_queue: str | None = None,
) -> CeleryFlows:
    """Register Selinon's dispatcher and task envelope on ``app`` and configure this process's storage pool.

    ``config``: a loaded :class:`~selinon.flows.System`, or the YAML files (default: ``SELINON_CONFIG``, files
    separated by ``os.pathsep``), whose directories go on ``sys.path`` as with ``selinon run``. Call it where the
    app is defined, so that every worker, and every client that starts flows, configures itself on import.
    ``dispatcher_queue`` is the queue of dispatchers whose flow names none (default: the app's default queue).
    """
    if not isinstance(config, System):
        if config is None:
            files = os.environ.get(CONFIG_ENV)
            if not files:
                raise ConfigurationError(
                    f"no configuration: pass the YAML files to attach(app, [...]) or set {CONFIG_ENV} to them "
                    f"(separated by {os.pathsep!r})"
                )
            config = files.split(os.pathsep)
        paths = [config] if isinstance(config, str | os.PathLike) else list(config)
        for directory in dict.fromkeys(str(Path(p).resolve().parent) for p in paths):
            if directory not in sys.path:
                sys.path.insert(0, directory)
        config = flows.load(paths)  # after the path is set: it imports `global: predicates_module`
    backend = type(app.backend).__name__
    if backend in ("DisabledBackend", "RPCBackend"):
        raise ConfigurationError(
            f"the Celery app {app.main!r} needs a result backend that every worker can read (Redis, a database, ...), "
            f"not {backend}: dispatchers follow their tasks' states through it; set result_backend"
        )
    flows_ = CeleryFlows(app, config, poll_interval=poll_interval, dispatcher_queue=dispatcher_queue)
    _ATTACHED[app] = flows_
    return flows_


def flows_of(app: Any) -> CeleryFlows:
    """What :func:`attach` registered on ``app``."""
    try:
        return _ATTACHED[app]
    except KeyError:
        raise ConfigurationError(
            f"no Selinon flows are attached to the Celery app {app.main!r}; call selinon.celery.attach(app, ...) "
            "where the app is defined"
        ) from None


def _disconnect(**_: Any) -> None:
    StoragePool.disconnect_all()


_signals.worker_process_shutdown.connect(_disconnect, weak=False)


@dataclass
class FlowReport:
    """A flow run as its dispatcher last reported it: ``state`` is pending, running, succeeded or failed."""

    flow_id: str
    flow: str | None
    state: str
    error: str | None = None
    dispatcher_retries: int = 0
    #: One entry per task instance (those of finished sub-flows included): flow, task, task_id, state, tries,
    #: storage, record_id, error, error_record.
    tasks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.state in ("succeeded", "failed")

    @property
    def failed(self) -> bool:
        return self.state == "failed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "flow_id": self.flow_id,
            "state": self.state,
            "error": self.error,
            "dispatcher_retries": self.dispatcher_retries,
            "tasks": self.tasks,
        }

    def result(self, task_name: str) -> Any:
        """The stored result of the one succeeded instance of ``task_name``, read through the storage pool."""
        found = [t for t in self.tasks if t["task"] == task_name and t["state"] == "succeeded"]
        if len(found) != 1:
            raise SelinonError(f"flow {self.flow_id}: {len(found)} succeeded instances of task {task_name!r}, not 1")
        return StoragePool.retrieve(found[0]["flow"], task_name, found[0]["task_id"])

    def results(self) -> dict[str, Any]:
        """Task id -> stored result, for every succeeded task whose results are stored."""
        configuration = StoragePool.get_configuration()
        return {
            t["task_id"]: StoragePool.retrieve(t["flow"], t["task"], t["task_id"])
            for t in self.tasks
            if t["state"] == "succeeded"
            and configuration.tasks[t["task"]].storage is not None
            and not configuration.tasks[t["task"]].storage_read_only
        }


class CeleryFlows:
    """The flows of one configuration, attached to one Celery app (made by :func:`attach`)."""

    def __init__(self, app: Any, system: System, *, poll_interval: float, dispatcher_queue: str | None) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be more than 0 seconds")
        self.app = app
        self.system = system
        self.poll_interval = poll_interval
        self.dispatcher_queue = dispatcher_queue
        self.runner = runtime.TaskRunner(system)
        StoragePool.configure(system.configuration)
        # Acknowledged once done, and requeued when the worker running them dies: a message is never lost.
        options = {"bind": True, "shared": False, "acks_late": True, "reject_on_worker_lost": True}

        def dispatcher(task: Any, flow_name: str, node_args: Any, state: dict[str, Any] | None = None) -> Any:
            return self._dispatch(task, flow_name, node_args, state)

        def envelope(task: Any, flow_name: str, task_name: str, node_args: Any, parent: Any, flow_id: str) -> Any:
            return self._envelope(task, flow_name, task_name, node_args, parent, flow_id)

        # The dispatcher keeps its own backend record (RUNNING, with the report): no STARTED state over it.
        self.dispatcher: Any = app.task(name=DISPATCHER, track_started=False, **options)(dispatcher)
        self.task: Any = app.task(name=TASK, track_started=True, **options)(envelope)

    # -- the client side ---------------------------------------------------------------------------------------

    def run_flow(self, flow_name: str, node_args: Any = None) -> str:
        """Start a run of ``flow_name``; returns its flow id (the Celery task id of its dispatcher)."""
        self.system.flow(flow_name)
        flow_id = str(uuid.uuid4())
        self.dispatcher.apply_async((flow_name, node_args), task_id=flow_id, queue=self.flow_queue(flow_name))
        return flow_id

    def status(self, flow_id: str) -> FlowReport:
        """The flow's state as its dispatcher last reported it ("pending" until its first pass)."""
        found = self.app.AsyncResult(flow_id)
        state, info = found.state, found.info
        if state in ("SUCCESS", RUNNING) and isinstance(info, dict):
            return _report_from(info)
        if state == "FAILURE":
            return FlowReport(flow_id, None, "failed", f"the dispatcher failed: {runtime.describe(info)}")
        return FlowReport(flow_id, None, "pending" if state == "PENDING" else "running")

    def wait(self, flow_id: str, timeout: float | None = None, interval: float = 0.2) -> FlowReport:
        """Wait until the flow has succeeded or failed and return its report; TimeoutError after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            report = self.status(flow_id)
            if report.done:
                return report
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"flow {flow_id} is still {report.state} after {timeout}s")
            time.sleep(interval)

    def flow_queue(self, flow_name: str) -> str:
        queue = self.system.flow(flow_name).queue or self.dispatcher_queue
        return queue or str(self.app.conf.task_default_queue)

    def task_queue(self, task_name: str) -> str:
        queue = self.system.tasks[task_name].config.options.get("queue")
        return str(queue) if queue else str(self.app.conf.task_default_queue)

    def queues(self) -> list[str]:
        """Every queue the flows use: give them to ``celery worker -Q`` (or split them between workers)."""
        found = {self.flow_queue(name) for name in self.system.flows}
        for flow in self.system.flows.values():
            found.update(self.task_queue(name) for name in flow.nodes() if name in self.system.tasks)
        return sorted(found)

    # -- the task envelope -------------------------------------------------------------------------------------

    def _envelope(
        self, task: Any, flow_name: str, task_name: str, node_args: Any, parent: dict[str, str], flow_id: str
    ) -> dict[str, Any]:
        task_id = task.request.id
        earlier = task.AsyncResult(task_id)
        if earlier.state == "SUCCESS" and isinstance(earlier.result, dict):
            log.info("task %s (%s) already succeeded; not run again", task_name, task_id)
            return dict(earlier.result)
        tries = task.request.retries + 1
        outcome = self.runner.attempt(task_name, flow_name, flow_id, task_id, parent, node_args, tries)
        storage = self.system.tasks[task_name].config.storage
        report = {"tries": tries, "storage": storage, "record_id": _plain(outcome.record_id)}
        if outcome.retry_in is not None:
            log.warning("task %s (%s) failed, retrying in %ss: %s", task_name, task_id, outcome.retry_in, outcome.error)
            raise task.retry(countdown=outcome.retry_in, max_retries=None)
        if outcome.error is not None:
            raise TaskFailedError({**report, "error": outcome.error, "error_record": outcome.error_record})
        return report

    # -- the dispatcher ----------------------------------------------------------------------------------------

    def _dispatch(
        self, task: Any, flow_name: str, node_args: Any, state: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        flow_id = task.request.id
        flow = self.system.flow(flow_name)
        run = _FlowState(self, flow, flow_id, node_args, state)
        if self._stale(task, flow_id, run.pass_number):
            raise Ignore()
        try:
            countdown = run.step()
        except Exception as exc:
            # Something other than a condition (the backend, the broker) kept this pass from ending: redo it from
            # the same state, within the flow's dispatcher retries.
            what = f"flow {flow_name!r} ({flow_id}): dispatcher pass failed: {runtime.describe(exc)}"
            run = _FlowState(self, flow, flow_id, node_args, state)
            if not run.count_retry(what):
                return run.finish()
            countdown = flow.retry_countdown
        report = run.report()
        if run.done:
            log.info("flow %s (%s) %s", flow_name, flow_id, report["state"])
            return run.finish()
        run.pass_number += 1
        task.apply_async(
            (flow_name, run.node_args, run.dump()),
            task_id=flow_id,
            queue=self.flow_queue(flow_name),
            countdown=countdown,
        )
        # Written after the next pass is sent: a redelivered copy of this pass then sees it and stops (see _stale).
        task.update_state(state=RUNNING, meta=report)
        raise Ignore()

    @staticmethod
    def _stale(task: Any, flow_id: str, pass_number: int) -> bool:
        """Whether this pass already ran to its end (a message delivered again after its worker died)."""
        try:
            meta = task.backend.get_task_meta(flow_id)
        except Exception:  # the backend cannot tell: redo the pass (node ids are derived, so this is harmless)
            log.warning("flow %s: cannot read the dispatcher's record; running the pass", flow_id, exc_info=True)
            return False
        if meta.get("status") == "SUCCESS":
            return True
        result = meta.get("result")
        return meta.get("status") == RUNNING and isinstance(result, dict) and result.get("pass", -1) >= pass_number


class _FlowState:
    """One flow run between two dispatcher passes, as plain JSON data carried in the dispatcher's message."""

    def __init__(self, flows_: CeleryFlows, flow: Flow, flow_id: str, node_args: Any, state: dict[str, Any] | None):
        self.flows = flows_
        self.flow = flow
        self.flow_id = flow_id
        self.node_args = node_args
        state = copy.deepcopy(state or {})
        self.started: bool = state.get("started", False)
        self.pass_number: int = state.get("pass", 0)
        self.retries: int = state.get("retries", 0)
        self.error: str | None = state.get("error")
        #: Every node started, in start order: name, id, kind (task or flow), parent, state and what it reported.
        self.nodes: list[dict[str, Any]] = state.get("nodes", [])
        #: Succeeded node instances whose edges were considered, by name, in the order they finished.
        self.finished: dict[str, list[str]] = state.get("finished", {})
        self.fired: set[tuple[int, tuple[str, ...]]] = {(i, tuple(ids)) for i, ids in state.get("fired", [])}
        #: Edge firings whose condition is still to be evaluated (one that could not read a parent result).
        self.pending: list[tuple[int, tuple[str, ...]]] = [(i, tuple(ids)) for i, ids in state.get("pending", [])]
        self.args_read: bool = state.get("args_read", False)

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def done(self) -> bool:
        running = any(node["state"] not in ("succeeded", "failed") for node in self.nodes)
        unprocessed = any(node["state"] == "succeeded" and not node.get("processed") for node in self.nodes)
        return not running and (self.failed or not (self.pending or unprocessed))

    def dump(self) -> dict[str, Any]:
        return {
            "pass": self.pass_number,
            "started": self.started,
            "retries": self.retries,
            "error": self.error,
            "nodes": self.nodes,
            "finished": self.finished,
            "fired": [[i, list(ids)] for i, ids in sorted(self.fired)],
            "pending": [[i, list(ids)] for i, ids in self.pending],
            "args_read": self.args_read,
        }

    def count_retry(self, what: str) -> bool:
        """Use one of the flow's dispatcher retries; False (and the flow failed) when none is left."""
        if self.retries >= self.flow.max_retry:
            self.fail(what)
            return False
        self.retries += 1
        log.warning("%s; dispatcher retry %d in %ss", what, self.retries, self.flow.retry_countdown)
        return True

    def fail(self, why: str) -> None:
        """No new node starts in a failed flow; those running end (and store) normally."""
        if self.error is None:
            self.error = why
            log.error("flow %s (%s) failed: %s", self.flow.name, self.flow_id, why)

    def step(self) -> float:
        """One pass: follow the running nodes, fire edges, start nodes; returns the countdown to the next pass."""
        retry = False
        if not self.started:
            self.pending = [(index, ()) for index in runtime.starting_edges(self.flow)]
            self.started = True
        for node in self.nodes:
            if node["state"] not in ("succeeded", "failed"):
                self._poll(node)
        for node in self.nodes:
            if node["state"] == "succeeded" and not node.get("processed") and not self.failed:
                retry |= not self._succeeded(node)
        pending, self.pending = self.pending, []
        for index, ids in pending:
            if self.failed:
                break
            if not self._fire(index, ids):
                retry = True
                self.pending.append((index, ids))
        return self.flow.retry_countdown if retry else self.flows.poll_interval

    def _poll(self, node: dict[str, Any]) -> None:
        found = self.flows.app.AsyncResult(node["id"])
        state, info = found.state, found.info
        if node["kind"] == "flow":
            if state == "SUCCESS" and isinstance(info, dict):
                node["tasks"] = info.get("tasks", [])
                if info.get("state") == "failed":
                    node["state"], node["error"] = "failed", f"sub-flow {node['name']!r} failed: {info.get('error')}"
                else:
                    node["state"] = "succeeded"
            elif state == "FAILURE":
                node["state"], node["error"] = "failed", f"sub-flow {node['name']!r}: {runtime.describe(info)}"
            else:
                node["state"] = "running"
        elif state == "SUCCESS":
            node["state"] = "succeeded"
            node.update(info if isinstance(info, dict) else {})
        elif state == "FAILURE":
            details = info.args[0] if isinstance(info, Exception) and info.args else None
            if type(info).__name__ == TaskFailedError.__name__ and isinstance(details, dict):
                node.update(details)
            else:  # the envelope itself failed (a worker lost without requeueing, a serialisation error, ...)
                node["error"] = runtime.describe(info) if isinstance(info, BaseException) else str(info)
            node["state"] = "failed"
        else:
            node["state"] = {"STARTED": "running", "RETRY": "retrying"}.get(state, "scheduled")
        if node["state"] == "failed":
            what = "task" if node["kind"] == "task" else "node"
            self.fail(node["error"] if node["kind"] == "flow" else f"{what} {node['name']!r} failed: {node['error']}")

    def _succeeded(self, node: dict[str, Any]) -> bool:
        """Consider the edges of a node that succeeded; False when a storage read must be retried."""
        if self.flow.node_args_from_first and node is self.nodes[0] and not self.args_read:
            # The first task's result becomes the node arguments: read from its storage, never from a message.
            try:
                self.node_args = StoragePool.retrieve(self.flow.name, node["name"], node["id"])
            except Exception as exc:
                what = f"flow {self.flow.name!r}: cannot read the result of {node['name']!r}: {runtime.describe(exc)}"
                self.count_retry(what)
                return False
            self.args_read = True
        node["processed"] = True
        self.finished.setdefault(node["name"], []).append(node["id"])
        self.pending += list(runtime.firings(self.flow, node["name"], node["id"], self.finished))
        return True

    def _fire(self, index: int, ids: tuple[str, ...]) -> bool:
        """Evaluate one edge firing and start its nodes; False when its condition could not be evaluated."""
        if (index, ids) in self.fired:
            return True
        edge = self.flow.edges[index]
        parents = dict(zip(edge.from_, ids, strict=True))
        try:
            go = runtime.condition_holds(self.flow, index, parents, self.node_args)
        except Exception as exc:
            return not self.count_retry(runtime.condition_error(self.flow, index, exc))
        self.fired.add((index, ids))
        if go:
            for name in edge.to:
                self._start(name, index, ids, parents)
        return True

    def _start(self, name: str, index: int, ids: tuple[str, ...], parent: dict[str, str]) -> None:
        # Derived, not random: a pass that is redone starts the same ids (see the module's docstring).
        node_id = str(uuid.uuid5(_NAMESPACE, f"{self.flow_id}/{index}/{'/'.join(ids)}/{name}"))
        flows_ = self.flows
        if name in flows_.system.flows:
            node_args = self.node_args if self.flow.propagates_to(name) else None
            flows_.dispatcher.apply_async((name, node_args), task_id=node_id, queue=flows_.flow_queue(name))
            kind, storage = "flow", None
        else:
            arguments = (self.flow.name, name, self.node_args, parent, self.flow_id)
            flows_.task.apply_async(arguments, task_id=node_id, queue=flows_.task_queue(name))
            kind, storage = "task", flows_.system.tasks[name].config.storage
        self.nodes.append(
            {"name": name, "id": node_id, "kind": kind, "parent": parent, "state": "scheduled", "storage": storage}
        )

    def report(self) -> dict[str, Any]:
        tasks: list[dict[str, Any]] = []
        for node in self.nodes:
            if node["kind"] == "flow":
                tasks += node.get("tasks", [])
                continue
            tasks.append(
                {
                    "flow": self.flow.name,
                    "task": node["name"],
                    "task_id": node["id"],
                    "state": node["state"],
                    "tries": node.get("tries", 0),
                    "storage": node.get("storage"),
                    "record_id": node.get("record_id"),
                    "error": node.get("error") if node["state"] == "failed" else None,
                    "error_record": node.get("error_record"),
                }
            )
        # A failed flow is reported failed once its running nodes have ended (and stored what they return).
        state = ("failed" if self.failed else "succeeded") if self.done else "running"
        return {
            "flow": self.flow.name,
            "flow_id": self.flow_id,
            "state": state,
            "error": self.error,
            "dispatcher_retries": self.retries,
            "pass": self.pass_number,
            "tasks": tasks,
        }

    def finish(self) -> dict[str, Any]:
        return self.report()


def _report_from(info: dict[str, Any]) -> FlowReport:
    return FlowReport(
        flow_id=info["flow_id"],
        flow=info.get("flow"),
        state=info.get("state", "running"),
        error=info.get("error"),
        dispatcher_retries=info.get("dispatcher_retries", 0),
        tasks=list(info.get("tasks", [])),
    )


def _plain(value: Any) -> Any:
    """A record id as a message can carry it (adapters return strings, numbers or driver objects)."""
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)
