"""Selinon 1.x's ORM model of a task's result, for storages written for 1.x that query it themselves.

Importing this module imports SQLAlchemy's ORM; the adapter itself never does.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from selinon_storage_postgresql.storage import SELINON1_TABLE

#: jsonb on PostgreSQL, as in Selinon 1.x; SQLAlchemy's JSON elsewhere.
_JSON = postgresql.JSONB().with_variant(sa.JSON(), "sqlite", "mysql", "mariadb")


class Base(DeclarativeBase):
    """The declarative base of :class:`Result`: ``Result.metadata.create_all(engine)`` works as in 1.x."""


class Result(Base):
    """One task's record in Selinon 1.x's ``result`` table; built as ``Result(node_args, flow_name, task_name,
    task_id, result)``, as in 1.x."""

    __tablename__ = SELINON1_TABLE

    id: Mapped[int] = mapped_column(sa.Integer, sa.Sequence(f"{SELINON1_TABLE}_id"), primary_key=True)
    flow_name: Mapped[str | None] = mapped_column(sa.String(128))
    task_name: Mapped[str | None] = mapped_column(sa.String(128))
    task_id: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    result: Mapped[Any] = mapped_column(_JSON)
    node_args: Mapped[Any] = mapped_column(_JSON)

    def __init__(self, node_args: Any, flow_name: str, task_name: str, task_id: str, result: Any) -> None:
        super().__init__(node_args=node_args, flow_name=flow_name, task_name=task_name, task_id=task_id, result=result)
