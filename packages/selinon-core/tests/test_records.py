"""The format marker and the recognition of Selinon 1.x's records (selinon.records)."""

from __future__ import annotations

import pytest

from selinon import records
from selinon.errors import StorageError

ID, TASK = "3f1c0a7e-1", "Hello"
SELINON1 = {"node_args": {"x": 1}, "flow_name": "f", "task_name": TASK, "task_id": ID, "result": "Hello, x!"}


def test_marked_records_are_native() -> None:
    assert records.classify(records.mark({"result": 1}), "key", ID, TASK) == records.NATIVE


def test_selinon1_records_are_recognised_by_their_fields() -> None:
    assert records.classify(dict(SELINON1), "key", ID, TASK) == records.SELINON1


def test_records_written_before_the_marker_by_exact_fields() -> None:
    earlier = [frozenset({"flow_name", "task_name", "node_args", "result"})]
    old = {"flow_name": "f", "task_name": TASK, "node_args": None, "result": 1}
    assert records.classify(old, "key", ID, TASK, earlier) == records.NATIVE
    with pytest.raises(records.ForeignRecord):
        records.classify(old, "key", ID, TASK)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"x": 14}, "key does not hold a Selinon record .no 'selinon_record' marker"),
        ({"result": "Hello, x!"}, "not the fields of a Selinon 1.x record"),
        ([1, 2], "a list, not an object"),
        ("text", "a str, not an object"),
        ({"selinon_record": 2, "result": 1}, "format 2, which this adapter does not read"),
        ({"selinon_record": True, "result": 1}, "format True"),
        ({**SELINON1, "task_id": "other"}, "Selinon 1.x's record of task 'Hello' \\('other'\\)"),
        ({**SELINON1, "task_name": "Other"}, "of task 'Other'"),
        ({**SELINON1, "extra": 1}, "not the fields of a Selinon 1.x record"),
    ],
)
def test_anything_else_is_a_foreign_record(record: object, message: str) -> None:
    with pytest.raises(records.ForeignRecord, match=message) as caught:
        records.classify(record, "key", ID, TASK)
    assert isinstance(caught.value, StorageError)


def test_layout_option() -> None:
    assert records.check_layout("selinon1") == records.SELINON1
    with pytest.raises(ValueError, match="`layout` must be 'native' .* or 'selinon1' .*, not 'selinon2'"):
        records.check_layout("selinon2")
