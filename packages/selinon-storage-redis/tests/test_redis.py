"""The adapter against real servers: record layout, every option, timeouts and secrets."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from conftest import MakeRedis, PrivateRedis
from selinon_storage_redis import Redis

from selinon import SelinonMissingDataException, StorageError

SECRET = os.environ.get("SELINON_PLANTED_SECRET") or f"planted-{uuid.uuid4().hex}"
FLOW, TASK = "testFlow", "testTask"


def tid() -> str:
    return f"task-{uuid.uuid4()}"


def failure() -> Any:
    try:
        raise RuntimeError("it broke")
    except RuntimeError:
        return sys.exc_info()


def all_text(exc: BaseException) -> str:
    """Everything an exception can show: message, repr, its causes and the formatted traceback."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(type(exc), exc, exc.__traceback__)])


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens on it any more


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections (into the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def command_counts(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def commands_of(client: redis.Redis, call: Any) -> dict[str, int]:
    """The commands the server ran while ``call`` ran (the INFO calls measuring them left out)."""
    before = command_counts(client)
    call()
    after = command_counts(client)
    delta = {name: count - before.get(name, 0) for name, count in after.items() if name != "info"}
    return {name: count for name, count in delta.items() if count}


# -- records -------------------------------------------------------------------------------------------------


def test_record_layout(make_redis: MakeRedis, driver: redis.Redis, key_prefix: str) -> None:
    adapter = make_redis()
    adapter.connect()
    task_id = tid()
    record_id = adapter.store({"arg": [1, 2]}, FLOW, TASK, task_id, {"answer": "žluťoučký", "n": 2**64})
    assert record_id == key_prefix + task_id
    raw = driver.get(record_id)
    assert raw is not None
    assert raw.decode("utf-8").count("žluťoučký") == 1  # UTF-8 as it is, not \u escapes
    assert json.loads(raw) == {
        "selinon_record": 1,
        "flow_name": FLOW,
        "task_name": TASK,
        "node_args": {"arg": [1, 2]},
        "result": {"answer": "žluťoučký", "n": 2**64},
    }
    assert driver.ttl(record_id) == -1  # no ttl: kept

    assert adapter.store_error(None, FLOW, TASK, task_id, failure()) == record_id
    record = json.loads(driver.get(record_id) or b"")
    assert set(record) == {"selinon_record", "flow_name", "task_name", "node_args", "error"}
    assert record["error"]["type"] == "builtins.RuntimeError"
    assert record["error"]["message"] == "it broke"


def test_lone_surrogate_round_trips(make_redis: MakeRedis) -> None:
    adapter = make_redis()
    adapter.connect()
    task_id = tid()
    adapter.store(None, FLOW, TASK, task_id, {"name": "bad\udcff.txt"})
    assert adapter.retrieve(FLOW, TASK, task_id) == {"name": "bad\udcff.txt"}


def test_upsert_leaves_exactly_one_record(make_redis: MakeRedis, driver: redis.Redis, key_prefix: str) -> None:
    adapter = make_redis()
    adapter.connect()
    task_id = tid()
    adapter.store(None, FLOW, TASK, task_id, 1)
    adapter.store(None, "otherFlow", "otherTask", task_id, 2)
    adapter.store_error(None, FLOW, TASK, task_id, failure())
    adapter.store(None, FLOW, TASK, task_id, 3)
    keys = list(driver.scan_iter(match=f"{key_prefix}{task_id}*", count=1000))
    assert keys == [f"{key_prefix}{task_id}".encode()]
    assert adapter.retrieve(FLOW, TASK, task_id) == 3
    assert json.loads(driver.get(keys[0]) or b"")["flow_name"] == FLOW


def test_key_prefix_isolates_deployments(make_redis: MakeRedis, key_prefix: str) -> None:
    first = make_redis(key_prefix=f"{key_prefix}first:")
    second = make_redis(key_prefix=f"{key_prefix}second:")
    first.connect()
    second.connect()
    task_id = tid()
    first.store(None, FLOW, TASK, task_id, "first")
    with pytest.raises(SelinonMissingDataException):
        second.retrieve(FLOW, TASK, task_id)
    with pytest.raises(SelinonMissingDataException):
        second.delete(FLOW, TASK, task_id)
    second.store(None, FLOW, TASK, task_id, "second")
    assert first.retrieve(FLOW, TASK, task_id) == "first"
    assert second.retrieve(FLOW, TASK, task_id) == "second"
    first.delete(FLOW, TASK, task_id)
    assert second.retrieve(FLOW, TASK, task_id) == "second"


def test_ttl_sets_an_expiry(make_redis: MakeRedis, driver: redis.Redis) -> None:
    adapter = make_redis(ttl=120)
    adapter.connect()
    task_id = tid()
    key = adapter.store(None, FLOW, TASK, task_id, "expires")
    assert 0 < driver.ttl(key) <= 120
    driver.expire(key, 5)
    key = adapter.store_error(None, FLOW, TASK, task_id, failure())  # a new store restarts the clock
    assert 5 < driver.ttl(key) <= 120


def test_ttl_expires_records(make_redis: MakeRedis) -> None:
    adapter = make_redis(ttl=1)
    adapter.connect()
    task_id = tid()
    adapter.store(None, FLOW, TASK, task_id, "short-lived")
    assert adapter.retrieve(FLOW, TASK, task_id) == "short-lived"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            adapter.retrieve(FLOW, TASK, task_id)
        except SelinonMissingDataException:
            return
        time.sleep(0.2)
    pytest.fail("the record did not expire")


def test_errors_option_reads_foreign_bytes(make_redis: MakeRedis, driver: redis.Redis, key_prefix: str) -> None:
    """A record written in Latin-1: `strict` (the default) refuses it, `replace` reads it."""
    task_id = tid()
    record = f'{{"selinon_record": 1, "flow_name": "{FLOW}", "task_name": "{TASK}", "node_args": null, '
    driver.set(key_prefix + task_id, record.encode() + b'"result": "caf\xe9"}')
    strict, lenient = make_redis(), make_redis(errors="replace")
    strict.connect()
    lenient.connect()
    with pytest.raises(StorageError, match="does not hold a JSON document in UTF-8"):
        strict.retrieve(FLOW, TASK, task_id)
    assert lenient.retrieve(FLOW, TASK, task_id) == "caf\ufffd"


def test_foreign_values_are_reported(make_redis: MakeRedis, driver: redis.Redis, key_prefix: str) -> None:
    adapter = make_redis()
    adapter.connect()
    task_id = tid()
    driver.set(key_prefix + task_id, b"[1, 2]")
    with pytest.raises(StorageError, match="does not hold a Selinon record"):
        adapter.retrieve(FLOW, TASK, task_id)


def test_charset_of_selinon_1x(make_redis: MakeRedis) -> None:
    adapter = make_redis(charset="utf-8")
    adapter.connect()
    task_id = tid()
    adapter.store(None, FLOW, TASK, task_id, "ünïcode")
    assert adapter.retrieve(FLOW, TASK, task_id) == "ünïcode"


# -- one round trip ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ttl", [None, 60])
def test_one_command_per_call(private_redis: PrivateRedis, ttl: int | None) -> None:
    """Counted by the server itself (INFO commandstats of a server only this test uses)."""
    adapter = Redis(host=private_redis.host, port=private_redis.port, ttl=ttl, key_prefix=f"rt-{uuid.uuid4()}:")
    adapter.connect()
    client = private_redis.client()
    try:
        adapter.store(None, FLOW, TASK, "warm-up", 0)  # the pool's first connection says hello once
        for task_id in (tid(), "*", "?", "[abc]", "a*b?[c]\n\x00"):
            assert commands_of(client, lambda t=task_id: adapter.store(None, FLOW, TASK, t, {"x": 1})) == {"set": 1}
            assert commands_of(client, lambda t=task_id: adapter.retrieve(FLOW, TASK, t)) == {"get": 1}
            assert commands_of(client, lambda t=task_id: adapter.store_error(None, FLOW, TASK, t, failure())) == {
                "set": 1
            }
            assert commands_of(client, lambda t=task_id: adapter.delete(FLOW, TASK, t)) == {"del": 1}

        def store_unserialisable() -> None:
            with pytest.raises(TypeError):
                adapter.store(None, FLOW, TASK, tid(), {"bad": {1, 2}})

        assert commands_of(client, store_unserialisable) == {}  # refused before any I/O
    finally:
        adapter.disconnect()
        client.close()


# -- where the server is -------------------------------------------------------------------------------------


def test_url_option(redis_url: str, make_redis: MakeRedis, driver: redis.Redis) -> None:
    """The shared server by URL (redis://127.0.0.1:6379/0 unless SELINON_TEST_REDIS_URL says otherwise)."""
    adapter = make_redis(url=redis_url)
    adapter.connect()
    key = adapter.store(None, FLOW, TASK, tid(), "by url")
    assert json.loads(driver.get(key) or b"")["result"] == "by url"


def test_host_port_db(private_redis: PrivateRedis) -> None:
    adapter = Redis(host=private_redis.host, port=private_redis.port, db=3)
    adapter.connect()
    try:
        key = adapter.store(None, FLOW, TASK, tid(), "db 3")
        assert private_redis.client(db=3).exists(key) == 1
        assert private_redis.client(db=0).exists(key) == 0
    finally:
        adapter.disconnect()


@pytest.mark.parametrize("form", ["path", "db option", "query"])
def test_url_database(private_redis: PrivateRedis, form: str) -> None:
    options: dict[str, Any] = {
        "path": {"url": private_redis.url(db=5)},
        "db option": {"url": private_redis.url(), "db": 5},
        "query": {"url": f"{private_redis.url()}?db=5"},
    }[form]
    adapter = Redis(**options)
    adapter.connect()
    try:
        key = adapter.store(None, FLOW, TASK, tid(), "db 5")
        assert private_redis.client(db=5).exists(key) == 1
    finally:
        adapter.disconnect()


@pytest.mark.parametrize("form", ["unix_socket_path", "url"])
def test_unix_socket(private_redis: PrivateRedis, form: str) -> None:
    if form == "url":
        adapter = Redis(url=f"unix://{private_redis.socket}?db=6")
    else:
        adapter = Redis(unix_socket_path=private_redis.socket, db=6)
    assert adapter.endpoint == f"unix:{private_redis.socket}"
    adapter.connect()
    try:
        key = adapter.store(None, FLOW, TASK, tid(), "over a unix socket")
        assert private_redis.client(db=6).exists(key) == 1
        assert adapter.retrieve(FLOW, TASK, key.removeprefix("selinon:")) == "over a unix socket"
    finally:
        adapter.disconnect()


@pytest.mark.parametrize("form", ["options", "url"])
def test_username_and_password(private_redis: PrivateRedis, form: str) -> None:
    user, password = private_redis.user, private_redis.password
    if form == "url":
        adapter = Redis(url=f"redis://{user}:{password}@{private_redis.host}:{private_redis.port}/0")
    else:
        adapter = Redis(host=private_redis.host, port=private_redis.port, username=user, password=password)
    adapter.connect()
    try:
        task_id = tid()
        adapter.store(None, FLOW, TASK, task_id, "authenticated")
        assert adapter.retrieve(FLOW, TASK, task_id) == "authenticated"
        whoami = adapter._connected().execute("ACL", "WHOAMI")
        assert whoami in (user, user.encode())
    finally:
        adapter.disconnect()


@pytest.mark.parametrize("form", ["options", "url"])
def test_wrong_password_fails_connect_without_showing_it(private_redis: PrivateRedis, form: str) -> None:
    if form == "url":
        adapter = Redis(url=f"redis://{private_redis.user}:{SECRET}@{private_redis.host}:{private_redis.port}")
    else:
        adapter = Redis(host=private_redis.host, port=private_redis.port, username=private_redis.user, password=SECRET)
    with pytest.raises(StorageError) as raised:
        adapter.connect()
    text = all_text(raised.value)
    assert f"cannot connect to Redis at {private_redis.host}:{private_redis.port}" in str(raised.value)
    assert "AuthenticationError" in text
    assert SECRET not in text
    assert not adapter.is_connected()


# -- TLS -----------------------------------------------------------------------------------------------------


def tls_adapter(private_redis: PrivateRedis, **options: Any) -> Redis:
    options.setdefault("ssl_certfile", private_redis.client_cert)
    options.setdefault("ssl_keyfile", private_redis.client_key)
    if "url" not in options:
        options |= {"host": "127.0.0.1", "port": private_redis.tls_port, "ssl": True}
    return Redis(**options)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"ssl_ca_certs": "ca"}, id="ssl"),
        pytest.param({"ssl_ca_certs": "ca", "ssl_cert_reqs": "required"}, id="cert_reqs required"),
        pytest.param({"ssl_cert_reqs": "none"}, id="cert_reqs none, no CA"),
        pytest.param({"url": "rediss", "ssl_ca_certs": "ca"}, id="rediss url"),
    ],
)
def test_tls(private_redis: PrivateRedis, options: dict[str, Any]) -> None:
    if options.get("ssl_ca_certs") == "ca":
        options["ssl_ca_certs"] = private_redis.ca
    if options.get("url") == "rediss":
        options["url"] = f"rediss://127.0.0.1:{private_redis.tls_port}/0"
    adapter = tls_adapter(private_redis, **options)
    adapter.connect()
    try:
        task_id = tid()
        adapter.store(None, FLOW, TASK, task_id, "over TLS")
        assert adapter.retrieve(FLOW, TASK, task_id) == "over TLS"
    finally:
        adapter.disconnect()


