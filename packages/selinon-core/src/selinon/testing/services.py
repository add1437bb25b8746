"""Reaching the servers adapter tests run against, and starting the ones a test suite owns.

A developer's run may skip tests whose server is not running, with a message that says what to start;
with ``CI=true`` in the environment an unreachable server fails the run instead.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> bool:
    """Whether a TCP server accepts connections on host:port within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)


#: Each server's reachability, decided once per process: ``None`` when it answers, else the skip message.
_decided: dict[tuple[str, int], str | None] = {}
#: The servers whose tests were skipped, each with its skip message.
skipped: dict[str, str] = {}
#: The servers a test session started in place of the machine's (selinon.testing.servers): where, and why.
started: dict[str, str] = {}


def unavailable(what: str, message: str) -> NoReturn:
    """A server the tests need cannot be had: fail with ``CI=true``, else skip (and name it in the summary)."""
    if in_ci():
        pytest.fail(f"CI=true: {message}", pytrace=False)
    skipped[what] = message
    pytest.skip(message)


def require_service(what: str, host: str, port: int, how_to_start: str, timeout: float = 3.0) -> None:
    """Skip (locally) or fail (with ``CI=true``) unless the server answers on host:port.

    The first call waits up to ``timeout`` seconds; later calls for the same address reuse its answer, so a
    server that is down costs one wait per test session, not one per test."""
    address = (host, port)
    if address not in _decided:
        reachable = wait_for_port(host, port, timeout)
        _decided[address] = None if reachable else f"{what} is not reachable at {host}:{port}; {how_to_start}"
    message = _decided[address]
    if message is not None:
        unavailable(what, message)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)  # outermost: what it writes comes after pytest's summary
def pytest_terminal_summary(terminalreporter: Any) -> Generator[None, Any, None]:
    """After pytest's own summary: the servers started in place of the machine's, and in one line, the servers
    whose tests were skipped and how to have them.

    A conftest takes it in with ``from selinon.testing.services import pytest_terminal_summary``."""
    yield
    for what, where in started.items():
        terminalreporter.write_line(f"{what}: started by the tests on port {where}")
    if not skipped:
        return
    reports = terminalreporter.stats.get("skipped", [])
    counts = {
        what: sum(1 for r in reports if isinstance(r.longrepr, tuple) and message in str(r.longrepr[2]))
        for what, message in skipped.items()
    }
    named = "; ".join(f"{what} ({counts[what]} tests): {message}" for what, message in skipped.items())
    terminalreporter.write_line(f"skipped for want of a server: {named}", yellow=True)


def planted_secret() -> str:
    """A unique secret for tests to put in configurations (passwords, secret keys).

    ``nox`` sets ``SELINON_PLANTED_SECRET`` for a full test run and then searches all of the run's output
    (test reports, captured logs and command output) for it: finding it anywhere fails the run.
    """
    return os.environ.get("SELINON_PLANTED_SECRET") or f"planted-{os.getpid()}-{time.time_ns()}"


def exception_text(exc: BaseException) -> str:
    """All an exception can show: its traceback, and the message and arguments of it and of every exception
    chained to it, as cause or context, even a context a traceback leaves out (an error tracker may not).

    A test asserts that a planted secret is not in it."""
    import traceback

    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is not None and id(current) not in seen:
            seen.add(id(current))
            texts += [str(current), *map(repr, current.args)]
            pending += [current.__cause__, current.__context__]
    return "\n".join(texts)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, every: float = 0.02) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False): a bounded wait."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


def timed(call: Callable[[], Any], patience: float) -> tuple[list[Any], list[BaseException], float]:
    """Run ``call`` in a thread and wait at most ``patience`` seconds for it: its result (in a list), its error
    (in a list) and the seconds it took or waited so far. A call that would hang fails a test, not hangs it."""
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(call())
        except BaseException as exc:
            errors.append(exc)

    start = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(patience)
    return results, errors, time.monotonic() - start


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """A server the tests start themselves, stopped (and restartable) on demand.

    ``argv`` may contain ``{port}``, filled with the port chosen when the object is made.
    """

    def __init__(self, argv: Sequence[str], what: str, port: int | None = None, log: Path | None = None) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.argv = [part.format(port=self.port) for part in argv]
        self.what = what
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> ServerProcess:
        output = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 - kept open while it runs
        self.process = subprocess.Popen(self.argv, stdout=output, stderr=subprocess.STDOUT)
        if not wait_for_port(self.host, self.port, timeout):
            self.stop()
            unavailable(self.what, f"{self.what} did not start on port {self.port}: {' '.join(self.argv)}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.stop()


def python_module_argv(module: str, *args: str) -> list[str]:
    """argv that runs ``python -m module`` with this interpreter (the test environment's)."""
    return [sys.executable, "-m", module, *args]
