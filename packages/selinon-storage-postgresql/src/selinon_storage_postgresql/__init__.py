"""Selinon storage adapter for PostgreSQL, and for SQLite, MariaDB and MySQL through SQLAlchemy.

``classname: PostgreSQL`` and ``classname: SqlStorage`` name the same adapter.
"""

from selinon_storage_postgresql.storage import DEFAULT_TABLE, PostgreSQL, SqlStorage

__version__ = "0.1.0"

__all__ = ["DEFAULT_TABLE", "PostgreSQL", "SqlStorage", "__version__"]
