"""What running a flow means, whoever runs it: resolving task classes, one try of a task, and firing edges.

The local executor (threads in one process) and Celery workers (:mod:`selinon.celery`) both go through these
functions, so a flow stores the same results, retries the same way and branches on the same conditions either way.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import json
import logging
import pickle
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from selinon import events, failures
from selinon.caches import BUILTIN as BUILTIN_CACHES
from selinon.caches import Cache, CacheMissError
from selinon.errors import ConfigurationError, FatalTaskError, SelinonError, StorageError
from selinon.flows import Flow, System, TaskSpec
from selinon.pool import StoragePool
from selinon.storage import type_name
from selinon.task import Retry, SelinonTask

log = logging.getLogger(__name__)
N = TypeVar("N")


@dataclass
class Outcome:
    """How one try of a task ended: a result (stored), a retry after ``retry_in`` seconds, or a final error."""

    result: Any = None
    record_id: Any = None
    retry_in: float | None = None
    error: str | None = None
    #: For a failed task: "stored", "not supported" by its storage, "no storage", or why storing it failed.
    error_record: str | None = None
    #: The exception behind ``error`` (for observers), never sent anywhere.
    raised: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def exception(self) -> dict[str, str] | None:
        """For a failed task: its exception as ``{"type": "module.QualifiedName", "message": ...}``, what a process
        that did not run it rebuilds (:mod:`selinon.failures`)."""
        if self.raised is None or self.retry_in is not None:
            return None
        return {"type": type_name(type(self.raised)), "message": str(self.raised)}


class TaskRunner:
    """Runs tries of the tasks of a :class:`System`; task classes and output schemas are resolved once, on first use.

    ``throttle(key, seconds)`` returns how long to wait so that starts of ``key`` are that far apart: the first try
    of a throttled task waits for it, so its instances start at least ``throttling:`` apart even when the one
    before started late (dispatchers already send them that far apart, as Selinon 1.x did).
    """

    def __init__(self, system: System, throttle: Callable[[str, float], float] | None = None) -> None:
        self.system = system
        self.throttle = throttle
        self._classes: dict[str, type[SelinonTask]] = {}
        self._validators: dict[str, Any] = {}
        self._lock = threading.Lock()

    def prepare(self, flow_name: str) -> None:
        """Import every task class and load every output schema the flow can reach, before anything runs."""
        pending, seen = [flow_name], set()
        while pending:
            flow = self.system.flows[pending.pop()]
            seen.add(flow.name)
            for node in sorted(flow.nodes()):
                if node in self.system.flows:
                    if node not in seen:
                        pending.append(node)
                else:
                    self.resolve(node)

    def resolve(self, task_name: str) -> tuple[type[SelinonTask], Any]:
        """The task's class and its output validator (``None`` without ``output_schema``)."""
        with self._lock:
            if task_name not in self._classes:
                spec = self.system.tasks[task_name]
                cls = task_class(spec)
                if spec.output_schema is not None:
                    self._validators[task_name] = validator(spec)
                self._classes[task_name] = cls
            return self._classes[task_name], self._validators.get(task_name)

    def attempt(
        self,
        task_name: str,
        flow_name: str,
        flow_id: str,
        task_id: str,
        parent: dict[str, Any],
        node_args: Any,
        tries: int,
        context: dict[str, str] | None = None,
    ) -> Outcome:
        """Try ``task_name`` once (``tries`` counts this try): run it, check its result, store it.

        A try that fails with tries left asks for a retry; the last one records its error through ``store_error``.
        Observers hear ``task.started`` and how the try ended; ``context`` is the flow's (see selinon.events).
        """
        hooks = events.observers()
        if hooks is None:
            return self._attempt(task_name, flow_name, flow_id, task_id, parent, node_args, tries)
        context = dict(context or {})
        fields = {
            "flow_name": flow_name,
            "flow_id": flow_id,
            "task_name": task_name,
            "task_id": task_id,
            "parent": parent,
            "tries": tries,
        }
        events.tell(hooks, events.TASK_STARTED, dict(fields), context)
        began = time.perf_counter()
        with events.scope(flow_id, context):
            outcome = self._attempt(task_name, flow_name, flow_id, task_id, parent, node_args, tries)
        fields["duration"] = time.perf_counter() - began
        if outcome.retry_in is not None:
            fields.update(error=outcome.error, countdown=outcome.retry_in)
            events.tell(hooks, events.TASK_RETRY, fields, context, outcome.raised)
        elif outcome.error is not None:
            fields.update(error=outcome.error, error_record=outcome.error_record)
            events.tell(hooks, events.TASK_FAILED, fields, context, outcome.raised)
        else:
            storage = self.system.tasks[task_name].config.storage
            fields.update(storage=storage, record_id=plain_record_id(outcome.record_id))
            events.tell(hooks, events.TASK_SUCCEEDED, fields, context)
        return outcome

    def _attempt(
        self,
        task_name: str,
        flow_name: str,
        flow_id: str,
        task_id: str,
        parent: dict[str, Any],
        node_args: Any,
        tries: int,
    ) -> Outcome:
        spec = self.system.tasks[task_name]
        try:
            cls, check = self.resolve(task_name)
        except ConfigurationError as exc:  # a task that cannot be resolved will not resolve on a retry either
            return failed(spec, flow_name, task_id, node_args, exc)
        if spec.throttle and tries == 1 and self.throttle is not None:
            time.sleep(self.throttle(f"start:task:{task_name}", spec.throttle))
        try:
            task = cls(flow_name, task_name, parent, task_id, flow_id)
            result = task.run(node_args)
            if check is not None:
                check_schema(check, result)
            record_id = None
            if spec.config.storage is not None and not spec.config.storage_read_only:
                record_id = StoragePool.set(node_args, flow_name, task_name, task_id, result)
            return Outcome(result=result, record_id=record_id)
        except Retry as exc:
            if tries <= spec.max_retry:
                countdown = spec.retry_countdown if exc.countdown is None else exc.countdown
                return Outcome(retry_in=countdown, error="the task asked to be retried", raised=exc)
            error: Exception = RuntimeError(f"asked to be retried with no tries left (max_retry: {spec.max_retry})")
            error.__traceback__ = exc.__traceback__
        except Exception as exc:
            if tries <= spec.max_retry and not isinstance(exc, FatalTaskError):
                return Outcome(retry_in=spec.retry_countdown, error=describe(exc), raised=exc)
            error = exc
        return failed(spec, flow_name, task_id, node_args, error)


