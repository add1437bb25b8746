"""Spans of a flow run on the local executor, exported by the SDK's InMemorySpanExporter: names, parents,
attributes and statuses, for a flow that retries a task, fails one, runs a fallback and a sub-flow. Celery's
spans (across worker processes): selinon-core's tests/celery/test_celery_trace.py."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from selinon import StoragePool, flows, plugins
from selinon.executor import Executor, FlowRun

MEMORY = {"name": "Memory", "classname": "InMemoryStorage", "configuration": {"json": True}}
TASKS = [
    {"name": "Flaky", "import": "otel_tasks", "storage": "Memory", "max_retry": 1, "retry_countdown": 0},
    {"name": "Broken", "import": "otel_tasks", "storage": "Memory"},
    {"name": "Rescue", "import": "otel_tasks", "storage": "Memory"},
    {"name": "Inner", "import": "otel_tasks", "storage": "Memory"},
]
FLOWS = [
    {
        "name": "main",
        "edges": [{"from": [], "to": ["Flaky", "Broken"]}, {"from": "Flaky", "to": "sub"}],
        "failures": [{"nodes": ["Broken"], "fallback": ["Rescue"]}],
    },
    {"name": "sub", "edges": [{"from": [], "to": "Inner"}]},
]


def run() -> FlowRun:
    system = flows.from_documents(
        [("nodes.yaml", {"storages": [MEMORY], "tasks": TASKS}), ("flows.yaml", {"flow-definitions": FLOWS})]
    )
    result = Executor(system).run("main")
    assert result.state == "succeeded", result.error
    return result


def named(spans: tuple[ReadableSpan, ...], name: str, **attributes: Any) -> list[ReadableSpan]:
    return [
        s
        for s in spans
        if s.name == name and all((s.attributes or {}).get(f"selinon.{k}") == v for k, v in attributes.items())
    ]


def one(spans: tuple[ReadableSpan, ...], name: str, **attributes: Any) -> ReadableSpan:
    [found] = named(spans, name, **attributes)
    return found


def parent_of(spans: tuple[ReadableSpan, ...], span: ReadableSpan) -> ReadableSpan | None:
    if span.parent is None:
        return None
    return next(s for s in spans if s.context.span_id == span.parent.span_id)


def test_the_plugin_is_found_through_its_entry_point() -> None:
    plugins.load_plugins()
    assert plugins.pm.has_plugin("opentelemetry")
    listed = {p.name: p for p in plugins.hook_plugins()}
    assert listed["opentelemetry"].hooks == ["selinon_event"] and listed["opentelemetry"].broken is None


def test_spans_nest_flow_task_storage(exporter: InMemorySpanExporter) -> None:
    result = run()
    spans = exporter.get_finished_spans()
    main = one(spans, "flow main")
    assert main.parent is None and main.status.status_code == StatusCode.UNSET
    assert main.attributes == {
        "selinon.flow.name": "main",
        "selinon.flow.id": result.id,
        "selinon.executor": "local",
        "selinon.flow.duration": main.attributes["selinon.flow.duration"],  # type: ignore[index]
    }
    assert {s.context.trace_id for s in spans} == {main.context.trace_id}

    sub = one(spans, "flow sub")
    assert parent_of(spans, sub) is main
    ids = {n.name: n.id for n in result.tasks()}
    assert sub.attributes["selinon.flow.id"] == next(n.id for n in result.nodes if n.name == "sub")  # type: ignore[index]

    first, second = sorted(named(spans, "task Flaky"), key=lambda s: s.attributes["selinon.task.tries"])  # type: ignore[index]
    for span in (first, second):
        assert parent_of(spans, span) is main
        assert span.attributes["selinon.task.id"] == ids["Flaky"]  # type: ignore[index]
        assert span.attributes["selinon.flow.id"] == result.id  # type: ignore[index]
    assert first.status.status_code == StatusCode.ERROR and first.attributes["selinon.task.outcome"] == "retry"  # type: ignore[index]
    assert first.status.description == "ConnectionError: the warehouse is busy"
    assert second.status.status_code == StatusCode.UNSET and second.attributes["selinon.task.outcome"] == "succeeded"  # type: ignore[index]
    assert first.end_time <= second.start_time  # type: ignore[operator]

    broken = one(spans, "task Broken")
    assert broken.status.status_code == StatusCode.ERROR and parent_of(spans, broken) is main
    [raised] = [e for e in broken.events if e.name == "exception"]
    assert raised.attributes["exception.type"] == "ValueError"  # type: ignore[index]
    assert raised.attributes["exception.message"] == "broken on purpose"  # type: ignore[index]
    assert parent_of(spans, one(spans, "task Rescue")) is main
    inner = one(spans, "task Inner")
    assert parent_of(spans, inner) is sub and parent_of(spans, one(spans, "lookup")) is inner

    store = one(spans, "storage store", **{"task.name": "Inner"})
    assert parent_of(spans, store) is inner
    assert store.attributes["selinon.storage.name"] == "Memory"  # type: ignore[index]
    assert store.attributes["selinon.task.id"] == ids["Inner"]  # type: ignore[index]
    assert store.attributes["selinon.flow.id"] == sub.attributes["selinon.flow.id"]  # type: ignore[index]
    assert inner.start_time <= store.start_time <= store.end_time <= inner.end_time  # type: ignore[operator]
    assert parent_of(spans, one(spans, "storage store_error")) is broken
    assert main.start_time <= sub.start_time and sub.end_time <= main.end_time  # type: ignore[operator]

    decisions = {e.name: e for e in main.events}
    assert decisions["fallback.started"].attributes["selinon.fallback"] == ("Rescue",)  # type: ignore[index]
    assert decisions["subflow.scheduled"].attributes["selinon.subflow_name"] == "sub"  # type: ignore[index]
    assert "node.failed" in decisions and "task.scheduled" in decisions


def test_a_flow_run_inside_a_span_joins_its_trace(exporter: InMemorySpanExporter) -> None:
    with trace.get_tracer("myapp").start_as_current_span("POST /orders") as request:
        run()
    spans = exporter.get_finished_spans()
    main = one(spans, "flow main")
    assert main.parent is not None and main.parent.span_id == request.get_span_context().span_id
    assert {s.context.trace_id for s in spans} == {request.get_span_context().trace_id}


def test_storage_calls_outside_flows_nest_under_the_current_span(exporter: InMemorySpanExporter) -> None:
    StoragePool.configure(flows.from_documents([("nodes.yaml", {"storages": [MEMORY], "tasks": TASKS})]).configuration)
    with trace.get_tracer("myapp").start_as_current_span("backfill") as backfill:
        StoragePool.set(None, "main", "Inner", "t-1", {"inner": True})
    store = one(exporter.get_finished_spans(), "storage store")
    assert store.parent is not None and store.parent.span_id == backfill.get_span_context().span_id
    assert store.attributes["selinon.task.id"] == "t-1"  # type: ignore[index]
