"""Exceptions raised by Selinon's storage layer.

Every message is meant to be shown to a user as it is: it names what went wrong, where, and how to fix it,
and it never carries a secret.
"""

from __future__ import annotations


class SelinonError(Exception):
    """Base class of every error Selinon raises on purpose."""


class ConfigurationError(SelinonError):
    """A configuration file, entry or option is wrong; the message names the file, the entry and the fix."""


class StorageError(SelinonError):
    """A storage could not do what was asked (server unreachable, deadline passed, result not storable)."""


class TransientStorageError(StorageError):
    """The storage could not be reached for now (connection lost, server restarting): trying again may succeed.

    An adapter that wraps its driver's errors raises this one for those, so the pool retries them.
    """


class PluginError(SelinonError):
    """A storage plugin cannot be used: not installed, broken, ambiguous, or incompatible with this core.

    ``reason`` is the why alone, for reports that name the plugin and its state themselves."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


class BrokenPluginError(PluginError):
    """An installed storage plugin cannot be loaded: it fails to import, is not a ``DataStorage``, or does not
    accept this core's version. ``selinon plugins check`` and ``selinon storages check`` report it and exit 1."""


class MigrationSkew(SelinonError):
    """A dispatcher's state is at a newer migration than this worker has (a worker not upgraded yet, during a
    rolling deployment): the pass is handed back for a worker that has it. Selinon 1.x's name and attribute."""

    def __init__(self, message: str, available_migration_version: int) -> None:
        super().__init__(message)
        self.available_migration_version = available_migration_version


class SelinonMissingDataException(SelinonError, KeyError):
    """No record is stored for the requested task id.

    It is a ``KeyError`` too, so that code written as ``except KeyError`` around a retrieve keeps working.
    """

    def __str__(self) -> str:
        # KeyError quotes its argument; a readable message is more useful here.
        return str(self.args[0]) if self.args else "no record stored"


# -- Selinon 1.x's error names ---------------------------------------------------------------------------------------
# Each one is raised where 1.x raised it, and derives from the class this core raised there before, so that both
# `except UnknownFlowError` (1.x code) and `except ConfigurationError` (code written for this core) catch it.

SelinonException = SelinonError  # Selinon 1.x's name of the base class


class FatalTaskError(SelinonError):
    """Raised by a task that must not be retried: it fails at once, whatever its ``max_retry``."""


class UnknownFlowError(ConfigurationError):
    """A flow was asked for by a name that no loaded configuration defines."""


class UnknownStorageError(ConfigurationError):
    """A storage was asked for by a name that no loaded configuration defines."""


class SelectiveNoPathError(ConfigurationError):
    """A selective run names a task that no path of the flow reaches."""


class ConfigNotInitializedError(ConfigurationError):
    """The Selinon 1.x API (``run_flow``, ``Config.celery_app``, ...) was used before ``Config`` was set up."""


class CacheMissError(SelinonError, KeyError):
    """The item is not in the cache (raised by caches, ``selinon.caches``)."""


class NoParentNodeError(SelinonError):
    """A task asked for a parent (task, sub-flow, or an index of its runs) that it does not have."""


class RequestError(SelinonError):
    """A request that cannot be answered as asked, such as the exception of a parent that did not fail."""


class UnknownError(SelinonError):
    """Something that should not happen happened; the message says what."""


class Retry(SelinonError):
    """Raised by :meth:`SelinonTask.retry <selinon.task.SelinonTask.retry>`: run the task again after ``countdown``
    seconds (within its ``max_retry``)."""

    def __init__(self, countdown: float | None = None) -> None:
        super().__init__(f"retry requested (countdown {countdown})")
        self.countdown = countdown


class FlowError(SelinonError):
    """A flow failed; ``state`` is its final report."""

    def __init__(self, state: object) -> None:
        super().__init__(state)
        self.state = state
