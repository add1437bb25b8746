"""Selinon 1.x's storage modules, which now lead to the adapter distributions.

Selinon 1.x shipped its adapters inside the ``selinon`` package: projects import and subclass them as
``from selinon.storages.s3 import S3``, and configurations name them with ``import: 'selinon.storages.s3'``.
Each such module is a few lines beside this one that hand :func:`forward` the adapter package's name; the class
is imported (and with it the driver) only when it is first used, and a missing adapter is one line that names the
``pip install`` it needs. :data:`MODULES` is also what the registry consults for 1.x ``import:`` lines.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

_POSTGRESQL = ("selinon_storage_postgresql", "selinon-storage-postgresql")

#: Selinon 1.x's module path -> (the adapter's import package, its distribution, the names 1.x exported).
MODULES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "selinon.storages.postgresql": (*_POSTGRESQL, ("PostgreSQL", "Result")),
    "selinon.storages.postgresql.adapter": (*_POSTGRESQL, ("PostgreSQL",)),
    "selinon.storages.postgresql.models": (*_POSTGRESQL, ("Result",)),
    "selinon.storages.redis": ("selinon_storage_redis", "selinon-storage-redis", ("Redis",)),
    "selinon.storages.mongodb": ("selinon_storage_mongodb", "selinon-storage-mongodb", ("MongoDB",)),
    "selinon.storages.s3": ("selinon_storage_s3", "selinon-storage-s3", ("S3",)),
}


class AdapterNotInstalled(ImportError):
    """A Selinon 1.x storage module was used, and the distribution that now holds its adapter is missing."""


def forward(module: str) -> Callable[[str], Any]:
    """The module ``__getattr__`` of the 1.x module ``module``: each 1.x name, imported from its adapter."""
    package, distribution, names = MODULES[module]

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        try:
            adapter = importlib.import_module(package)
        except ModuleNotFoundError as exc:
            if exc.name != package:
                raise  # the adapter is there but one of its own dependencies is not: its message says which
            raise AdapterNotInstalled(
                f"{module}.{name} now lives in the {distribution} distribution, which is not installed: "
                f"pip install {distribution}",
                name=package,
            ) from None
        return getattr(adapter, name)

    return __getattr__
