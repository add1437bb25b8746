"""Selinon storage adapter for PostgreSQL, and for SQLite, MariaDB and MySQL through SQLAlchemy.

``classname: PostgreSQL`` and ``classname: SqlStorage`` name the same adapter. ``Result`` is Selinon 1.x's ORM
model, imported (with SQLAlchemy's ORM) when first used.
"""

from typing import Any

from selinon_storage_postgresql.storage import DEFAULT_TABLE, SELINON1_TABLE, PostgreSQL, SqlStorage

__version__ = "0.2.0"

__all__ = ["DEFAULT_TABLE", "SELINON1_TABLE", "PostgreSQL", "Result", "SqlStorage", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Result":
        from selinon_storage_postgresql.selinon1 import Result

        return Result
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
