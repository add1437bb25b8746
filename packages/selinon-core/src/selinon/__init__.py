"""Selinon core: the storage API, configuration, storage pool and plugin discovery."""

from selinon.errors import (
    ConfigurationError,
    PluginError,
    SelinonError,
    SelinonMissingDataException,
    StorageError,
)
from selinon.hookspecs import hookimpl
from selinon.pool import StoragePool
from selinon.storage import DataStorage, describe_error

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "DataStorage",
    "PluginError",
    "SelinonError",
    "SelinonMissingDataException",
    "StorageError",
    "StoragePool",
    "__version__",
    "describe_error",
    "hookimpl",
]
