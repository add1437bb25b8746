"""The pool's retry policy: transient errors are retried within attempts and a deadline, spread over the deadline;
others fail at once. The attempts' spread is also proven on a real server through a proxy that holds everything."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from probe_adapters import Flaky

from selinon import ConfigurationError, SelinonMissingDataException, StorageError, StoragePool, hookimpl, plugins
from selinon.config import RetryConfig
from selinon.testing import TcpProxy, require_service


def configure(tmp_path: Path, configuration: str, retry: str = "{attempts: 4, deadline: 0.3, backoff: 0.01}") -> Flaky:
    path = tmp_path / "nodes.yaml"
    path.write_text(
        "storages:\n"
        f"  - {{name: S, classname: Flaky, import: probe_adapters, configuration: {configuration}, retry: {retry}}}\n"
        "tasks: [{name: T, storage: S}]\n"
    )
    StoragePool.configure(path)
    storage = StoragePool.get_connected_storage("S")
    assert isinstance(storage, Flaky)
    return storage


def test_transient_errors_are_retried(tmp_path: Path) -> None:
    events: list[str] = []

    class Recorder:
        @hookimpl
        def storage_event(self, event: str) -> None:
            events.append(event)

    plugins.pm.register(Recorder())
    storage = configure(tmp_path, "{failures: 3}")
    StoragePool.set(None, "f", "T", "id", {"ok": 1})
    assert storage.attempts == 4
    assert events == ["connect", "retry", "retry", "retry", "store"]
    assert StoragePool.retrieve("f", "T", "id") == {"ok": 1}


def test_adapters_own_transient_error_is_retried(tmp_path: Path) -> None:
    storage = configure(tmp_path, "{failures: 2, wrapped: true}")
    StoragePool.set(None, "f", "T", "id", "v")
    assert storage.attempts == 3
    storage.failures, storage.attempts = 10, 0
    with pytest.raises(
        StorageError, match=r"store failed after 4 attempts in [\d.]+s: lost the connection to the test server$"
    ):
        StoragePool.set(None, "f", "T", "id", "v")


def test_gives_up_after_attempts_with_a_clear_error(tmp_path: Path) -> None:
    storage = configure(tmp_path, "{failures: 10}")
    with pytest.raises(
        StorageError, match=r"^storage 'S' \(Flaky\): store failed after 4 attempts in [\d.]+s: ConnectionResetError"
    ):
        StoragePool.set(None, "f", "T", "id", 1)
    assert storage.attempts == 4


def test_gives_up_at_the_deadline(tmp_path: Path) -> None:
    storage = configure(
        tmp_path, "{failures: 1000}", "{attempts: 1000, deadline: 0.5, backoff: 0.05, max_backoff: 0.1}"
    )
    start = time.monotonic()
    with pytest.raises(StorageError, match="store failed after"):
        StoragePool.set(None, "f", "T", "id", 1)
    assert time.monotonic() - start < 1.5
    assert 3 < storage.attempts < 1000


def test_other_errors_are_not_retried(tmp_path: Path) -> None:
    storage = configure(tmp_path, "{failures: 0}")
    with pytest.raises(StorageError, match="store failed: result: set is not JSON"):
        StoragePool.set(None, "f", "T", "id", {object()})
    assert storage.attempts == 1
    with pytest.raises(SelinonMissingDataException):
        StoragePool.retrieve("f", "T", "missing")
    assert storage.attempts == 2


def test_retried_store_leaves_one_record(tmp_path: Path) -> None:
    storage = configure(tmp_path, "{failures: 2, after_work: true}")
    StoragePool.set(None, "f", "T", "id", "v")
    assert list(storage._records) == ["id"]


def test_delete_whose_reply_was_lost_succeeds(tmp_path: Path) -> None:
    storage = configure(tmp_path, "{failures: 0, after_work: true}")
    StoragePool.set(None, "f", "T", "id", "v")
    storage.failures, storage.attempts = 1, 0
    StoragePool.delete("f", "T", "id")
    with pytest.raises(SelinonMissingDataException):
        StoragePool.retrieve("f", "T", "id")


@pytest.mark.parametrize(
    ("retry", "expected"),
    [
        ("{attempts: 0}", "`attempts:` must be a whole number from 1 to 1,000, not 0"),
        ("{attempts: 100000}", "`attempts:` must be a whole number from 1 to 1,000, not 100000"),
        ("{deadline: -1}", "`deadline:` must be a number of seconds from 0 to 86,400, not -1"),
        ("{deadline: .inf}", "`deadline:` must be a number of seconds from 0 to 86,400, not inf"),
        ("{deadline: .nan}", "`deadline:` must be a number of seconds from 0 to 86,400, not nan"),
        ("{backoff: 1.0e+308}", r"`backoff:` must be a number of seconds from 0 to 3,600, not 1e\+308"),
        ("{max_backoff: -.inf}", "`max_backoff:` must be a number of seconds from 0 to 3,600, not -inf"),
        ("{backof: 1}", "unknown key 'backof'; did you mean 'backoff'?"),
        ("3", "retry: must be a mapping"),
    ],
)
def test_retry_policy_is_validated(tmp_path: Path, retry: str, expected: str) -> None:
    with pytest.raises(ConfigurationError, match=expected):
        configure(tmp_path, "{}", retry)


def test_default_policy(tmp_path: Path) -> None:
    path = tmp_path / "nodes.yaml"
    path.write_text("storages: [{name: S, classname: InMemoryStorage}]")
    retry: Any = StoragePool.configure(path).storages["S"].retry
    assert (retry.attempts, retry.deadline, retry.backoff, retry.max_backoff) == (5, 30.0, 0.1, None)


def test_the_waits_spread_the_attempts_over_the_deadline() -> None:
    """The first retry comes at once (a dropped connection); the later ones double and end at the deadline."""

    def starts(policy: RetryConfig) -> list[float]:
        began, found, attempt = 0.0, [0.0], 1
        while (pause := policy.pause(attempt, began)) is not None:
            began += pause
            found.append(round(began, 2))
            attempt += 1
        return found

    assert starts(RetryConfig(attempts=5, deadline=10)) == [0.0, 0.1, 1.51, 4.34, 10.0]
    assert starts(RetryConfig(attempts=2, deadline=10, backoff=0.05)) == [0.0, 0.05]  # one retry: at once
    capped = starts(RetryConfig(attempts=5, deadline=10, max_backoff=1))
    assert capped == [0.0, 0.1, 1.1, 2.1, 3.1]  # a set max_backoff caps every wait
    many = starts(RetryConfig(attempts=1000, deadline=3, backoff=0.1))
    assert many[:4] == [0.0, 0.1, 0.3, 0.7] and many[-1] == 3.0 and len(many) < 1000  # doubling, ends at the deadline
    assert starts(RetryConfig(attempts=1)) == [0.0]


# -- on a real server, through a proxy -------------------------------------------------------------------------

REDIS = ("127.0.0.1", 6379)


class Moments:
    """A storage_event plugin: when each attempt of the pool failed and was retried, and when a call ended."""

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.retries: list[float] = []
        self.ended: list[tuple[str, float]] = []

    @hookimpl
    def storage_event(self, event: str, error: BaseException | None) -> None:
        moment = time.monotonic() - self.began
        if event == "retry":
            self.retries.append(moment)
        elif event != "connect":
            self.ended.append((event if error is None else f"{event} failed", moment))


@pytest.fixture
def held_redis(tmp_path: Path) -> Iterator[tuple[TcpProxy, Moments]]:
    """The reference adapter on the machine's Redis through a proxy, with a slow-server policy of 5 attempts in
    8 s; connected and warm. Short timeouts: a held call fails in 0.3 s."""
    require_service("Redis", *REDIS, "start the machine's Redis (redis-server --port 6379)")
    with TcpProxy(*REDIS) as proxy:
        prefix = f"selinon-retry-{uuid.uuid4().hex}:"
        options = f"{{host: 127.0.0.1, port: {proxy.port}, key_prefix: '{prefix}', connect_timeout: 0.3, socket_timeout: 0.3}}"
        (tmp_path / "nodes.yaml").write_text(
            f"storages: [{{name: S, classname: Reference, import: reference_adapter, configuration: {options},"
            " retry: {attempts: 5, deadline: 8}}]\ntasks: [{name: T, storage: S}]\n"
        )
        StoragePool.configure(tmp_path / "nodes.yaml")
        StoragePool.set(None, "f", "T", "warm", 0)
        moments = Moments()
        plugins.pm.register(moments)
        try:
            yield proxy, moments
        finally:
            plugins.pm.unregister(moments)
            StoragePool.get_connected_storage("S")._call("DEL", f"{prefix}warm", f"{prefix}id")
            StoragePool.reset()


def test_a_server_that_hangs_for_a_while_is_waited_for_within_the_deadline(held_redis: Any) -> None:
    """Held for 4 s: the attempts spread out (not five in the first second), and the one after the hold stores."""
    proxy, moments = held_redis
    proxy.hold()
    threading.Timer(4.0, proxy.accept).start()
    StoragePool.set(None, "f", "T", "id", {"stored": True})
    assert StoragePool.retrieve("f", "T", "id") == {"stored": True}
    assert moments.ended[0][0] == "store" and 4.0 <= moments.ended[0][1] <= 8.0 + 1.5
    gaps = [b - a for a, b in zip(moments.retries, moments.retries[1:], strict=False)]
    assert 2 <= len(moments.retries) <= 4 and gaps == sorted(gaps), moments.retries  # growing waits


def test_a_server_that_hangs_past_the_deadline_fails_the_call_near_it(held_redis: Any) -> None:
    """Five attempts, the last near the 8 s deadline: with waits that only doubled from 0.1 s up to 2 s they would
    all have been spent in about 3 s."""
    proxy, moments = held_redis
    proxy.hold()
    began = time.monotonic()
    with pytest.raises(StorageError, match=r"store failed after 5 attempts in [\d.]+s"):
        StoragePool.set(None, "f", "T", "id", 1)
    proxy.accept()
    assert 6.5 <= time.monotonic() - began <= 8.0 + 1.5
    # Each failure is noted before its wait: the fourth came past 3.5 s, the fifth and last at the end.
    assert len(moments.retries) == 4 and moments.retries[-1] >= 3.5, moments.retries
    assert moments.ended[-1][0] == "store failed" and moments.ended[-1][1] >= 6.5
