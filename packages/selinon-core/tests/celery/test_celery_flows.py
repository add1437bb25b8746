"""Flows on Celery with real `celery worker` processes: Redis as broker and result backend (RabbitMQ too, where a
test says so), results in PostgreSQL and Redis storages."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
from celery_tasks import runs
from conftest import HERE, RABBITMQ, REDIS, Cluster, MakeCluster, Worker

from selinon.celery import UnknownFlowError
from selinon.executor import Executor
from selinon.pool import StoragePool
from selinon.testing import TcpProxy

pytestmark = pytest.mark.celery

ORDER = {"order": 7, "express": True, "items": [{"sku": "lamp", "price": 30, "quantity": 2}]}
TIMEOUT = 60


def order(run_dir: Path, **changes: Any) -> dict[str, Any]:
    return {**ORDER, "dir": str(run_dir), **changes}


def stored(report: Any) -> dict[str, Any]:
    """Task name -> its stored result (each task of these flows runs once)."""
    return {t["task"]: StoragePool.retrieve(t["flow"], t["task"], t["task_id"]) for t in report.tasks}


def test_a_flow_completes_with_results_in_postgresql_and_redis(shared: Cluster, run_dir: Path) -> None:
    client = shared.client()
    report = client.wait(client.run_flow("orderFlow", order(run_dir)), timeout=TIMEOUT)
    assert report.state == "succeeded", report
    tasks = {t["task"]: t for t in report.tasks}
    assert set(tasks) == {"Order", "Reserve", "Express", "Confirm", "Audit"}  # Audit ran in the sub-flow
    assert tasks["Reserve"]["tries"] == 2, "max_retry/retry_countdown are Celery retries of the same task id"
    assert report.result("Order") == {"order": 7, "total": 60, "express": True}
    assert report.result("Confirm") == {"reservation": "R-7", "shipping": {"carrier": "courier", "days": 1}}
    assert report.result("Audit") == {"audited": 7}
    # Straight from the servers, not through the pool: Redis keys and PostgreSQL rows, keyed by task id.
    client_redis = redis.Redis.from_url(REDIS)
    assert client_redis.exists(f"{shared.tag}results:{tasks['Order']['task_id']}")
    assert tasks["Confirm"]["record_id"] is not None and tasks["Confirm"]["storage"] == "Sql"
    assert Counter(name for name, _ in runs(run_dir)) == {
        "Order": 1, "Reserve": 2, "Express": 1, "Confirm": 1, "Audit": 1
    }  # fmt: skip


def test_a_condition_branches_on_the_stored_parent_result(shared: Cluster, run_dir: Path) -> None:
    client = shared.client()
    (run_dir / "a").mkdir(), (run_dir / "b").mkdir()  # before the flows start: their first task writes there
    express = client.run_flow("orderFlow", order(run_dir / "a", express=True))
    standard = client.run_flow("orderFlow", order(run_dir / "b", express=False))
    express_report = client.wait(express, timeout=TIMEOUT)
    standard_report = client.wait(standard, timeout=TIMEOUT)
    assert {t["task"] for t in express_report.tasks} == {"Order", "Reserve", "Express", "Confirm", "Audit"}
    assert {t["task"] for t in standard_report.tasks} == {"Order", "Reserve", "Standard", "Confirm", "Audit"}
    assert standard_report.result("Confirm")["shipping"] == {"carrier": "post", "days": 4, "free": True}


def test_the_same_flow_stores_the_same_results_as_the_local_executor(shared: Cluster, run_dir: Path) -> None:
    client = shared.client()
    (run_dir / "celery").mkdir(), (run_dir / "local").mkdir()
    on_celery = client.wait(client.run_flow("orderFlow", order(run_dir / "celery")), timeout=TIMEOUT)
    local = Executor(shared.system()).run("orderFlow", order(run_dir / "local"))
    assert on_celery.state == local.state == "succeeded"
    assert stored(on_celery) == {node.name: StoragePool.retrieve(node.flow_run.name, node.name, node.id)
                                 for node in local.tasks()}  # fmt: skip
    assert sorted(runs(run_dir / "celery")) != sorted(runs(run_dir / "local"))  # other ids, same results
    assert Counter(n for n, _ in runs(run_dir / "celery")) == Counter(n for n, _ in runs(run_dir / "local"))


@pytest.mark.parametrize(
    ("items", "express", "ran"),
    [
        ([{"sku": "lamp", "price": 30, "quantity": 2}], True, {"Order", "Express"}),
        (
            [{"sku": "pen", "price": 2, "quantity": 1}, {"sku": "ink", "price": 3, "quantity": 1}],
            False,
            {"Order", "Standard", "Audit"},
        ),
        ([{"sku": "pen", "price": 2, "quantity": 1}], None, {"Order", "Standard", "Audit"}),
    ],
)
def test_built_in_and_custom_predicates_branch_as_in_the_local_executor(
    shared: Cluster, run_dir: Path, items: list[dict[str, Any]], express: Any, ran: set[str]
) -> None:
    client = shared.client()
    (run_dir / "celery").mkdir(), (run_dir / "local").mkdir()
    on_celery = client.wait(
        client.run_flow("predicateFlow", order(run_dir / "celery", items=items, express=express)), timeout=TIMEOUT
    )
    local = Executor(shared.system()).run("predicateFlow", order(run_dir / "local", items=items, express=express))
    assert on_celery.state == local.state == "succeeded", on_celery
    assert {t["task"] for t in on_celery.tasks} == {node.name for node in local.tasks()} == ran


def test_a_task_that_fails_for_good_fails_the_flow_and_its_error_is_stored(shared: Cluster, run_dir: Path) -> None:
    client = shared.client()
    report = client.wait(client.run_flow("orderFlow", order(run_dir, items=[])), timeout=TIMEOUT)
    assert report.state == "failed"
    assert report.error == "task 'Order' failed: ValueError: order 7 has no items"
    (failed,) = report.tasks
    assert failed["state"] == "failed" and failed["error_record"] == "stored"
    error = StoragePool.get_storage_by_task_name("Order").retrieve_error("orderFlow", "Order", failed["task_id"])
    assert error["type"].endswith("ValueError") and "no items" in error["message"]


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_a_worker_killed_in_the_middle_of_a_task_does_not_lose_the_flow(
    make_cluster: MakeCluster, run_dir: Path, broker: str
) -> None:
    # Redis gives an unacknowledged message to another worker after visibility_timeout; RabbitMQ at once.
    cluster = make_cluster(f"kill-{broker}", REDIS if broker == "redis" else RABBITMQ, visibility_timeout=4)
    client = cluster.client()
    doomed = cluster.worker("doomed")
    flow_id = client.run_flow("slowFlow", {"dir": str(run_dir)})
    deadline = time.monotonic() + TIMEOUT
    while not (run_dir / "slow-started").exists() or not (run_dir / "slow-started").read_text():
        assert time.monotonic() < deadline, doomed.output()[-3000:]
        time.sleep(0.1)
    doomed.kill()  # the worker and its children, mid-task: nothing was acknowledged
    rescuer = cluster.worker("rescuer")
    report = client.wait(flow_id, timeout=TIMEOUT)
    assert report.state == "succeeded", rescuer.output()[-3000:]
    slow_id = (run_dir / "slow-started").read_text()
    assert runs(run_dir).count(("Slow", slow_id)) == 2, "the killed task ran again, with the same id"
    assert [name for name, _ in runs(run_dir)].count("After") == 1
    assert report.result("After") == {"after": {"slow": "done"}}


def test_an_unreachable_storage_makes_the_dispatcher_retry_then_the_flow_completes(
    make_cluster: MakeCluster, run_dir: Path
) -> None:
    """Dispatchers reach the Redis storage through a proxy that refuses connections for a while; tasks reach it
    directly. Workers are split by queue: one for the dispatcher queue, one for the task queue."""
    cluster = make_cluster("outage")
    client = cluster.client()
    dispatch, tasks = cluster.queues
    with TcpProxy("127.0.0.1", int(cluster.env["SELINON_TEST_REDIS_PORT"])) as proxy:
        proxy.refuse()
        cluster.worker("dispatcher", [dispatch], SELINON_TEST_REDIS_PORT=str(proxy.port))
        cluster.worker("tasks", [tasks])
        flow_id = client.run_flow("orderFlow", order(run_dir))
        deadline = time.monotonic() + TIMEOUT
        while client.status(flow_id).dispatcher_retries < 3:
            assert time.monotonic() < deadline, client.status(flow_id)
            time.sleep(0.1)
        started = {t["task"] for t in client.status(flow_id).tasks}
        assert not started & {"Express", "Standard", "Confirm"}, "nothing started past the unreadable condition"
        proxy.accept()
        report = client.wait(flow_id, timeout=TIMEOUT)
    assert report.state == "succeeded" and report.dispatcher_retries >= 3
    assert Counter(name for name, _ in runs(run_dir)) == {
        "Order": 1, "Reserve": 2, "Express": 1, "Confirm": 1, "Audit": 1
    }, "no task ran twice because of the dispatcher's retries"  # fmt: skip


def test_queues_come_from_the_yaml_with_environment_references_expanded(shared: Cluster) -> None:
    client = shared.client()
    tag = shared.env["SELINON_TEST_QUEUE"]
    assert client.task_queue("Order") == f"{tag}-tasks" and client.flow_queue("orderFlow") == f"{tag}-dispatch"
    assert client.queues() == [f"{tag}-dispatch", f"{tag}-tasks"]


def test_the_core_does_not_import_celery() -> None:
    code = (
        "import sys, selinon, selinon.cli, selinon.executor, selinon.runtime, selinon.flows\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('celery', 'kombu')], 'celery imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_retrying_task_shows_its_tries_so_far(shared: Cluster, run_dir: Path) -> None:
    client = shared.client()
    flow_id = client.run_flow("patientFlow", {"dir": str(run_dir)})
    seen: list[tuple[str, int]] = []
    deadline = time.monotonic() + TIMEOUT
    while not (report := client.status(flow_id)).done:
        assert time.monotonic() < deadline, report
        seen += [(t["state"], t["tries"]) for t in report.tasks if (t["state"], t["tries"]) not in seen]
        time.sleep(0.05)
    assert report.state == "succeeded" and report.tasks[0]["tries"] == 3
    # 1.5 s between tries, the dispatcher looks every 0.2 s (its sampling): it sees each wait, with the tries so far.
    assert ("retrying", 1) in seen and ("retrying", 2) in seen, seen
    assert not [state for state, tries in seen if tries == 0 and state != "scheduled"], seen


def selinon_celery(cluster: Cluster, *argv: str) -> subprocess.CompletedProcess[str]:
    """`python -m selinon.celery -A celery_app ...` with the environment the cluster's workers have."""
    env = Worker(cluster, "cli", cluster.queues, {}).env
    return subprocess.run(
        [sys.executable, "-m", "selinon.celery", "-A", "celery_app", *argv],
        env=env, cwd=HERE, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_status_tells_an_unknown_flow_id_from_a_flow_not_started_yet(make_cluster: MakeCluster, run_dir: Path) -> None:
    cluster = make_cluster("idle")  # no worker: the flow stays queued
    client = cluster.client()
    flow_id = client.run_flow("orderFlow", order(run_dir))
    report = client.status(flow_id)
    assert (report.state, report.flow, report.tasks) == ("pending", "orderFlow", [])
    unknown = str(uuid.uuid4())
    assert client.status(unknown).state == "unknown"
    with pytest.raises(UnknownFlowError, match=f"no flow '{unknown}' in the result backend"):
        client.wait(unknown, timeout=TIMEOUT)
    done = selinon_celery(cluster, "status", flow_id)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"flow orderFlow ({flow_id}) pending\n", "")
    for argv in (["status", unknown], ["status", unknown, "--wait", "--timeout", "30"], ["status", unknown, "--json"]):
        done = selinon_celery(cluster, *argv)
        assert done.returncode == 2 and done.stdout == "", done.stderr
        assert done.stderr.startswith(f"selinon: error: no flow '{unknown}' in the result backend: check the id")
        assert done.stderr.count("\n") == 1
