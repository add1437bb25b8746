"""The example order flow (examples/flow/) on three Celery workers, as docs/celery.md runs it: its "busy once"
warehouse keeps its answer in the storage, so a retry that lands on another worker sees it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import READY_TIMEOUT, python_path

from selinon.testing import ServerProcess

pytestmark = pytest.mark.celery

EXAMPLE = Path(__file__).parents[4] / "examples" / "flow"
ORDERS = 20


@pytest.fixture
def example(own_redis: ServerProcess, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Three `celery worker` processes of examples/flow/celery_app.py (one pool process each), on a Redis of the
    test's own, in a working directory of the test's own (the example's storage writes under it)."""
    env = {
        **os.environ,
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{own_redis.port}/0",
        "PYTHONPATH": python_path(EXAMPLE),
    }
    workers = []
    try:
        for number in range(3):
            log = tmp_path / f"worker-{number}.log"
            argv = [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "--loglevel=INFO", "--pool=prefork", "--concurrency=1",
                    "-n", f"example{number}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
            with open(log, "wb") as out:
                started = subprocess.Popen(
                    argv, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            workers.append((started, log))
        deadline = time.monotonic() + READY_TIMEOUT
        for process, log in workers:
            while " ready." not in log.read_text(errors="replace"):
                assert process.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
                time.sleep(0.2)
        yield env
    finally:
        for process, _ in workers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process, _ in workers:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def test_the_example_flow_succeeds_on_three_workers(example: dict[str, str], tmp_path: Path) -> None:
    """Twenty orders: when the "busy" answer lived in each process's memory, a retry on another worker was told
    "busy" again, and about one order in five ran out of tries."""
    code = f"""
import json, sys
from celery_app import flows
ids = [flows.run_flow("orderFlow", {{"order": n, "express": n % 2 == 0,
                                     "items": [{{"sku": "book", "price": 12.5, "quantity": 2}}]}})
       for n in range({ORDERS})]
reports = [flows.wait(flow_id, timeout=120) for flow_id in ids]
print(json.dumps([report.as_dict() for report in reports]))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], env=example, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    reports = json.loads(done.stdout.strip().splitlines()[-1])
    assert [r["state"] for r in reports] == ["succeeded"] * ORDERS, [r["error"] for r in reports]
    for report in reports:
        tries = {t["task"]: t["tries"] for t in report["tasks"]}
        assert tries["ReserveStock"] == 2, report  # busy once, then reserved: never twice busy
        assert set(tries) in ({"ValidateOrder", "ReserveStock", "ExpressShipping", "Confirm"},
                              {"ValidateOrder", "ReserveStock", "StandardShipping", "Confirm"})  # fmt: skip
    stored = list((tmp_path / "examples" / "flow" / "results").iterdir())
    assert len(stored) == ORDERS * 5  # four results and the warehouse's marker per order
