"""What a stored record says it is, so that no adapter returns a value other than the one stored.

Every record the first-party adapters write carries the format marker ``{"selinon_record": 1}`` (a SQL table says
it through its columns instead). Selinon 1.x's adapters wrote no marker; their Redis and MongoDB records are
recognised by their exact fields, the task id among them; their S3 objects and SQL table carry nothing that tells
them apart, so a configuration says where they are, with ``layout: selinon1``. Anything else is another
program's data, or damaged, and reading it raises :class:`ForeignRecord`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from selinon.errors import StorageError

MARKER = "selinon_record"
VERSION = 1

#: Write this project's records (the default).
NATIVE = "native"
#: Write records as Selinon 1.x's adapters did, where 1.x did, so that 1.x workers still read them (and read
#: both kinds).
SELINON1 = "selinon1"
LAYOUTS = (NATIVE, SELINON1)

#: The fields of a Selinon 1.x Redis record, and of a 1.x MongoDB document once its ``_id`` is left out.
SELINON1_FIELDS = frozenset({"node_args", "flow_name", "task_name", "task_id", "result"})


class ForeignRecord(StorageError):
    """Where a task's record should be lies something that neither this project nor Selinon 1.x wrote."""


def check_layout(value: Any) -> str:
    """The ``layout`` option, or ValueError naming both choices."""
    if value not in LAYOUTS:
        raise ValueError(
            f"`layout` must be {NATIVE!r} (this project's records, the default) or {SELINON1!r} (records as "
            f"Selinon 1.x's adapters wrote them, for 1.x workers that read them), not {value!r}"
        )
    return str(value)


def mark(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with the format marker first."""
    return {MARKER: VERSION, **record}


def classify(record: Any, where: str, task_id: str, task_name: str, unmarked: Collection[frozenset[str]] = ()) -> str:
    """:data:`NATIVE` or :data:`SELINON1` for what was read at ``where``; :class:`ForeignRecord` for anything else.

    ``unmarked`` lists the exact field sets of the adapter's own records written before the marker existed.
    A Selinon 1.x record must be of ``task_id`` and ``task_name``, as Selinon 1.x itself checked.
    """
    if not isinstance(record, dict):
        raise ForeignRecord(f"{where} does not hold a Selinon record: a {type(record).__name__}, not an object")
    marker = record.get(MARKER)
    if marker == VERSION and type(marker) is int:
        return NATIVE
    if marker is not None:
        raise ForeignRecord(
            f"{where} holds a record of format {marker!r}, which this adapter does not read: upgrade the adapter"
        )
    fields = frozenset(record)
    if fields == SELINON1_FIELDS:
        if (record["task_id"], record["task_name"]) != (task_id, task_name):
            raise ForeignRecord(
                f"{where} holds Selinon 1.x's record of task {record['task_name']!r} ({record['task_id']!r}), "
                f"not of {task_name!r} ({task_id!r})"
            )
        return SELINON1
    if fields in unmarked:
        return NATIVE
    raise ForeignRecord(
        f"{where} does not hold a Selinon record (no {MARKER!r} marker, and not the fields of a Selinon 1.x "
        "record): another program's data, or a damaged record"
    )
