"""The adapter inside Selinon: Selinon 1.x YAML as users have it, the command line, the pool across fork() on
SQLite (on the servers, fork is a drill of test_reliability.py)."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import textwrap
import uuid
import warnings
from pathlib import Path

import pytest
import selinon_storage_postgresql
import sqlalchemy as sa
from conftest import engine_for
from selinon_storage_postgresql import DEFAULT_TABLE, PostgreSQL, SqlStorage
from sqlalchemy.engine import make_url

from selinon import StorageError, StoragePool, config
from selinon.registry import LegacyImportWarning
from selinon.testing import exception_text, free_port, planted_secret

# Selinon 1.x's documented block; only host, port and database are filled in by the tests.
LEGACY_BLOCK = """\
storages:
  - name: 'MySqlStorage'
    classname: 'PostgreSQL'
    import: 'selinon.storages.postgresql'
    configuration:
      connection_string: 'postgres://postgres:{password}@{host}:{port}/{database}'
      encoding: 'utf-8'
      echo: false
"""
TASKS = """\
tasks:
  - name: 'MyTask'
    storage: 'MySqlStorage'
"""


def legacy_yaml(server_url: str, database: str, password: str = "postgres", with_import: bool = True) -> str:
    url = make_url(server_url)
    text = LEGACY_BLOCK.format(password=password, host=url.host, port=url.port or 5432, database=database)
    if not with_import:
        text = "".join(line for line in text.splitlines(keepends=True) if "import:" not in line)
    return text + TASKS


def run_selinon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "selinon", *args], capture_output=True, text=True, timeout=120)


def use_through_pool(path: Path) -> None:
    StoragePool.configure(path)
    task_id = f"yaml-{uuid.uuid4()}"
    result = {"answer": 42, "big": 2**70}
    assert StoragePool.set({"arg": 1}, "myFlow", "MyTask", task_id, result) is not None
    assert StoragePool.retrieve("myFlow", "MyTask", task_id) == result
    assert isinstance(StoragePool.get_connected_storage("MySqlStorage"), PostgreSQL)
    StoragePool.delete("myFlow", "MyTask", task_id)


def test_selinon1_block_with_import_line(postgresql_url: str, fresh_database: str, tmp_path: Path) -> None:
    """The block as Selinon 1.x documents it loads and runs; its database is created on first use."""
    path = tmp_path / "nodes.yaml"
    path.write_text(legacy_yaml(postgresql_url, fresh_database))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        use_through_pool(path)
    legacy = [w for w in caught if issubclass(w.category, LegacyImportWarning)]
    assert len(legacy) == 1
    assert "selinon.storages.postgresql" in str(legacy[0].message)


def test_selinon1_block_verbatim(postgresql_url: str, tmp_path: Path) -> None:
    """The block exactly as documented (database `postgres`, default table), only host and port changed."""
    engine = engine_for(make_url(postgresql_url).set(database="postgres").render_as_string(hide_password=False))
    try:
        existed = sa.inspect(engine).has_table(DEFAULT_TABLE)
        path = tmp_path / "nodes.yaml"
        path.write_text(legacy_yaml(postgresql_url, "postgres"))
        with pytest.warns(LegacyImportWarning):
            use_through_pool(path)
        StoragePool.disconnect_all()
    finally:
        if not existed:  # leave a table another run made; remove the one made here
            with engine.begin() as conn:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {DEFAULT_TABLE}"))
        engine.dispose()


def test_block_without_import_line_and_storages_check(postgresql_url: str, fresh_database: str, tmp_path: Path) -> None:
    secret = planted_secret()  # trust authentication accepts any password
    path = tmp_path / "nodes.yaml"
    path.write_text(legacy_yaml(postgresql_url, fresh_database, password=secret, with_import=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error", LegacyImportWarning)
        use_through_pool(path)
    StoragePool.disconnect_all()
    checked = run_selinon("storages", "check", "-c", str(path), "--json")
    assert checked.returncode == 0, checked.stderr
    [report] = json.loads(checked.stdout)
    assert (report["storage"], report["classname"], report["status"]) == ("MySqlStorage", "PostgreSQL", "ok")
    assert secret not in checked.stdout + checked.stderr


def test_storages_check_reports_a_down_server_without_the_password(tmp_path: Path) -> None:
    secret = planted_secret()
    port = free_port()
    path = tmp_path / "nodes.yaml"
    path.write_text(legacy_yaml(f"postgresql://127.0.0.1:{port}/x", "test", password=secret, with_import=False))
    checked = run_selinon("storages", "check", "-c", str(path))
    assert checked.returncode == 1
    assert f"PostgreSQL at 127.0.0.1:{port}/test" in checked.stdout
    assert secret not in checked.stdout + checked.stderr


def test_pool_errors_and_reprs_hide_the_password(
    postgresql_url: str, table_name: str, created_tables: set[tuple[str, str]], tmp_path: Path
) -> None:
    created_tables.add((postgresql_url, table_name))
    secret = planted_secret()
    url = make_url(postgresql_url).set(password=secret).render_as_string(hide_password=False)
    path = tmp_path / "nodes.yaml"
    path.write_text(
        textwrap.dedent(f"""\
            storages:
              - name: 'Results'
                classname: 'SqlStorage'
                configuration: {{connection_string: '{url}', table_name: '{table_name}'}}
            tasks:
              - name: 'MyTask'
                storage: 'Results'
            """)
    )
    configuration = StoragePool.configure(path)
    storage = StoragePool.get_connected_storage("Results")
    with pytest.raises(StorageError) as raised:
        StoragePool.set(None, "flow", "MyTask", "nul\x00", 1)
    for text in (repr(storage), str(storage), repr(configuration.storages["Results"]), str(raised.value)):
        assert secret not in text
    assert "Results" in str(raised.value)


def test_plugins_list_shows_both_classnames() -> None:
    listed = run_selinon("plugins", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    ours = {e["classname"]: e for e in json.loads(listed.stdout) if e["distribution"] == "selinon-storage-postgresql"}
    assert set(ours) == {"PostgreSQL", "SqlStorage"}
    assert ours["PostgreSQL"]["target"] == "selinon_storage_postgresql:PostgreSQL"
    assert ours["SqlStorage"]["target"] == "selinon_storage_postgresql:SqlStorage"
    assert {e["status"] for e in ours.values()} == {"installed"}
    assert {e["version"] for e in ours.values()} == {selinon_storage_postgresql.__version__}


def _store_in_child(prefix: str, child: int) -> None:
    for n in range(5):
        StoragePool.set({"child": child}, "forkFlow", "ForkTask", f"{prefix}-{child}-{n}", {"child": child, "n": n})
    # What the child used: its own adapter, engine and pool, never the parent's left behind by the fork.
    adapter = StoragePool.get_connected_storage("Results")
    assert isinstance(adapter, SqlStorage)
    parents = [slot.adapter for slot in StoragePool._abandoned]
    assert parents and all(adapter is not p and adapter._engine is not p._engine for p in parents)  # type: ignore[attr-defined]


def test_fork_children_use_their_own_sqlite_connections(
    sqlite_url: str, table_name: str, created_tables: set[tuple[str, str]], tmp_path: Path
) -> None:
    """SQLite, which no proxy can stand in front of: children forked after the parent used the pool store
    through engines of their own, and the parent's keeps working. (Servers: the fork drill of
    test_reliability.py.)"""
    created_tables.add((sqlite_url, table_name))
    path = tmp_path / "nodes.yaml"
    path.write_text(
        textwrap.dedent(f"""\
            storages:
              - name: 'Results'
                classname: 'SqlStorage'
                configuration: {{connection_string: '{sqlite_url}', table_name: '{table_name}'}}
            tasks:
              - name: 'ForkTask'
                storage: 'Results'
            """)
    )
    StoragePool.configure(path)
    prefix = f"fork-{uuid.uuid4()}"
    StoragePool.set(None, "forkFlow", "ForkTask", f"{prefix}-parent", "before fork")
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_store_in_child, args=(prefix, child)) for child in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    assert [child.exitcode for child in children] == [0, 0, 0]
    for child in range(3):
        for n in range(5):
            found = StoragePool.retrieve("forkFlow", "ForkTask", f"{prefix}-{child}-{n}")
            assert found == {"child": child, "n": n}
    assert StoragePool.retrieve("forkFlow", "ForkTask", f"{prefix}-parent") == "before fork"
    StoragePool.set(None, "forkFlow", "ForkTask", f"{prefix}-parent", "after fork")
    assert StoragePool.retrieve("forkFlow", "ForkTask", f"{prefix}-parent") == "after fork"


def test_configuration_loads_without_connecting(tmp_path: Path) -> None:
    """Loading and instantiating does no I/O: a configuration for an absent server loads fine."""
    path = tmp_path / "nodes.yaml"
    path.write_text(legacy_yaml(f"postgresql://127.0.0.1:{free_port()}/x", "test", with_import=False))
    loaded = config.load(path)
    StoragePool.configure(loaded)
    assert not StoragePool.get_storage("MySqlStorage").is_connected()


def test_a_password_with_an_unescaped_at_is_refused_without_showing_any_of_it(tmp_path: Path) -> None:
    """SQLAlchemy ends the password at its first '@' and takes the rest for the host, which messages show."""
    secret = planted_secret()
    url = f"postgresql://postgres:{secret}@tail-{secret}@127.0.0.1:5432/test"
    path = tmp_path / "nodes.yaml"
    path.write_text(
        f"storages:\n  - {{name: Pg, classname: PostgreSQL, configuration: {{connection_string: '{url}'}}}}\n"
        "tasks:\n  - {name: T, storage: Pg}\n"
    )
    assert secret not in repr(config.load(path).storages["Pg"])
    for command in (["storages", "check"], ["storages", "check", "--json"], ["results", "get"]):
        done = run_selinon(*command, "-c", str(path), *(["T", "some-id"] if command[0] == "results" else []))
        assert done.returncode == 2, done.stdout + done.stderr
        assert "the password holds an '@' that is not escaped" in done.stderr
        assert "write each '@' of the password as %40" in done.stderr
        assert secret not in done.stdout + done.stderr
    with pytest.raises(ValueError) as raised:
        PostgreSQL(connection_string=url)
    assert secret not in exception_text(raised.value)


def test_a_password_in_the_query_string_is_hidden(
    postgresql_url: str, table_name: str, created_tables: set[tuple[str, str]], tmp_path: Path
) -> None:
    created_tables.add((postgresql_url, table_name))
    secret = planted_secret()  # trust authentication accepts any password
    url = make_url(postgresql_url).set(password=None)
    url = url.update_query_dict({"password": secret, "sslpassword": secret}).render_as_string(hide_password=False)
    path = tmp_path / "nodes.yaml"
    path.write_text(
        "storages:\n  - name: Pg\n    classname: PostgreSQL\n"
        f"    configuration: {{connection_string: '{url}', table_name: '{table_name}'}}\n"
    )
    stored = config.load(path).storages["Pg"]
    assert "password=***&sslpassword=***" in repr(stored)
    assert secret not in repr(stored)
    done = run_selinon("storages", "check", "-c", str(path), "--json")
    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout + done.stderr
