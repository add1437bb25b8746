"""OpenTelemetry spans for Selinon: a ``selinon_event`` hook plugin, through ``opentelemetry-api`` only.

Spans nest as flow > task > storage call: ``flow <name>`` for a flow run (a sub-flow's under the flow that started
it), ``task <name>`` for each try of a task, and ``storage <operation>`` for each attempt of a storage call, made
from the call's measured duration. Each carries the flow's and task's names and ids as attributes. The parent of
each span comes from the event's context (see ``selinon.events``), into which this plugin writes the W3C trace
context of the span it starts, so that the parent is found in whichever process the child runs. A flow scheduled
inside a span of yours (an HTTP request, say) joins its trace.

A span begins and ends in one process. With the local executor the flow span lasts from the flow's start to its
end. On Celery no process sees a flow from start to end (each dispatcher pass may run anywhere), so the flow span
covers the dispatcher pass that started the flow, the tasks and sub-flows of the flow are its children all the
same, and the pass that finds the flow done adds a span ``flow <name> ended`` (under the flow span) with the
outcome and the flow's whole duration. The SDK, exporters and sampling are yours to set up, as for any
instrumentation; without them, spans are the API's no-ops.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, Status, StatusCode

from selinon import hookimpl

try:
    __version__ = version("selinon-opentelemetry")
except PackageNotFoundError:  # pragma: no cover - run from a source tree
    __version__ = "0.0.0"

__all__ = ["selinon_event"]

_tracer = trace.get_tracer("selinon_opentelemetry", __version__)
_lock = threading.Lock()
#: Flow spans open in this process, by flow id.
_flows: dict[str, Span] = {}
#: Task spans open in this process, by (task id, try), with the token that made each the current span.
_tries: dict[tuple[str, int], tuple[Span, object]] = {}

#: Span attributes, from event fields.
ATTRIBUTES = {
    "flow_name": "selinon.flow.name",
    "flow_id": "selinon.flow.id",
    "task_name": "selinon.task.name",
    "task_id": "selinon.task.id",
    "tries": "selinon.task.tries",
    "storage_name": "selinon.storage.name",
    "executor": "selinon.executor",
}


@hookimpl
def selinon_event(event: str, fields: dict[str, Any], context: dict[str, str], exception: BaseException | None) -> None:
    """Start, end or record the span an event stands for."""
    if event.startswith("storage."):
        _storage_call(event.removeprefix("storage."), fields, context)
    elif event == "flow.scheduled":
        _inject(context, otel_context.get_current())  # the caller's span, if any, becomes the flow's parent
    elif event == "flow.started":
        _flow_started(fields, context)
    elif event in ("flow.succeeded", "flow.failed"):
        _flow_ended(event == "flow.failed", fields, context)
    elif event == "dispatcher.pass":
        if fields.get("executor") == "celery":  # the next pass may run in another process: end the span here
            with _lock:
                span = _flows.pop(fields["flow_id"], None)
            if span is not None:
                span.end()
    elif event == "task.started":
        _task_started(fields, context)
    elif event in ("task.succeeded", "task.retry", "task.failed"):
        _task_ended(event, fields, exception)
    else:  # decisions of the dispatcher: events of the flow span, where it is open
        with _lock:
            span = _flows.get(fields.get("flow_id", ""))
        if span is not None:
            span.add_event(event, _event_attributes(fields), _ns(fields["time"]))


def _flow_started(fields: Mapping[str, Any], context: dict[str, str]) -> None:
    name = f"flow {fields['flow_name']}"
    span = _tracer.start_span(name, _parent(context), attributes=_attributes(fields), start_time=_ns(fields["time"]))
    with _lock:
        _flows[fields["flow_id"]] = span
    _inject(context, trace.set_span_in_context(span))


def _flow_ended(failed: bool, fields: Mapping[str, Any], context: dict[str, str]) -> None:
    with _lock:
        span = _flows.pop(fields["flow_id"], None)
    end = _ns(fields["time"])
    if span is None:  # on Celery: the flow span ended with the pass that started the flow
        name = f"flow {fields['flow_name']} ended"
        span = _tracer.start_span(name, _parent(context), attributes=_attributes(fields), start_time=end)
    if "duration" in fields:
        span.set_attribute("selinon.flow.duration", float(fields["duration"]))
    if failed:
        span.set_status(Status(StatusCode.ERROR, str(fields.get("error"))))
    span.end(end)


def _task_started(fields: Mapping[str, Any], context: dict[str, str]) -> None:
    name = f"task {fields['task_name']}"
    span = _tracer.start_span(name, _parent(context), attributes=_attributes(fields), start_time=_ns(fields["time"]))
    current = trace.set_span_in_context(span)
    token = otel_context.attach(current)  # what the task itself traces (HTTP calls, ...) nests under its span
    with _lock:
        _tries[(fields["task_id"], fields["tries"])] = (span, token)
    _inject(context, current)


def _task_ended(event: str, fields: Mapping[str, Any], exception: BaseException | None) -> None:
    with _lock:
        found = _tries.pop((fields["task_id"], fields["tries"]), None)
    if found is None:
        return
    span, token = found
    try:
        otel_context.detach(token)  # type: ignore[arg-type]
    except Exception:  # pragma: no cover - another thread's context; the span still ends
        pass
    span.set_attribute("selinon.task.outcome", event.removeprefix("task."))
    if event != "task.succeeded":
        if exception is not None:
            span.record_exception(exception)
        span.set_status(Status(StatusCode.ERROR, str(fields.get("error"))))
    if event == "task.retry":
        span.set_attribute("selinon.task.retry_in", float(fields.get("countdown") or 0))
    span.end(_ns(fields["time"]))


def _storage_call(operation: str, fields: Mapping[str, Any], context: dict[str, str]) -> None:
    end = _ns(fields["time"])
    start = end - int(float(fields.get("duration") or 0) * 1e9)
    attributes = {**_attributes(fields), "selinon.storage.operation": operation}
    parent = _parent(context) if context else None  # outside flows: under whatever span is current
    span = _tracer.start_span(f"storage {operation}", parent, attributes=attributes, start_time=start)
    if fields.get("error") is not None:
        span.set_status(Status(StatusCode.ERROR, str(fields["error"])))
    span.end(end)


def _parent(context: Mapping[str, str]) -> otel_context.Context:
    return propagate.extract(context)


def _inject(carrier: dict[str, str], current: otel_context.Context) -> None:
    """Put the trace context of ``current`` into the event's context, replacing what a parent left there."""
    for key in propagate.get_global_textmap().fields:
        carrier.pop(key, None)
    propagate.inject(carrier, current)


def _attributes(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {key: fields[field] for field, key in ATTRIBUTES.items() if fields.get(field) is not None}


def _event_attributes(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A dispatcher event's fields as span event attributes (scalars and lists of strings)."""
    found: dict[str, Any] = {}
    for key, value in fields.items():
        if key in ("time", "flow_name", "flow_id", "parent"):
            continue
        if isinstance(value, bool | int | float | str):
            found[f"selinon.{key}"] = value
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            found[f"selinon.{key}"] = list(value)
    return found


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)
