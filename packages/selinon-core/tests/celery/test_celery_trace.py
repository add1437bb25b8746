"""Tracing on real Celery workers: the flow with a retry, a failure, a fallback and a sub-flow (trace.yaml) runs on
workers and on the local executor, and every tracer of `global: trace:` (logging, json, function, Sentry) and the
OpenTelemetry plugin hear both runs. The workers write what they hear to files the test reads (celery_trace.py),
send to a Sentry server of the test's (tracing_kit.SentryServer), and log to their log files."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery_app import make_app
from celery_trace import read
from conftest import HERE, REDIS, Cluster, MakeCluster
from tracing_kit import SentryServer

from selinon import flows
from selinon.executor import Executor
from selinon.testing.services import in_ci

pytestmark = pytest.mark.celery

TIMEOUT = 60
FILES = [HERE / name for name in ("nodes.yaml", "flows.yaml", "trace.yaml")]
#: What each tracer hears of each run (FLOW_SCHEDULE, on Celery, from the process that starts the flow).
HEARD = {
    "FLOW_START", "DISPATCHER_WAKEUP", "TASK_SCHEDULE", "SUBFLOW_SCHEDULE", "TASK_START", "TASK_RETRY",
    "TASK_END", "TASK_FAILURE", "NODE_SUCCESSFUL", "NODE_FAILURE", "FALLBACK_START", "FLOW_END", "STORAGE_STORED",
    "STORAGE_STORE_ERROR",
}  # fmt: skip


@pytest.fixture
def sentry_sdk() -> Iterator[Any]:
    sdk = pytest.importorskip("sentry_sdk")
    yield sdk
    sdk.get_client().close()
    sdk.get_global_scope().set_client(None)


@pytest.fixture
def traced(
    make_cluster: MakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sentry_sdk: Any
) -> Iterator[tuple[Cluster, Any, SentryServer, Path]]:
    server = SentryServer()
    trace_dir = tmp_path / "trace"
    trace_dir.mkdir()
    env = {
        "SELINON_TEST_TRACE_DIR": str(trace_dir),
        "SELINON_TEST_SENTRY_KEY": os.environ.get("SELINON_PLANTED_SECRET") or "d3adb33fkey",
        "SELINON_TEST_SENTRY_PORT": str(server.port),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cluster = make_cluster("trace")
    worker = cluster.worker("trace", SELINON_CONFIG=os.pathsep.join(map(str, FILES)), **env)
    system = flows.load(FILES, environ={**os.environ, **cluster.env})
    _, client = make_app(cluster.broker, REDIS, cluster.tag, cluster.queues, system)
    yield cluster, client, server, trace_dir
    worker.stop()
    server.close()


def flow_ids(events: list[dict[str, Any]], flow_id: str) -> set[str]:
    """The flow and its sub-flows' ids, as the function tracer heard them."""
    scheduled = [e["details"] for e in events if e["event"] == "SUBFLOW_SCHEDULE"]
    return {flow_id} | {d["subflow_id"] for d in scheduled if d["flow_id"] == flow_id}


