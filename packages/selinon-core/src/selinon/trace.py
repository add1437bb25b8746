"""Tracers, as Selinon 1.x had them: ``global: trace:`` in the YAML and ``Trace.trace_by_*()`` in code.

A tracer is told every lifecycle event (:mod:`selinon.events`) under its Selinon 1.x name and number
(``Trace.TASK_START``, ...) with a mapping of details, as 1.x's were: ``logging`` writes one log line per event,
``json`` prints one JSON document per event, ``function`` calls yours with ``(event, details)``, ``storage``
calls a method of a storage adapter the same way, and ``sentry`` reports failed tasks and flows to Sentry. All
of them hear events through one ``selinon_event`` hook implementation, registered only while a tracer exists,
so a process that traces nothing pays nothing. A tracer that raises is logged once and counted
(``selinon.plugins.observer_failures``), and the others still hear the event.
"""

from __future__ import annotations

import datetime
import importlib
import json
import logging
import os
import platform
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from selinon import events, plugins
from selinon.config import Configuration, TracerConfig, expand
from selinon.errors import ConfigurationError
from selinon.hookspecs import hookimpl

__all__ = ["Trace", "configure"]

log = logging.getLogger(__name__)

#: Selinon 1.x's trace events, in the order that gives each its number (``Trace.<NAME>``).
NAMES_1X = (
    "DISPATCHER_WAKEUP", "FLOW_SCHEDULE", "FLOW_START", "TASK_SCHEDULE", "TASK_START", "SUBFLOW_SCHEDULE",
    "TASK_END", "NODE_SUCCESSFUL", "TASK_DISCARD_RESULT", "TASK_FAILURE", "TASK_RETRY", "FLOW_FAILURE",
    "DISPATCHER_FAILURE", "NODE_FAILURE", "FALLBACK_START", "DISPATCHER_RETRY", "FLOW_END", "STORAGE_CONNECT",
    "STORAGE_DISCONNECT", "STORAGE_RETRIEVE", "STORAGE_RETRIEVED", "STORAGE_STORE", "STORAGE_STORED",
    "EDGE_COND_FALSE", "FOREACH_RESULT", "NODE_STATE_CACHE_GET", "NODE_STATE_CACHE_ADD", "NODE_STATE_CACHE_MISS",
    "NODE_STATE_CACHE_HIT", "TASK_RESULT_CACHE_GET", "TASK_RESULT_CACHE_ADD", "TASK_RESULT_CACHE_MISS",
    "TASK_RESULT_CACHE_HIT", "SELECTIVE_OMIT_EDGE", "SELECTIVE_OMIT_NODE", "SELECTIVE_RUN_FUNC",
    "SELECTIVE_TASK_REUSE", "STORAGE_STORE_ERROR", "STORAGE_OMIT_STORE_ERROR", "FALLBACK_COND_FALSE",
    "FALLBACK_COND_TRUE", "NODE_STATE_CACHE_ISSUE", "TASK_RESULT_CACHE_ISSUE", "STORAGE_ISSUE",
    "RESULT_BACKEND_ISSUE", "FLOW_RETRY", "MIGRATION", "MIGRATION_SKEW", "MIGRATION_TAINTED_FLOW",
    "MIGRATION_ERROR", "EAGER_FAILURE", "STORAGE_DELETE", "STORAGE_DELETED",
)  # fmt: skip

