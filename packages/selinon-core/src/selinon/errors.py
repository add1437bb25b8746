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
