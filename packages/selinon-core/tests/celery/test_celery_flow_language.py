"""Selinon 1.x's flow language on real Celery workers, each group against the local executor's outcome: edges
(foreach, nowait, parallel runs), flow options (fallbacks, eager failures, propagate_*, recursion, sampling),
throttling and default queues, and selective runs. The tests share one worker (the `shared` cluster)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
from celery_tasks import runs
from conftest import REDIS, Cluster

from selinon.executor import Executor, FlowRun
from selinon.pool import StoragePool

pytestmark = pytest.mark.celery

TIMEOUT = 60
ITEMS = [{"sku": "lamp", "price": 30, "quantity": 2}, {"sku": "ink", "price": 3, "quantity": 1}]


def both(cluster: Cluster, run_dir: Path, flow: str, **node_args: Any) -> tuple[Any, FlowRun]:
    """Run ``flow`` on the workers and locally, each recording its runs in a directory of its own."""
    (run_dir / "celery").mkdir(parents=True), (run_dir / "local").mkdir()
    client = cluster.client()
    on_celery = client.wait(client.run_flow(flow, {"dir": str(run_dir / "celery"), **node_args}), timeout=TIMEOUT)
    local = Executor(cluster.system()).run(flow, {"dir": str(run_dir / "local"), **node_args})
    return on_celery, local


def results(report: Any, task: str) -> list[Any]:
    found = [t for t in report.tasks if t["task"] == task and t["state"] == "succeeded"]
    return [StoragePool.retrieve(t["flow"], task, t["task_id"]) for t in found]


def local_results(run: FlowRun, task: str) -> list[Any]:
    return [
        StoragePool.retrieve(n.flow_run.name, task, n.id)
        for n in run.tasks()
        if n.name == task and n.state == "succeeded"
    ]


def counted(directory: Path, wait_for: str | None = None) -> Counter[str]:
    deadline = time.monotonic() + TIMEOUT
    while wait_for and wait_for not in {name for name, _ in runs(directory)}:  # a nowait task may end later
        assert time.monotonic() < deadline, f"{wait_for} never ran"
        time.sleep(0.1)
    return Counter(name for name, _ in runs(directory))


def test_foreach_nowait_and_parallel_runs_as_in_the_local_executor(shared: Cluster, run_dir: Path) -> None:
    on_celery, local = both(shared, run_dir, "edgeFlow", order=7, items=ITEMS)
    assert on_celery.state == local.state == "succeeded", on_celery.error
    expected = {"Order": 1, "Item": 6, "Note": 1}  # two parallel, two per item, two sub-flows; Note failed unwaited
    assert counted(run_dir / "celery", "Note") == counted(run_dir / "local", "Note") == expected
    skus = sorted(map(str, (r["sku"] for r in results(on_celery, "Item"))))
    assert skus == sorted(map(str, (r["sku"] for r in local_results(local, "Item"))))
    assert skus == ["None", "None", "None", "None", "ink", "lamp"]


def test_fallbacks_eager_failures_propagation_and_recursion_as_locally(shared: Cluster, run_dir: Path) -> None:
    rescued, rescued_locally = both(shared, run_dir / "rescue", "rescueFlow")
    assert rescued.state == rescued_locally.state == "succeeded", rescued.error
    broken = next(t["task_id"] for t in rescued.tasks if t["task"] == "Broken")
    assert results(rescued, "Rescue") == [{"parent": {"brokenFlow": {"Broken": [broken]}}}]

    began = time.monotonic()
    eager, eager_locally = both(shared, run_dir / "eager", "eagerFlow")
    assert eager.state == eager_locally.state == "failed"
    assert eager.error == eager_locally.error == "task 'Broken' failed: ValueError: broken on purpose"
    time.sleep(max(0.0, began + 2 - time.monotonic()))  # Lag has ended on both sides by now
    for side in ("celery", "local"):
        assert counted(run_dir / "eager" / side, "Lag") == {"Broken": 1, "Lag": 1}, "no fallback, no Step"

    finished, finished_locally = both(shared, run_dir / "finish", "finishFlow", order=7)
    assert finished.state == finished_locally.state == "succeeded"
    audit = next(t["task_id"] for t in finished.tasks if t["task"] == "Audit")
    assert results(finished, "Rescue") == [{"parent": {"auditFlow": {"Audit": [audit]}}}]

    looped, looped_locally = both(shared, run_dir / "loop", "loopFlow", n=2)
    assert looped.state == looped_locally.state == "succeeded"
    assert sorted(r["n"] for r in results(looped, "Step")) == [0, 1, 2]
    assert sorted(r["n"] for r in local_results(looped_locally, "Step")) == [0, 1, 2]


def test_throttled_tasks_and_flows_start_at_least_their_interval_apart_on_default_queues(
    shared: Cluster, run_dir: Path
) -> None:
    client = shared.client()
    tag = shared.env["SELINON_TEST_QUEUE"]
    assert client.task_queue("Tick") == f"{tag}-tasks" and client.flow_queue("tickFlow") == f"{tag}-dispatch"
    on_celery, local = both(shared, run_dir, "tickFlow")
    assert on_celery.state == local.state == "succeeded"
    for starts in (results(on_celery, "Tick"), local_results(local, "Tick")):
        at = sorted(r["at"] for r in starts)
        assert len(at) == 3 and at[1] - at[0] >= 0.95 and at[2] - at[1] >= 0.95, at
    paced, paced_locally = both(shared, run_dir / "paced", "twiceFlow")
    assert paced.state == paced_locally.state == "succeeded"
    for starts in (results(paced, "Stamp"), local_results(paced_locally, "Stamp")):
        at = sorted(r["at"] for r in starts)
        assert len(at) == 2 and at[1] - at[0] >= 0.95, at
    # The workers' processes shared one clock: a key of the Redis result backend.
    assert redis.Redis.from_url(REDIS).exists(f"{shared.tag}celery-task-meta-selinon-throttle:start:task:Tick")


def test_a_selective_run_runs_the_same_tasks_as_locally(shared: Cluster, run_dir: Path) -> None:
    (run_dir / "celery").mkdir(), (run_dir / "local").mkdir()
    order = {"order": 7, "express": True, "items": ITEMS[:1]}
    client = shared.client()
    flow_id = client.run_flow_selective("orderFlow", ["Express"], {**order, "dir": str(run_dir / "celery")})
    on_celery = client.wait(flow_id, timeout=TIMEOUT)
    local = Executor(shared.system()).run_flow_selective(
        "orderFlow", ["Express"], {**order, "dir": str(run_dir / "local")}
    )
    assert on_celery.state == local.state == "succeeded"
    assert {t["task"] for t in on_celery.tasks} == {n.name for n in local.tasks()} == {"Order", "Express"}
    assert counted(run_dir / "celery") == counted(run_dir / "local") == {"Order": 1, "Express": 1}
    # An edge that runs its sub-flow selectively: predicateFlow would run Audit too.
    on_celery, local = both(shared, run_dir / "edge", "pickFlow", order=7, items=ITEMS, express=True)
    assert on_celery.state == local.state == "succeeded", on_celery.error
    assert {t["task"] for t in on_celery.tasks} == {n.name for n in local.tasks()} == {"Order", "Express"}
