"""Flows on Celery: the flows of a ``nodes.yaml`` attached to your Celery app (``pip install 'selinon-core[celery]'``).

Two Celery tasks do the work, both ``acks_late`` and requeued when their worker dies:

- ``selinon.dispatcher``, one chain per flow run whose Celery task id is the flow id: each pass reads the states of
  the flow's running nodes from the result backend, fires edges (conditions read parent results through the
  storage pool, exactly as in the local executor), sends the nodes to start, keeps the flow's state and report in
  the flow's backend record, and sends the chain's next message with a countdown (the flow's sampling strategy),
  carrying the state too. With a Redis result backend a task that ends also nudges its flow (see
  :mod:`selinon.celery.coordination`). Nothing about a flow lives only in a worker's memory: a message whose worker
  dies is delivered again and its pass redone from the same state.
- ``selinon.task``, the envelope: one try of a :class:`~selinon.task.SelinonTask` through
  :class:`selinon.runtime.TaskRunner` (the local executor's code), which stores the result through
  :class:`~selinon.pool.StoragePool`. Retries are Celery retries (same task id, ``max_retry``/``retry_countdown``).

Messages carry flow and task ids, names and node arguments, never results: results travel through the storages.
Node ids are derived from the flow id and the edge firing that starts them, so a pass that is redone sends the same
ids, and an envelope whose id already succeeded does not run again. A broker or backend that does not answer is
waited for (:mod:`selinon.celery.delivery`), and then the message is handed back to the broker: nothing is
reported final that is not.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from selinon.errors import ConfigurationError, MigrationSkew, SelinonError

try:  # imported by name: Celery has no type information, so everything of it is Any here
    Ignore: Any = importlib.import_module("celery.exceptions").Ignore
    _signals: Any = importlib.import_module("celery.signals")
except ImportError as exc:  # the optional dependency
    raise ConfigurationError(
        f"selinon.celery needs Celery ({exc}); install it: pip install 'selinon-core[celery]'"
    ) from None

from selinon import events, failures, flows, runtime, trace
from selinon.celery import delivery, selinon1
from selinon.celery.coordination import Coordinator
from selinon.celery.delivery import DISPATCHER, RETRY_POLICY, TASK, Reject, Unreachable
from selinon.flows import System
from selinon.flows.dispatcher import FlowState, LocalThrottle, Start, selective_run
from selinon.pool import CONFIG_ENV, StoragePool

__all__ = ["CeleryFlows", "FlowReport", "TaskFailedError", "UnknownFlowError", "attach", "flows_of", "hand_back"]

log = logging.getLogger(__name__)
T = TypeVar("T")

hand_back = delivery.hand_back
#: The Celery state of a flow whose dispatcher is still passing; its meta is the flow's report.
RUNNING = "RUNNING"
#: The Celery state a client writes for a flow it starts, before sending its dispatcher: the flow is known
#: (queued, not started yet) until the dispatcher's first pass replaces it with RUNNING.
QUEUED = "SELINON_QUEUED"
#: How often a task whose envelope failed outside the task (not its own error) is sent again before it counts
#: as failed, when its storage holds no result either.
ENVELOPE_RESENDS = 3
#: Seconds after which a task the result backend knows nothing of is looked for in its storage (the backend may
#: have lost its record) and else sent again (the broker may have lost its message), and how often again; also
#: how overdue a flow's next look may be before a nudge takes its chain over (the chain's message lost).
LOST_AFTER = 60.0
_ATTACHED: weakref.WeakKeyDictionary[Any, CeleryFlows] = weakref.WeakKeyDictionary()


class _HandBack(Exception):
    """A pass that this worker cannot make: its message goes back to the broker once the flow's lock is released,
    so that the hand-back's pause never keeps another worker's pass out."""

    def __init__(self, why: str, error: str, caller: list[str] | None) -> None:
        super().__init__(why)
        self.why, self.error, self.caller = why, error, caller


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
    max_poll_interval: float | None = None,
    dispatcher_queue: str | None = None,
    hand_back_timeout: float = 600.0,
    nudge: bool = True,
) -> CeleryFlows:
    """Register Selinon's dispatcher and task envelope on ``app`` and configure this process's storage pool.

    ``config``: a loaded :class:`~selinon.flows.System`, or the YAML files (default: ``SELINON_CONFIG``, files
    separated by ``os.pathsep``), whose directories go on ``sys.path`` as with ``selinon run``. Call it where the
    app is defined, so that every worker, and every client that starts flows, configures itself on import.
    ``dispatcher_queue`` is the queue of dispatchers whose flow names none (default: the app's default queue).
    A dispatcher looks at a flow ``poll_interval`` seconds after something changed, and backs off, doubling, up to
    ``max_poll_interval`` while nothing does (default: 30 s with a Redis result backend, whose tasks nudge their
    flows when they end, else 8 times ``poll_interval``; at most half a Redis broker's ``visibility_timeout``).
    ``nudge=False`` turns the nudges off: then only the chain looks. A worker hands a message of a flow or task it
    does not know back for another worker for up to ``hand_back_timeout`` seconds.
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
    flows_ = CeleryFlows(
        app,
        config,
        poll_interval=poll_interval,
        max_poll_interval=max_poll_interval,
        dispatcher_queue=dispatcher_queue,
        hand_back_timeout=hand_back_timeout,
        nudge=nudge,
    )
    _ATTACHED[app] = flows_
    selinon1.register(app, flows_)
    return flows_


def _failure(task_id: str) -> dict[str, str] | None:
    """A failed task's exception as its envelope reported it to the result backend of an attached app (see
    :mod:`selinon.failures`). One source for all apps: a source per app would keep every app alive."""
    for app in list(_ATTACHED):
        try:
            info = app.AsyncResult(task_id).info
        except Exception as exc:  # an app whose backend is gone (a test's own server, say): the others may know
            log.debug("task %s: the result backend of %r did not answer: %s", task_id, app.main, exc)
            continue
        report = info.args[0] if isinstance(info, Exception) and info.args else None
        if isinstance(report, dict) and report.get("exception"):
            return dict(report["exception"])
    return None


failures.sources.append(_failure)


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

    def __init__(
        self,
        app: Any,
        system: System,
        *,
        poll_interval: float,
        dispatcher_queue: str | None,
        max_poll_interval: float | None = None,
        hand_back_timeout: float = 600.0,
        nudge: bool = True,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be more than 0 seconds")
        self.app = app
        self.system = system
        self.poll_interval = poll_interval
        self.dispatcher_queue = dispatcher_queue
        self.hand_back_timeout = hand_back_timeout
        #: Flow locks and nudges (a Redis result backend), else None: the dispatcher's chain alone.
        self.coordinator = Coordinator.of(app.backend)
        self.nudges = nudge and self.coordinator is not None
        self.max_poll_interval = max(poll_interval, max_poll_interval or self._default_max_poll())
        self.transient = delivery.transient_errors(app)
        self._local_throttle = LocalThrottle()
        self.runner = runtime.TaskRunner(system, self.throttle)
        StoragePool.configure(system.configuration)
        trace.configure(system.configuration)
        delivery.quiet_dispatcher_logs()
        # Acknowledged once done, and requeued when the worker running them dies: a message is never lost.
        options = {"bind": True, "shared": False, "acks_late": True, "reject_on_worker_lost": True}

        def dispatcher(
            task: Any,
            flow_name: str,
            node_args: Any,
            state: dict[str, Any] | None = None,
            parent: dict[str, Any] | None = None,
            selective: dict[str, Any] | None = None,
            caller: list[str] | None = None,
            nudge: bool = False,
            waits: int = 0,
            context: dict[str, str] | None = None,
        ) -> Any:
            message = {"state": state or {}, "parent": parent, "selective": selective, "caller": caller}
            if context:  # what observers want the flow's events to start from (selinon.events)
                message["context"] = context
            return self._dispatch(task, flow_name, node_args, message, nudge, waits)

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

        def after_envelope(task: Any, status: str, retval: Any, task_id: str, args: Any, *_: Any) -> None:
            if status in ("SUCCESS", "FAILURE") and isinstance(args, list | tuple) and len(args) == 5:
                self._nudge(args[0], args[4])  # the task ended, and the result backend says so: its flow goes on

        # The dispatcher keeps its own backend record (RUNNING, with the report): no STARTED state over it.
        self.dispatcher: Any = app.task(name=DISPATCHER, track_started=False, **options)(dispatcher)
        # The envelope writes its STARTED state itself (with its try number), after checking for an earlier
        # success: Celery's own would come first and hide that success.
        self.task: Any = app.task(name=TASK, track_started=False, after_return=after_envelope, **options)(envelope)

    def _default_max_poll(self) -> float:
        ceiling = 30.0 if self.nudges else 8 * self.poll_interval
        visibility = (self.app.conf.broker_transport_options or {}).get("visibility_timeout")
        if visibility:  # a countdown longer than that would be delivered again meanwhile (Redis, SQS brokers)
            ceiling = min(ceiling, float(visibility) / 2)
        return ceiling

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
                (flow_name, node_args),
                kwargs,
                task_id=flow_id,
                queue=self.flow_queue(flow_name),
                **delivery.names(flow_name, None, (flow_name, node_args), {"pass": 0}),
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
        :class:`UnknownFlowError` at once for a flow id :meth:`status` does not know.

        A result backend that does not answer meanwhile is waited for, within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        state = "pending"
        while True:
            try:
                report = self.status(flow_id)
            except self.transient as exc:
                state = f"unknown (the result backend does not answer: {type(exc).__name__})"
            else:
                if report.state == "unknown":
                    raise UnknownFlowError(unknown(flow_id))
                if report.done:
                    return report
                state = report.state
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"flow {flow_id} is still {state} after {timeout}s")
            time.sleep(interval)

    def unreachable(self, broker: bool = True, backend: bool = True) -> str | None:
        """Why the broker or the result backend cannot be reached (each given ``broker_connection_timeout``
        seconds), or None when both answer: for commands that should fail at once, in one line."""
        timeout = float(self.app.conf.broker_connection_timeout or 4.0)
        if broker:
            connection = self.app.connection_for_write()
            try:
                problem = _within(timeout, lambda: connection.ensure_connection(max_retries=0, timeout=timeout))
            finally:
                connection.release()
            if problem:
                return f"cannot reach the broker at {connection.as_uri()}: {problem}"
        if backend:
            probe = f"selinon-probe-{uuid.uuid4()}"
            problem = _within(timeout, lambda: self.app.backend.get_task_meta(probe, cache=False))
            if problem:
                return f"cannot reach the result backend at {self.app.backend.as_uri()}: {problem}"
        return None

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
        return self._patiently(lambda: self._shared_throttle(backend, key, interval), f"throttle {key}")

    @staticmethod
    def _shared_throttle(backend: Any, key: str, interval: float) -> float:
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

    # -- reaching the broker and the backend -------------------------------------------------------------------

    def _patiently(self, call: Callable[[], T], what: str) -> T:
        return delivery.patiently(call, what, self.transient)

    def _publish(self, task: Any, what: str, *args: Any, **options: Any) -> None:
        def send() -> Any:
            return task.apply_async(*args, retry=True, retry_policy=RETRY_POLICY, **options)

        delivery.publish(send, what)

    def _meta(self, task_id: str) -> dict[str, Any]:
        """A task's (or flow's) backend record, read afresh."""
        meta: dict[str, Any] = self._patiently(
            lambda: self.app.backend.get_task_meta(task_id, cache=False), f"the result backend's record of {task_id}"
        )
        return meta

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
        if task_name not in self.system.tasks:
            why = f"task {task_name!r} is not in this worker's configuration"
            delivery.hand_back(task, why, self.hand_back_timeout)
            error = f"{why}, nor in that of another worker that took it within {self.hand_back_timeout:g}s"
            raise TaskFailedError(
                {"tries": task.request.retries, "storage": None, "record_id": None, "error": error,
                 "error_record": "not stored: no worker knows the task"}
            )  # fmt: skip
        task_id = task.request.id
        try:
            earlier = self._meta(task_id)
            if earlier.get("status") == "SUCCESS" and isinstance(earlier.get("result"), dict):
                log.info("task %s (%s) already succeeded; not run again", task_name, task_id)
                return dict(earlier["result"])
            tries = task.request.retries + 1
            started = {"tries": tries}
            self._patiently(lambda: task.update_state(state="STARTED", meta=started), f"task {task_id}: record")
            outcome = self.runner.attempt(task_name, flow_name, flow_id, task_id, parent, node_args, tries, context)
        except Unreachable as exc:
            raise Reject(f"task {task_name!r} ({task_id}): {exc}; handed back", requeue=True) from None
        storage = self.system.tasks[task_name].config.storage
        report = {"tries": tries, "storage": storage, "record_id": runtime.plain_record_id(outcome.record_id)}
        if outcome.retry_in is not None:
            log.warning("task %s (%s) failed, retrying in %ss: %s", task_name, task_id, outcome.retry_in, outcome.error)
            try:
                shown = {"argsrepr": task.request.argsrepr, "kwargsrepr": task.request.kwargsrepr}
                reason = TaskRetrying({"tries": tries, "error": outcome.error})
                raise task.retry(
                    countdown=outcome.retry_in,
                    max_retries=None,
                    exc=reason,
                    retry=True,
                    retry_policy=RETRY_POLICY,
                    **shown,
                )
            except Reject as exc:  # Celery could not send the retry: the broker keeps this message instead
                raise Reject(f"task {task_name!r} ({task_id}): its retry was not sent: {exc}", requeue=True) from None
        if outcome.error is not None:
            failure = {"error": outcome.error, "error_record": outcome.error_record, "exception": outcome.exception}
            raise TaskFailedError({**report, **failure})
        return report

    def _nudge(self, flow_name: str, flow_id: str, countdown: float | None = None, again: bool = False) -> None:
        """Have the flow looked at now (or after ``countdown``), unless a look is on its way already (``again``:
        even then). Best effort: the dispatcher's chain looks at the flow anyway."""
        coordinator = self.coordinator
        if not self.nudges or coordinator is None or flow_name not in self.system.flows:
            return
        try:
            if not self._patiently(lambda: coordinator.mark(flow_id), f"flow {flow_id}: nudge") and not again:
                return
            shown = delivery.names(flow_name, None, (flow_name,), {"nudge": True})
            self._publish(
                self.dispatcher, f"flow {flow_id}: nudge", (flow_name, None), {"nudge": True},
                task_id=flow_id, queue=self.flow_queue(flow_name), countdown=countdown, **shown,
            )  # fmt: skip
        except Exception as exc:
            log.warning("flow %s (%s): not nudged (%s); it is looked at on schedule", flow_name, flow_id, exc)

    # -- the dispatcher ----------------------------------------------------------------------------------------

    def _dispatch(
        self, task: Any, flow_name: str, node_args: Any, message: dict[str, Any], nudge: bool, waits: int
    ) -> NoReturn:
        """A dispatcher message: one pass, under the flow's lock. It ends without a result (the pass writes the flow's
        record itself) or hands the message back to the broker; never a Celery FAILURE, which would look final."""
        flow_id = task.request.id
        coordinator, lease, reachable = self.coordinator, None, True
        back: _HandBack | None = None
        try:
            try:
                if flow_name not in self.system.flows:
                    why = f"flow {flow_name!r} is not in this worker's configuration"
                    delivery.hand_back(task, why, self.hand_back_timeout)
                    error = f"{why}, nor in that of another worker that took it within {self.hand_back_timeout:g}s"
                    self._finish(task, flow_id, _unknown_report(flow_name, flow_id, error), message["caller"])
                if coordinator is not None:
                    lease = self._patiently(lambda: coordinator.acquire(flow_id), f"flow {flow_id}: lock")
                    if lease is None and nudge:  # another pass runs: it looks again when it is done (see _leave)
                        self._patiently(lambda: coordinator.mark(flow_id), f"flow {flow_id}: mark")
                        lease = self._patiently(lambda: coordinator.acquire(flow_id), f"flow {flow_id}: lock")
                    if lease is None:
                        if not nudge:  # the chain must go on: this message again, a little later
                            self._again(task, waits)
                        raise Ignore()
                    self._patiently(lambda: coordinator.unmark(flow_id), f"flow {flow_id}: mark")
                self._pass(task, self.system.flow(flow_name), flow_id, {**message, "node_args": node_args}, nudge)
            except _HandBack as exc:
                back = exc
            except (Ignore, Reject, Unreachable):
                raise
            except Exception as exc:  # not the flow's doing (that is counted in _pass), and not final either
                log.exception("flow %s (%s): the dispatcher pass failed", flow_name, flow_id)
                why = f"the dispatcher pass failed: {runtime.describe(exc)}"
                back = _HandBack(why, f"{why} (tried again for {self.hand_back_timeout:g}s)", message["caller"])
        except Unreachable as exc:
            reachable = False
            log.warning("flow %s (%s): %s; the pass is handed back to the broker", flow_name, flow_id, exc)
            raise Reject(f"flow {flow_name!r} ({flow_id}): {exc}", requeue=True) from None
        finally:
            if lease is not None and coordinator is not None:
                self._leave(coordinator, flow_name, flow_id, lease, reachable)
        assert back is not None  # every other way out of a pass raises
        delivery.hand_back(task, back.why, self.hand_back_timeout)
        self._finish(task, flow_id, _unknown_report(flow_name, flow_id, back.error), back.caller)

    def _leave(self, coordinator: Coordinator, flow_name: str, flow_id: str, lease: str, reachable: bool) -> None:
        """Release the flow's lock; a nudge that came meanwhile gets its look now. After an outage, one try: the
        lock's lease ends it otherwise."""
        try:
            if not reachable:
                coordinator.release(flow_id, lease)
                return
            self._patiently(lambda: coordinator.release(flow_id, lease), f"flow {flow_id}: lock")
            marked = self._patiently(lambda: coordinator.marked(flow_id), f"flow {flow_id}: mark")
        except Exception as exc:
            log.warning("flow %s (%s): the lock is left to its lease: %s", flow_name, flow_id, exc)
            return
        if marked:
            self._nudge(flow_name, flow_id, again=True)

    def _again(self, task: Any, waits: int) -> None:
        """Send this chain message again, later: another pass holds the flow's lock."""
        request = task.request
        again = task.signature_from_request(kwargs={**(request.kwargs or {}), "waits": waits + 1})
        shown = {"argsrepr": request.argsrepr, "kwargsrepr": request.kwargsrepr}
        self._publish(again, f"flow {request.id}: the chain", countdown=min(0.5 * 2**waits, 8.0), **shown)

    def _pass(self, task: Any, flow: Any, flow_id: str, message: dict[str, Any], nudge: bool) -> NoReturn:
        """One look at the flow: from the state its record keeps, or, when the record is behind, the message's."""
        record = self._meta(flow_id)
        if record.get("status") == "SUCCESS":
            raise Ignore()  # the flow has ended: a copy delivered late, a nudge, or the chain's last message
        parked = record.get("result") if record.get("status") == RUNNING else None
        parked = parked if isinstance(parked, dict) and "resume" in parked else None
        number = int(message["state"].get("pass", 0))
        if nudge:
            if parked is None:
                raise Ignore()  # the first pass has not run: the chain's first message will look
            source, this = parked["resume"], parked["pass"] + 1
        elif parked is not None and number < parked.get("chain", 0):
            raise Ignore()  # an older chain message, delivered again after the chain went on
        elif parked is not None and parked["pass"] >= number:
            source, this = parked["resume"], parked["pass"] + 1  # nudged passes ran since it was sent
        else:
            source, this = message, number
        state = source["state"]
        if flow.throttle and this == 0 and not nudge and not state.get("gated"):
            # A throttled flow starts at least its interval after the previous run started, even a late one.
            wait = self.throttle(f"start:flow:{flow.name}", flow.throttle)
            if wait > 0:
                gated = {**source, "state": {"pass": 0, "gated": True}}
                self._send_chain(flow, flow_id, gated, wait)
                raise Ignore()
        context = source.get("context")
        try:
            run = FlowState(
                self.system, flow, flow_id, source["node_args"], source["parent"], source["selective"],
                state.get("flow"), context, "celery",
            )  # fmt: skip
        except MigrationSkew as exc:
            # Written under migrations this worker lacks (a rolling upgrade): for an upgraded worker to take.
            error = f"{exc}; no worker with those migrations took it within {self.hand_back_timeout:g}s"
            raise _HandBack(str(exc), error, source.get("caller")) from None
        final = False
        try:
            for node in run.watched():
                self._poll(run, node)
            starts, retry = run.advance(self.throttle)
            for start in starts:
                self._send(run, start)
        except Unreachable:
            raise
        except Exception as exc:
            # Something other than a condition kept this pass from ending: redo it from the same state, within the
            # flow's dispatcher retries.
            what = f"flow {flow.name!r} ({flow_id}): dispatcher pass failed: {runtime.describe(exc)}"
            run = FlowState(
                self.system, flow, flow_id, source["node_args"], source["parent"], source["selective"],
                state.get("flow"), context, "celery",
            )  # fmt: skip
            final, retry = not run.count_retry(what), True
        report = _report(run, this, final)
        caller = source.get("caller")
        if run.done or final:
            self._finish(task, flow_id, report, caller)
        chain, due = (parked.get("chain", 0), parked.get("due")) if parked is not None else (number, None)
        # A nudge whose chain's next message is long overdue (lost with a broker) takes the chain over.
        leads = not nudge or (due is not None and time.time() - float(due) > LOST_AFTER)
        if leads:  # the chain's next message: the strategy's wait, or the flow's retry_countdown
            look = flow.retry_countdown if retry else run.next_look(self.poll_interval, self.max_poll_interval)
        resume = {
            **{k: source.get(k) for k in ("parent", "selective", "caller", "context")},
            "node_args": run.node_args,
        }
        resume["state"] = {"pass": this + 1, "flow": run.dump()}  # after next_look: it keeps its last wait
        if leads:
            if nudge:
                log.warning("flow %s (%s): its next look was overdue; the chain goes on from here", flow.name, flow_id)
            self._send_chain(flow, flow_id, resume, look)
            chain, due = this + 1, time.time() + look
        elif retry and (due is None or time.time() + flow.retry_countdown < float(due)):
            self._nudge(flow.name, flow_id, countdown=flow.retry_countdown, again=True)  # sooner than the chain
        # Written after the chain's next message is sent: a copy of this one delivered again then stops.
        parked_now = {**report, "resume": resume, "chain": chain, "due": due}
        self._patiently(lambda: task.backend.store_result(flow_id, parked_now, RUNNING), f"flow {flow_id}: record")
        raise Ignore()

    def _finish(self, task: Any, flow_id: str, report: dict[str, Any], caller: list[str] | None) -> NoReturn:
        """Write the flow's final report (SUCCESS: a Celery backend never overwrites it) and tell its caller."""
        self._patiently(lambda: task.backend.store_result(flow_id, report, "SUCCESS"), f"flow {flow_id}: record")
        log.info("flow %s (%s) %s", report["flow"], flow_id, report["state"])
        if caller:
            self._nudge(caller[0], caller[1])
        raise Ignore()

    def _send_chain(self, flow: Any, flow_id: str, source: dict[str, Any], countdown: float) -> None:
        kwargs = {k: source.get(k) for k in ("state", "parent", "selective", "caller")}
        if source.get("context"):
            kwargs["context"] = source["context"]
        shown = delivery.names(flow.name, None, (flow.name, source["node_args"]), {"pass": source["state"]["pass"]})
        self._publish(
            self.dispatcher, f"flow {flow_id}: the chain", (flow.name, source["node_args"]), kwargs,
            task_id=flow_id, queue=self.flow_queue(flow.name), countdown=countdown, **shown,
        )  # fmt: skip

    def _send(self, run: FlowState, start: Start) -> None:
        run.node(start.id)["sent"] = time.time()
        if start.kind == "flow":
            arguments = {"parent": start.parent, "selective": start.selective, "caller": [run.flow.name, run.flow_id]}
            if start.context:
                arguments["context"] = start.context
            shown = delivery.names(start.name, None, (start.name, start.node_args), {"pass": 0})
            self._publish(
                self.dispatcher, f"sub-flow {start.name!r}", (start.name, start.node_args), arguments,
                task_id=start.id, queue=self.flow_queue(start.name), countdown=start.countdown, **shown,
            )  # fmt: skip
        else:
            self._send_task(
                run.flow.name, run.flow_id, start.name, start.id, start.node_args, start.parent, start.countdown,
                start.context,
            )  # fmt: skip

    def _send_task(
        self,
        flow_name: str,
        flow_id: str,
        name: str,
        task_id: str,
        node_args: Any,
        parent: Any,
        countdown: Any = None,
        context: dict[str, str] | None = None,
    ) -> None:
        self._publish(
            self.task, f"task {name!r}", (flow_name, name, node_args, parent, flow_id),
            {"context": context} if context else None,
            task_id=task_id, queue=self.task_queue(name), countdown=countdown,
            **delivery.names(flow_name, name, (flow_name, name, node_args)),
        )  # fmt: skip

    def _poll(self, run: FlowState, node: dict[str, Any]) -> None:
        """Read a node's state from the result backend; report its end to the flow's state."""
        meta = self._meta(node["id"])
        state, info = meta.get("status"), meta.get("result")
        if node["kind"] == "flow":
            if state == "SUCCESS" and isinstance(info, dict):
                details = {"tasks": info.get("tasks", []), "summary": info.get("summary"), "error": info.get("error")}
                run.ended(node["id"], info.get("state") != "failed", **details)
            elif state == "FAILURE":
                run.ended(node["id"], False, error=f"the dispatcher failed: {_described(info)}")
            else:
                node["state"] = "running" if state == RUNNING else "scheduled"
                if state == RUNNING and isinstance(info, dict):
                    node["tasks"] = info.get("tasks", [])
                    self._revive(node, info)
        elif state == "SUCCESS":
            run.ended(node["id"], True, **(info if isinstance(info, dict) else {}))
        elif state == "FAILURE":
            reported = info.args[0] if isinstance(info, Exception) and info.args else None
            if type(info).__name__ == TaskFailedError.__name__ and isinstance(reported, dict):
                run.ended(node["id"], False, **reported)
            else:  # the envelope failed outside the task (its backend, its broker, a lost worker...)
                self._envelope_failed(run, node, _described(info))
        else:
            node["state"] = {"STARTED": "running", "RETRY": "retrying"}.get(str(state), "scheduled")
            tries = _tries(str(state), info)
            if tries is not None:
                node["tries"] = tries
            now = time.time()
            sent, looked = node.get("sent", now), node.get("looked", 0)
            if state == "PENDING" and now - sent > LOST_AFTER and now - looked > LOST_AFTER:
                # Not even started: the backend may have lost its record (the storage holds the result), or the
                # broker the message (kombu's Redis transport can, when the broker stops as a worker takes it).
                node["looked"] = now
                if not self._stored(run, node) and node.get("resent", 0) < ENVELOPE_RESENDS:
                    self._resend(run, node, f"not started {now - sent:.0f}s after it was sent")

    def _stored(self, run: FlowState, node: dict[str, Any]) -> bool:
        """Whether the task's storage holds its result (then it succeeded, whatever the backend says)."""
        config = self.system.tasks[node["name"]].config
        if config.storage is None or config.storage_read_only:
            return False
        try:
            StoragePool.retrieve(run.flow.name, node["name"], node["id"])
        except Exception:  # no result (or the storage cannot tell now): not known to have succeeded
            return False
        log.warning(
            "flow %s (%s): task %s (%s) took its outcome from its storage: the result backend lost it",
            run.flow.name, run.flow_id, node["name"], node["id"],
        )  # fmt: skip
        run.ended(node["id"], True, storage=config.storage, record_id=None, tries=None)
        return True

    def _envelope_failed(self, run: FlowState, node: dict[str, Any], error: str) -> None:
        """A task whose envelope failed outside the task: its result if stored, else the task sent again (a few
        times), else failed."""
        if self._stored(run, node):
            return
        resent = node.get("resent", 0)
        if resent >= ENVELOPE_RESENDS:
            run.ended(node["id"], False, error=f"its envelope failed {resent + 1} times, last: {error}")
            return
        self._patiently(lambda: self.app.backend.forget(node["id"]), f"task {node['id']}: forget")
        self._resend(run, node, f"its envelope failed outside the task ({error})")

    def _resend(self, run: FlowState, node: dict[str, Any], why: str) -> None:
        """Send a task again, with the same id: a copy that runs after it finds the result and stops."""
        log.warning(
            "flow %s (%s): task %s (%s): %s; sending it again",
            run.flow.name, run.flow_id, node["name"], node["id"], why,
        )  # fmt: skip
        node_args = node.get("node_args", run.node_args)
        self._send_task(run.flow.name, run.flow_id, node["name"], node["id"], node_args, node.get("parent", {}))
        node.update(resent=node.get("resent", 0) + 1, state="scheduled", sent=time.time())

    def _revive(self, node: dict[str, Any], record: dict[str, Any]) -> None:
        """A running sub-flow whose next look is long overdue (its chain's message lost with a broker): nudged,
        and that pass starts a chain again (see :meth:`_pass`)."""
        now, due = time.time(), record.get("due")
        if due is not None and now - float(due) > LOST_AFTER and now - node.get("looked", 0) > LOST_AFTER:
            node["looked"] = now
            log.warning("sub-flow %s (%s): its next look is overdue; nudged", node["name"], node["id"])
            self._nudge(node["name"], node["id"], again=True)


def _within(timeout: float, call: Callable[[], Any]) -> str | None:
    """What ``call()`` raised, "no answer within ...", or None: ``call`` runs in a thread left behind on timeout."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except Exception as exc:
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return f"no answer within {timeout:g}s"
    return f"{type(failures[0]).__name__}: {failures[0]}" if failures else None


def _report(run: FlowState, pass_number: int, final: bool = False) -> dict[str, Any]:
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
    # A failed flow is reported failed once its running nodes have ended (and stored what they return), or at
    # once when it ran out of dispatcher retries (``final``).
    state = ("failed" if run.failed_flow else "succeeded") if run.done or final else "running"
    return {
        "flow": run.flow.name,
        "flow_id": run.flow_id,
        "state": state,
        "error": run.error,
        "dispatcher_retries": run.retries,
        "pass": pass_number,
        "tasks": tasks,
        "summary": run.summary() if run.done or final else None,
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


def _unknown_report(flow_name: str, flow_id: str, error: str) -> dict[str, Any]:
    """The final report of a flow no worker knew, or whose dispatcher kept failing."""
    summary: dict[str, dict[str, Any]] = {"finished": {}, "failed": {}, "nested": {}}
    return {
        "flow": flow_name, "flow_id": flow_id, "state": "failed", "error": error, "dispatcher_retries": 0,
        "pass": 0, "tasks": [], "summary": summary,
    }  # fmt: skip


def _report_from(info: dict[str, Any]) -> FlowReport:
    return FlowReport(
        flow_id=info["flow_id"],
        flow=info.get("flow"),
        state=info.get("state", "running"),
        error=info.get("error"),
        dispatcher_retries=info.get("dispatcher_retries", 0),
        tasks=list(info.get("tasks", [])),
    )


def _described(info: Any) -> str:
    return runtime.describe(info) if isinstance(info, BaseException) else str(info)
