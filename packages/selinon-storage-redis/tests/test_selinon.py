"""The adapter inside Selinon: YAML configurations of Selinon 1.x, the command line, the pool and fork."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from selinon_storage_redis import Redis

from selinon import SelinonMissingDataException, StorageError, StoragePool
from selinon.pool import instantiate
from selinon.registry import LegacyImportWarning
from selinon.testing import exception_text, planted_secret

SECRET = os.environ.get("SELINON_PLANTED_SECRET") or f"planted-{uuid.uuid4().hex}"
FLOW = "legacyFlow"

# The Selinon 1.x block, as users have it; only host and port are filled in to reach the test server.
LEGACY_YAML = """\
storages:
  - name: 'MyRedisStorage'
    classname: 'Redis'
    import: 'selinon.storages.redis'
    configuration: {{host: '{host}', port: {port}, db: {db}, charset: 'utf-8'}}

tasks:
  - name: 'MyTask'
    import: 'myapp.tasks'
    storage: 'MyRedisStorage'
"""


def write_config(path: Path, redis_url: str, legacy: bool) -> Path:
    parts = urlsplit(redis_url)
    text = LEGACY_YAML.format(host=parts.hostname, port=parts.port or 6379, db=int(parts.path.strip("/") or 0))
    if not legacy:
        text = text.replace("    import: 'selinon.storages.redis'\n", "")
        assert "import: 'selinon.storages" not in text
    path.write_text(text)
    return path


def run_selinon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "selinon", *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("legacy", [True, False], ids=["with import line", "without import line"])
def test_selinon_1x_block_loads_and_runs(tmp_path: Path, redis_url: str, legacy: bool) -> None:
    path = write_config(tmp_path / "nodes.yaml", redis_url, legacy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        StoragePool.configure(path)
        adapter = StoragePool.get_connected_storage("MyRedisStorage")
        task_id = f"legacy-{uuid.uuid4()}"
        try:
            record_id = StoragePool.set({"arg": 1}, FLOW, "MyTask", task_id, {"legacy": "works ✓"})
            assert record_id == f"selinon:{task_id}"  # the default key prefix
            assert StoragePool.retrieve(FLOW, "MyTask", task_id) == {"legacy": "works ✓"}
            assert json.loads(redis.Redis.from_url(redis_url).get(record_id) or b"")["task_name"] == "MyTask"
        finally:
            StoragePool.delete(FLOW, "MyTask", task_id)
    assert isinstance(adapter, Redis)
    legacy_warnings = [w for w in caught if issubclass(w.category, LegacyImportWarning)]
    assert len(legacy_warnings) == (1 if legacy else 0)
    if legacy:
        assert "selinon.storages.redis" in str(legacy_warnings[0].message)


@pytest.mark.parametrize("legacy", [True, False], ids=["with import line", "without import line"])
def test_storages_check(tmp_path: Path, redis_url: str, legacy: bool) -> None:
    path = write_config(tmp_path / "nodes.yaml", redis_url, legacy)
    done = run_selinon("storages", "check", "-c", str(path), "--json")
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)
    assert (result["storage"], result["classname"], result["status"]) == ("MyRedisStorage", "Redis", "ok")


def test_plugins_list_shows_redis() -> None:
    done = run_selinon("plugins", "list", "--json")
    assert done.returncode == 0, done.stderr
    [entry] = [e for e in json.loads(done.stdout) if e["classname"] == "Redis"]
    assert entry["distribution"] == "selinon-storage-redis"
    assert entry["target"] == "selinon_storage_redis:Redis"
    assert entry["status"] == "installed"


def test_plugins_show_marks_secrets() -> None:
    done = run_selinon("plugins", "show", "Redis", "--json")
    assert done.returncode == 0, done.stderr
    options = {o["name"]: o for o in json.loads(done.stdout)["options"]}
    assert options["password"]["secret"] and options["url"]["secret"]
    assert not options["host"]["secret"]
    assert options["key_prefix"]["default"] == "selinon:"


def test_secret_never_shown_by_the_pool_or_the_command_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    path = tmp_path / "nodes.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        storages:
          - name: 'ByUrl'
            classname: 'Redis'
            configuration: {{url: 'redis://admin:{SECRET}@127.0.0.1:{closed}/0', connect_timeout: 1}}
          - name: 'ByPassword'
            classname: 'Redis'
            configuration: {{host: '127.0.0.1', port: {closed}, password: '{SECRET}', connect_timeout: 1}}
        """)
    )
    caplog.set_level(logging.DEBUG)
    StoragePool.configure(path)
    for name in ("ByUrl", "ByPassword"):
        adapter = StoragePool.get_storage(name)
        assert SECRET not in repr(adapter)
        with pytest.raises(StorageError) as raised:
            StoragePool.get_connected_storage(name)
        assert f"cannot connect to Redis at 127.0.0.1:{closed}" in str(raised.value)
        assert SECRET not in str(raised.value) + repr(raised.value) + repr(raised.value.__cause__)
    assert SECRET not in repr(StoragePool.get_storage_config("ByUrl"))
    assert SECRET not in caplog.text
    done = run_selinon("storages", "check", "-c", str(path))
    assert done.returncode == 1
    assert "cannot connect to Redis at 127.0.0.1" in done.stdout
    assert SECRET not in done.stdout + done.stderr


