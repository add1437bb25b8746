"""The process-wide storage pool: one adapter instance per configured storage, connected on first use.

Configure it once per process, ``StoragePool.configure("nodes.yaml")`` (or set ``SELINON_CONFIG`` to the file
list and let the first call load it), then use it as a class: ``StoragePool.get_connected_storage("Name")``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, NamedTuple, TypeVar

from selinon import config as config_module
from selinon import events, plugins, registry, secrets
from selinon.caches import BUILTIN as BUILTIN_CACHES
from selinon.caches import Cache, CachedResults, CacheMissError
from selinon.config import Configuration, StorageConfig, TaskConfig
from selinon.errors import (
    ConfigurationError,
    PluginError,
    SelinonError,
    SelinonMissingDataException,
    StorageError,
    UnknownStorageError,
)
from selinon.secrets import Secrets
from selinon.storage import DataStorage, ExcInfo, calls_thread_safe

T = TypeVar("T")
CONFIG_ENV = "SELINON_CONFIG"


def resolve_class(storage: StorageConfig) -> type[DataStorage]:
    try:
        return registry.resolve(storage.classname, storage.import_path)
    except PluginError as exc:
        raise ConfigurationError(f"{storage.where}: {exc}") from None


class Instance(NamedTuple):
    """What one storage entry becomes: its adapter (not connected yet), its secrets and its result cache."""

    adapter: DataStorage
    secrets: Secrets
    cache: Cache | None


def instantiate(storage: StorageConfig) -> Instance:
    """Build a storage entry: every configuration error surfaces here, before any I/O.

    Errors are raised outside the ``except`` blocks, so that the adapter's exception, which may hold a secret,
    is not kept as their context either."""
    cls = resolve_class(storage)
    configuration = storage.resolved_configuration()
    problem = None
    if isinstance(configuration, dict):
        arguments = {"storage_name": storage.name, "classname": storage.classname, "configuration": configuration}
        for impl in plugins.implementations("storage_configuration"):
            try:
                plugins.call(impl, arguments)
            except Exception as exc:
                hidden = secrets.secrets_in(configuration, cls.secret_options)
                problem = (
                    f"hook plugin {plugins.describe(plugins.name_of(impl.plugin))} failed in storage_configuration: "
                    f"{secrets.scrub(f'{type(exc).__name__}: {exc}', hidden)}"
                )
                break
    if problem is not None:
        raise ConfigurationError(f"{storage.where}: {problem}")
    args, kwargs = (configuration, {}) if isinstance(configuration, list) else ([], configuration)
    try:
        # Bound to the signature, a positional configuration (Selinon 1.x's list form) names its secrets too.
        known_secrets = secrets.secrets_in(inspect.signature(cls).bind(*args, **kwargs).arguments, cls.secret_options)
    except TypeError as exc:
        options = ", ".join(p for p in inspect.signature(cls).parameters if p not in ("args", "kwargs"))
        problem = f"`configuration:` does not fit {cls.__name__}: {exc}; its options are: {options or 'none'}"
    if problem is not None:
        raise ConfigurationError(f"{storage.where}: {problem}")
    try:
        adapter = cls(*args, **kwargs)
    except Exception as exc:
        problem = f"{cls.__name__} rejected its configuration: {secrets.scrub(str(exc), known_secrets)}"
    if problem is not None:
        raise ConfigurationError(f"{storage.where}: {problem}")
    return Instance(adapter, known_secrets, _cache(storage))


def _cache(storage: StorageConfig) -> Cache | None:
    if storage.cache is None:
        return None
    where = f"{storage.where}: cache"
    try:
        if storage.cache.import_path:
            cls = getattr(importlib.import_module(storage.cache.import_path), storage.cache.name)
        else:
            cls = BUILTIN_CACHES[storage.cache.name]
        return cls(**storage.cache.configuration)  # type: ignore[no-any-return]
    except Exception as exc:
        raise ConfigurationError(f"{where}: cannot create cache {storage.cache.name!r}: {exc}") from None


class _Slot:
    """What the pool keeps per storage: the adapter, its lock if it needs one, its cache and its secrets."""

    def __init__(self, storage: StorageConfig) -> None:
        self.config = storage
        self.adapter, self.secrets, cache = instantiate(storage)
        self.cache = None if cache is None else CachedResults(cache)
        self.lock = None if calls_thread_safe(type(self.adapter)) else threading.RLock()
        self.connect_lock = threading.Lock()


class StoragePool:
    """Process-wide registry of connected storage adapters, used as a class.

    An instance, as Selinon 1.x handed one to ``foreach`` and selective run functions, binds the parents of one
    edge firing (task name -> task id) so that ``get(task_name)`` reads a parent's result.
    """

    _config: ClassVar[Configuration | None] = None
    _slots: ClassVar[dict[str, _Slot]] = {}
    _lock: ClassVar[threading.RLock] = threading.RLock()
    _abandoned: ClassVar[list[_Slot]] = []

    def __init__(self, id_mapping: dict[str, str] | None = None, flow_name: str = "") -> None:
        self.id_mapping = dict(id_mapping or {})
        self.flow_name = flow_name

    def get(self, task_name: str) -> Any:
        """The result of the parent ``task_name`` of this edge firing."""
        try:
            task_id = self.id_mapping[task_name]
        except KeyError:
            parents = ", ".join(self.id_mapping) or "none"
            raise SelinonError(f"no parent task {task_name!r} here; the parents are: {parents}") from None
        return self.retrieve(self.flow_name, task_name, task_id)

    # -- configuration ---------------------------------------------------------------------------------------

    @classmethod
    def configure(
        cls, configuration: Configuration | str | os.PathLike[str] | Iterable[str | os.PathLike[str]]
    ) -> Configuration:
        """Use this configuration (or load these YAML files) from now on; earlier adapters are disconnected."""
        if not isinstance(configuration, Configuration):
            configuration = config_module.load(configuration)
        with cls._lock:
            cls.disconnect_all()
            cls._config = configuration
        return configuration

    @classmethod
    def reset(cls) -> None:
        """Disconnect every adapter and forget the configuration (between tests, or before a new one loads)."""
        with cls._lock:
            cls.disconnect_all()
            cls._config = None

    @classmethod
    def get_configuration(cls) -> Configuration:
        if cls._config is None:
            with cls._lock:
                if cls._config is None:
                    files = os.environ.get(CONFIG_ENV)
                    if not files:
                        raise ConfigurationError(
                            "the storage pool is not configured; call StoragePool.configure('nodes.yaml') "
                            f"or set {CONFIG_ENV} to the configuration files (separated by {os.pathsep!r})"
                        )
                    cls._config = config_module.load(files.split(os.pathsep))
        return cls._config

    @classmethod
    def get_storage_config(cls, storage_name: str) -> StorageConfig:
        try:
            return cls.get_configuration().storages[storage_name]
        except KeyError:
            known = ", ".join(cls.get_configuration().storages) or "none"
            raise UnknownStorageError(
                f"storage {storage_name!r} is not configured; configured storages: {known}"
            ) from None

    @classmethod
    def _task(cls, task_name: str) -> TaskConfig:
        try:
            return cls.get_configuration().tasks[task_name]
        except KeyError:
            raise ConfigurationError(f"task {task_name!r} is not configured; add it under `tasks:`") from None

    @classmethod
    def get_storage_name_by_task_name(cls, task_name: str) -> str | None:
        return cls._task(task_name).storage

    # -- adapters --------------------------------------------------------------------------------------------

    @classmethod
    def _slot(cls, storage_name: str) -> _Slot:
        slot = cls._slots.get(storage_name)
        if slot is None:
            with cls._lock:
                slot = cls._slots.get(storage_name)
                if slot is None:
                    slot = cls._slots[storage_name] = _Slot(cls.get_storage_config(storage_name))
        return slot

    @classmethod
    def get_storage(cls, storage_name: str) -> DataStorage:
        """The adapter instance, connected or not."""
        return cls._slot(storage_name).adapter

    @classmethod
    def get_connected_storage(cls, storage_name: str) -> DataStorage:
        """The process's one adapter for this storage, connected."""
        return cls._connected_slot(storage_name).adapter

    @classmethod
    def get_storage_by_task_name(cls, task_name: str) -> DataStorage:
        return cls.get_connected_storage(cls._storage_name(cls._task(task_name)))

    @classmethod
    def disconnect_all(cls) -> None:
        with cls._lock:
            slots, cls._slots = cls._slots, {}
        for slot in slots.values():
            try:
                slot.adapter.disconnect()
            except Exception:
                pass

    # -- results by task name --------------------------------------------------------------------------------

    @classmethod
    def retrieve(cls, flow_name: str, task_name: str, task_id: str) -> Any:
        """The result ``task_name`` stored under ``task_id``, from its storage (or a copy from its cache)."""
        slot, name = cls._task_slot(task_name)
        cache = slot.cache
        if cache is None:
            return cls._read(slot, "retrieve", "retrieve", flow_name, name, task_id)
        try:
            return cache.get(task_id, task_name, flow_name)
        except CacheMissError:
            pass
        read = cache.begin_read(task_id)
        try:
            result = cls._read(slot, "retrieve", "retrieve", flow_name, name, task_id)
        except BaseException:
            cache.end_read(read, task_id, task_name, flow_name)
            raise
        cache.end_read(read, task_id, task_name, flow_name, result)
        return result

    @classmethod
    def retrieve_error(cls, flow_name: str, task_name: str, task_id: str) -> dict[str, str]:
        """What ``store_error`` kept of a failed task: ``{"type", "message", "traceback"}``."""
        slot, name = cls._task_slot(task_name)
        return cls._read(slot, "retrieve_error", "retrieve_error", flow_name, name, task_id)  # type: ignore[no-any-return]

    @classmethod
    def retrieve_owner(cls, flow_name: str, task_name: str, task_id: str) -> tuple[str | None, str | None]:
        """The flow and task names kept with the record of ``task_id`` in ``task_name``'s storage (the task name
        as the adapter saw it: ``storage_task_name`` where set). NotImplementedError when the adapter cannot tell
        (:meth:`DataStorage.retrieve_owner` is optional)."""
        slot, name = cls._task_slot(task_name)
        if type(slot.adapter).retrieve_owner is DataStorage.retrieve_owner:
            raise NotImplementedError(f"{type(slot.adapter).__name__} does not support retrieve_owner()")
        return cls._read(slot, "retrieve", "retrieve_owner", flow_name, name, task_id)  # type: ignore[no-any-return]

    @classmethod
    def set(cls, node_args: Any, flow_name: str, task_name: str, task_id: str, result: Any) -> Any:
        """Store a task's result in its storage; returns the adapter's record id."""
        task = cls._task(task_name)
        if task.storage_read_only:
            raise StorageError(
                f"task {task_name!r} has a read-only storage ({task.storage!r}); its results are not stored"
            )
        return cls._write(task, "store", node_args, flow_name, task_id, result)

    @classmethod
    def set_error(cls, node_args: Any, flow_name: str, task_name: str, task_id: str, exc_info: ExcInfo) -> Any:
        """Record a task's failure in its storage."""
        return cls._write(cls._task(task_name), "store_error", node_args, flow_name, task_id, exc_info)

    @classmethod
    def delete(cls, flow_name: str, task_name: str, task_id: str) -> None:
        cls._write(cls._task(task_name), "delete", None, flow_name, task_id)

    # -- internals -------------------------------------------------------------------------------------------

    @classmethod
    def _write(cls, task: TaskConfig, event: str, node_args: Any, flow_name: str, task_id: str, *value: Any) -> Any:
        """Store, store an error or delete (``event`` names the adapter method): the cache forgets the task id
        before and after the call, so that no retrieve racing it caches what the storage held before."""
        slot = cls._connected_slot(cls._storage_name(task))
        name = task.storage_task_name or task.name
        call = getattr(slot.adapter, event)
        args = (flow_name, name, task_id) if event == "delete" else (node_args, flow_name, name, task_id, *value)
        cache = slot.cache
        if cache is None:
            return cls._observe(slot, event, flow_name, name, task_id, call, *args)
        cache.invalidate(task_id)
        try:
            return cls._observe(slot, event, flow_name, name, task_id, call, *args)
        finally:
            cache.invalidate(task_id)

    @classmethod
    def _task_slot(cls, task_name: str) -> tuple[_Slot, str]:
        """The connected slot of a task's storage, and the task name its adapter sees (``storage_task_name``)."""
        task = cls._task(task_name)
        return cls._connected_slot(cls._storage_name(task)), task.storage_task_name or task_name

    @classmethod
    def _read(cls, slot: _Slot, event: str, method: str, flow_name: str, name: str, task_id: str) -> Any:
        """One read of a record through the adapter's ``method``, observed as ``event``."""
        call = getattr(slot.adapter, method)
        return cls._observe(slot, event, flow_name, name, task_id, call, flow_name, name, task_id)

    @staticmethod
    def _storage_name(task: TaskConfig) -> str:
        if task.storage is None:
            raise ConfigurationError(f"{task.source}: task {task.name!r} has no storage; add `storage:` to it")
        return task.storage

    @classmethod
    def _connected_slot(cls, storage_name: str) -> _Slot:
        slot = cls._slot(storage_name)
        if not slot.adapter.is_connected():
            with slot.connect_lock:
                if not slot.adapter.is_connected():
                    cls._observe(slot, "connect", None, None, None, slot.adapter.connect)
        return slot

    @classmethod
    def _observe(
        cls,
        slot: _Slot,
        event: str,
        flow_name: str | None,
        task_name: str | None,
        task_id: str | None,
        call: Callable[..., T],
        *args: Any,
    ) -> T:
        """Run one adapter call: serialised if the adapter needs it, retried on transient errors until the
        storage's retry policy gives up, observed by hooks, and with every error made safe to show.

        This runs around every store and retrieve: on a thread-safe adapter with no hook listening it adds one
        clock read and no lock (the benchmarks compare it with the raw drivers)."""
        hook = _event_hook()
        lock = slot.lock
        first = began = time.perf_counter()
        attempt = 1
        while True:
            try:
                if lock is None:
                    result = call(*args)
                else:
                    with lock:
                        result = call(*args)
            except SelinonMissingDataException as exc:
                if event == "delete" and attempt > 1:
                    return None  # type: ignore[return-value] # an earlier attempt deleted it before its reply was lost
                _emit(hook, slot, event, flow_name, task_name, task_id, began, exc)
                raise
            except Exception as exc:
                waited = time.perf_counter() - first
                pause = slot.config.retry.pause(attempt, waited)
                transient = event != "connect" and isinstance(exc, type(slot.adapter).transient_errors)
                if transient and pause is not None:
                    _emit(hook, slot, "retry", flow_name, task_name, task_id, began, exc)
                    time.sleep(pause * random.uniform(0.8, 1.0))  # jitter: clients that failed together part
                    attempt += 1
                    began = time.perf_counter()
                    continue
                _emit(hook, slot, event, flow_name, task_name, task_id, began, exc)
                tries = f" after {attempt} attempts in {waited:.1f}s" if attempt > 1 else ""
                error = _storage_error(slot, f"{event} failed{tries}", exc)
                cause = None if secrets.leaks(exc, slot.secrets) else exc
                break
            if hook is not None:
                _emit(hook, slot, event, flow_name, task_name, task_id, began, None)
            return result
        # Raised here, outside the handler: an exception that shows a secret is kept neither as cause nor context.
        raise error from cause

    @classmethod
    def _after_fork(cls) -> None:
        # The child must not talk over the parent's sockets, and must not close them either (that would end the
        # parent's sessions): keep the old adapters referenced, unused, and build new ones on demand.
        cls._abandoned.extend(cls._slots.values())
        cls._slots = {}
        cls._lock = threading.RLock()


