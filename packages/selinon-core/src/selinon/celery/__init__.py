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

import functools
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

from selinon.errors import ConfigurationError, MigrationSkew, SelinonError

try:  # imported by name: Celery has no type information, so everything of it is Any here
    Ignore: Any = importlib.import_module("celery.exceptions").Ignore
    _signals: Any = importlib.import_module("celery.signals")
except ImportError as exc:  # the optional dependency
    raise ConfigurationError(
        f"selinon.celery needs Celery ({exc}); install it: pip install 'selinon-core[celery]'"
    ) from None

from selinon import events, failures, flows, runtime, trace
from selinon.celery import selinon1
from selinon.flows import System
from selinon.flows.dispatcher import FlowState, LocalThrottle, Start, selective_run
from selinon.pool import CONFIG_ENV, StoragePool

__all__ = ["CeleryFlows", "FlowReport", "TaskFailedError", "UnknownFlowError", "attach", "flows_of"]

log = logging.getLogger(__name__)

DISPATCHER = "selinon.dispatcher"
TASK = "selinon.task"
#: The Celery state of a flow whose dispatcher is still passing; its meta is the flow's report.
RUNNING = "RUNNING"
#: The Celery state a client writes for a flow it starts, before sending its dispatcher: the flow is known
#: (queued, not started yet) until the dispatcher's first pass replaces it with RUNNING.
QUEUED = "SELINON_QUEUED"
_ATTACHED: weakref.WeakKeyDictionary[Any, CeleryFlows] = weakref.WeakKeyDictionary()


class TaskFailedError(SelinonError):
    """A task failed for good; its only argument is its report (error, error record, tries), kept by Celery."""


class TaskRetrying(SelinonError):
    """The reason Celery keeps for a task waiting for its next try: ``{"tries": tries so far, "error": ...}``."""


class UnknownFlowError(SelinonError):
    """No flow with that id was started through this result backend, or its record expired."""


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
    failures.sources.append(functools.partial(_failure, app))
    selinon1.register(app, flows_)
    return flows_


