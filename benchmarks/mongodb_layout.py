"""What each part of the MongoDB adapter's documents and calls costs, against the simplest document.

Raw pymongo on both sides, store+retrieve pairs of a 1 KB result over 2,000 rotating task ids, each stored once
before the measurement (so every measured store replaces a document): the simplest document (``_id`` = the task
id, the result; one upsert and one read by ``_id``) against the same with one feature added, and against the
older layouts' round trips. A ratio below 1 is that feature's cost.
"""

from __future__ import annotations

import datetime
import itertools
import uuid
from collections.abc import Callable
from typing import Any

from compare import Comparison, compare_rates
from peer import FLOW, NODE_ARGS, TASK, payload

Store = Callable[[Any, str, Any], None]
Read = Callable[[Any, str], Any]


def _fields(result: Any) -> dict[str, Any]:
    """This adapter's document but for its key fields."""
    return {
        "selinon_record": 1, "flow_name": FLOW, "task_name": TASK, "node_args": NODE_ARGS, "result": result,
        "stored_at": _now(),
    }  # fmt: skip


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _by_task_id_and_read_id(records: Any, task_id: str, result: Any) -> None:
    """0.2.0's store: an upsert by the task_id field, and for a replaced document a read of its ObjectId _id."""
    if records.replace_one({"task_id": task_id}, {"task_id": task_id, **_fields(result)}, True).upserted_id:
        return
    records.find_one({"task_id": task_id}, {"_id": True})


#: name: (unique index on task_id, store, read).
VARIANTS: dict[str, tuple[bool, Store, Read]] = {
    "simplest document": (
        False,
        lambda r, k, v: r.replace_one({"_id": k}, {"result": v}, upsert=True),
        lambda r, k: r.find_one({"_id": k})["result"],
    ),
    "+ task_id field under a unique index": (
        True,
        lambda r, k, v: r.replace_one({"_id": k}, {"task_id": k, "result": v}, upsert=True),
        lambda r, k: r.find_one({"_id": k})["result"],
    ),
    "+ stored_at (every store changes the document: MongoDB skips writing an unchanged one)": (
        False,
        lambda r, k, v: r.replace_one({"_id": k}, {"result": v, "stored_at": _now()}, upsert=True),
        lambda r, k: r.find_one({"_id": k})["result"],
    ),
    "+ marker, flow_name, task_name, node_args fields": (
        False,
        lambda r, k, v: r.replace_one(
            {"_id": k},
            {"selinon_record": 1, "flow_name": FLOW, "task_name": TASK, "node_args": NODE_ARGS, "result": v},
            upsert=True,
        ),
        lambda r, k: r.find_one({"_id": k})["result"],
    ),
    "the adapter's documents in a collection of its own (all of the above but the index)": (
        False,
        lambda r, k, v: r.replace_one({"_id": k}, {"_id": k, "task_id": k, **_fields(v)}, upsert=True),
        lambda r, k: r.find_one({"_id": k})["result"],
    ),
    "the adapter's documents where older ones can be (all of the above)": (
        True,
        lambda r, k, v: r.replace_one({"_id": k}, {"_id": k, "task_id": k, **_fields(v)}, upsert=True),
        lambda r, k: r.find_one({"_id": k})["result"],
    ),
    "0.2.0's: ObjectId _id, upsert by task_id and a read of the _id, read by task_id": (
        True,
        _by_task_id_and_read_id,
        lambda r, k: r.find_one({"task_id": k}, {"_id": False})["result"],
    ),
    "the adapter's documents, a miss by _id before each read (an older document's read)": (
        True,
        lambda r, k, v: r.replace_one({"_id": k}, {"_id": k, "task_id": k, **_fields(v)}, upsert=True),
        lambda r, k: (r.find_one({"_id": "missing:" + k}), r.find_one({"task_id": k})["result"])[1],
    ),
}


def _workload(collection: Any, indexed: bool, store: Store, read: Read) -> Callable[[int], None]:
    if indexed:
        collection.create_index("task_id", unique=True)
    result = payload(1024)
    keys = [f"layout-{i}" for i in range(2000)]
    for task_id in keys:  # every measured store replaces a document, on every side alike
        store(collection, task_id, result)
    ids = itertools.cycle(keys)

    def work(n: int) -> None:
        for _ in range(n):
            task_id = next(ids)
            store(collection, task_id, result)
            read(collection, task_id)

    return work


def mongodb_layout_costs(where: str, rounds: int, seconds: float, report: Callable[[Comparison], None]) -> None:
    import pymongo

    host, _, port = where.partition(":")
    client: Any = pymongo.MongoClient(host=host, port=int(port))
    database = client["selinon_bench"]
    names: list[str] = []

    def workload(name: str) -> Callable[[int], None]:
        names.append(f"bench_layout_{uuid.uuid4().hex[:10]}")
        return _workload(database[names[-1]], *VARIANTS[name])

    try:
        simplest = workload("simplest document")
        for name in VARIANTS:
            if name == "simplest document":
                continue
            ours, base, ratio, ratios = compare_rates(workload(name), simplest, rounds, seconds)
            report(
                Comparison(
                    f"MongoDB layout: {name} vs simplest document", ours, base, ratio, "pairs/s", "info", True,
                    ratios=ratios,
                )
            )  # fmt: skip
    finally:
        for name in names:
            database.drop_collection(name)
        client.close()