def test_every_tracer_hears_a_flow_on_celery_workers_and_locally(
    traced: tuple[Cluster, Any, SentryServer, Path], run_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cluster, client, server, trace_dir = traced
    (run_dir / "celery").mkdir(), (run_dir / "local").mkdir()
    node_args = {"order": 7}
    on_celery = client.wait(client.run_flow("traceFlow", {"dir": str(run_dir / "celery"), **node_args}), TIMEOUT)
    system = flows.load(FILES, environ={**os.environ, **cluster.env})
    with caplog.at_level(logging.INFO, logger="selinon.trace"):
        local = Executor(system).run("traceFlow", {"dir": str(run_dir / "local"), **node_args})
    assert on_celery.state == local.state == "succeeded", on_celery.error

    # function: a file per process
    events = read(trace_dir, "events-*.jsonl")
    for flow_id in (on_celery.flow_id, local.id):
        ids = flow_ids(events, flow_id)
        mine = [e for e in events if e["details"].get("flow_id") in ids]
        assert {e["event"] for e in mine} >= HEARD | {"FLOW_SCHEDULE"}, flow_id
        retry = next(e["details"] for e in mine if e["event"] == "TASK_RETRY")
        assert retry["task_name"] == "Flaky" and retry["what"] == "ConnectionError: the courier is late"
        fallback = next(e["details"] for e in mine if e["event"] == "FALLBACK_START")
        assert fallback["failed"] == ["Broken"] and fallback["fallback"] == ["Rescue"]
        assert len(ids) == 2 and sum(e["event"] == "FLOW_END" for e in mine) == 2
    celery_pids = {p.name for p in trace_dir.glob("events-*.jsonl")} - {f"events-{os.getpid()}.jsonl"}
    assert celery_pids, "the workers heard nothing"

    # logging and json: the worker's log (Celery writes what a child prints there too)
    log = cluster_log(cluster)
    logged = {line.split(" - ", 1)[1].split(" : ", 1)[0] for line in log if "SELINON " in line and " - " in line}
    printed = {json.loads(line[line.index("{") :])["event"] for line in log if '{"details": ' in line}
    assert logged >= HEARD and printed >= HEARD
    traced_locally = [r.getMessage() for r in caplog.records if r.name == "selinon.trace"]
    local_logged = {message.split(" - ", 1)[1].split(" : ", 1)[0] for message in traced_locally}
    assert local_logged >= HEARD

    # Sentry: Broken's failure, once per run, with the task's own exception
    received = server.wait_for(2)
    time.sleep(1)  # anything more (a duplicate) would have arrived by now
    received = server.events()
    by_flow = {e["tags"]["selinon.flow_id"]: e for e in received}
    assert set(by_flow) == {on_celery.flow_id, local.id} and len(received) == 2, received
    for event in by_flow.values():
        assert event["exception"]["values"][-1]["type"] == "ValueError"
        assert event["tags"]["selinon.task_name"] == "Broken"


def cluster_log(cluster: Cluster) -> list[str]:
    return [line for path in cluster.log_dir.glob("worker-*.log") for line in path.read_text().splitlines()]


def test_spans_of_a_flow_join_one_trace_across_worker_processes(
    traced: tuple[Cluster, Any, SentryServer, Path], run_dir: Path
) -> None:
    try:
        import opentelemetry.sdk  # noqa: F401
        import selinon_opentelemetry  # noqa: F401
    except ImportError as exc:
        message = f"install selinon-opentelemetry and opentelemetry-sdk ({exc})"
        if in_ci():
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    _, client, _, trace_dir = traced
    flow_id = client.run_flow("traceFlow", {"dir": str(run_dir), "order": 7})
    report = client.wait(flow_id, TIMEOUT)
    assert report.state == "succeeded", report.error
    deadline = time.monotonic() + 10
    while not any(s["name"] == "flow traceFlow ended" for s in read(trace_dir, "spans-*.jsonl")):
        assert time.monotonic() < deadline, "no span ended the flow"
        time.sleep(0.2)
    spans = [s for s in read(trace_dir, "spans-*.jsonl") if s["attributes"].get("selinon.flow.id")]
    [flow] = [s for s in spans if s["name"] == "flow traceFlow" and s["attributes"]["selinon.flow.id"] == flow_id]
    trace_id = flow["context"]["trace_id"]
    mine = [s for s in spans if s["context"]["trace_id"] == trace_id]
    by_id = {s["context"]["span_id"]: s for s in mine}

    def parent(span: dict[str, Any]) -> str:
        return by_id[span["parent_id"]]["name"] if span["parent_id"] in by_id else "-"

    tasks = {s["attributes"]["selinon.task.name"]: s for s in mine if s["name"].startswith("task ")}
    assert {s["name"] for s in mine if s["name"].startswith("task ")} == {
        "task Flaky", "task Broken", "task Rescue", "task Audit",
    }  # fmt: skip
    flaky = sorted((s for s in mine if s["name"] == "task Flaky"), key=lambda s: s["attributes"]["selinon.task.tries"])
    assert [s["status"]["status_code"] for s in flaky] == ["ERROR", "UNSET"]
    assert tasks["Broken"]["status"]["status_code"] == "ERROR"
    for span in (*flaky, tasks["Broken"], tasks["Rescue"]):
        assert parent(span) == "flow traceFlow" and span["attributes"]["selinon.flow.id"] == flow_id
    [sub] = [s for s in mine if s["name"] == "flow auditFlow"]
    assert parent(sub) == "flow traceFlow" and parent(tasks["Audit"]) == "flow auditFlow"
    stores = [s for s in mine if s["name"] == "storage store"]
    assert {parent(s) for s in stores} == {"task Flaky", "task Rescue", "task Audit"}
    assert {s["name"] for s in mine if s["name"].endswith(" ended")} == {"flow traceFlow ended", "flow auditFlow ended"}
    # The flow span ended with the pass that started the flow: every link above came through the messages.
    writers = {p.name for p in trace_dir.glob("spans-*.jsonl") if trace_id in p.read_text()}
    assert writers - {f"spans-{os.getpid()}.jsonl"}, "the workers made these spans"
