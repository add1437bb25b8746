"""The pool's retry policy: transient errors are retried within attempts and a deadline, others fail at once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from probe_adapters import Flaky

from selinon import ConfigurationError, SelinonMissingDataException, StorageError, StoragePool, hookimpl, plugins


def configure(tmp_path: Path, configuration: str, retry: str = "{attempts: 4, deadline: 5, backoff: 0.01}") -> Flaky:
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
    assert (retry.attempts, retry.deadline, retry.backoff, retry.max_backoff) == (5, 30.0, 0.1, 2.0)
