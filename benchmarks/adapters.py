"""Adapter overhead, pool scaling and payload sizes: each adapter against its raw driver; and against Selinon 1.4.

Two raw baselines per backend, on the same server with the same result:

- *simplest*: what a user would write to keep a result by task id, with the fewest round trips and columns (a
  key holding the result's JSON; a table with the task id as primary key and one JSON column, one upsert and
  one select by key; a document whose _id is the task id; an object named by the task id);
- *mirrored*: the adapter's own record layout written by hand (flow name, task name, node args and result, the
  same statements or commands and round trips): what remains is what the adapter's code adds.

The Selinon 1.4.0 rows run its own adapters in an environment with the drivers it runs on, and this project's
adapters, each in a benchmarks/peer.py worker process, alternated round by round.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from compare import Comparison, Worker, compare_cpu, compare_rates
from peer import FLOW, NODE_ARGS, TASK, payload


@dataclass
class Raw:
    """The raw driver's side of a backend: a store and a retrieve by task id."""

    store: Callable[[str, Any], None]
    retrieve: Callable[[str], Any]
    close: Callable[[], None] = lambda: None


@dataclass
class Backend:
    name: str
    classname: str
    configuration: dict[str, Any]
    raw: Callable[[dict[str, Any]], Raw]  # mirrored: the adapter's record layout by hand
    simplest: Callable[[dict[str, Any]], Raw]
    cleanup: Callable[[dict[str, Any]], None] = field(default=lambda configuration: None)
    #: Selinon 1.4.0's adapter on the same server: its configuration, or why it cannot run there.
    selinon1: dict[str, Any] | str = "not measured"


# -- raw drivers -----------------------------------------------------------------------------------------------


def _record(result: Any) -> dict[str, Any]:
    return {"flow_name": FLOW, "task_name": TASK, "node_args": NODE_ARGS, "result": result}


def raw_redis(configuration: dict[str, Any]) -> Raw:
    import redis

    client = redis.Redis(host=configuration["host"], port=configuration["port"], db=configuration.get("db", 0))
    prefix = configuration["key_prefix"]

    def store(task_id: str, result: Any) -> None:
        client.set(prefix + task_id, json.dumps(_record(result), ensure_ascii=False).encode("utf-8"))

    def retrieve(task_id: str) -> Any:
        return json.loads(client.get(prefix + task_id).decode("utf-8"))["result"]

    return Raw(store, retrieve, client.close)


def raw_sql(configuration: dict[str, Any]) -> Raw:
    import hashlib

    import sqlalchemy as sa

    # As the adapter does: JSON text in and out unchanged, each statement in autocommit; the default pool size.
    verbatim = lambda value: value  # noqa: E731
    engine = sa.create_engine(
        configuration["connection_string"].replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT", json_serializer=verbatim, json_deserializer=verbatim,
    )  # fmt: skip
    table = configuration["table_name"]
    upsert = sa.text(
        f"INSERT INTO {table} (task_key, task_id, flow_name, task_name, node_args, result, error) "
        "VALUES (:task_key, :task_id, :flow_name, :task_name, :node_args, :result, NULL) "
        "ON CONFLICT (task_key) DO UPDATE SET task_id = excluded.task_id, flow_name = excluded.flow_name, "
        "task_name = excluded.task_name, node_args = excluded.node_args, result = excluded.result, "
        "error = excluded.error, stored_at = CURRENT_TIMESTAMP RETURNING id"
    )
    select = sa.text(f"SELECT id, result FROM {table} WHERE task_key = :task_key")

    def key(task_id: str) -> str:
        return hashlib.sha256(task_id.encode("utf-8")).hexdigest()

    def store(task_id: str, result: Any) -> None:
        values = {
            "task_key": key(task_id), "task_id": task_id, "flow_name": FLOW, "task_name": TASK,
            "node_args": json.dumps(NODE_ARGS, ensure_ascii=False, allow_nan=False, separators=(",", ":")),
            "result": json.dumps(result, ensure_ascii=False, allow_nan=False, separators=(",", ":")),
        }  # fmt: skip
        with engine.begin() as conn:
            conn.execute(upsert, values).scalar_one()

    def retrieve(task_id: str) -> Any:
        with engine.connect() as conn:
            row = conn.execute(select, {"task_key": key(task_id)}).first()
        return json.loads(row[1])

    return Raw(store, retrieve, engine.dispose)