def failed(spec: TaskSpec, flow_name: str, task_id: str, node_args: Any, error: Exception) -> Outcome:
    """A task's final failure: recorded in its storage and in this process (for its fallbacks), and reported."""
    record_id, error_record = store_error(spec, flow_name, task_id, node_args, error)
    failures.remember(task_id, error)
    return Outcome(error=describe(error), record_id=record_id, error_record=error_record, raised=error)


def plain_record_id(value: Any) -> Any:
    """A record id as JSON and messages can hold it (adapters return strings, numbers or driver objects)."""
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def store_error(spec: TaskSpec, flow_name: str, task_id: str, node_args: Any, error: Exception) -> tuple[Any, str]:
    """Record a task's final failure in its storage: (record id, what became of the error record)."""
    if spec.config.storage is None or spec.config.storage_read_only:
        return None, "no storage" if spec.config.storage is None else "read-only storage"
    exc_info = (type(error), error, error.__traceback__)
    try:
        return StoragePool.set_error(node_args, flow_name, spec.name, task_id, exc_info), "stored"
    except StorageError as exc:
        if isinstance(exc.__cause__, NotImplementedError):
            return None, "not supported"
        log.error("task %s (%s): its error could not be stored: %s", spec.name, task_id, exc)
        return None, f"not stored: {exc}"


# -- edges ---------------------------------------------------------------------------------------------------------


def starting_edges(flow: Flow) -> list[int]:
    """Indexes of the edges that fire when the flow starts."""
    return [index for index, edge in enumerate(flow.edges) if not edge.from_]


def firings(flow: Flow, name: str, node: N, finished: Mapping[str, Sequence[N]]) -> Iterator[tuple[int, tuple[N, ...]]]:
    """The edge firings that ``node`` (an instance of ``name``, just finished) completes: (edge index, parents).

    An edge fires once for every combination of finished instances of its ``from`` nodes; ``finished`` holds the
    instances that finished before this one.
    """
    for index, edge in enumerate(flow.edges):
        if name in edge.from_:
            choices = [[node] if parent == name else list(finished.get(parent, ())) for parent in edge.from_]
            for parents in itertools.product(*choices):
                yield index, parents


