"""Fault drills: what every adapter must survive, as a second suite that adapter authors subclass.

The drills run through :class:`~selinon.StoragePool`, as a worker does, against a real server reached through
a :class:`~selinon.testing.TcpProxy` the suite controls: connections cut while threads store, a server that is
down or silent at connect(), one that stops answering, credentials the server refuses, forked children, and load.
"""

from __future__ import annotations

import json
import multiprocessing
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from selinon.errors import StorageError
from selinon.pool import StoragePool
from selinon.testing.backend import Backend
from selinon.testing.load import FLOW, TASK, Outcome, StorageEvents, hammer, result_for, storage_events
from selinon.testing.proxy import TcpProxy
from selinon.testing.services import exception_text, free_port, planted_secret, timed, wait_until

STORAGE = "Drilled"
#: Short but realistic: a lost connection is retried at once and again for up to 20 s.
RETRY = {"attempts": 8, "deadline": 20, "backoff": 0.05, "max_backoff": 1.0}
LOAD_RETRY = {"attempts": 2, "deadline": 10, "backoff": 0.05}
NO_RETRY = {"attempts": 1}


class StorageDrills:
    """Subclass as ``TestSomethingDrills``: set :attr:`classname`, give the ``server_address`` fixture (host
    and port of the real server) and :meth:`configuration`. The ``backend`` fixture (a
    :class:`~selinon.testing.Backend`) lets the drills count records on the server; ``refused_credentials``
    turns on the credentials drill, :attr:`read_timeout` the read-timeout drill."""

    #: The classname the drills write in the storage entry, and its ``import:`` line if it needs one.
    classname: ClassVar[str]
    import_path: ClassVar[str | None] = None
    #: Seconds the adapter may take to connect, as :meth:`configuration` sets it.
    timeout: ClassVar[float] = 2.0
    #: The read timeout :meth:`configuration` sets, in seconds, for an adapter that has one: the drill then
    #: holds open connections silent and expects a call to fail within it (None: no read-timeout drill).
    read_timeout: ClassVar[float | None] = None
    #: What a loaded test machine may add to a bound (thread start, the pool's pause, a slow round trip).
    slack: ClassVar[float] = 3.0
    threads: ClassVar[int] = 8
    cut_records: ClassVar[int] = 2000
    load_records: ClassVar[int] = 10_000
    children: ClassVar[int] = 3
    #: False for an adapter that keeps Python objects as they are (see the contract suite's attribute).
    rejects_unserialisable: ClassVar[bool] = True

    def configuration(self, host: str, port: int, timeout: float) -> dict[str, Any]:
        """The adapter's ``configuration:`` mapping for the server at host:port, with ``timeout`` as its
        connect timeout (and :attr:`read_timeout` as its read timeout, if set)."""
        raise NotImplementedError("return the adapter's configuration for host:port")

    @pytest.fixture
    def server_address(self) -> tuple[str, int]:
        raise NotImplementedError("provide a `server_address` fixture: the (host, port) of the real test server")

    @pytest.fixture
    def backend(self) -> Backend | None:
        return None

    @pytest.fixture
    def refused_credentials(self) -> Callable[[str], dict[str, Any]] | None:
        """Optional: a callable that takes a password and gives the adapter's configuration for the test
        server with credentials it refuses (that password among them)."""
        return None

    # -- harness ---------------------------------------------------------------------------------------------

    @pytest.fixture
    def proxy(self, server_address: tuple[str, int]) -> Iterator[TcpProxy]:
        with TcpProxy(*server_address) as tcp_proxy:
            yield tcp_proxy

    @pytest.fixture
    def events(self) -> Iterator[StorageEvents]:
        yield from storage_events()

    @pytest.fixture(autouse=True)
    def _fresh_pool(self) -> Iterator[None]:
        yield
        StoragePool.reset()

    def configure(self, tmp_path: Path, configuration: dict[str, Any], retry: dict[str, Any] | None = None) -> None:
        """Point the pool at one storage entry (JSON is YAML) used by the load kit's task."""
        entry: dict[str, Any] = {"name": STORAGE, "classname": self.classname, "configuration": configuration}
        if self.import_path:
            entry["import"] = self.import_path
        entry["retry"] = retry or RETRY
        path = tmp_path / f"drill-{uuid.uuid4().hex[:8]}.yaml"
        path.write_text(json.dumps({"storages": [entry], "tasks": [{"name": TASK, "storage": STORAGE}]}))
        StoragePool.configure(path)

    def check_once_each(self, outcome: Outcome, backend: Backend | None, prefix: str) -> None:
        """Every record a call reported stored reads back right through the pool, and, counted on the
        server, no task id has more than one record."""
        outcome.check_all_present()
        if backend is not None:
            counts = backend.records(f"{prefix}-")
            doubled = [task_id for task_id, count in counts.items() if count != 1]
            assert not doubled, f"task ids with more than one record: {doubled[:5]}"
            missing = [task_id for task_id in outcome.stored if task_id not in counts]
            assert not missing, f"records reported stored that the server does not hold: {missing[:5]}"

    # -- load (first: a server may slow down as it fills) ------------------------------------------------------

    def test_load_through_the_pool(
        self, tmp_path: Path, server_address: tuple[str, int], backend: Backend | None
    ) -> None:
        """Records stored and read back from many threads through the pool: every one there once, correct.
        Nothing fails here, so a call gets one retry at most: a bug that fails calls fails the drill at once."""
        self.configure(tmp_path, self.configuration(*server_address, self.timeout), retry=LOAD_RETRY)
        prefix = f"load-{uuid.uuid4().hex[:12]}"
        outcome = hammer(prefix, self.load_records, self.threads)
        assert not outcome.errors, [str(e)[:300] for e in outcome.errors[:3]]
        assert len(outcome.stored) == self.load_records
        if backend is not None:
            counts = backend.records(f"{prefix}-")
            assert len(counts) == self.load_records and set(counts.values()) == {1}
        print(f"{self.load_records} records stored and read back in {outcome.seconds:.1f}s")

    # -- connections cut -------------------------------------------------------------------------------------

    def test_cut_connections_lose_and_double_nothing(
        self, tmp_path: Path, proxy: TcpProxy, events: StorageEvents, backend: Backend | None
    ) -> None:
        """While threads store and read back through the pool, every connection is reset three times, then
        the server is unreachable until the pool has retried: every call succeeds, nothing is lost or doubled."""
        self.configure(tmp_path, self.configuration(proxy.host, proxy.port, self.timeout))
        StoragePool.get_connected_storage(STORAGE)
        records, cuts = self.cut_records, []

        def over() -> bool:
            return events["store"] + events["store failed"] >= records

        def faults() -> None:
            for _ in range(3):
                stored, opened = events["store"], proxy.connections
                cuts.append(proxy.cut())

                def reconnected(stored: int = stored, opened: int = opened) -> bool:
                    return (proxy.connections > opened and events["store"] >= stored + 50) or over()

                wait_until(reconnected)  # the next cut once the adapter has reconnected and stored more
            proxy.refuse()
            cuts.append(proxy.cut())
            retried = events["retry"]
            try:
                wait_until(lambda: events["retry"] > retried or over(), timeout=10)
            finally:
                proxy.accept()

        prefix = f"cut-{uuid.uuid4().hex[:12]}"
        outcome = hammer(prefix, records, self.threads, during=faults)
        assert sum(cuts) > 0, "no connection went through the proxy"
        failed = sorted({str(error)[:300] for error in outcome.errors})
        assert not outcome.errors, (
            f"{len(outcome.errors)} calls failed, the pool retried {events['retry']}: {failed[:3]}"
        )
        self.check_once_each(outcome, backend, prefix)

    # -- a server down or silent at connect() ----------------------------------------------------------------

    @pytest.mark.parametrize("down", ["refusing", "closed port", "silent"])
    def test_connect_fails_within_the_timeout(self, tmp_path: Path, proxy: TcpProxy, down: str) -> None:
        """A server that closes every connection, a port where nothing listens, and a server that accepts
        connections and never answers: connect() fails within its timeout, with an error naming the storage."""
        port = free_port() if down == "closed port" else proxy.port
        (proxy.hold if down == "silent" else proxy.refuse)()
        self.configure(tmp_path, self.configuration(proxy.host, port, self.timeout))
        bound = self.timeout + self.slack
        results, errors, elapsed = timed(lambda: StoragePool.get_connected_storage(STORAGE), bound + 1)
        assert not results, f"connect() succeeded against a {down} server"
        assert errors, f"connect() had not failed after {elapsed:.1f}s (timeout {self.timeout:g}s)"
        assert elapsed < bound, f"connect() took {elapsed:.1f}s with a timeout of {self.timeout:g}s"
        assert isinstance(errors[0], StorageError), repr(errors[0])
        assert str(errors[0]).startswith(f"storage {STORAGE!r} ({self.classname}): connect failed: "), str(errors[0])
        assert not StoragePool.get_storage(STORAGE).is_connected()

    def test_a_server_that_stops_answering_fails_calls_within_the_read_timeout(
        self, tmp_path: Path, proxy: TcpProxy
    ) -> None:
        """A server that stops answering on open connections: a call fails once the read timeout has passed (a
        driver may try once more by itself), never hangs."""
        if self.read_timeout is None:
            pytest.skip("no `read_timeout`: set the one configuration() gives the adapter to drill it")
        self.configure(tmp_path, self.configuration(proxy.host, proxy.port, self.timeout), retry=NO_RETRY)
        task_id = f"silent-{uuid.uuid4().hex[:12]}"
        StoragePool.set(None, FLOW, TASK, task_id, 1)
        proxy.hold()
        bound = 2 * self.read_timeout + self.timeout + self.slack
        results, errors, elapsed = timed(lambda: StoragePool.retrieve(FLOW, TASK, task_id), bound + 1)
        proxy.accept()
        assert not results, "a call answered while the server was silent"
        assert errors, f"a call had not failed after {elapsed:.1f}s (read timeout {self.read_timeout:g}s)"
        assert elapsed < bound, f"a call took {elapsed:.1f}s to fail with a read timeout of {self.read_timeout:g}s"
        assert isinstance(errors[0], StorageError), repr(errors[0])

    # -- what must not be retried ----------------------------------------------------------------------------

    def test_refused_credentials_are_not_retried(
        self, tmp_path: Path, refused_credentials: Callable[[str], dict[str, Any]] | None, events: StorageEvents
    ) -> None:
        """Credentials the server refuses are no transient error: the adapter does not classify them as one,
        the pool fails at once, and no error shows the password."""
        if refused_credentials is None:
            pytest.skip("no `refused_credentials` fixture: the test server does not check credentials")
        secret = planted_secret()
        self.configure(tmp_path, refused_credentials(secret))
        adapter = StoragePool.get_storage(STORAGE)
        with pytest.raises(Exception) as raised:  # whatever the adapter raises
            adapter.connect()
        assert not isinstance(raised.value, type(adapter).transient_errors), (
            f"refused credentials are classified as transient: {raised.value!r}"
        )
        assert secret not in exception_text(raised.value)
        started = time.monotonic()
        with pytest.raises(StorageError) as failed:
            StoragePool.set(None, FLOW, TASK, f"refused-{uuid.uuid4().hex[:12]}", 1)
        assert time.monotonic() - started < self.timeout + self.slack
        assert events["retry"] == 0
        assert secret not in exception_text(failed.value)

    def test_a_result_that_cannot_be_stored_is_not_retried(
        self, tmp_path: Path, server_address: tuple[str, int], events: StorageEvents
    ) -> None:
        """Refused before anything is written, and not retried: another try cannot store it either."""
        if not self.rejects_unserialisable:
            pytest.skip("this adapter keeps Python objects as they are")
        self.configure(tmp_path, self.configuration(*server_address, self.timeout))
        with pytest.raises(StorageError):
            StoragePool.set(None, FLOW, TASK, f"refused-{uuid.uuid4().hex[:12]}", {"a set": {1, 2}})
        assert events["retry"] == 0, "a result that cannot be stored was retried"

    # -- processes -------------------------------------------------------------------------------------------

    def test_forked_children_use_connections_of_their_own(
        self, tmp_path: Path, proxy: TcpProxy, events: StorageEvents
    ) -> None:
        """Children forked after the parent used the pool store through it on new connections; the parent's
        own connections keep working, untouched (no retry needed)."""
        self.configure(tmp_path, self.configuration(proxy.host, proxy.port, self.timeout))
        prefix = f"fork-{uuid.uuid4().hex[:12]}"
        StoragePool.set(None, FLOW, TASK, f"{prefix}-parent", result_for(f"{prefix}-parent"))
        opened = proxy.connections
        context = multiprocessing.get_context("fork")
        children = [context.Process(target=_store_in_child, args=(f"{prefix}-{n}",)) for n in range(self.children)]
        for child in children:
            child.start()
        for child in children:
            child.join(60)
        assert [child.exitcode for child in children] == [0] * len(children)
        assert proxy.connections >= opened + len(children), "children stored over connections they did not open"
        retried = events["retry"]
        for n in range(CHILD_RECORDS):
            task_id = f"{prefix}-parent-{n}"
            StoragePool.set(None, FLOW, TASK, task_id, result_for(task_id))
            assert StoragePool.retrieve(FLOW, TASK, task_id) == result_for(task_id)
        assert events["retry"] == retried, "the parent's connections were broken by its children"
        for n in range(self.children):
            for i in range(CHILD_RECORDS):
                task_id = f"{prefix}-{n}-{i}"
                assert StoragePool.retrieve(FLOW, TASK, task_id) == result_for(task_id)


CHILD_RECORDS = 10


def _store_in_child(prefix: str) -> None:
    for n in range(CHILD_RECORDS):
        task_id = f"{prefix}-{n}"
        StoragePool.set(None, FLOW, TASK, task_id, result_for(task_id))