def test_tls_verifies_the_server(private_redis: PrivateRedis) -> None:
    """`required` (the default) with no CA that signs the server's certificate: refused."""
    adapter = tls_adapter(private_redis)
    with pytest.raises(
        StorageError, match=f"cannot connect to Redis at 127.0.0.1:{private_redis.tls_port}: "
    ) as raised:
        adapter.connect()
    assert "CERTIFICATE_VERIFY_FAILED" in str(raised.value)


def test_tls_client_certificate_is_sent(private_redis: PrivateRedis) -> None:
    """The server requires a client certificate: without ssl_certfile/ssl_keyfile it refuses the connection."""
    adapter = Redis(host="127.0.0.1", port=private_redis.tls_port, ssl=True, ssl_ca_certs=private_redis.ca)
    with pytest.raises(StorageError, match="cannot connect to Redis"):
        adapter.connect()


# -- timeouts and pool ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["password", "url"])
def test_closed_port_fails_fast_without_the_password(closed_port: int, form: str) -> None:
    if form == "url":
        adapter = Redis(url=f"redis://admin:{SECRET}@127.0.0.1:{closed_port}/0", connect_timeout=2)
    else:
        adapter = Redis(host="127.0.0.1", port=closed_port, password=SECRET, connect_timeout=2)
    assert SECRET not in repr(adapter) + str(adapter)
    start = time.monotonic()
    with pytest.raises(StorageError) as raised:
        adapter.connect()
    assert time.monotonic() - start < 2
    assert str(raised.value).startswith(f"cannot connect to Redis at 127.0.0.1:{closed_port}: ConnectionError")
    assert SECRET not in all_text(raised.value)
    assert not adapter.is_connected()
    assert SECRET not in repr(adapter)