def drop_sql_table(configuration: dict[str, Any]) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(configuration["connection_string"])
    with engine.begin() as conn:
        for table in (configuration["table_name"], configuration["table_name"] + "_simplest"):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()


def raw_mongodb(configuration: dict[str, Any]) -> Raw:
    import datetime

    import pymongo

    client: Any = pymongo.MongoClient(host=configuration["host"], port=configuration["port"])
    records = client[configuration["db_name"]][configuration["collection_name"]]

    def store(task_id: str, result: Any) -> None:
        document = {
            "_id": task_id, "task_id": task_id, "selinon_record": 1, "flow_name": FLOW, "task_name": TASK,
            "node_args": NODE_ARGS, "result": result, "stored_at": datetime.datetime.now(datetime.timezone.utc),
        }  # fmt: skip
        # The adapter's round trip: one upsert by _id (the task id, and the record id).
        records.replace_one({"_id": task_id}, document, upsert=True)

    def retrieve(task_id: str) -> Any:
        return records.find_one({"_id": task_id})["result"]  # the whole document, as the adapter reads it

    return Raw(store, retrieve, client.close)


def raw_s3(configuration: dict[str, Any]) -> Raw:
    import boto3
    from botocore.config import Config
    from selinon_storage_s3.storage import no_continue_for_records

    session = boto3.session.Session(
        aws_access_key_id=configuration["aws_access_key_id"],
        aws_secret_access_key=configuration["aws_secret_access_key"],
        region_name=configuration["region_name"],
    )
    # The adapter's client settings against an S3-compatible endpoint: path addressing, checksums only where
    # required, one attempt per call (the pool retries), the default connection pool.
    config = Config(
        s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"},
        request_checksum_calculation="when_required", response_checksum_validation="when_required",
    )  # fmt: skip
    client = session.client("s3", endpoint_url=configuration["endpoint_url"], config=config)
    # The adapter's own handler: a record up to 1 MiB goes without `Expect: 100-continue`, in one round trip.
    client.meta.events.register_last("before-call.s3", no_continue_for_records)
    bucket = configuration["bucket"]

    def store(task_id: str, result: Any) -> None:
        body = json.dumps(_record(result), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
        client.put_object(Bucket=bucket, Key=task_id, Body=body, ContentType="application/json; charset=utf-8")

    def retrieve(task_id: str) -> Any:
        return json.loads(client.get_object(Bucket=bucket, Key=task_id)["Body"].read())["result"]

    return Raw(store, retrieve, client.close)


# -- the simplest code a user would write ----------------------------------------------------------------------


def simplest_redis(configuration: dict[str, Any]) -> Raw:
    import redis

    client = redis.Redis(host=configuration["host"], port=configuration["port"], db=configuration.get("db", 0))
    prefix = configuration["key_prefix"] + "simplest:"

    def store(task_id: str, result: Any) -> None:
        client.set(prefix + task_id, json.dumps(result))

    def retrieve(task_id: str) -> Any:
        return json.loads(client.get(prefix + task_id))

    return Raw(store, retrieve, client.close)


def simplest_sql(configuration: dict[str, Any]) -> Raw:
    import sqlalchemy as sa

    # One round trip per call: each statement in autocommit (a transaction around it adds BEGIN and COMMIT).
    engine = sa.create_engine(
        configuration["connection_string"].replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    table = configuration["table_name"] + "_simplest"
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {table} (task_id text PRIMARY KEY, result json NOT NULL)"))
    upsert = sa.text(
        f"INSERT INTO {table} (task_id, result) VALUES (:task_id, :result) "
        "ON CONFLICT (task_id) DO UPDATE SET result = excluded.result"
    )
    select = sa.text(f"SELECT result FROM {table} WHERE task_id = :task_id")

    def store(task_id: str, result: Any) -> None:
        with engine.connect() as conn:
            conn.execute(upsert, {"task_id": task_id, "result": json.dumps(result)})

    def retrieve(task_id: str) -> Any:
        with engine.connect() as conn:
            return conn.execute(select, {"task_id": task_id}).scalar_one()  # psycopg decodes json columns

    return Raw(store, retrieve, engine.dispose)


def simplest_mongodb(configuration: dict[str, Any]) -> Raw:
    import pymongo

    client: Any = pymongo.MongoClient(host=configuration["host"], port=configuration["port"])
    records = client[configuration["db_name"]][configuration["collection_name"] + "_simplest"]

    def store(task_id: str, result: Any) -> None:
        records.replace_one({"_id": task_id}, {"result": result}, upsert=True)

    def retrieve(task_id: str) -> Any:
        return records.find_one({"_id": task_id})["result"]

    return Raw(store, retrieve, client.close)


def simplest_s3(configuration: dict[str, Any]) -> Raw:
    import boto3

    client = boto3.client(
        "s3", endpoint_url=configuration["endpoint_url"], region_name=configuration["region_name"],
        aws_access_key_id=configuration["aws_access_key_id"],
        aws_secret_access_key=configuration["aws_secret_access_key"],
    )  # fmt: skip
    bucket = configuration["bucket"]

    def store(task_id: str, result: Any) -> None:
        client.put_object(Bucket=bucket, Key=f"simplest/{task_id}", Body=json.dumps(result).encode())

    def retrieve(task_id: str) -> Any:
        return json.loads(client.get_object(Bucket=bucket, Key=f"simplest/{task_id}")["Body"].read())

    return Raw(store, retrieve, client.close)


BACKENDS: dict[str, Callable[[dict[str, str]], Backend]] = {}


def backend(name: str) -> Callable[[Callable[[dict[str, str]], Backend]], Callable[[dict[str, str]], Backend]]:
    def register(make: Callable[[dict[str, str]], Backend]) -> Callable[[dict[str, str]], Backend]:
        BACKENDS[name] = make
        return make

    return register


@backend("PostgreSQL")
def postgresql(servers: dict[str, str]) -> Backend:
    unique = uuid.uuid4().hex[:12]
    configuration = {"connection_string": servers["postgresql"], "table_name": f"bench_{unique}"}
    # Selinon 1.4 keeps its records in a table named `result`, in a database it creates when missing: one of its own.
    selinon1_database = f"selinon_bench_{unique}"
    selinon1 = {"connection_string": servers["postgresql"].rsplit("/", 1)[0] + "/" + selinon1_database}

    def cleanup(configuration: dict[str, Any]) -> None:
        import sqlalchemy as sa

        drop_sql_table(configuration)
        engine = sa.create_engine(configuration["connection_string"], isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {selinon1_database} WITH (FORCE)"))
        engine.dispose()

    return Backend("PostgreSQL", "PostgreSQL", configuration, raw_sql, simplest_sql, cleanup, selinon1)


@backend("Redis")
def redis_backend(servers: dict[str, str]) -> Backend:
    host, _, port = servers["redis"].partition(":")
    configuration = {"host": host, "port": int(port), "key_prefix": f"selinon-bench-{uuid.uuid4().hex[:8]}:"}

    def cleanup(configuration: dict[str, Any]) -> None:
        import redis

        client = redis.Redis(host=host, port=int(port))
        for key in client.scan_iter(match=configuration["key_prefix"] + "*", count=1000):
            client.delete(key)
        client.close()

    # Selinon 1.4 keys a record by its bare task id: the worker's task ids start with the key prefix.
    selinon1 = {"host": host, "port": int(port)}
    return Backend("Redis", "Redis", configuration, raw_redis, simplest_redis, cleanup, selinon1)


@backend("MongoDB")
def mongodb(servers: dict[str, str]) -> Backend:
    host, _, port = servers["mongodb"].partition(":")
    configuration = {
        "host": host,
        "port": int(port),
        "db_name": "selinon_bench",
        "collection_name": f"bench_{uuid.uuid4().hex[:8]}",
    }

    def cleanup(configuration: dict[str, Any]) -> None:
        import pymongo

        client: Any = pymongo.MongoClient(host=host, port=int(port))
        for suffix in ("", "_simplest", "_selinon1"):
            client[configuration["db_name"]].drop_collection(configuration["collection_name"] + suffix)
        client.close()

    selinon1 = {k: configuration[k] for k in ("host", "port", "db_name")}
    selinon1["collection_name"] = configuration["collection_name"] + "_selinon1"
    return Backend("MongoDB", "MongoDB", configuration, raw_mongodb, simplest_mongodb, cleanup, selinon1)


@backend("S3")
def s3(servers: dict[str, str]) -> Backend:
    configuration = {
        "bucket": f"selinon-bench-{uuid.uuid4().hex[:12]}", "endpoint_url": servers["s3"], "region_name": "us-east-1",
        "aws_access_key_id": "bench", "aws_secret_access_key": "bench-secret",
    }  # fmt: skip
    # Selinon 1.4 stores the result alone, as JSON with `serialize_json`, in the bucket this project's adapter
    # creates (1.4's own creation asks for a location constraint, which us-east-1 refuses).
    selinon1 = {k: configuration[k] for k in ("bucket", "endpoint_url", "region_name", "aws_access_key_id")}
    selinon1 |= {"aws_secret_access_key": configuration["aws_secret_access_key"], "serialize_json": True}
    return Backend("S3", "S3Storage", configuration, raw_s3, simplest_s3, selinon1=selinon1)


# -- measurements ----------------------------------------------------------------------------------------------


def _pairs(
    store: Callable[[str, Any], None], retrieve: Callable[[str], Any], result: Any, ids: Any
) -> Callable[[int], None]:
    """A workload of n store+retrieve pairs over a rotating set of task ids (inserts first, then upserts)."""

    def work(n: int) -> None:
        for _ in range(n):
            task_id = next(ids)
            store(task_id, result)
            retrieve(task_id)

    return work


def _ids(label: str, count: int = 2000) -> Any:
    return itertools.cycle([f"{label}-{i}" for i in range(count)])


def _label(size: int) -> str:
    return "1 KB" if size == 1024 else f"{size // 1024} KB" if size < 1 << 20 else f"{size >> 20} MB"


@contextlib.contextmanager
def _adapter_and_raw(
    b: Backend, raw_code: Callable[[dict[str, Any]], Raw], size: int, label: str
) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """Store+retrieve workloads of the adapter and of raw code on the same server and result, connected for the
    time of the ``with`` block; ``label`` keeps their task ids apart from other measurements'."""
    from selinon.registry import resolve

    adapter = resolve(b.classname)(**b.configuration)
    adapter.connect()
    raw = raw_code(b.configuration)
    result = payload(size)
    try:
        yield (
            _pairs(
                lambda t, r: adapter.store(NODE_ARGS, FLOW, TASK, t, r),
                lambda t: adapter.retrieve(FLOW, TASK, t),
                result,
                _ids(f"{label}adapter"),
            ),
            _pairs(raw.store, raw.retrieve, result, _ids(f"{label}raw")),
        )
    finally:
        adapter.disconnect()
        raw.close()


def overhead(b: Backend, rounds: int, seconds: float, size: int = 1024, baseline: str = "simplest") -> Comparison:
    """The adapter against the raw driver, `simplest` or `mirrored` (the adapter's record layout by hand)."""
    raw_code = b.simplest if baseline == "simplest" else b.raw
    with _adapter_and_raw(b, raw_code, size, "") as (adapter, raw):
        ours, base, ratio, ratios = compare_rates(adapter, raw, rounds, seconds)
    name = f"{b.name}: adapter vs {baseline} raw, {_label(size)}"
    return Comparison(name, ours, base, ratio, "pairs/s", ">= 0.90", ratio >= 0.9, ratios=ratios)


def client_cpu(b: Backend, rounds: int, seconds: float, size: int = 1024) -> Comparison:
    """Client CPU time per store+retrieve pair, the adapter against the simplest raw code (lower is better)."""
    with _adapter_and_raw(b, b.simplest, size, "cpu-") as (adapter, raw):
        ours, base, ratio, ratios = compare_cpu(adapter, raw, rounds, seconds)
    name = f"{b.name}: client CPU per pair, adapter vs simplest raw, {_label(size)}"
    return Comparison(name, ours * 1e6, base * 1e6, ratio, "us", "info", True, ratios=ratios)


def versus_selinon1(b: Backend, python: str | None, rounds: int, seconds: float, size: int = 1024) -> Comparison:
    """This project's adapter against Selinon 1.4.0's, each in a worker process of its own environment, on the
    same server with the same result; every pair stores under a new task id (1.4's SQL and MongoDB adapters
    cannot replace a record)."""
    name = f"{b.name}: adapter vs Selinon 1.4.0's, {_label(size)}"
    why = "no Selinon 1.4.0 environment (--selinon1)" if python is None else b.selinon1
    if isinstance(why, str):
        return Comparison(name, math.nan, math.nan, math.nan, "pairs/s", "-", True, f"not run: {why}")
    assert python is not None and isinstance(b.selinon1, dict)
    unique = uuid.uuid4().hex[:8]
    # Redis: Selinon 1.4 keys records by the bare task id, so both sides' ids start with the benchmark's prefix.
    prefix = b.configuration.get("key_prefix", "")
    ours, theirs = Worker(sys.executable), Worker(python)
    try:
        ours.request("adapter", classname=b.classname, configuration=b.configuration, size=size, label=f"ours-{unique}")
        theirs.request(
            "adapter", classname=b.classname, configuration=b.selinon1, size=size, label=f"{prefix}selinon1-{unique}"
        )
        rate, base, ratio, ratios = compare_rates(ours, theirs, rounds, seconds)
    finally:
        ours.close()
        theirs.close()
    return Comparison(name, rate, base, ratio, "pairs/s", ">= 1.00", ratio >= 1.0, ratios=ratios)


def scaling(b: Backend, pool_class: Any, threads: int, rounds: int, seconds: float) -> Comparison:
    """The pool from ``threads`` threads against the raw driver (with its own connection pool) from as many."""
    raw = b.raw(b.configuration)
    result = payload(1024)

    def through_pool(thread: int) -> Callable[[int], None]:
        return _pairs(
            lambda t, r: pool_class.set(NODE_ARGS, FLOW, TASK, t, r),
            lambda t: pool_class.retrieve(FLOW, TASK, t),
            result,
            _ids(f"pool-{threads}-{thread}"),
        )

    def through_raw(thread: int) -> Callable[[int], None]:
        return _pairs(raw.store, raw.retrieve, result, _ids(f"raw-{threads}-{thread}"))

    try:
        ours, base, ratio, ratios = compare_rates(
            [through_pool(t) for t in range(threads)], [through_raw(t) for t in range(threads)], rounds, seconds
        )
    finally:
        raw.close()
    name = f"{b.name}: StoragePool vs mirrored raw, {threads} thread{'s' if threads > 1 else ''}"
    return Comparison(name, ours, base, ratio, "pairs/s", ">= 0.90", ratio >= 0.9, ratios=ratios)
