"""Real brokers and real `celery worker` processes for the Celery tests.

Redis (127.0.0.1:6379, or one the session starts: selinon.testing.servers) is the broker and the result backend;
RabbitMQ (127.0.0.1:5672, guest/guest) is a second broker where a test asks for it. Every key and queue carries a prefix unique to the test session, so runs sharing
the servers never see each other's messages; nothing is flushed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from selinon import flows
from selinon.testing import ServerProcess, require_service, servers
from selinon.testing.services import in_ci, unavailable

try:
    import redis
    import selinon_storage_postgresql  # noqa: F401
    import selinon_storage_redis  # noqa: F401
    import sqlalchemy as sa
    from celery_app import make_app
except ImportError as exc:
    message = f"the Celery tests need celery and the PostgreSQL and Redis adapters ({exc}): pip install 'celery[redis]'"
    if in_ci():
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message, allow_module_level=True)

HERE = Path(__file__).parent
REDIS_PORT = int(os.environ.get("SELINON_TEST_REDIS_PORT") or urlsplit(servers.provide("redis")).port or 6379)
REDIS = f"redis://127.0.0.1:{REDIS_PORT}/0"
POSTGRESQL = servers.provide("postgresql")
RABBITMQ = os.environ.get("SELINON_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
READY_TIMEOUT = 90.0
# The workers' log level: DEBUG shows every message each worker took and how it ended.
LOGLEVEL = os.environ.get("SELINON_TEST_WORKER_LOGLEVEL", "INFO")


def _require(what: str, url: str, how: str) -> None:
    parsed = sa.make_url(url)
    require_service(what, parsed.host or "127.0.0.1", parsed.port or 0, how)


@pytest.fixture(scope="session")
def session_id(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A tag for this test session's queues, keys and table; what it named on the servers is removed at the end."""
    _require("Redis", REDIS, servers.how_to_start("redis"))
    _require("PostgreSQL", POSTGRESQL, servers.how_to_start("postgresql"))
    tag = f"selinon-celery-{uuid.uuid4().hex[:10]}"
    yield tag
    client = redis.Redis.from_url(REDIS)
    for key in client.scan_iter(match=f"{tag}*", count=1000):
        client.delete(key)
    client.close()
    engine = sa.create_engine(
        POSTGRESQL.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=sa.pool.NullPool
    )
    with engine.begin() as connection:
        connection.execute(sa.text(f'DROP TABLE IF EXISTS "{table_name(tag)}"'))
    engine.dispose()


def python_path(first: Path) -> str:
    """A PYTHONPATH for processes the tests start: ``first``, then this process's PYTHONPATH, made absolute (the
    processes run in other directories)."""
    inherited = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    return os.pathsep.join([str(first), *(str(Path(p).resolve()) for p in inherited if p)])


def table_name(tag: str) -> str:
    return tag.replace("-", "_")


@dataclass
class Cluster:
    """One broker and result backend, its queues, and the environment that workers and the test's own client
    share."""

    tag: str
    broker: str
    env: dict[str, str]
    queues: list[str]
    log_dir: Path
    visibility_timeout: float = 30
    backend: str = REDIS

    def system(self) -> flows.System:
        return flows.load([HERE / "nodes.yaml", HERE / "flows.yaml"], environ={**os.environ, **self.env})

    def client(self) -> Any:
        """This process's CeleryFlows (which also configures its storage pool), for starting and reading flows."""
        _, attached = make_app(self.broker, self.backend, self.tag, self.queues, self.system(), self.visibility_timeout)
        return attached

    def worker(self, name: str, queues: list[str] | None = None, concurrency: int = 2, **env: str) -> Worker:
        return Worker(self, name, queues or self.queues, env, concurrency).start()