def _connection_id(adapter: Redis) -> int:
    """The server's CLIENT ID of a connection from this adapter's pool."""
    return int(adapter._connected().execute("CLIENT", "ID"))


def _store_in_child(task_ids: list[str]) -> None:
    for task_id in task_ids:
        StoragePool.set(None, FLOW, "MyTask", task_id, {"child": os.getpid()})
    # What the child used: its own adapter and connection pool, never the parent's left behind by the fork.
    adapter = StoragePool.get_connected_storage("MyRedisStorage")
    assert isinstance(adapter, Redis) and adapter._connections is not None
    parents = [slot.adapter for slot in StoragePool._abandoned]
    assert parents and all(adapter is not p and p._connections is not adapter._connections for p in parents)  # type: ignore[attr-defined]
    used = {"pid": os.getpid(), "connection": _connection_id(adapter)}
    StoragePool.set(None, FLOW, "MyTask", task_ids[0] + "-who", used)


def test_fork_safety(tmp_path: Path, redis_url: str) -> None:
    StoragePool.configure(write_config(tmp_path / "nodes.yaml", redis_url, legacy=False))
    parent_id = f"fork-parent-{uuid.uuid4()}"
    StoragePool.set(None, FLOW, "MyTask", parent_id, "parent")
    adapter = StoragePool.get_connected_storage("MyRedisStorage")
    batches = [[f"fork-{n}-{i}-{uuid.uuid4()}" for i in range(20)] for n in range(4)]
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_store_in_child, args=(batch,)) for batch in batches]
    try:
        for child in children:
            child.start()
        for child in children:
            child.join(60)
        assert [child.exitcode for child in children] == [0] * len(children)
        for batch in batches:
            for task_id in batch:
                assert "child" in StoragePool.retrieve(FLOW, "MyTask", task_id)
        assert StoragePool.get_connected_storage("MyRedisStorage") is adapter  # the parent's own, still working
        # Each child used its own connection: server-side client ids that are not the parent's nor another
        # child's, and all of them closed (the children have exited) while the parent's is still open.
        assert isinstance(adapter, Redis)
        mine = _connection_id(adapter)
        used = [StoragePool.retrieve(FLOW, "MyTask", batch[0] + "-who") for batch in batches]
        assert len({u["pid"] for u in used} | {os.getpid()}) == len(batches) + 1
        connections = [u["connection"] for u in used]
        assert mine not in connections and len(set(connections)) == len(batches), (mine, used)
        server = redis.Redis.from_url(redis_url)
        try:
            deadline = time.monotonic() + 30  # the server notices the children's closed sockets soon after
            while {int(c["id"]) for c in server.client_list()} & set(connections) and time.monotonic() < deadline:
                time.sleep(0.05)
            open_ids = {int(c["id"]) for c in server.client_list()}
        finally:
            server.close()
        assert mine in open_ids and not open_ids & set(connections)
        assert StoragePool.retrieve(FLOW, "MyTask", parent_id) == "parent"
        StoragePool.set(None, FLOW, "MyTask", parent_id, "parent again")
        assert StoragePool.retrieve(FLOW, "MyTask", parent_id) == "parent again"
    finally:
        for task_id in [parent_id, *(t for batch in batches for t in [*batch, batch[0] + "-who"])]:
            try:
                StoragePool.delete(FLOW, "MyTask", task_id)
            except Exception:
                pass


@pytest.mark.parametrize("form", ["positional", "url"])
def test_a_legacy_positional_password_and_one_with_an_unescaped_at_are_hidden(
    redis_url: str, tmp_path: Path, form: str
) -> None:
    """Selinon 1.x's list form gives the password as the fourth argument (host, port, db, password); a URL's
    password may hold an '@' that is not escaped (redis-py reads up to the last one)."""
    secret = planted_secret()  # the test server's default user takes any password
    parts = urlsplit(redis_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if form == "positional":
        configuration = f"['{host}', {port}, 0, '{secret}']"
    else:
        configuration = f"{{url: 'redis://:{secret}@tail-{secret}@{host}:{port}/0'}}"
    path = tmp_path / "nodes.yaml"
    path.write_text(
        f"storages:\n  - {{name: Legacy, classname: Redis, configuration: {configuration}}}\n"
        "tasks:\n  - {name: T, storage: Legacy}\n"
    )
    loaded = StoragePool.configure(path)
    assert secret not in repr(loaded.storages["Legacy"])
    instance = instantiate(loaded.storages["Legacy"])
    assert secret not in repr(instance)
    assert instance.adapter.password == secret or f"{secret}@tail-{secret}" in instance.secrets
    task_id = f"secret-{uuid.uuid4().hex}"
    StoragePool.set(None, FLOW, "T", task_id, 1)
    assert StoragePool.retrieve(FLOW, "T", task_id) == 1
    StoragePool.delete(FLOW, "T", task_id)
    with pytest.raises(SelinonMissingDataException) as missing:
        StoragePool.retrieve(FLOW, "T", task_id)
    assert secret not in exception_text(missing.value)
    for args in ([], ["--json"]):
        done = run_selinon("storages", "check", "-c", str(path), *args)
        assert done.returncode == 0, done.stdout + done.stderr
        assert secret not in done.stdout + done.stderr
