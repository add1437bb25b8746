"""Lifecycle events (the `selinon_event` hook) and the tracers of `global: trace:` / `selinon.trace.Trace`, on
the local executor, with a flow that retries a task, fails one, runs a fallback and a sub-flow. The same flow on
Celery workers: tests/celery/test_celery_trace.py."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trace_functions
from flow_tasks import RESULT_MARKER
from tracing_kit import NODE_ARGS, SentryServer, traced_system

from selinon import events, flows, hookimpl, plugins
from selinon.errors import ConfigurationError
from selinon.executor import Executor, FlowRun
from selinon.flows.dispatcher import FlowState, LocalThrottle
from selinon.testing.services import in_ci
from selinon.trace import Trace

TASK_FIELDS = {"flow_name", "flow_id", "task_name", "task_id", "parent", "tries", "time"}
#: The 1.x events the flow gives (every tracer must tell them).
FLOW_EVENTS_1X = {
    "FLOW_SCHEDULE", "FLOW_START", "DISPATCHER_WAKEUP", "TASK_SCHEDULE", "SUBFLOW_SCHEDULE", "TASK_START",
    "TASK_RETRY", "TASK_END", "TASK_FAILURE", "NODE_SUCCESSFUL", "NODE_FAILURE", "FALLBACK_START", "FLOW_END",
    "STORAGE_CONNECT", "STORAGE_STORED", "STORAGE_STORE_ERROR",
}  # fmt: skip


class Recording:
    def __init__(self) -> None:
        self.told: list[tuple[str, dict[str, Any], dict[str, str], BaseException | None]] = []

    @hookimpl
    def selinon_event(
        self, event: str, fields: dict[str, Any], context: dict[str, str], exception: BaseException | None
    ) -> None:
        self.told.append((event, dict(fields), dict(context), exception))

    def named(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [f for e, f, _, _ in self.told if e == event and all(f.get(k) == v for k, v in match.items())]

    def one(self, event: str, **match: Any) -> dict[str, Any]:
        [found] = self.named(event, **match)
        return found


def run_flow(built: flows.System | None = None) -> FlowRun:
    return Executor(built or traced_system()).run("main", NODE_ARGS)


@pytest.fixture(autouse=True)
def forget_failures() -> Iterator[None]:
    yield
    plugins.observer_failures.clear()
    trace_functions.CALLS.clear()
    trace_functions.TraceStorage.calls.clear()


def test_a_flow_tells_its_story_with_the_same_fields_for_every_task() -> None:
    recording = Recording()
    plugins.pm.register(recording)
    result = run_flow()
    assert result.state == "succeeded", result.error
    flow_id = result.id
    sub_id = next(n.id for n in result.nodes if n.name == "sub")
    first = recording.told[0]
    assert first[0] == events.FLOW_SCHEDULED and first[1]["flow_id"] == flow_id and first[1]["executor"] == "local"
    assert recording.one(events.FLOW_STARTED, flow_id=flow_id)["flow_name"] == "main"
    assert recording.one(events.SUBFLOW_SCHEDULED, flow_id=flow_id)["subflow_id"] == sub_id
    assert recording.one(events.FLOW_STARTED, flow_id=sub_id)["flow_name"] == "sub"

    retry = recording.one(events.TASK_RETRY, task_name="Flaky")
    assert retry["tries"] == 1 and retry["error"] == "ConnectionError: try 1 failed" and retry["countdown"] == 0
    assert retry["flow_id"] == flow_id and retry["duration"] >= 0
    succeeded = recording.one(events.TASK_SUCCEEDED, task_name="Flaky")
    assert succeeded["tries"] == 2 and succeeded["storage"] == "Memory" and succeeded["record_id"] == retry["task_id"]
    failed = recording.one(events.TASK_FAILED, task_name="Broken")
    assert failed["error"] == "ValueError: boom in Broken" and failed["error_record"] == "stored"
    [exception] = [x for e, f, _, x in recording.told if e == events.TASK_FAILED]
    assert isinstance(exception, ValueError) and str(exception) == "boom in Broken"
    assert isinstance(next(x for e, _, _, x in recording.told if e == events.TASK_RETRY), ConnectionError)
    for event in (events.TASK_STARTED, events.TASK_SUCCEEDED, events.TASK_RETRY, events.TASK_FAILED):
        for fields in recording.named(event):
            assert set(fields) >= TASK_FIELDS, (event, fields)

    assert recording.one(events.FALLBACK_STARTED) == {
        "flow_name": "main", "flow_id": flow_id, "failed": ["Broken"], "fallback": ["Rescue"],
        "time": recording.one(events.FALLBACK_STARTED)["time"],
    }  # fmt: skip
    assert recording.one(events.TASK_SCHEDULED, task_name="Rescue")["fallback"] is True
    assert recording.one(events.NODE_FAILED, node_name="Broken")["error"] == "ValueError: boom in Broken"
    assert recording.one(events.NODE_SUCCEEDED, node_name="sub") == {
        "flow_name": "main", "flow_id": flow_id, "node_name": "sub", "node_id": sub_id, "kind": "flow",
        "time": recording.one(events.NODE_SUCCEEDED, node_name="sub")["time"],
    }  # fmt: skip
    ends = [(e, f["flow_id"]) for e, f, _, _ in recording.told if e.startswith("flow.") and e != "flow.started"]
    assert ends == [(events.FLOW_SCHEDULED, flow_id), (events.FLOW_SUCCEEDED, sub_id), (events.FLOW_SUCCEEDED, flow_id)]
    assert recording.one(events.FLOW_SUCCEEDED, flow_id=flow_id)["duration"] >= 0
    passes = [f["pass"] for f in recording.named(events.DISPATCHER_PASS, flow_id=flow_id)]
    assert passes == list(range(1, len(passes) + 1)) and len(passes) >= 3
    assert recording.named(events.DISPATCHER_PASS, flow_id=flow_id)[-1]["done"] is True

    inner = next(n for n in result.tasks() if n.name == "Inner")
    store = recording.one("storage.store", task_name="Inner")
    assert store["flow_id"] == sub_id and store["task_id"] == inner.id and store["storage_name"] == "Memory"
    assert store["error"] is None and store["duration"] >= 0
    # Names, ids and errors; never a result.
    assert RESULT_MARKER not in json.dumps([f for _, f, _, _ in recording.told], default=str)


class Contexts:
    """Writes into each start event's context what its later events, and its children, must find there."""

    def __init__(self) -> None:
        self.mismatches: list[str] = []

    @hookimpl
    def selinon_event(self, event: str, fields: dict[str, Any], context: dict[str, str]) -> None:
        if event == events.FLOW_SCHEDULED:
            context["origin"] = "client"
        elif event == events.FLOW_STARTED:
            expected = {"origin": "client"} if fields["flow_name"] == "main" else {"scope": "flow main"}
            self.check(event, expected, context)
            context.clear()
            context["scope"] = f"flow {fields['flow_name']}"
        elif event == events.TASK_STARTED:
            self.check(event, {"scope": f"flow {fields['flow_name']}"}, context)
            context["scope"] = f"task {fields['task_id']}/{fields['tries']}"
        elif event in (events.TASK_SUCCEEDED, events.TASK_RETRY, events.TASK_FAILED):
            self.check(event, {"scope": f"task {fields['task_id']}/{fields['tries']}"}, context)
        elif event in ("storage.store", "storage.store_error"):
            self.check(event, {"scope": f"task {fields['task_id']}/1"}, context, fields["task_name"] != "Flaky")
        elif event == "storage.connect":  # made by whichever try or pass needs the storage first
            self.check(event, {"scope": context.get("scope", "")}, context, not context["scope"].startswith("task "))
        elif event != events.FLOW_SCHEDULED:
            self.check(event, {"scope": f"flow {fields['flow_name']}"}, context)

    def check(self, event: str, expected: dict[str, str], context: dict[str, str], applies: bool = True) -> None:
        if applies and context != expected:
            self.mismatches.append(f"{event}: {context} != {expected}")