class Worker:
    """A `celery worker` in its own process group (prefork, two children), logging to a file. ``SELINON_CONFIG``
    in ``env`` gives it a configuration of its own."""

    def __init__(
        self, cluster: Cluster, name: str, queues: list[str], env: dict[str, str], concurrency: int = 2
    ) -> None:
        self.log = cluster.log_dir / f"worker-{name}-{uuid.uuid4().hex[:6]}.log"
        config = os.pathsep.join(str(HERE / f) for f in ("nodes.yaml", "flows.yaml"))
        self.env = {
            **os.environ,
            **cluster.env,
            "PYTHONPATH": python_path(HERE),
            "SELINON_CONFIG": config,
            "SELINON_TEST_BROKER": cluster.broker,
            "SELINON_TEST_BACKEND": cluster.backend,
            "SELINON_TEST_QUEUES": ",".join(cluster.queues),
            "SELINON_TEST_VISIBILITY_TIMEOUT": str(cluster.visibility_timeout),
            **env,
        }
        self.argv = [
            sys.executable, "-m", "celery", "-A", "celery_app", "worker", f"--loglevel={LOGLEVEL}", "--pool=prefork",
            f"--concurrency={concurrency}", "-Q", ",".join(queues), "-n", f"{name}-{cluster.tag}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        """Start the worker (again, after it exited: its log goes on) and wait until it is ready."""
        ready = self.output().count(" ready.")
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.argv, env=self.env, cwd=HERE, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while self.output().count(" ready.") == ready:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"the celery worker did not start:\n{self.output()[-3000:]}", pytrace=False)
            time.sleep(0.2)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def kill(self) -> None:
        """SIGKILL to the worker and its pool children at once: a machine that dies, nothing acknowledged."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


MakeCluster = Callable[..., Cluster]


@pytest.fixture(scope="session")
def make_cluster(session_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeCluster]:
    workers: list[Worker] = []

    def make(name: str, broker: str = REDIS, visibility_timeout: float = 30, backend: str = REDIS) -> Cluster:
        if broker.startswith("amqp"):
            _require("RabbitMQ", broker, "start RabbitMQ (guest/guest) or set SELINON_TEST_RABBITMQ_URL")
        tag = f"{session_id}-{name}"
        env = {
            "SELINON_TEST_PREFIX": f"{tag}:",
            "SELINON_TEST_QUEUE": tag,
            "SELINON_TEST_TABLE": table_name(session_id),
            "SELINON_TEST_POSTGRESQL_URL": POSTGRESQL,
            "SELINON_TEST_REDIS_PORT": str(REDIS_PORT),
        }
        queues = [f"{tag}-dispatch", f"{tag}-tasks"]
        cluster = Cluster(f"{tag}:", broker, env, queues, tmp_path_factory.mktemp(name), visibility_timeout, backend)
        original = cluster.worker

        def worker(name: str, queues: list[str] | None = None, concurrency: int = 2, **env: str) -> Worker:
            started = original(name, queues, concurrency, **env)
            workers.append(started)
            return started

        cluster.worker = worker  # type: ignore[method-assign]
        return cluster

    yield make
    for worker in workers:
        worker.stop()


@pytest.fixture(scope="session")
def shared(make_cluster: MakeCluster) -> Cluster:
    """A cluster with one worker on both queues, for the tests that need no worker of their own."""
    cluster = make_cluster("shared")
    cluster.worker("shared")
    return cluster


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A redis-server of the test's own on a free port (never the machine's, which others use), keeping every
    write in an append-only file, so that the test may stop and start it and find its data again."""
    program = servers.redis_server_program()
    if program is None:
        unavailable(
            "redis-server", f"the fault tests start a redis-server of their own: {servers.how_to_start('redis')}"
        )
    directory = tmp_path_factory.mktemp("own-redis")
    argv = [program, "--port", "{port}", "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
            "--appendfsync", "always", "--dir", str(directory)]  # fmt: skip
    server = ServerProcess(argv, "Redis", log=directory / "server.log").start()
    yield server
    server.stop()


@pytest.fixture
def own_rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.RabbitMQServer]:
    """A RabbitMQ node of the test's own on free ports (never the machine's, which others use), so that the test
    may stop and start it and find its durable queues and persistent messages again."""
    bindir = servers.rabbitmq_programs()
    if bindir is None:
        unavailable(
            "rabbitmq-server",
            "the fault tests start a RabbitMQ node of their own: install RabbitMQ (Debian: rabbitmq-server), or "
            "point SELINON_TEST_RABBITMQ_BIN at the directory of its rabbitmq-server and rabbitmqctl",
        )
    server = servers.RabbitMQServer(bindir, tmp_path_factory.mktemp("own-rabbitmq"))
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """Where the tasks of one test record their runs (given to them in the node arguments)."""
    return tmp_path