#: Each lifecycle event and the Selinon 1.x trace event it is told as (docs/operating.md has the table).
FROM_EVENTS = {
    events.FLOW_SCHEDULED: "FLOW_SCHEDULE",
    events.DISPATCHER_PASS: "DISPATCHER_WAKEUP",
    events.FLOW_STARTED: "FLOW_START",
    events.TASK_SCHEDULED: "TASK_SCHEDULE",
    events.SUBFLOW_SCHEDULED: "SUBFLOW_SCHEDULE",
    events.TASK_STARTED: "TASK_START",
    events.TASK_SUCCEEDED: "TASK_END",
    events.TASK_RETRY: "TASK_RETRY",
    events.TASK_FAILED: "TASK_FAILURE",
    events.TASK_REUSED: "SELECTIVE_TASK_REUSE",
    events.NODE_SUCCEEDED: "NODE_SUCCESSFUL",
    events.NODE_FAILED: "NODE_FAILURE",
    events.FALLBACK_STARTED: "FALLBACK_START",
    events.DISPATCHER_RETRY: "FLOW_RETRY",
    events.FLOW_SUCCEEDED: "FLOW_END",
    events.FLOW_FAILED: "FLOW_FAILURE",
    events.STORAGE_PREFIX + "connect": "STORAGE_CONNECT",
    events.STORAGE_PREFIX + "retrieve": "STORAGE_RETRIEVED",
    events.STORAGE_PREFIX + "store": "STORAGE_STORED",
    events.STORAGE_PREFIX + "store_error": "STORAGE_STORE_ERROR",
    events.STORAGE_PREFIX + "retrieve_error": "STORAGE_RETRIEVED",
    events.STORAGE_PREFIX + "delete": "STORAGE_DELETED",
    events.STORAGE_PREFIX + "retry": "STORAGE_ISSUE",
}
#: Events that 1.x's logging tracer wrote as warnings (and its JSON tracer to stderr); so is any event with an error.
WARNINGS = frozenset(
    NAMES_1X.index(name)
    for name in (
        "NODE_FAILURE", "TASK_DISCARD_RESULT", "TASK_RETRY", "TASK_FAILURE", "FLOW_FAILURE",
        "STORAGE_OMIT_STORE_ERROR", "NODE_STATE_CACHE_ISSUE", "TASK_RESULT_CACHE_ISSUE", "STORAGE_ISSUE",
        "RESULT_BACKEND_ISSUE", "FLOW_RETRY", "MIGRATION_SKEW", "MIGRATION_ERROR", "EAGER_FAILURE",
    )
)  # fmt: skip
_NUMBERS = {event: NAMES_1X.index(name) for event, name in FROM_EVENTS.items()}
#: Loggers whose error records repeat what the Sentry tracer reports itself (a failed task, a failed flow).
_REPORTED_BY_SENTRY = ("selinon.executor", "selinon.flows.dispatcher")

TraceFunction = Callable[[int, dict[str, Any]], Any]


class Tracer:
    """One tracer: told each event as its 1.x number, the details, and the exception behind a failed try."""

    name = "tracer"

    def trace(self, event: int, details: dict[str, Any], exception: BaseException | None) -> None:
        raise NotImplementedError


class _Function(Tracer):
    def __init__(self, function: TraceFunction, name: str | None = None) -> None:
        self.function = function
        self.name = name or f"trace function {getattr(function, '__module__', '?')}.{_qualname(function)}"

    def trace(self, event: int, details: dict[str, Any], exception: BaseException | None) -> None:
        self.function(event, details)


class _Logging(Tracer):
    name = "trace logging"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("selinon.trace")

    def trace(self, event: int, details: dict[str, Any], exception: BaseException | None) -> None:
        level = logging.WARNING if _is_warning(event, details) else logging.INFO
        if self.logger.isEnabledFor(level):
            text = json.dumps(_report(event, details), sort_keys=True, default=str)
            self.logger.log(level, "SELINON %10s - %s : %s", platform.node(), NAMES_1X[event], text)


class _Json(Tracer):
    name = "trace json"

    def trace(self, event: int, details: dict[str, Any], exception: BaseException | None) -> None:
        report = {**_report(event, details), "node": platform.node()}
        out = sys.stderr if _is_warning(event, details) else sys.stdout
        print(json.dumps(report, sort_keys=True, default=str), file=out, flush=True)


class _Storage(Tracer):
    """Selinon 1.x's ``storage:`` tracer: ``method(event, details)`` of a storage's adapter."""

    def __init__(self, storage: str, method: str) -> None:
        self.storage, self.method = storage, method
        self.name = f"trace storage {storage}.{method}"

    def trace(self, event: int, details: dict[str, Any], exception: BaseException | None) -> None:
        from selinon.pool import StoragePool

        getattr(StoragePool.get_connected_storage(self.storage), self.method)(event, details)