def test_an_observer_ties_events_together_through_their_context() -> None:
    contexts = Contexts()
    plugins.pm.register(contexts)
    assert run_flow().state == "succeeded"
    assert contexts.mismatches == []


class Raising:
    @hookimpl
    def selinon_event(self, event: str) -> None:
        raise RuntimeError(f"collector is down ({event})")


def test_an_observer_that_raises_is_logged_once_counted_and_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    recording = Recording()
    plugins.pm.register(recording)
    plugins.pm.register(Raising())  # called first
    with caplog.at_level(logging.DEBUG, logger="selinon.plugins"):
        result = run_flow()
    assert result.state == "succeeded" and len(list(result.tasks())) == 4
    name = f"{Raising.__module__}.Raising"
    assert plugins.observer_failures[name] == len(recording.told) > 20
    [logged] = [r for r in caplog.records if r.name == "selinon.plugins"]
    assert f"hook plugin {name!r} raised in selinon_event" in logged.getMessage()
    assert "RuntimeError: collector is down (flow.scheduled)" in logged.getMessage()


def test_without_observers_nothing_is_built_or_carried() -> None:
    assert events.observers() is None
    built = traced_system()
    state = FlowState(built, built.flow("main"), "f-1", NODE_ARGS)
    starts, _ = state.advance(LocalThrottle())
    assert [s.context for s in starts] == [{}, {}]
    assert not {"context", "started_at", "passes"} & set(state.dump())  # Celery messages stay as they were
    assert run_flow().state == "succeeded"


