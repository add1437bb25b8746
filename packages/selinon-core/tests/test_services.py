"""The test kit's servers: a server that is down costs one wait, the run ends with one line naming what was
skipped, CI=true fails instead, and PostgreSQL and Redis are started where nothing answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from selinon.testing import free_port, servers, services

pytestmark = pytest.mark.timeout(240)

CONFTEST = "from selinon.testing.services import pytest_terminal_summary  # noqa: F401\n"


def run_suite(tmp_path: Path, tests: str, ci: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_down.py").write_text("from selinon.testing import require_service\n" + textwrap.dedent(tests))
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": "true"} if ci else {})
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    return subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)


def test_a_server_that_is_down_is_waited_for_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    port = free_port()  # nothing listens there
    timings = []
    for _ in range(3):
        start = time.monotonic()
        with pytest.raises(pytest.skip.Exception, match=f"Tinybase is not reachable at 127.0.0.1:{port}; start it"):
            services.require_service("Tinybase", "127.0.0.1", port, "start it", timeout=1.0)
        timings.append(time.monotonic() - start)
    assert timings[0] >= 1.0
    assert max(timings[1:]) < 0.05, timings
    services.skipped.pop("Tinybase")


def test_skips_end_with_one_line_naming_the_server_and_how_to_have_it(tmp_path: Path) -> None:
    port = free_port()
    tests = "".join(
        f"""
        def test_{n}():
            require_service("Tinybase", "127.0.0.1", {port}, "start it or set TINYBASE_URL", timeout=0.5)
        """
        for n in range(3)
    )
    done = run_suite(tmp_path, tests, ci=False)
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    expected = (
        f"skipped for want of a server: Tinybase (3 tests): Tinybase is not reachable at 127.0.0.1:{port}; "
        "start it or set TINYBASE_URL"
    )
    assert expected in lines, done.stdout
    assert lines[-1].startswith("3 skipped"), done.stdout  # the summary line comes right before pytest's count

    failed = run_suite(tmp_path, tests, ci=True)
    assert failed.returncode == 1, failed.stdout
    assert "CI=true: Tinybase is not reachable" in failed.stdout
    assert "3 failed" in failed.stdout.splitlines()[-1]
    assert "skipped for want of a server" not in failed.stdout


def ping(url: str) -> bytes:
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(100)


PROVIDE = """
import os, sys
from selinon.testing import servers
url = servers.provide(sys.argv[1])
assert servers.provide(sys.argv[1]) == url == os.environ[servers.SERVICES[sys.argv[1]].env]
print(url, flush=True)
sys.stdin.read()  # the server runs until this process ends
"""


@pytest.mark.parametrize("name", ["redis", "postgresql"])
def test_a_server_is_started_where_nothing_answers(name: str) -> None:
    closed = free_port()
    env = os.environ | {servers.SERVICES[name].env: f"{name}://postgres@127.0.0.1:{closed}/test"}
    child = subprocess.Popen(
        [sys.executable, "-c", PROVIDE, name], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        url = child.stdout.readline().strip()
        assert url.startswith(f"{name}://") and f":{closed}/" not in url, url
        if name == "redis":
            assert ping(url) == b"+PONG\r\n"
        else:  # the core alone has no PostgreSQL driver: ask with the psql the server programs come with
            bindir = servers.postgresql_programs()
            assert bindir is not None
            argv = [str(bindir / "psql"), url, "-tAc", "SELECT current_database()"]
            query = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            assert query.stdout.strip() == "test", query.stderr
    finally:
        child.stdin.close()
        child.wait(60)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    assert not services.wait_for_port("127.0.0.1", port, timeout=0), "the server outlived the process that started it"
