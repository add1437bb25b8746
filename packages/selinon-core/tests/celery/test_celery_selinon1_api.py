"""Selinon 1.x's Python API on real workers: a worker module and a client written as 1.x projects write them
(`Config.set_config_yaml`, `Config.set_celery_app`, `run_flow`), flows started by a 1.x client's message, 1.x's
messages of flows that 1.x runs handed back, `FatalTaskError`, and a fallback reading the exception it handles."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.result import AsyncResult
from celery_app import new_app
from conftest import HERE, REDIS, Cluster, MakeCluster

import selinon
from selinon import Config, failures
from selinon.celery import flows_of
from selinon.errors import FatalTaskError, UnknownFlowError
from selinon.pool import StoragePool

pytestmark = pytest.mark.celery

TIMEOUT = 60


@pytest.fixture(scope="module")
def selinon1(make_cluster: MakeCluster) -> Cluster:
    """A worker whose app module configures Selinon through `Config`, as 1.x worker modules do."""
    cluster = make_cluster("selinon1")
    cluster.worker("selinon1", SELINON_TEST_API="selinon1")
    return cluster


@pytest.fixture
def app(selinon1: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """This process as a 1.x client: the same two calls."""
    for name, value in selinon1.env.items():
        monkeypatch.setenv(name, value)
    app = new_app(selinon1.broker, REDIS, selinon1.tag, selinon1.queues)
    Config.set_config_yaml(HERE / "nodes.yaml", [HERE / "flows.yaml"])
    Config.set_celery_app(app)
    yield app
    Config._system = None
    Config._app = None
    StoragePool.reset()


def test_run_flow_returns_the_dispatchers_async_result_and_the_flow_runs(app: Any, run_dir: Path) -> None:
    started = selinon.run_flow("auditFlow", {"dir": str(run_dir), "order": 11})
    assert isinstance(started, AsyncResult)
    report = flows_of(app).wait(started.id, timeout=TIMEOUT)
    assert report.state == "succeeded", report
    [audit] = report.tasks
    assert StoragePool.retrieve("auditFlow", "Audit", audit["task_id"]) == {"audited": 11}
    with pytest.raises(UnknownFlowError, match=r"no flow named 'auditflow'.*auditFlow"):
        selinon.run_flow("auditflow", {})


def test_a_flow_started_by_a_selinon_1_client_runs_under_the_id_it_was_given(app: Any, run_dir: Path) -> None:
    queue = Config.dispatcher_queues["auditFlow"]
    node_args = {"dir": str(run_dir), "order": 12}
    sent = app.send_task("selinon.Dispatcher", kwargs={"flow_name": "auditFlow", "node_args": node_args}, queue=queue)
    deadline = time.monotonic() + TIMEOUT
    while sent.state == "PENDING":  # a 1.x client records nothing: the flow is known once a worker takes it
        assert time.monotonic() < deadline, "no worker took the message"
        time.sleep(0.1)
    report = flows_of(app).wait(sent.id, timeout=TIMEOUT)
    assert report.state == "succeeded", report
    assert StoragePool.retrieve("auditFlow", "Audit", report.tasks[0]["task_id"]) == {"audited": 12}


def test_a_message_of_a_flow_that_selinon_1_runs_is_handed_back(app: Any, selinon1: Cluster) -> None:
    arguments = {"task_name": "Audit", "flow_name": "auditFlow", "parent": {}, "node_args": {}, "dispatcher_id": "x"}
    sent = app.send_task("selinon.SelinonTaskEnvelope", kwargs=arguments, queue=Config.task_queues["Audit"])
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (logged := [line for line in selinon1_output(selinon1) if sent.id in line and "handed back" in line]):
            assert time.monotonic() < deadline, "never handed back"
            time.sleep(0.2)
        assert "task 'Audit' of flow 'auditFlow' that Selinon 1.x started: only a Selinon 1.x worker" in logged[0]
        assert sent.state == "PENDING"  # handed back, not failed: a 1.x worker may still take it
    finally:
        sent.revoke()


def test_a_fatal_task_error_is_not_retried_and_its_fallback_reads_the_exception(app: Any, run_dir: Path) -> None:
    report = flows_of(app).wait(selinon.run_flow("excuseFlow", {"dir": str(run_dir)}).id, timeout=TIMEOUT)
    assert report.state == "succeeded", report
    tasks = {t["task"]: t for t in report.tasks}
    assert tasks["Doomed"]["state"] == "failed"
    assert tasks["Doomed"]["tries"] == 1  # max_retry: 3, but a FatalTaskError is final
    excuse = StoragePool.retrieve("excuseFlow", "Excuse", tasks["Excuse"]["task_id"])
    assert excuse == {"Doomed": ["FatalTaskError", "the order was cancelled"]}
    # A process that did not run it (this one) reads it from the result backend: Doomed has no storage.
    failures._recent.clear()
    found = failures.find("excuseFlow", "Doomed", tasks["Doomed"]["task_id"])
    assert type(found) is FatalTaskError
    assert str(found) == "the order was cancelled"


def selinon1_output(cluster: Cluster) -> list[str]:
    return "".join(p.read_text(errors="replace") for p in cluster.log_dir.glob("worker-*.log")).splitlines()