def test_connect_timeout_bounds_a_server_that_never_answers(silent_server: int) -> None:
    adapter = Redis(host="127.0.0.1", port=silent_server, connect_timeout=0.5, socket_timeout=None)
    start = time.monotonic()
    with pytest.raises(StorageError, match=f"cannot connect to Redis at 127.0.0.1:{silent_server}: Timeout"):
        adapter.connect()
    assert time.monotonic() - start < 1.5
    assert not adapter.is_connected()


def test_socket_timeout_bounds_a_command(private_redis: PrivateRedis) -> None:
    adapter = Redis(host=private_redis.host, port=private_redis.port, socket_timeout=0.3)
    adapter.connect()
    client = private_redis.client()
    try:
        adapter.store(None, FLOW, TASK, "warm", 1)
        client.client_pause(1500)
        start = time.monotonic()
        with pytest.raises(redis.TimeoutError) as raised:
            adapter.store(None, FLOW, TASK, tid(), "paused")
        assert time.monotonic() - start < 1.2
        assert isinstance(raised.value, Redis.transient_errors)  # the pool's retry policy handles it
    finally:
        client.client_unpause()
        client.close()
        adapter.disconnect()


def test_max_connections_bounds_the_pool(private_redis: PrivateRedis) -> None:
    client = private_redis.client()
    client.ping()
    before = {c["id"] for c in client.client_list()}
    adapter = Redis(host=private_redis.host, port=private_redis.port, max_connections=2)
    adapter.connect()
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(25):
                adapter.store(None, FLOW, TASK, f"pool-{n}-{i}", i)
                assert adapter.retrieve(FLOW, TASK, f"pool-{n}-{i}") == i
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors[:3]
        opened = {c["id"] for c in client.client_list()} - before
        assert 1 <= len(opened) <= 2
    finally:
        adapter.disconnect()
        client.close()