def _failure(app: Any, task_id: str) -> dict[str, str] | None:
    """A failed task's exception as its envelope reported it to the result backend (see :mod:`selinon.failures`)."""
    info = app.AsyncResult(task_id).info
    report = info.args[0] if isinstance(info, Exception) and info.args else None
    return report.get("exception") if isinstance(report, dict) else None


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
        self._local_throttle = LocalThrottle()
        self.runner = runtime.TaskRunner(system, self.throttle)
        StoragePool.configure(system.configuration)
        trace.configure(system.configuration)
        # Acknowledged once done, and requeued when the worker running them dies: a message is never lost.
        options = {"bind": True, "shared": False, "acks_late": True, "reject_on_worker_lost": True}

        def dispatcher(
            task: Any,
            flow_name: str,
            node_args: Any,
            state: dict[str, Any] | None = None,
            parent: dict[str, Any] | None = None,
            selective: dict[str, Any] | None = None,
            context: dict[str, str] | None = None,
        ) -> Any:
            return self._dispatch(task, flow_name, node_args, state, parent, selective, context)

        def envelope(
            task: Any,
            flow_name: str,
            task_name: str,
            node_args: Any,
            parent: Any,
            flow_id: str,
            context: dict[str, str] | None = None,
        ) -> Any:
            return self._envelope(task, flow_name, task_name, node_args, parent, flow_id, context)

        # The dispatcher keeps its own backend record (RUNNING, with the report): no STARTED state over it.
        self.dispatcher: Any = app.task(name=DISPATCHER, track_started=False, **options)(dispatcher)
        # The envelope writes its STARTED state itself (with its try number), after checking for an earlier
        # success: Celery's own would come first and hide that success.
        self.task: Any = app.task(name=TASK, track_started=False, **options)(envelope)

    # -- the client side ---------------------------------------------------------------------------------------

    def run_flow(self, flow_name: str, node_args: Any = None) -> str:
        """Start a run of ``flow_name``; returns its flow id (the Celery task id of its dispatcher)."""
        return self._start(flow_name, node_args, None)

    def run_flow_selective(
        self,
        flow_name: str,
        task_names: list[str],
        node_args: Any = None,
        follow_subflows: bool = False,
        run_subsequent: bool = False,
    ) -> str:
        """Start a run of only ``task_names`` of the flow and what they need (see ``selinon.flows.dispatcher``)."""
        selective = selective_run(self.system, flow_name, task_names, follow_subflows, run_subsequent)
        return self._start(flow_name, node_args, selective)

    def _start(
        self, flow_name: str, node_args: Any, selective: dict[str, Any] | None, flow_id: str | None = None
    ) -> str:
        """Send a flow's first dispatcher pass (under ``flow_id``, a new id by default); returns the flow id."""
        self.system.check_startable(flow_name)
        flow_id = flow_id or str(uuid.uuid4())
        kwargs: dict[str, Any] = {} if selective is None else {"selective": selective}
        context: dict[str, str] = {}
        events.emit(
            events.FLOW_SCHEDULED,
            context,
            flow_name=flow_name,
            flow_id=flow_id,
            executor="celery",
            selective=selective is not None,
        )
        if context:  # what observers want the flow's own events to start from (selinon.events)
            kwargs["context"] = context
        queued = {"flow": flow_name, "flow_id": flow_id, "state": "pending", "tasks": []}
        # Recorded before the dispatcher is sent, so that its first pass (RUNNING) always comes after it.
        self.app.backend.store_result(flow_id, queued, QUEUED)
        try:
            self.dispatcher.apply_async(
                (flow_name, node_args), kwargs, task_id=flow_id, queue=self.flow_queue(flow_name)
            )
        except BaseException:
            self.app.backend.forget(flow_id)  # never sent: the flow id must not look queued
            raise
        return flow_id

    def status(self, flow_id: str) -> FlowReport:
        """The flow's state as its dispatcher last reported it: "pending" from its start until its dispatcher's
        first pass, then "running", "succeeded" or "failed"; "unknown" for an id that no client of this result
        backend started (or whose record expired, after Celery's ``result_expires``)."""
        found = self.app.AsyncResult(flow_id)
        state, info = found.state, found.info
        if state in ("SUCCESS", RUNNING, QUEUED) and isinstance(info, dict):
            return _report_from(info)
        if state == "FAILURE":
            return FlowReport(flow_id, None, "failed", f"the dispatcher failed: {runtime.describe(info)}")
        return FlowReport(flow_id, None, "unknown" if state == "PENDING" else "running")

    def wait(self, flow_id: str, timeout: float | None = None, interval: float = 0.2) -> FlowReport:
        """Wait until the flow has succeeded or failed and return its report; TimeoutError after ``timeout`` s,
        :class:`UnknownFlowError` at once for a flow id :meth:`status` does not know."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            report = self.status(flow_id)
            if report.state == "unknown":
                raise UnknownFlowError(unknown(flow_id))
            if report.done:
                return report
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"flow {flow_id} is still {report.state} after {timeout}s")
            time.sleep(interval)

    def flow_queue(self, flow_name: str) -> str:
        """The flow's ``queue:``, else ``global: default_dispatcher_queue``, ``dispatcher_queue``, the app's default."""
        queue = self.system.flow_queue(flow_name) or self.dispatcher_queue
        return queue or str(self.app.conf.task_default_queue)

    def task_queue(self, task_name: str) -> str:
        """The task's ``queue:``, else ``global: default_task_queue``, else the app's default queue."""
        return self.system.task_queue(task_name) or str(self.app.conf.task_default_queue)

    def throttle(self, key: str, interval: float) -> float:
        """Seconds to wait before starting ``key`` so that its starts are ``interval`` apart, across every worker
        of a Redis result backend (a short lock there); within this process for other backends."""
        backend = self.app.backend
        if type(backend).__name__ not in ("RedisBackend", "SentinelBackend"):
            return self._local_throttle(key, interval)
        client = backend.client
        name = backend.get_key_for_task(f"selinon-throttle:{key}")  # bytes, with the backend's key prefix
        lock, token = name + b":lock", uuid.uuid4().hex
        deadline = time.monotonic() + 10
        while not client.set(lock, token, nx=True, px=5000):
            if time.monotonic() > deadline:  # a holder that died: its lock expires; never wait forever
                break
            time.sleep(0.005)
        try:
            now = time.time()
            start = max(now, float(client.get(name) or 0))
            client.set(name, repr(start + interval), px=int((start + interval - now) * 1000) + 60_000)
        finally:
            if client.get(lock) == token.encode():
                client.delete(lock)
        return start - now

    def queues(self) -> list[str]:
        """Every queue the flows use: give them to ``celery worker -Q`` (or split them between workers)."""
        found = {self.flow_queue(name) for name in self.system.flows}
        for flow in self.system.flows.values():
            found.update(self.task_queue(name) for name in flow.nodes() if name in self.system.tasks)
        return sorted(found)

    # -- the task envelope -------------------------------------------------------------------------------------

    def _envelope(
        self,
        task: Any,
        flow_name: str,
        task_name: str,
        node_args: Any,
        parent: dict[str, str],
        flow_id: str,
        context: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        task_id = task.request.id
        earlier = task.AsyncResult(task_id)
        if earlier.state == "SUCCESS" and isinstance(earlier.result, dict):
            log.info("task %s (%s) already succeeded; not run again", task_name, task_id)
            return dict(earlier.result)
        tries = task.request.retries + 1
        task.update_state(state="STARTED", meta={"tries": tries})
        outcome = self.runner.attempt(task_name, flow_name, flow_id, task_id, parent, node_args, tries, context)
        storage = self.system.tasks[task_name].config.storage
        report = {"tries": tries, "storage": storage, "record_id": _plain(outcome.record_id)}
        if outcome.retry_in is not None:
            log.warning("task %s (%s) failed, retrying in %ss: %s", task_name, task_id, outcome.retry_in, outcome.error)
            reason = TaskRetrying({"tries": tries, "error": outcome.error})
            raise task.retry(countdown=outcome.retry_in, max_retries=None, exc=reason)
        if outcome.error is not None:
            failure = {"error": outcome.error, "error_record": outcome.error_record, "exception": outcome.exception}
            raise TaskFailedError({**report, **failure})
        return report

    # -- the dispatcher ----------------------------------------------------------------------------------------

    def _dispatch(
        self,
        task: Any,
        flow_name: str,
        node_args: Any,
        state: dict[str, Any] | None,
        parent: dict[str, Any] | None,
        selective: dict[str, Any] | None,
        context: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        flow_id = task.request.id
        flow = self.system.flow(flow_name)
        state = state or {}
        pass_number = state.get("pass", 0)
        if self._stale(task, flow_id, pass_number):
            raise Ignore()
        if flow.throttle and pass_number == 0 and not state.get("gated"):
            # A throttled flow starts at least its interval after the previous run started, even a late one.
            wait = self.throttle(f"start:flow:{flow_name}", flow.throttle)
            if wait > 0:
                arguments = {"state": {"gated": True}, "parent": parent, "selective": selective}
                if context:
                    arguments["context"] = context
                task.apply_async(
                    (flow_name, node_args), arguments, task_id=flow_id, queue=self.flow_queue(flow_name), countdown=wait
                )
                raise Ignore()
        try:
            run = FlowState(
                self.system, flow, flow_id, node_args, parent, selective, state.get("flow"), context, "celery"
            )
        except MigrationSkew as exc:
            # Written under migrations this worker lacks (a rolling upgrade): hand the pass back, unchanged and
            # without using a dispatcher retry, for an upgraded worker to take, as Selinon 1.x did.
            log.warning("%s; handing the pass back", exc)
            arguments = {"state": state, "parent": parent, "selective": selective}
            countdown = flow.retry_countdown or self.poll_interval
            task.apply_async(
                (flow_name, node_args),
                arguments,
                task_id=flow_id,
                queue=self.flow_queue(flow_name),
                countdown=countdown,
            )
            raise Ignore() from None
        try:
            for node in run.watched():
                self._poll(run, node)
            starts, retry = run.advance(self.throttle)
            for start in starts:
                self._send(run, start)
            countdown = flow.retry_countdown if retry else run.next_look(self.poll_interval)
        except Exception as exc:
            # Something other than a condition (the backend, the broker) kept this pass from ending: redo it from
            # the same state, within the flow's dispatcher retries.
            what = f"flow {flow_name!r} ({flow_id}): dispatcher pass failed: {runtime.describe(exc)}"
            run = FlowState(
                self.system, flow, flow_id, node_args, parent, selective, state.get("flow"), context, "celery"
            )
            if not run.count_retry(what):
                return _report(run, pass_number)
            countdown = flow.retry_countdown
        report = _report(run, pass_number)
        if run.done:
            log.info("flow %s (%s) %s", flow_name, flow_id, report["state"])
            return report
        arguments = {"state": {"pass": pass_number + 1, "flow": run.dump()}, "parent": parent, "selective": selective}
        task.apply_async(
            (flow_name, run.node_args),
            arguments,
            task_id=flow_id,
            queue=self.flow_queue(flow_name),
            countdown=countdown,
        )
        # Written after the next pass is sent: a redelivered copy of this pass then sees it and stops (see _stale).
        task.update_state(state=RUNNING, meta=report)
        raise Ignore()

    def _send(self, run: FlowState, start: Start) -> None:
        if start.kind == "flow":
            arguments = {"parent": start.parent, "selective": start.selective}
            if start.context:
                arguments["context"] = start.context
            self.dispatcher.apply_async(
                (start.name, start.node_args),
                arguments,
                task_id=start.id,
                queue=self.flow_queue(start.name),
                countdown=start.countdown,
            )
        else:
            self.task.apply_async(
                (run.flow.name, start.name, start.node_args, start.parent, run.flow_id),
                {"context": start.context} if start.context else None,
                task_id=start.id,
                queue=self.task_queue(start.name),
                countdown=start.countdown,
            )

    def _poll(self, run: FlowState, node: dict[str, Any]) -> None:
        """Read a node's state from the result backend; report its end to the flow's state."""
        found = self.app.AsyncResult(node["id"])
        state, info = found.state, found.info
        if node["kind"] == "flow":
            if state == "SUCCESS" and isinstance(info, dict):
                details = {"tasks": info.get("tasks", []), "summary": info.get("summary"), "error": info.get("error")}
                run.ended(node["id"], info.get("state") != "failed", **details)
            elif state == "FAILURE":
                run.ended(node["id"], False, error=f"the dispatcher failed: {runtime.describe(info)}")
            else:
                node["state"] = "running" if state == RUNNING else "scheduled"
                if state == RUNNING and isinstance(info, dict):
                    node["tasks"] = info.get("tasks", [])
        elif state == "SUCCESS":
            run.ended(node["id"], True, **(info if isinstance(info, dict) else {}))
        elif state == "FAILURE":
            reported = info.args[0] if isinstance(info, Exception) and info.args else None
            if type(info).__name__ == TaskFailedError.__name__ and isinstance(reported, dict):
                run.ended(node["id"], False, **reported)
            else:  # the envelope itself failed (a worker lost without requeueing, a serialisation error, ...)
                error = runtime.describe(info) if isinstance(info, BaseException) else str(info)
                run.ended(node["id"], False, error=error)
        else:
            node["state"] = {"STARTED": "running", "RETRY": "retrying"}.get(state, "scheduled")
            tries = _tries(state, info)
            if tries is not None:
                node["tries"] = tries

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


def _report(run: FlowState, pass_number: int) -> dict[str, Any]:
    """The flow's report as its dispatcher keeps it in the result backend (``cli_run.show_report``'s shape)."""
    tasks: list[dict[str, Any]] = []
    for node in run.nodes:
        if node["kind"] == "flow":
            tasks += node.get("tasks", [])
            continue
        tasks.append(
            {
                "flow": run.flow.name,
                "task": node["name"],
                "task_id": node["id"],
                "state": "reused" if node.get("reused") else node["state"],
                "tries": node.get("tries", 0),
                "storage": node.get("storage"),
                "record_id": node.get("record_id"),
                "error": node.get("error") if node["state"] == "failed" else None,
                "error_record": node.get("error_record"),
            }
        )
    # A failed flow is reported failed once its running nodes have ended (and stored what they return).
    state = ("failed" if run.failed_flow else "succeeded") if run.done else "running"
    return {
        "flow": run.flow.name,
        "flow_id": run.flow_id,
        "state": state,
        "error": run.error,
        "dispatcher_retries": run.retries,
        "pass": pass_number,
        "tasks": tasks,
        "summary": run.summary() if run.done else None,
    }


def _tries(state: str, info: Any) -> int | None:
    """The tries so far of a task that is running (this try counted) or waiting for a retry, from its envelope's
    record: STARTED holds ``{"tries": n}``, RETRY a :class:`TaskRetrying` holding it."""
    found = None
    if state == "STARTED" and isinstance(info, dict):
        found = info.get("tries")
    elif state == "RETRY" and isinstance(info, Exception) and info.args and isinstance(info.args[0], dict):
        found = info.args[0].get("tries")
    return found if isinstance(found, int) and not isinstance(found, bool) else None


def unknown(flow_id: str) -> str:
    """The one line that says a flow id is not known, and why that may be."""
    return (
        f"no flow {flow_id!r} in the result backend: check the id (`run` prints it), that this app uses the result "
        "backend the flow was started with, and that its record has not expired (Celery's result_expires)"
    )


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