def _event_hook() -> tuple[list[Any], events.Observers | None] | None:
    """The ``storage_event`` and ``selinon_event`` implementations, or None when no plugin implements either."""
    storage_hooks = plugins.implementations("storage_event")
    event_hooks = events.observers()
    return (storage_hooks, event_hooks) if storage_hooks or event_hooks else None


def _emit(
    hook: tuple[list[Any], events.Observers | None] | None,
    slot: _Slot,
    event: str,
    flow_name: str | None,
    task_name: str | None,
    task_id: str | None,
    began: float,
    error: BaseException | None,
) -> None:
    """Tell every observer (``storage_event``, and ``selinon_event`` as ``storage.<event>``); one that raises is
    logged and counted, and changes nothing of the call's outcome."""
    if hook is None:
        return
    if error is not None and secrets.leaks(error, slot.secrets):
        error = _storage_error(slot, event, error)  # a hook that logs or traces it must not show a secret
    arguments = {
        "event": event,
        "storage_name": slot.config.name,
        "flow_name": flow_name,
        "task_name": task_name,
        "task_id": task_id,
        "duration": time.perf_counter() - began,
        "error": error,
    }
    storage_hooks, event_hooks = hook
    for impl in storage_hooks:
        try:
            plugins.call(impl, arguments)
        except Exception as exc:
            plugins.observer_failed(impl, secrets.scrub(f"{type(exc).__name__}: {exc}", slot.secrets))
    if event_hooks is not None:
        scope = events.current_scope()
        fields = {**arguments, "flow_id": None if scope is None else scope.flow_id}
        del fields["event"]
        if error is not None:
            fields["error"] = secrets.scrub(f"{type(error).__name__}: {error}", slot.secrets)
        context = {} if scope is None else scope.context
        events.tell(event_hooks, events.STORAGE_PREFIX + event, fields, context)


def _storage_error(slot: _Slot, what: str, exc: BaseException) -> StorageError:
    """A StorageError naming the storage; an adapter's own StorageError keeps its words, a driver's its type."""
    text = str(exc) if isinstance(exc, SelinonError) else f"{type(exc).__name__}: {exc}"
    message = secrets.scrub(text, slot.secrets)
    return StorageError(f"storage {slot.config.name!r} ({slot.config.classname}): {what}: {message}")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=StoragePool._after_fork)
