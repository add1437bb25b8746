"""Selinon core: the storage API, configuration, storage pool and plugin discovery.

``StoragePool``, ``SelinonTask`` and ``hookimpl`` are imported on first use, so that commands and workers that
need none of them do not pay for YAML and pluggy at start-up.
"""

from __future__ import annotations

from os import path as _path
from typing import TYPE_CHECKING, Any

from selinon.errors import (
    ConfigurationError,
    PluginError,
    SelinonError,
    SelinonMissingDataException,
    StorageError,
    TransientStorageError,
)
from selinon.storage import DataStorage, describe_error

if TYPE_CHECKING:
    from selinon.hookspecs import hookimpl
    from selinon.pool import StoragePool
    from selinon.task import SelinonTask

__version__ = "0.2.0"

# One stat at import: dispatcher.py, a module of Selinon 1.x that the core never had, beside the core's modules
# means the two are mixed (see selinon.upgrade).
_SELINON_1X_MODULE = _path.join(_path.dirname(__file__), "dispatcher.py")
if _path.exists(_SELINON_1X_MODULE):
    from selinon.upgrade import warn_mixed_install

    warn_mixed_install(_SELINON_1X_MODULE)

_LAZY = {
    "StoragePool": "selinon.pool",
    "hookimpl": "selinon.hookspecs",
    "SelinonTask": "selinon.task",
    # Selinon 1.x's top-level names (docs/upgrading.md): its API in selinon.compat, its errors in selinon.errors.
    "Config": "selinon.compat",
    "run_flow": "selinon.compat",
    "run_flow_selective": "selinon.compat",
    "Trace": "selinon.trace",
    "Cache": "selinon.caches",
    **dict.fromkeys(
        [
            "CacheMissError", "ConfigNotInitializedError", "FatalTaskError", "FlowError", "NoParentNodeError",
            "RequestError", "Retry", "SelectiveNoPathError", "SelinonException", "UnknownError", "UnknownFlowError",
            "UnknownStorageError",
        ],
        "selinon.errors",
    ),
}  # fmt: skip
#: Selinon 1.x's names for its own internals, which this Selinon does not have: why, and what to use instead.
_GONE = {
    "Dispatcher": "Selinon 1.x's dispatcher task is internal here; start flows with selinon.run_flow",
    "SystemState": "Selinon 1.x's dispatcher state is internal here; follow a flow with selinon.celery's status()",
    "Storage": "Selinon 1.x's storage description is selinon.config.StorageConfig here",
    "selinon_version_codename": "this Selinon has no code names; its version is selinon.__version__",
}
selinon_version = __version__  # Selinon 1.x's name

__all__ = [
    "ConfigurationError",
    "DataStorage",
    "PluginError",
    "SelinonError",
    "SelinonMissingDataException",
    "SelinonTask",
    "StorageError",
    "StoragePool",
    "TransientStorageError",
    "__version__",
    "describe_error",
    "hookimpl",
    "selinon_version",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _GONE:
        raise AttributeError(f"selinon.{name}: {_GONE[name]} (docs/upgrading.md)")
    raise AttributeError(f"module 'selinon' has no attribute {name!r}")
