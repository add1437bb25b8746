"""`selinon run` and `selinon results` on the example flow: output, exit codes (0, 1 flow failed or result
missing, 2 usage or configuration) and the records on disk."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from clikit import run

FLOW = Path(__file__).parents[3] / "examples" / "flow"
CONFIG = ["-c", str(FLOW / "nodes.yaml"), "-c", str(FLOW / "flows.yaml")]
ORDER = {"order": 1042, "express": True, "items": [{"sku": "book", "price": 12.5, "quantity": 2}]}


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example's Filesystem path is relative: run where its results can go; keep sys.path as it was."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return tmp_path / "examples" / "flow" / "results"


def test_run_the_example_flow_and_read_results_back(capsys: pytest.CaptureFixture[str], in_tmp: Path) -> None:
    code, out, err = run(capsys, "run", *CONFIG, "orderFlow", "--node-args", json.dumps(ORDER), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["state"] == "succeeded" and report["error"] is None
    tasks = {t["task"]: t for t in report["tasks"]}
    assert set(tasks) == {"ValidateOrder", "ReserveStock", "ExpressShipping", "Confirm"}
    assert tasks["ReserveStock"]["tries"] == 2 and all(t["storage"] == "Orders" for t in tasks.values())
    assert "ReserveStock" in err and "the warehouse is busy" in err  # the retry is reported on stderr
    confirm = tasks["Confirm"]
    record = json.loads((in_tmp / confirm["record_id"]).read_text())
    assert record["flow_name"] == "orderFlow" and record["node_args"] == ORDER
    code, out, _ = run(capsys, "results", "get", "-c", str(FLOW / "nodes.yaml"), "Confirm", confirm["task_id"])
    assert code == 0
    assert json.loads(out) == {
        "order": 1042,
        "reservation": "R-1042",
        "message": "2 item(s) reserved; shipping by courier (9.90), arriving in 1 day",
    }
    code, out, _ = run(capsys, "results", "delete", "-c", str(FLOW / "nodes.yaml"), "Confirm", confirm["task_id"])
    assert code == 0 and out == f"deleted the record of task Confirm with id {confirm['task_id']}\n"
    code, out, err = run(capsys, "results", "get", "-c", str(FLOW / "nodes.yaml"), "Confirm", confirm["task_id"])
    assert code == 1 and out == ""
    missing = (
        f"selinon: storage 'Orders' holds no record of task Confirm with task id {confirm['task_id']!r}; check the id "
        "(`selinon run` prints each task's)\n"
    )
    assert err == missing
    code, _, err = run(capsys, "results", "delete", "-c", str(FLOW / "nodes.yaml"), "Confirm", confirm["task_id"])
    assert code == 1 and err == missing


def test_run_prints_a_summary_table(capsys: pytest.CaptureFixture[str]) -> None:
    order = {**ORDER, "express": False}
    code, out, err = run(capsys, "run", *CONFIG, "orderFlow", "--node-args", json.dumps(order), "--concurrency", "1")
    lines = out.splitlines()
    assert code == 0 and "\x1b" not in out  # the graph is drawn on terminals only
    # Elsewhere, one plain line on stderr per change of a task's state.
    progress: dict[str, list[str]] = {}  # each task's lines, in order (tasks run side by side)
    for line in err.splitlines():
        if line.startswith("selinon: orderFlow: "):
            task, state = line.removeprefix("selinon: orderFlow: ").split(" ", 1)
            progress.setdefault(task, []).append(state)
    assert progress == {
        "ValidateOrder": ["running", "done"],
        "ReserveStock": ["running", "retrying (try 1 failed)", "running (try 2)", "done after 2 tries"],
        "StandardShipping": ["running", "done"],
        "Confirm": ["running", "done"],
    }
    assert lines[0].split() == ["TASK", "STATE", "TRIES", "STORAGE", "RECORD", "ID", "TASK", "ID"]
    assert {line.split()[0] for line in lines[1:-1]} == {"ValidateOrder", "ReserveStock", "StandardShipping", "Confirm"}
    assert all(line.split()[1] == "succeeded" for line in lines[1:-1])
    assert lines[-1].startswith("flow orderFlow (") and lines[-1].endswith(") succeeded")


def test_a_failed_flow_exits_1_and_its_error_can_be_read(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "run", *CONFIG, "orderFlow", "--node-args", '{"order": 7, "items": []}')
    assert code == 1
    assert "ValidateOrder: ValueError: order 7 has no items (error record: stored)" in out
    assert out.splitlines()[-1].endswith("failed: task 'ValidateOrder' failed: ValueError: order 7 has no items")
    task_id = out.splitlines()[1].split()[-1]
    code, out, err = run(capsys, "results", "get", "-c", str(FLOW / "nodes.yaml"), "ValidateOrder", task_id)
    assert code == 1 and err == f"selinon: task ValidateOrder ({task_id}) failed: order 7 has no items\n"
    assert json.loads(out)["error"]["message"] == "order 7 has no items"


def test_progress_on_a_terminal(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, err = run(capsys, "run", *CONFIG, "orderFlow", "--node-args", json.dumps(ORDER))
    assert code == 0
    # The graph, redrawn as the flow moves (test_progress.py tests the drawing), then erased for the report.
    assert "    Confirm           waiting\n" in out and "  + ReserveStock      done after 2 tries\n" in out
    report = out.rsplit("\x1b[J", 1)[1]
    assert report.splitlines()[0].split()[0] == "TASK" and report.splitlines()[-1].endswith("succeeded")
    assert "selinon: orderFlow:" not in err  # no plain lines besides the graph


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([*CONFIG, "orderFlw"], "selinon: error: no flow named 'orderFlw'; did you mean 'orderFlow'?\n"),
        ([*CONFIG, "orderFlow", "--node-args", "{"], "selinon: error: Invalid value for '--node-args': not JSON"),
        ([*CONFIG, "orderFlow", "--concurrency", "0"], "selinon: error: Invalid value for '--concurrency'"),
        (["-c", str(FLOW / "nodes.yaml"), "orderFlow"], "flow 'orderFlow' is listed under `flows:` but not defined"),
        (
            ["-c", "missing.yaml", "orderFlow"],
            "selinon: error: missing.yaml: cannot read the file: No such file or directory\n",
        ),
    ],
)
def test_usage_and_configuration_errors_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, "run", *argv)
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1


def test_results_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "results", "get", "-c", str(FLOW / "nodes.yaml"), "Unknown", "id")
    assert code == 2 and err == "selinon: error: task 'Unknown' is not configured; add it under `tasks:`\n"
    code, _, err = run(capsys, "results", "get", "-c", str(FLOW / "nodes.yaml"), "Confirm", "no-such-id")
    assert code == 1 and err == (
        "selinon: storage 'Orders' holds no record of task Confirm with task id 'no-such-id'; check the id "
        "(`selinon run` prints each task's)\n"
    )
    code, _, err = run(capsys, "results", "get", "-c", str(FLOW / "nodes.yaml"), "Confirm", "x", "--flow", "orderFlow")
    assert err.startswith(
        "selinon: storage 'Orders' holds no record of task Confirm with task id 'x' in flow 'orderFlow';"
    )


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "run " in out and "results " in out


def test_a_predicates_module_beside_the_yaml_is_imported(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "beside_predicates.py").write_text("def argsSaysYes(node_args):\n    return node_args == 'yes'\n")
    monkeypatch.delitem(sys.modules, "beside_predicates", raising=False)
    (tmp_path / "nodes.yaml").write_text(
        "global: {predicates_module: beside_predicates}\n"
        "storages: [{name: Memory, classname: InMemoryStorage}]\n"
        "tasks: [{name: A, import: flow_tasks, classname: Echo, storage: Memory},"
        " {name: B, import: flow_tasks, classname: Echo, storage: Memory}]\n"
        "flow-definitions:\n"
        "  - name: main\n"
        "    edges: [{from: [], to: A}, {from: A, to: B, condition: {name: argsSaysYes}}]\n"
    )
    for answer, ran in (("yes", {"A", "B"}), ("no", {"A"})):
        code, out, err = run(
            capsys, "run", "-c", str(tmp_path / "nodes.yaml"), "main", "--node-args", f'"{answer}"', "--json"
        )
        assert code == 0, err
        assert {t["task"] for t in json.loads(out)["tasks"]} == ran
    sys.modules.pop("beside_predicates", None)


def _nodes(tmp_path: Path, path: str) -> str:
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(
        f"storages: [{{name: Files, classname: Filesystem, configuration: {{path: '{path}'}}}}]\n"
        "tasks: [{name: T, storage: Files}]\n"
    )
    return str(nodes)


@pytest.mark.parametrize("command", ["get", "delete"])
def test_results_exit_1_when_the_storage_cannot_be_reached(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    (tmp_path / "a-file").write_text("")
    code, out, err = run(capsys, "results", command, "-c", _nodes(tmp_path, str(tmp_path / "a-file" / "x")), "T", "i")
    assert code == 1 and out == ""  # a failure, not a usage error (2)
    assert err.startswith("selinon: error: storage 'Files' (Filesystem): connect failed: ") and err.count("\n") == 1


def test_results_get_prints_only_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A record written before the JSON policy (NaN as a bare token, as Filesystem wrote it) is not printed as
    something that is not JSON."""
    from selinon.storages.filesystem import file_name

    results = tmp_path / "results"
    results.mkdir()
    (results / file_name("old")).write_text('{"flow_name": "f", "task_name": "T", "result": {"x": [1, NaN]}}')
    code, out, err = run(capsys, "results", "get", "-c", _nodes(tmp_path, str(results)), "T", "old")
    assert code == 1 and out == ""
    assert err == "selinon: cannot print the result of task T (old) as JSON: result['x'][1]: nan is not a JSON number; store None or a string in its place\n"  # fmt: skip