class _Sentry(Tracer):
    """Reports each failed task (with its exception) and each failed flow to Sentry, tagged with names and ids."""

    name = "trace sentry"

    def __init__(self, sdk: Any) -> None:
        self.sdk = sdk

    def trace(self, event: int, details: dict[str, Any], exception: BaseException | None) -> None:
        if event not in (Trace.TASK_FAILURE, Trace.FLOW_FAILURE):
            return
        tags = {f"selinon.{k}": details[k] for k in ("flow_name", "flow_id", "task_name", "task_id") if k in details}
        extras = {k: v for k, v in details.items() if k not in ("time", "dispatcher_id", "what")}
        if event == Trace.TASK_FAILURE and exception is not None:
            self.sdk.capture_exception(exception, tags=tags, extras=extras)
        elif event == Trace.TASK_FAILURE:
            message = f"task {details.get('task_name')!r} failed: {details.get('error')}"
            self.sdk.capture_message(message, level="error", tags=tags, extras=extras)
        else:
            message = f"flow {details.get('flow_name')!r} failed: {details.get('error')}"
            self.sdk.capture_message(message, level="error", tags=tags, extras=extras)


def _qualname(function: Any) -> str:
    return str(getattr(function, "__qualname__", None) or type(function).__qualname__)


def _is_warning(event: int, details: Mapping[str, Any]) -> bool:
    return event in WARNINGS or details.get("error") is not None


def _report(event: int, details: dict[str, Any]) -> dict[str, Any]:
    moment = datetime.datetime.fromtimestamp(details.get("time", 0.0), datetime.timezone.utc)
    return {"event": NAMES_1X[event], "time": moment.isoformat(), "details": details}


