"""Selinon 1.x's documents, its layout, and storages written for it: with Selinon 1.4 itself where marked."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from conftest import MakeStorage, Server
from pymongo import MongoClient

from selinon import SelinonMissingDataException
from selinon.jsonpolicy import NotJSONError
from selinon.records import ForeignRecord
from selinon.storages.mongodb import MongoDB  # as a project written for Selinon 1.x imports it
from selinon.testing.selinon1 import run_selinon1

FLOW, TASK = "flow1x", "Hello"
RESULT = {"greeting": "Hello, x!", "n": 2**40, "nested": [1.5, None, True, "ž"]}
Client = MongoClient[dict[str, Any]]

SELINON1 = """
from selinon.storages.mongodb import MongoDB
adapter = MongoDB(ARGS["db_name"], ARGS["collection_name"], host=ARGS["host"], port=ARGS["port"])
adapter.connect()
if ARGS["action"] == "store":
    OUT = adapter.store({"x": 1}, ARGS["flow"], ARGS["task"], ARGS["task_id"], ARGS["result"])
else:
    OUT = adapter.retrieve(ARGS["flow"], ARGS["task"], ARGS["task_id"])
"""


def tid() -> str:
    return f"mongo1x-{uuid.uuid4()}"


def selinon1(server: Server, collection_name: str, action: str, task_id: str, result: Any = None) -> Any:
    host = server.uri or server.host
    return run_selinon1(
        SELINON1, db_name=server.db_name, collection_name=collection_name, host=host, port=server.port,
        action=action, flow=FLOW, task=TASK, task_id=task_id, result=result,
    )  # fmt: skip


@pytest.mark.selinon1
def test_documents_of_selinon_1_4_read_in_place(
    make_storage: MakeStorage, server: Server, collection_name: str
) -> None:
    task_id = tid()
    assert selinon1(server, collection_name, "store", task_id, RESULT) == task_id
    for layout in ("native", "selinon1"):
        adapter = make_storage(layout=layout)
        adapter.connect()
        assert adapter.retrieve(FLOW, TASK, task_id) == RESULT
        adapter.disconnect()


@pytest.mark.selinon1
def test_selinon1_layout_writes_what_selinon_1_4_reads(
    make_storage: MakeStorage, server: Server, collection_name: str
) -> None:
    adapter = make_storage(layout="selinon1")
    adapter.connect()
    task_id = tid()
    adapter.store({"x": 1}, FLOW, TASK, task_id, RESULT)
    adapter.store({"x": 1}, FLOW, TASK, task_id, RESULT)  # a retried task: still one document, as 1.4 needs
    assert selinon1(server, collection_name, "retrieve", task_id) == RESULT


def test_selinon1_layout_writes_selinon_1_documents(
    make_storage: MakeStorage, client: Client, server: Server, collection_name: str
) -> None:
    adapter = make_storage(layout="selinon1")
    adapter.connect()
    task_id = tid()
    adapter.store({"x": 1}, FLOW, TASK, task_id, RESULT)
    document = client[server.db_name][collection_name].find_one({"task_id": task_id}, {"_id": False})
    assert document == {
        "node_args": {"x": 1},
        "flow_name": FLOW,
        "task_name": TASK,
        "task_id": task_id,
        "result": RESULT,
    }
    with pytest.raises(NotImplementedError, match="errors are not stored, as in Selinon 1.x"):
        adapter.store_error(None, FLOW, TASK, task_id, (RuntimeError, RuntimeError("x"), None))
    with pytest.raises(NotJSONError, match="result: with `layout: selinon1` it must be a value BSON holds exactly"):
        adapter.store(None, FLOW, TASK, task_id, {"n": 2**70})
    assert adapter.retrieve(FLOW, TASK, task_id) == RESULT


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"x": 14}, "no 'selinon_record' marker, and not the fields of a Selinon 1.x record"),
        ({"result": "Hello, x!"}, "not the fields of a Selinon 1.x record"),
        ({"result": 1, "flow_name": FLOW, "task_name": TASK}, "not the fields"),
        ({"selinon_record": 2, "result": 1}, "format 2, which this adapter does not read"),
        ({"selinon_record": "1", "result": 1}, "format '1'"),
        ({"node_args": None, "flow_name": FLOW, "task_name": "Other", "result": 1}, "record of task 'Other'"),
    ],
)
def test_foreign_or_malformed_documents_raise(
    make_storage: MakeStorage, client: Client, server: Server, collection_name: str, document: dict[str, Any],
    message: str,
) -> None:  # fmt: skip
    task_id = tid()
    client[server.db_name][collection_name].insert_one({"task_id": task_id, **document})
    for layout in ("native", "selinon1"):
        adapter = make_storage(layout=layout)
        adapter.connect()
        with pytest.raises(ForeignRecord, match=message):
            adapter.retrieve(FLOW, TASK, task_id)
        with pytest.raises(ForeignRecord):
            adapter.retrieve_error(FLOW, TASK, task_id)
        adapter.disconnect()


def test_documents_written_before_the_marker_are_read(
    make_storage: MakeStorage, client: Client, server: Server, collection_name: str
) -> None:
    task_id = tid()
    old = {"task_id": task_id, "flow_name": FLOW, "task_name": TASK, "node_args_json": "1", "result": 7}
    client[server.db_name][collection_name].insert_one({**old, "stored_at": 0})
    adapter = make_storage()
    adapter.connect()
    assert adapter.retrieve(FLOW, TASK, task_id) == 7
    with pytest.raises(SelinonMissingDataException):
        adapter.retrieve_error(FLOW, TASK, task_id)


class Selinon1Storage(MongoDB):
    """A project's own storage as written for Selinon 1.x: it queries ``self.collection`` itself."""

    def tasks_of_flow(self, flow_name: str) -> list[str]:
        assert self.db is not None and self.client is not None
        assert self.db.name == self.db_name
        found = self.collection.find({"flow_name": flow_name}, {"task_id": True})  # type: ignore[union-attr]
        return sorted(document["task_id"] for document in found)


def test_subclass_written_for_selinon_1(server: Server, collection_name: str) -> None:
    host = server.uri or server.host
    adapter = Selinon1Storage(server.db_name, collection_name, host, server.port, layout="selinon1")
    assert (adapter.client, adapter.db, adapter.collection) == (None, None, None)
    adapter.connect()
    try:
        flow = f"flow-{uuid.uuid4()}"
        ids = sorted(tid() for _ in range(3))
        for task_id in ids:
            adapter.store(None, flow, TASK, task_id, {"id": task_id})
        assert adapter.tasks_of_flow(flow) == ids
        assert adapter.retrieve(flow, TASK, ids[0]) == {"id": ids[0]}
    finally:
        adapter.disconnect()
    assert adapter.collection is None