def test_run_selected_tasks_only(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", *CONFIG, "orderFlow", "--node-args", json.dumps(ORDER), "--json", "--select", "ExpressShipping"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert {t["task"] for t in json.loads(out)["tasks"]} == {"ValidateOrder", "ExpressShipping"}
    code, out, err = run(capsys, *argv, "--run-subsequent")
    assert code == 0, err
    assert {t["task"] for t in json.loads(out)["tasks"]} == {"ValidateOrder", "ExpressShipping"}  # Confirm needs more
    code, out, err = run(capsys, *argv, "--select", "ReserveStock", "--run-subsequent")
    assert code == 0, err
    assert {t["task"] for t in json.loads(out)["tasks"]} == {
        "ValidateOrder",
        "ReserveStock",
        "ExpressShipping",
        "Confirm",
    }
    code, _, err = run(capsys, "run", *CONFIG, "orderFlow", "--run-subsequent")
    assert code == 2 and "--follow-subflows and --run-subsequent go with --select TASK" in err
    code, _, err = run(capsys, "run", *CONFIG, "orderFlow", "--select", "Nope")
    assert code == 2 and "selective run: 'Nope' is not a task of the configuration" in err


def test_results_of_one_storage_need_no_variable_of_another(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(
        "storages:\n"
        "  - {name: Here, classname: Filesystem, configuration: {path: here}}\n"
        "  - {name: Elsewhere, classname: Filesystem, configuration: {path: '/{SELINON_TEST_NEVER_SET}/x'}}\n"
        "tasks:\n"
        "  - {name: Local, storage: Here}\n"
        "  - {name: Remote, storage: Elsewhere}\n"
    )
    code, _, err = run(capsys, "results", "get", "-c", str(nodes), "Local", "some-id")
    assert code == 1 and "storage 'Here' holds no record of task Local with task id 'some-id'" in err
    code, _, err = run(capsys, "results", "get", "-c", str(nodes), "Remote", "some-id")
    assert code == 2 and "storage 'Elsewhere': configuration.path: environment variable SELINON_TEST_NEVER_SET" in err


def test_a_retrying_task_shows_its_tries_so_far_in_the_report() -> None:
    """The local executor's report while ReserveStock waits for its second try (the warehouse is busy at first)."""
    from selinon import flows
    from selinon.cli_run import _report
    from selinon.executor import Executor, FlowRun

    seen: list[dict[str, object]] = []

    def snapshot(root: FlowRun) -> None:
        seen.extend(t for t in _report(root)["tasks"] if t["task"] == "ReserveStock")

    sys.path.insert(0, str(FLOW))
    system = flows.load([FLOW / "nodes.yaml", FLOW / "flows.yaml"])
    root = Executor(system, on_change=snapshot).run("orderFlow", ORDER)
    assert root.state == "succeeded"
    states = [(t["state"], t["tries"]) for t in seen]
    assert ("retrying", 1) in states and ("running", 2) in states and states[-1] == ("succeeded", 2)
    assert ("retrying", 0) not in states and ("running", 0) not in states


OWNED = """
storages:
  - {name: Files, classname: Filesystem, configuration: {path: files}}
  - {name: Plain, classname: Plain, import: plain_storage}
tasks:
  - {name: A, storage: Files, storage_task_name: AStored}
  - {name: B, storage: Files}
  - {name: C, storage: Plain}
  - {name: D, storage: Plain}
"""
PLAIN_STORAGE = '''
from selinon.errors import SelinonMissingDataException
from selinon.storage import DataStorage

RECORDS = {}


class Plain(DataStorage):
    """Keeps results by task id and nothing else: it cannot tell which task stored a record."""

    def connect(self): pass
    def disconnect(self): pass
    def is_connected(self): return True
    def store(self, node_args, flow_name, task_name, task_id, result):
        RECORDS[task_id] = result
    def retrieve(self, flow_name, task_name, task_id):
        if task_id not in RECORDS:
            raise SelinonMissingDataException(task_id)
        return RECORDS[task_id]
'''


def test_results_get_prints_a_record_only_for_the_task_and_flow_that_stored_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from selinon.pool import StoragePool

    (tmp_path / "nodes.yaml").write_text(OWNED)
    (tmp_path / "plain_storage.py").write_text(PLAIN_STORAGE)
    sys.path.insert(0, str(tmp_path))
    nodes = ["-c", str(tmp_path / "nodes.yaml")]
    StoragePool.configure(tmp_path / "nodes.yaml")
    StoragePool.set(None, "flowX", "A", "id-a", {"a": 1})
    try:
        raise ValueError("B broke")
    except ValueError:
        StoragePool.set_error(None, "flowX", "B", "id-b", sys.exc_info())
    StoragePool.set(None, "flowX", "C", "id-c", {"c": 3})
    StoragePool.disconnect_all()

    code, out, err = run(capsys, "results", "get", *nodes, "A", "id-a")
    assert (code, json.loads(out), err) == (0, {"a": 1}, "")
    code, out, err = run(capsys, "results", "get", *nodes, "A", "id-a", "--flow", "flowX")
    assert (code, json.loads(out), err) == (0, {"a": 1}, "")
    code, out, err = run(capsys, "results", "get", *nodes, "B", "id-a")
    assert code == 1 and out == ""
    assert err == (
        "selinon: the record of id 'id-a' in storage 'Files' was stored by task 'AStored' in flow 'flowX', not by "
        "task 'B'; ask for the task that stored it\n"
    )
    code, out, err = run(capsys, "results", "get", *nodes, "A", "id-b")  # B's error is not shown as A's
    assert code == 1 and out == ""
    assert err == (
        "selinon: the record of id 'id-b' in storage 'Files' was stored by task 'B' in flow 'flowX', not by task "
        "'A' (stored as 'AStored'); ask for the task that stored it\n"
    )
    code, out, err = run(capsys, "results", "get", *nodes, "A", "id-a", "--flow", "flowY")
    assert code == 1 and out == ""
    assert err == (
        "selinon: the record of id 'id-a' in storage 'Files' was stored in flow 'flowX', not 'flowY'; drop --flow "
        "or name that flow\n"
    )
    # A storage that keeps no names: the result, and one line saying it was not checked.
    for task in ("C", "D"):
        code, out, err = run(capsys, "results", "get", *nodes, task, "id-c")
        assert (code, json.loads(out)) == (0, {"c": 3})
        assert err == (
            "selinon: warning: storage 'Plain' (Plain) cannot tell which task stored a record: the record of id "
            f"'id-c' is shown unchecked; make sure the id is task {task}'s\n"
        )
    code, out, err = run(capsys, "results", "get", *nodes, "C", "missing")
    assert code == 1 and out == "" and err.count("\n") == 1 and "holds no record of task C" in err
    sys.modules.pop("plain_storage", None)