def test_disconnect_closes_connections(private_redis: PrivateRedis) -> None:
    client = private_redis.client()
    client.ping()
    before = {c["id"] for c in client.client_list()}
    adapter = Redis(host=private_redis.host, port=private_redis.port)
    adapter.connect()
    adapter.store(None, FLOW, TASK, tid(), 1)
    assert {c["id"] for c in client.client_list()} - before  # the pool's connection, the check one is closed
    adapter.disconnect()
    deadline = time.monotonic() + 5
    while {c["id"] for c in client.client_list()} - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not {c["id"] for c in client.client_list()} - before
    client.close()


# -- connections: the adapter sends its commands over connections it keeps in a free list ----------------------


def _connection_ids(client: redis.Redis, before: set[int]) -> set[int]:
    return {int(c["id"]) for c in client.client_list()} - before


def test_a_timed_out_command_never_hands_its_reply_to_the_next(private_redis: PrivateRedis) -> None:
    adapter = Redis(host=private_redis.host, port=private_redis.port, socket_timeout=0.3)
    adapter.connect()
    client = private_redis.client()
    try:
        adapter.store(None, FLOW, TASK, "before", {"n": 1})
        client.client_pause(800)
        with pytest.raises(redis.TimeoutError):
            adapter.retrieve(FLOW, TASK, "before")
        time.sleep(0.9)  # the paused GET's reply has been sent by now, to a connection that must be gone
        adapter.store(None, FLOW, TASK, "after", {"n": 2})
        assert adapter.retrieve(FLOW, TASK, "after") == {"n": 2}
        assert adapter.retrieve(FLOW, TASK, "before") == {"n": 1}
    finally:
        client.client_unpause()
        client.close()
        adapter.disconnect()