# -- tracers (global: trace, Trace.trace_by_*) ---------------------------------------------------------------------


def names_of(calls: list[tuple[int, dict[str, Any]]]) -> set[str]:
    return {Trace.event2str(number) for number, _ in calls}


def test_yaml_tracers_each_hear_the_flow(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    storages = [{"name": "Traces", "classname": "TraceStorage", "import": "trace_functions"}]
    tracers = [
        {"logging": True, "json": True},
        {"function": {"name": "record", "import": "trace_functions"}},
        {"storage": {"name": "Traces"}},
    ]
    with caplog.at_level(logging.INFO, logger="selinon.trace"):
        result = run_flow(traced_system(tracers, storages))
    assert result.state == "succeeded"

    calls = trace_functions.CALLS
    assert names_of(calls) >= FLOW_EVENTS_1X
    assert names_of(trace_functions.TraceStorage.calls) == names_of(calls)
    retry = next(d for n, d in calls if n == Trace.TASK_RETRY)
    assert retry["task_name"] == "Flaky" and retry["what"] == "ConnectionError: try 1 failed"
    assert retry["retried_count"] == 0 and retry["dispatcher_id"] == result.id == retry["flow_id"]
    assert retry["selinon_event"] == "task.retry"

    lines = [r for r in caplog.records if r.name == "selinon.trace"]
    assert {r.getMessage().split(" - ", 1)[1].split(" : ", 1)[0] for r in lines} >= FLOW_EVENTS_1X
    [failure] = [r for r in lines if " - TASK_FAILURE : " in r.getMessage()]
    assert failure.levelno == logging.WARNING and failure.getMessage().startswith("SELINON ")
    report = json.loads(failure.getMessage().split(" : ", 1)[1])
    assert report["event"] == "TASK_FAILURE" and report["details"]["task_name"] == "Broken"
    end = next(r for r in lines if " - FLOW_END : " in r.getMessage())
    assert end.levelno == logging.INFO

    out, err = capsys.readouterr()
    printed = [json.loads(line) for line in out.splitlines()]
    warned = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert FLOW_EVENTS_1X - {"TASK_RETRY", "TASK_FAILURE", "NODE_FAILURE"} <= {d["event"] for d in printed}
    assert {"TASK_RETRY", "TASK_FAILURE", "NODE_FAILURE"} <= {d["event"] for d in warned}
    assert all(d["node"] for d in printed) and RESULT_MARKER not in out + err


def test_trace_in_code_as_in_selinon_1x(capsys: pytest.CaptureFixture[str]) -> None:
    heard: list[tuple[int, dict[str, Any]]] = []
    logger = logging.getLogger("myapp.flows")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        Trace.trace_by_func(lambda event, details: heard.append((event, details)))
        Trace.trace_by_logging(logger)
        Trace.trace_by_json()
        assert run_flow().state == "succeeded"
        Trace.log(Trace.MIGRATION, {"flow_name": "main"}, note="by hand")
    finally:
        logger.removeHandler(handler)
    assert names_of(heard) >= FLOW_EVENTS_1X
    assert heard[-1] == (Trace.MIGRATION, {"flow_name": "main", "note": "by hand"})
    assert {r.getMessage().split(" - ", 1)[1].split(" : ")[0] for r in records} >= FLOW_EVENTS_1X
    out, err = capsys.readouterr()
    assert "TASK_END" in out and "TASK_FAILURE" in err
    assert Trace.event2str(Trace.TASK_START) == "TASK_START" and Trace.STORAGE_DELETED == 52
    with pytest.raises(TypeError, match="class methods"):
        Trace()
    with pytest.raises(TypeError, match="taking \\(event, details\\)"):
        Trace.trace_by_func("not a function")  # type: ignore[arg-type]
    Trace.reset()
    heard.clear()
    assert run_flow().state == "succeeded" and heard == []
    assert events.observers() is None  # nothing listens once no tracer is left


def test_a_tracer_that_raises_is_counted_and_the_others_still_hear(caplog: pytest.LogCaptureFixture) -> None:
    heard: list[int] = []

    def broken(event: int, details: dict[str, Any]) -> None:
        raise KeyError("no such index")

    Trace.trace_by_func(broken)
    Trace.trace_by_func(lambda event, details: heard.append(event))
    with caplog.at_level(logging.ERROR, logger="selinon.plugins"):
        assert run_flow().state == "succeeded"
    name = f"trace function {__name__}.test_a_tracer_that_raises_is_counted_and_the_others_still_hear.<locals>.broken"
    assert plugins.observer_failures[name] == len(heard) > 20
    [logged] = [r for r in caplog.records if r.name == "selinon.plugins"]
    assert name in logged.getMessage() and "KeyError" in logged.getMessage()


# -- Sentry ----------------------------------------------------------------------------------------------------------


@pytest.fixture
def sentry_sdk() -> Iterator[Any]:
    try:
        import sentry_sdk as sdk
    except ImportError as exc:  # the test dependency group has it
        if in_ci():
            pytest.fail(f"CI=true: the Sentry tests need sentry-sdk ({exc}): pip install 'selinon-core[sentry]'")
        pytest.skip(f"the Sentry tests need sentry-sdk ({exc})")
    yield sdk
    sdk.get_client().close()
    sdk.get_global_scope().set_client(None)


def test_sentry_gets_each_failed_task_with_its_exception(sentry_sdk: Any) -> None:
    """sentry-sdk initialised by the application, with a transport that keeps envelopes in memory."""
    captured: list[Any] = []

    class Memory(sentry_sdk.transport.Transport):  # type: ignore[misc, name-defined]
        def capture_envelope(self, envelope: Any) -> None:
            captured.append(envelope)

    sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", transport=Memory)
    Trace.trace_by_sentry()  # uses the client already set up
    result = run_flow()
    assert result.state == "succeeded"
    sentry_sdk.flush()
    found = [item.payload.json for envelope in captured for item in envelope.items if item.type == "event"]
    [event] = found  # Broken's failure; not the executor's log line of it, not the retried try
    [exception] = event["exception"]["values"]
    assert exception["type"] == "ValueError" and exception["value"] == "boom in Broken"
    broken = next(n for n in result.tasks() if n.name == "Broken")
    assert event["tags"] == {
        "selinon.flow_name": "main", "selinon.flow_id": result.id, "selinon.task_name": "Broken",
        "selinon.task_id": broken.id,
    }  # fmt: skip
    assert event["extra"]["error_record"] == "stored" and RESULT_MARKER not in json.dumps(event)


def test_sentry_from_the_yaml_sends_failed_tasks_and_flows(
    sentry_sdk: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sentry: {dsn}` initialises sentry-sdk, whose own HTTP transport sends to a server of the test's."""
    server = SentryServer()
    key = os.environ.get("SELINON_PLANTED_SECRET") or "d3adb33fkey"
    monkeypatch.setenv("SENTRY_TEST_KEY", key)
    dsn = server.dsn("{SENTRY_TEST_KEY}")
    failing = traced_system([{"sentry": {"dsn": dsn}}])
    try:
        with caplog.at_level(logging.DEBUG):
            result = Executor(failing).run("sub", None)  # Inner succeeds; then a flow that fails:
            assert result.state == "succeeded"
            failed = Executor(failing).run("main", {"failures": 5})
            assert failed.state == "failed"
            sentry_sdk.flush()
            received = server.wait_for(3)
    finally:
        server.close()
    tasks = sorted(e["exception"]["values"][0]["type"] for e in received if "exception" in e)
    assert tasks == ["ConnectionError", "ValueError"]  # Flaky on its last try, Broken
    [flow] = [e for e in received if "exception" not in e]
    assert flow["level"] == "error" and flow["tags"]["selinon.flow_id"] == failed.id
    assert flow["message"] == f"flow 'main' failed: {failed.error}" or flow["logentry"]["message"].startswith(
        "flow 'main' failed"
    )
    assert len(received) == 3
    assert key not in caplog.text and key not in repr(failing.configuration.global_options)


# -- configuration errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trace_yaml", "expected"),
    [
        ("trace: null", "global: trace: must be false, a mapping of tracers such as {logging: true}"),
        ("trace: [logging]", "global: trace: must be false, a mapping of tracers such as {logging: true}, or a list"),
        ("trace: {loging: true}", "global: trace: unknown tracer 'loging'; did you mean 'logging'?"),
        ("trace: {logging: 'yes'}", "global: trace: logging: must be true or false, not a string"),
        ("trace: [{json: true}, {json: true}]", "global: trace: json: set twice; keep one"),
        ("trace: {function: {name: f}}", "global: trace: function: `import:` is missing; add it, as in {name: "),
        ("trace: {function: {name: f, import: m, args: 1}}", "global: trace: function: unknown key 'args'"),
        ("trace: {function: {name: 'a b', import: m}}", "`name:` must be a Python name such as trace_event"),
        ("trace: {function: {name: f, import: 'm m'}}", "`import:` must be a module name such as myapp.tracing"),
        ("trace: {sentry: {}}", "global: trace: sentry: `dsn:` is missing; add it"),
        ("trace: {sentry: {dsn: 'http://{bad key}@h/1'}}", "sentry: dsn: '{bad key}' is not an environment reference"),
        ("trace: {sentry: {dsn: [secret-dsn]}}", "global: trace: sentry: `dsn:` must be a non-empty string; quote it"),
        ("trace: {sentry: {dns: x}}", "global: trace: sentry: unknown key 'dns'; did you mean 'dsn'?"),
        ("trace: {storage: {name: Trace}}", "global: trace: storage: storage 'Trace' is not defined; did you mean"),
    ],
)
def test_a_bad_trace_section_is_one_line_naming_the_file_and_the_fix(
    tmp_path: Path, trace_yaml: str, expected: str
) -> None:
    (tmp_path / "nodes.yaml").write_text(
        f"storages: [{{name: Traces, classname: InMemoryStorage}}]\nglobal:\n  {trace_yaml}\n"
    )
    with pytest.raises(ConfigurationError) as error:
        flows.load([tmp_path / "nodes.yaml"])
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'nodes.yaml'}: global: trace"), message
    assert expected in message and "\n" not in message and "secret-dsn" not in message


@pytest.mark.parametrize(
    ("tracer", "expected"),
    [
        (
            {"function": {"name": "record", "import": "no_such_module"}},
            "trace.yaml: global: trace: function: cannot import 'no_such_module': ModuleNotFoundError: No module named "
            "'no_such_module'; check `import:` and that the module is on the Python path",
        ),
        (
            {"function": {"name": "missing", "import": "trace_functions"}},
            "trace.yaml: global: trace: function: module 'trace_functions' has no function 'missing'; check `name:`",
        ),
        (
            {"function": {"name": "NOT_A_FUNCTION", "import": "trace_functions"}},
            "trace.yaml: global: trace: function: trace_functions.NOT_A_FUNCTION is not a function; name one taking "
            "(event, details)",
        ),
        (
            {"storage": {"name": "Memory", "method": "trace"}},
            "trace.yaml: global: trace: storage: storage 'Memory' (InMemoryStorage) has no method 'trace'; set "
            "`method:` to one taking (event, details)",
        ),
        (
            {"sentry": {"dsn": "https://{SELINON_TEST_UNSET_KEY}@sentry.example.com/1"}},
            "trace.yaml: global: trace: sentry: dsn: environment variable SELINON_TEST_UNSET_KEY is not set",
        ),
    ],
)
def test_a_tracer_that_cannot_start_fails_the_executor_in_one_line(tracer: dict[str, Any], expected: str) -> None:
    if "sentry" in tracer and not in_ci():
        pytest.importorskip("sentry_sdk")
    with pytest.raises(ConfigurationError) as error:
        Executor(traced_system([tracer]))
    assert str(error.value).startswith(expected), str(error.value)


def test_a_dsn_never_shows(tmp_path: Path) -> None:
    (tmp_path / "nodes.yaml").write_text(
        "global:\n  trace: {sentry: {dsn: 'https://s3cr3tk3y@sentry.example.com/1'}}\n"
    )
    options = flows.load([tmp_path / "nodes.yaml"]).configuration.global_options
    assert options.trace[0].options["dsn"] == "https://s3cr3tk3y@sentry.example.com/1"
    assert "s3cr3tk3y" not in repr(options) and "s3cr3tk3y" not in str(options.trace)


def test_selinon_1x_config_traces_through_trace() -> None:
    import selinon

    heard: list[int] = []
    assert selinon.Trace is Trace
    selinon.Config.trace_by_func(lambda event, details: heard.append(event))
    assert run_flow().state == "succeeded"
    assert {Trace.event2str(event) for event in heard} >= FLOW_EVENTS_1X