def details_of(event: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The details a 1.x tracer gets: the event's fields, its name as ``selinon_event``, and the keys 1.x used
    for some of them (``dispatcher_id`` for ``flow_id``, ``what`` for ``error``, ``retried_count``)."""
    details = {"selinon_event": event, **fields}
    if "flow_id" in fields and not event.startswith(events.STORAGE_PREFIX):
        details["dispatcher_id"] = fields["flow_id"]
    if fields.get("error") is not None:
        details["what"] = fields["error"]
    if "tries" in fields:
        details["retried_count"] = fields["tries"] - 1
    return details


class _Tracers:
    """The ``selinon_event`` implementation that tells every tracer: those of ``global: trace`` and the ones
    added with ``Trace.trace_by_*``."""

    def __init__(self) -> None:
        self.configured: list[Tracer] = []
        self.added: list[Tracer] = []
        self.lock = threading.Lock()

    @hookimpl
    def selinon_event(self, event: str, fields: dict[str, Any], exception: BaseException | None) -> None:
        number = _NUMBERS.get(event)
        if number is not None:
            self.tell(number, details_of(event, fields), exception)

    def tell(self, number: int, details: dict[str, Any], exception: BaseException | None) -> None:
        for tracer in (*self.configured, *self.added):
            try:
                tracer.trace(number, details, exception)
            except Exception as exc:
                plugins.observer_raised(tracer.name, f"{type(exc).__name__}: {exc}", "selinon_event")

    def update(self) -> None:
        """Listen while there is a tracer, and only then."""
        plugins.load_plugins()
        registered = plugins.pm.is_registered(self)
        if (self.configured or self.added) and not registered:
            plugins.pm.register(self, name="selinon.trace")
        elif not (self.configured or self.added) and registered:
            plugins.pm.unregister(self)


_tracers = _Tracers()
_configured: tuple[TracerConfig, ...] = ()
_sentry_dsn: str | None = None


class Trace:
    """Selinon 1.x's tracing interface (``selinon.Trace``; ``selinon.Config.trace_by_*`` call it).

    The constants are 1.x's event numbers; a function given to :meth:`trace_by_func` is called with one of
    them and a mapping of details. Not every 1.x event is told: docs/operating.md maps each one.
    """

    DISPATCHER_WAKEUP = 0
    FLOW_SCHEDULE = 1
    FLOW_START = 2
    TASK_SCHEDULE = 3
    TASK_START = 4
    SUBFLOW_SCHEDULE = 5
    TASK_END = 6
    NODE_SUCCESSFUL = 7
    TASK_DISCARD_RESULT = 8
    TASK_FAILURE = 9
    TASK_RETRY = 10
    FLOW_FAILURE = 11
    DISPATCHER_FAILURE = 12
    NODE_FAILURE = 13
    FALLBACK_START = 14
    DISPATCHER_RETRY = 15
    FLOW_END = 16
    STORAGE_CONNECT = 17
    STORAGE_DISCONNECT = 18
    STORAGE_RETRIEVE = 19
    STORAGE_RETRIEVED = 20
    STORAGE_STORE = 21
    STORAGE_STORED = 22
    EDGE_COND_FALSE = 23
    FOREACH_RESULT = 24
    NODE_STATE_CACHE_GET = 25
    NODE_STATE_CACHE_ADD = 26
    NODE_STATE_CACHE_MISS = 27
    NODE_STATE_CACHE_HIT = 28
    TASK_RESULT_CACHE_GET = 29
    TASK_RESULT_CACHE_ADD = 30
    TASK_RESULT_CACHE_MISS = 31
    TASK_RESULT_CACHE_HIT = 32
    SELECTIVE_OMIT_EDGE = 33
    SELECTIVE_OMIT_NODE = 34
    SELECTIVE_RUN_FUNC = 35
    SELECTIVE_TASK_REUSE = 36
    STORAGE_STORE_ERROR = 37
    STORAGE_OMIT_STORE_ERROR = 38
    FALLBACK_COND_FALSE = 39
    FALLBACK_COND_TRUE = 40
    NODE_STATE_CACHE_ISSUE = 41
    TASK_RESULT_CACHE_ISSUE = 42
    STORAGE_ISSUE = 43
    RESULT_BACKEND_ISSUE = 44
    FLOW_RETRY = 45
    MIGRATION = 46
    MIGRATION_SKEW = 47
    MIGRATION_TAINTED_FLOW = 48
    MIGRATION_ERROR = 49
    EAGER_FAILURE = 50
    STORAGE_DELETE = 51
    STORAGE_DELETED = 52

    WARN_EVENTS = tuple(sorted(WARNINGS))

    def __init__(self) -> None:
        raise TypeError("Trace is used through its class methods, such as Trace.trace_by_logging()")

    @classmethod
    def trace_by_logging(cls, logger: logging.Logger | None = None) -> None:
        """Log every event: one line each, on ``logger`` (default ``selinon.trace``), INFO or WARNING level."""
        cls._add(_Logging(logger))

    @classmethod
    def trace_by_json(cls) -> None:
        """Print every event as one JSON document: to stdout, or to stderr for warnings and errors."""
        cls._add(_Json())

    @classmethod
    def trace_by_func(cls, func: TraceFunction) -> None:
        """Call ``func(event, details)`` for every event (``event`` is a ``Trace`` constant)."""
        if not callable(func):
            raise TypeError(f"trace_by_func needs a function taking (event, details), not {type(func).__name__}")
        cls._add(_Function(func))

    @classmethod
    def trace_by_sentry(cls, dsn: str | None = None) -> None:
        """Report failed tasks and flows to Sentry (``pip install 'selinon-core[sentry]'``).

        ``dsn`` (``{NAME}`` environment references expanded) initialises sentry-sdk; without it, an already
        initialised sentry-sdk is used as it is, else sentry-sdk reads ``SENTRY_DSN``."""
        cls._add(_sentry(dsn, "Trace.trace_by_sentry()"))

    @classmethod
    def log(cls, event: int, *details: Mapping[str, Any], **more: Any) -> None:
        """Tell every tracer of an event of your own, as 1.x's ``Trace.log`` did."""
        merged: dict[str, Any] = {}
        for mapping in details:
            merged.update(mapping)
        merged.update(more)
        _tracers.tell(event, merged, None)

    @classmethod
    def event2str(cls, event: int) -> str:
        """The name of a 1.x event number (``Trace.event2str(Trace.TASK_START) == "TASK_START"``)."""
        return NAMES_1X[event]

    @classmethod
    def reset(cls) -> None:
        """Forget the tracers added in code (those of ``global: trace`` stay)."""
        with _tracers.lock:
            _tracers.added = []
            _tracers.update()

    @staticmethod
    def _add(tracer: Tracer) -> None:
        with _tracers.lock:
            _tracers.added = [*_tracers.added, tracer]
            _tracers.update()


def reset() -> None:
    """Forget every tracer, configured or added (for tests)."""
    global _configured, _sentry_dsn
    with _tracers.lock:
        _tracers.configured, _tracers.added, _configured, _sentry_dsn = [], [], (), None
        _tracers.update()


def configure(configuration: Configuration) -> None:
    """Start the tracers of ``global: trace`` (replacing those of an earlier configuration); called where a
    configuration is put to work: :class:`selinon.executor.Executor` and :func:`selinon.celery.attach`."""
    global _configured
    wanted = configuration.global_options.trace
    if wanted == _configured:
        return
    tracers = [_tracer(config) for config in wanted]  # every error before anything changes
    with _tracers.lock:
        _tracers.configured = tracers
        _configured = wanted
        _tracers.update()


def _tracer(config: TracerConfig) -> Tracer:
    if config.kind == "logging":
        return _Logging()
    if config.kind == "json":
        return _Json()
    if config.kind == "sentry":
        return _sentry(expand(config.options["dsn"], os.environ, f"{config.where}: dsn"), config.where)
    if config.kind == "storage":
        return _storage_tracer(config)
    return _function(config)


def _function(config: TracerConfig) -> Tracer:
    module, name = config.options["import"], config.options["name"]
    try:
        found = getattr(importlib.import_module(module), name, None)
    except Exception as exc:
        raise ConfigurationError(
            f"{config.where}: cannot import {module!r}: {type(exc).__name__}: {exc}; check `import:` and that the "
            "module is on the Python path"
        ) from None
    if found is None:
        raise ConfigurationError(f"{config.where}: module {module!r} has no function {name!r}; check `name:`")
    if not callable(found):
        raise ConfigurationError(f"{config.where}: {module}.{name} is not a function; name one taking (event, details)")
    return _Function(found, f"trace function {module}.{name}")


def _storage_tracer(config: TracerConfig) -> Tracer:
    from selinon.pool import StoragePool

    storage, method = config.options["name"], config.options["method"]
    adapter = StoragePool.get_storage(storage)  # instantiated, not connected
    if not callable(getattr(adapter, method, None)):
        raise ConfigurationError(
            f"{config.where}: storage {storage!r} ({type(adapter).__name__}) has no method {method!r}; "
            "set `method:` to one taking (event, details)"
        )
    return _Storage(storage, method)


def _sentry(dsn: str | None, where: str) -> Tracer:
    global _sentry_dsn
    try:
        sdk = importlib.import_module("sentry_sdk")
    except ImportError:
        raise ConfigurationError(
            f"{where}: tracing to Sentry needs sentry-sdk; install it: pip install 'selinon-core[sentry]'"
        ) from None
    if (dsn is not None and dsn != _sentry_dsn) or (dsn is None and not sdk.is_initialized()):
        # The envelope's TaskFailedError repeats a failure this tracer reports with the task's own exception.
        sdk.init(dsn=dsn, ignore_errors=["selinon.celery.TaskFailedError"])
        _sentry_dsn = dsn
    ignore_logger = importlib.import_module("sentry_sdk.integrations.logging").ignore_logger
    for name in _REPORTED_BY_SENTRY:
        ignore_logger(name)
    return _Sentry(sdk)