def test_an_idle_connection_the_server_closed_is_reopened(private_redis: PrivateRedis) -> None:
    """No retry policy here: the adapter itself notices the closed connection before it sends on it."""
    adapter = Redis(host=private_redis.host, port=private_redis.port)
    adapter.connect()
    client = private_redis.client()
    try:
        adapter.store(None, FLOW, TASK, "kept", "value")
        idle = int(adapter._connected().execute("CLIENT", "ID"))
        assert client.client_kill_filter(_id=idle) == 1
        time.sleep(0.1)
        assert adapter.retrieve(FLOW, TASK, "kept") == "value"
        assert int(adapter._connected().execute("CLIENT", "ID")) != idle
    finally:
        client.close()
        adapter.disconnect()


def test_threads_reuse_connections(private_redis: PrivateRedis) -> None:
    client = private_redis.client()
    before = {int(c["id"]) for c in client.client_list()}
    adapter = Redis(host=private_redis.host, port=private_redis.port)
    adapter.connect()
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                adapter.store(None, FLOW, TASK, f"reuse-{n}-{i}", [n, i])
                assert adapter.retrieve(FLOW, TASK, f"reuse-{n}-{i}") == [n, i]
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors[:3]
        assert 1 <= len(_connection_ids(client, before)) <= 4  # 400 commands, at most one connection per thread
    finally:
        adapter.disconnect()
        client.close()


def test_a_forked_child_opens_its_own_connection(private_redis: PrivateRedis) -> None:
    """Without the Selinon pool (which builds new adapters after a fork): the adapter itself never lets a child
    speak over the parent's socket."""
    adapter = Redis(host=private_redis.host, port=private_redis.port)
    adapter.connect()
    try:
        adapter.store(None, FLOW, TASK, "parent", "p")
        parent = int(adapter._connected().execute("CLIENT", "ID"))
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report the connection it used, then leave without running any cleanup
            try:
                adapter.store(None, FLOW, TASK, "child", "c")
                os.write(write, str(int(adapter._connected().execute("CLIENT", "ID"))).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as answer:
            child = int(answer.read() or 0)
        os.waitpid(pid, 0)
        assert child and child != parent
        assert adapter.retrieve(FLOW, TASK, "child") == "c"
        assert int(adapter._connected().execute("CLIENT", "ID")) == parent  # the parent's own, still working
    finally:
        adapter.disconnect()