def condition_holds(flow: Flow, index: int, parents: Mapping[str, str], node_args: Any) -> bool:
    """Evaluate the condition of ``flow.edges[index]``; parent results (``parents``: name -> task id) are read
    through the storage pool (and the flow's ``cache:``), each at most once. A storage that cannot be read raises."""
    read = functools.cache(lambda name: read_result(flow, name, parents[name]))
    return flow.edges[index].condition.evaluate(read, node_args)


def foreach_items(flow: Flow, index: int, parents: Mapping[str, str], node_args: Any) -> list[Any]:
    """The items an edge starts its nodes for: one ``None`` for a plain edge, else what its foreach function
    returns (``function(storage_pool, node_args)``, the pool bound to the edge's parents, as in Selinon 1.x)."""
    foreach = flow.edges[index].foreach
    if foreach is None:
        return [None]
    found = foreach.function(_FlowPool(flow, dict(parents)), node_args)
    return list(found or ())


class _FlowPool(StoragePool):
    """The pool handed to foreach functions: parents read through the flow's ``cache:`` too."""

    def __init__(self, flow: Flow, parents: dict[str, str]) -> None:
        super().__init__(parents, flow.name)
        self.flow = flow

    def get(self, task_name: str) -> Any:
        if task_name not in self.id_mapping:
            return super().get(task_name)
        return read_result(self.flow, task_name, self.id_mapping[task_name])


_flow_caches: dict[str, Cache] = {}
_flow_caches_lock = threading.Lock()


def read_result(flow: Flow, task_name: str, task_id: str) -> Any:
    """A parent result for the dispatcher, from the flow's ``cache:`` (this process's) or through the pool.

    A task's result no longer changes once the dispatcher reads it (the task succeeded), so a cached copy is
    never stale; each hit is a fresh copy.
    """
    if flow.cache is None:
        return StoragePool.retrieve(flow.name, task_name, task_id)
    with _flow_caches_lock:
        cache = _flow_caches.get(flow.name)
        if cache is None:
            cache = _flow_caches[flow.name] = flow_cache(flow)
    try:
        return pickle.loads(cache.get(task_id, task_name, flow.name))
    except CacheMissError:
        pass
    result = StoragePool.retrieve(flow.name, task_name, task_id)
    with _flow_caches_lock:
        cache.add(task_id, pickle.dumps(result, pickle.HIGHEST_PROTOCOL), task_name, flow.name)
    return result


def flow_cache(flow: Flow) -> Cache:
    config = flow.cache
    try:
        if config.import_path:
            cls = getattr(importlib.import_module(config.import_path), config.name)
        else:
            cls = BUILTIN_CACHES[config.name]
        return cls(**config.configuration)  # type: ignore[no-any-return]
    except Exception as exc:
        raise ConfigurationError(f"{flow.where}: cache: cannot create cache {config.name!r}: {exc}") from None


def condition_error(flow: Flow, index: int, exc: BaseException) -> str:
    return f"flow {flow.name!r}: cannot evaluate the condition of edges[{index}]: {describe(exc)}"


# -- resolution ----------------------------------------------------------------------------------------------------


def describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, SelinonError) else f"{type(exc).__name__}: {exc}"


def task_class(spec: TaskSpec) -> type[SelinonTask]:
    if spec.import_path is None:
        raise ConfigurationError(
            f"{spec.where}: `import:` is missing; name the module that defines class {spec.classname!r}"
        )
    try:
        module = importlib.import_module(spec.import_path)
    except Exception as exc:
        raise ConfigurationError(
            f"{spec.where}: cannot import {spec.import_path!r}: {describe(exc)}; check `import:` and that the "
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


def validator(spec: TaskSpec) -> Any:
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


def check_schema(validator: Any, result: Any) -> None:
    error = importlib.import_module("jsonschema.exceptions").best_match(validator.iter_errors(result))
    if error is not None:
        at = "/".join(str(part) for part in error.absolute_path) or "the top level"
        raise OutputSchemaError(f"the result does not match output_schema at {at}: {error.message}")
