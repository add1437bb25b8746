"""The abstract storage adapter: the contract every adapter (first-party or not) implements.

Method names and signatures are Selinon 1.x's, so an adapter written for Selinon 1.x runs unchanged. The rules
behind each method are in the adapter guide (packages/selinon-core/docs/adapters.md) and are checked by
:mod:`selinon.testing`.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from types import TracebackType
from typing import Any, ClassVar, TypeAlias

from selinon.errors import TransientStorageError

ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]


class DataStorage(abc.ABC):
    """Base class of storage adapters.

    ``__init__`` receives the YAML ``configuration`` mapping as keyword arguments (a list as positional ones) and
    must do no I/O: the pool connects lazily, and ``selinon plugins show`` builds nothing.
    """

    #: Declare ``True`` when one instance may be called from many threads at once (a driver connection pool).
    #: Otherwise the pool serialises calls on the instance, as Selinon 1.x promised. A subclass that overrides a
    #: storage method is serialised unless it declares ``thread_safe`` itself (see :func:`calls_thread_safe`).
    thread_safe: ClassVar[bool] = False

    #: Exceptions that mean "try again": a lost connection, a server restarting. The pool retries calls that
    #: raise them, within the storage's ``retry:`` policy; any other exception fails the call at once.
    transient_errors: ClassVar[tuple[type[BaseException], ...]] = (TransientStorageError, ConnectionError, TimeoutError)

    #: Option names whose values are secrets, beside those the core recognises by name (``password``,
    #: ``*secret*``, ``*token*``...). Their values are hidden from output, logs and error messages.
    secret_options: ClassVar[frozenset[str]] = frozenset()

    #: What an option left out means, where its signature says ``None`` because the value depends on other
    #: options (a ``url`` holds the host, say): ``selinon plugins show`` shows these as the defaults.
    option_defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: B027 - adapters define their own options
        pass

    @abc.abstractmethod
    def connect(self) -> None:
        """Connect; calling it when connected is a no-op."""

    @abc.abstractmethod
    def disconnect(self) -> None:
        """Disconnect; calling it when not connected is a no-op."""

    @abc.abstractmethod
    def is_connected(self) -> bool:
        """Tell whether :meth:`connect` has been called and :meth:`disconnect` has not."""

    @abc.abstractmethod
    def store(self, node_args: Any, flow_name: str, task_name: str, task_id: str, result: Any) -> Any:
        """Store ``result`` keyed by ``task_id``, replacing an earlier record of that id; return a record id.

        A result that cannot be serialised raises before anything is written.
        """

    @abc.abstractmethod
    def retrieve(self, flow_name: str, task_name: str, task_id: str) -> Any:
        """Return the stored result; raise :class:`~selinon.SelinonMissingDataException` if there is none."""

    def delete(self, flow_name: str, task_name: str, task_id: str) -> None:
        """Delete the record; raise :class:`~selinon.SelinonMissingDataException` if there is none."""
        raise NotImplementedError(f"{type(self).__name__} does not support delete()")

    def store_error(self, node_args: Any, flow_name: str, task_name: str, task_id: str, exc_info: ExcInfo) -> Any:
        """Record a task's failure under ``task_id``; :func:`describe_error` gives the record to keep."""
        raise NotImplementedError(f"{type(self).__name__} does not support store_error()")

    def retrieve_error(self, flow_name: str, task_name: str, task_id: str) -> dict[str, str]:
        """Return what :meth:`store_error` kept: ``{"type", "message", "traceback"}``."""
        raise NotImplementedError(f"{type(self).__name__} does not support retrieve_error()")

    def retrieve_owner(self, flow_name: str, task_name: str, task_id: str) -> tuple[str | None, str | None]:
        """Return the flow name and the task name that the record of ``task_id`` (a result or an error) was
        stored with, ``None`` for a name the record does not keep; raise
        :class:`~selinon.SelinonMissingDataException` if there is no record.

        Optional: ``selinon results get`` uses it to refuse printing another task's record for the one asked
        for (adapters key records by task id alone); without it, the command says it cannot check.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support retrieve_owner()")

    def __repr__(self) -> str:
        # Never the configuration: it may hold credentials.
        return f"<{type(self).__name__} connected={self._safe_is_connected()}>"

    def _safe_is_connected(self) -> bool | str:
        try:
            return self.is_connected()
        except Exception:  # a repr must not raise
            return "?"


#: The methods through which the pool calls an adapter.
CALLS = (
    "connect",
    "disconnect",
    "is_connected",
    "store",
    "retrieve",
    "delete",
    "store_error",
    "retrieve_error",
    "retrieve_owner",
)


def calls_thread_safe(cls: type[DataStorage]) -> bool:
    """Whether the pool may call ``cls``'s instances from many threads at once.

    ``thread_safe`` vouches for the code of the class that declares it, not for a subclass's: a Selinon 1.x
    subclass of a thread-safe adapter whose own ``store`` uses a session or a client that is not thread-safe
    would otherwise lose the serialisation 1.x gave it. So the class nearest in the MRO that either declares
    ``thread_safe`` or defines one of :data:`CALLS` decides, and defining a call without declaring means no.
    """
    for klass in cls.__mro__:
        declared = vars(klass).get("thread_safe")
        if declared is not None:
            return bool(declared)
        if any(name in vars(klass) for name in CALLS):
            return False
    return False


def describe_error(exc_info: ExcInfo) -> dict[str, str]:
    """The portable form of a task's failure that every first-party adapter stores and reads back."""
    import traceback  # here, not at the top: 3 ms of every command's and worker's start-up

    exc_type, exc, tb = exc_info
    return {
        "type": type_name(exc_type),
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc_type, exc, tb)),
    }


def type_name(exc_type: type[BaseException]) -> str:
    """``module.QualifiedName``: how error records name an exception's class (:func:`selinon.failures.rebuild`)."""
    return f"{exc_type.__module__}.{exc_type.__qualname__}"
