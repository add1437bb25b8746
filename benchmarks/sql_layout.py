"""What each part of the SQL adapter's table and statements costs, on PostgreSQL, against the simplest table.

Raw SQLAlchemy on both sides, each statement in autocommit (as the adapter runs them), store+retrieve pairs of a
1 KB result: the simplest table (the task id as primary key, one json column, an upsert and a select by key)
against the same with one feature added. A ratio below 1 is that feature's cost.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from collections.abc import Callable
from typing import Any

from compare import Comparison, compare_rates
from peer import NODE_ARGS, payload

SIMPLEST = "CREATE TABLE {t} (task_id text PRIMARY KEY, result json NOT NULL)"
ADAPTER = (
    "CREATE TABLE {t} (id bigserial PRIMARY KEY, task_key varchar(64) NOT NULL UNIQUE, task_id text NOT NULL, "
    "flow_name text NOT NULL, task_name text NOT NULL, node_args json NOT NULL, result json, error json, "
    "stored_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP)"
)
SET_RESULT = "ON CONFLICT (task_id) DO UPDATE SET result = excluded.result"
#: name: (table, upsert, select, key of the row); {t} is the table, :k the task id, :h its SHA-256, :r the result.
VARIANTS: dict[str, tuple[str, str, str]] = {
    "simplest table": (
        SIMPLEST,
        f"INSERT INTO {{t}} (task_id, result) VALUES (:k, :r) {SET_RESULT}",
        "SELECT result FROM {t} WHERE task_id = :k",
    ),
    "+ RETURNING the key": (
        SIMPLEST,
        f"INSERT INTO {{t}} (task_id, result) VALUES (:k, :r) {SET_RESULT} RETURNING task_id",
        "SELECT result FROM {t} WHERE task_id = :k",
    ),
    "+ stored_at timestamp": (
        "CREATE TABLE {t} (task_id text PRIMARY KEY, result json NOT NULL, stored_at timestamptz NOT NULL "
        "DEFAULT CURRENT_TIMESTAMP)",
        f"INSERT INTO {{t}} (task_id, result) VALUES (:k, :r) {SET_RESULT}, stored_at = CURRENT_TIMESTAMP",
        "SELECT result FROM {t} WHERE task_id = :k",
    ),
    "+ bigserial id (2nd unique index), RETURNING id": (
        "CREATE TABLE {t} (id bigserial PRIMARY KEY, task_id text NOT NULL UNIQUE, result json NOT NULL)",
        f"INSERT INTO {{t}} (task_id, result) VALUES (:k, :r) {SET_RESULT} RETURNING id",
        "SELECT id, result FROM {t} WHERE task_id = :k",
    ),
    "+ flow_name, task_name, node_args, error columns": (
        "CREATE TABLE {t} (task_id text PRIMARY KEY, flow_name text NOT NULL, task_name text NOT NULL, "
        "node_args json NOT NULL, result json, error json)",
        "INSERT INTO {t} (task_id, flow_name, task_name, node_args, result, error) VALUES (:k, 'f', 't', :n, :r, "
        "NULL) ON CONFLICT (task_id) DO UPDATE SET flow_name = excluded.flow_name, task_name = excluded.task_name, "
        "node_args = excluded.node_args, result = excluded.result, error = excluded.error",
        "SELECT result FROM {t} WHERE task_id = :k",
    ),
    "+ SHA-256 task_key as the unique key": (
        "CREATE TABLE {t} (task_key varchar(64) PRIMARY KEY, result json NOT NULL)",
        "INSERT INTO {t} (task_key, result) VALUES (:h, :r) ON CONFLICT (task_key) DO UPDATE SET result = "
        "excluded.result",
        "SELECT result FROM {t} WHERE task_key = :h",
    ),
    "the adapter's table and statements (all of the above)": (
        ADAPTER,
        "INSERT INTO {t} (task_key, task_id, flow_name, task_name, node_args, result, error) VALUES (:h, :k, 'f', "
        "'t', :n, :r, NULL) ON CONFLICT (task_key) DO UPDATE SET task_id = excluded.task_id, flow_name = "
        "excluded.flow_name, task_name = excluded.task_name, node_args = excluded.node_args, result = "
        "excluded.result, error = excluded.error, stored_at = CURRENT_TIMESTAMP RETURNING id",
        "SELECT id, result FROM {t} WHERE task_key = :h",
    ),
}
#: Call-path variants on the simplest table: engine options and whether each call runs in a transaction.
CALL_PATHS = {
    "simplest table, a ping before each call (pool_pre_ping)": (
        {"pool_pre_ping": True, "isolation_level": "AUTOCOMMIT"},
        False,
    ),
    "simplest table, a transaction around each call (SQLAlchemy's default)": ({}, True),
}


def _workload(engine: Any, ddl: str, upsert: str, select: str, transaction: bool, tables: list[str]) -> Any:
    import sqlalchemy as sa

    table = f"bench_layout_{uuid.uuid4().hex[:10]}"
    tables.append(table)
    with engine.begin() as conn:
        conn.execute(sa.text(ddl.format(t=table)))
    statements = sa.text(upsert.format(t=table)), sa.text(select.format(t=table))
    result, node_args = json.dumps(payload(1024)), json.dumps(NODE_ARGS)
    ids = itertools.cycle([f"layout-{i}" for i in range(2000)])

    def work(n: int) -> None:
        for _ in range(n):
            task_id = next(ids)
            values = {"k": task_id, "h": hashlib.sha256(task_id.encode()).hexdigest(), "r": result, "n": node_args}
            with engine.begin() if transaction else engine.connect() as conn:
                stored = conn.execute(statements[0], values)
                if stored.returns_rows:
                    stored.all()
            with engine.connect() as conn:
                conn.execute(statements[1], values).one()

    return work


def layout_costs(url: str, rounds: int, seconds: float, report: Callable[[Comparison], None]) -> None:
    import sqlalchemy as sa

    url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    engines = {"autocommit": sa.create_engine(url, isolation_level="AUTOCOMMIT")}
    tables: list[str] = []
    try:
        simplest = _workload(engines["autocommit"], *VARIANTS["simplest table"], False, tables)
        rows: list[tuple[str, Any]] = [
            (name, _workload(engines["autocommit"], *statements, False, tables))
            for name, statements in VARIANTS.items()
            if name != "simplest table"
        ]
        for name, (options, transaction) in CALL_PATHS.items():
            engine = engines[name] = sa.create_engine(url, **options)
            rows.append((name, _workload(engine, *VARIANTS["simplest table"], transaction, tables)))
        for name, work in rows:
            ours, base, ratio, ratios = compare_rates(work, simplest, rounds, seconds)
            report(
                Comparison(
                    f"PostgreSQL layout: {name} vs simplest table", ours, base, ratio, "pairs/s", "info", True,
                    ratios=ratios,
                )
            )  # fmt: skip
    finally:
        with engines["autocommit"].connect() as conn:
            for table in tables:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        for engine in engines.values():
            engine.dispose()
