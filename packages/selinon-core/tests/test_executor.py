"""The local executor end to end on InMemoryStorage and Filesystem: storing, parents, conditions, retries,
store_error, node arguments, sub-flows, output schemas and lazy task resolution."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import flow_tasks
import pytest
from flow_tasks import RUNS, runs_per_task
from flowkit import MEMORY, by_name, flow, run, system, task

from selinon import SelinonMissingDataException, StoragePool, flows
from selinon.errors import ConfigurationError
from selinon.executor import Executor

START = {"from": [], "to": "Task1"}


def stored(task_name: str, task_id: str) -> Any:
    return StoragePool.retrieve("any", task_name, task_id)


def test_results_land_in_their_storages_and_reach_children(tmp_path: Path) -> None:
    files = {"name": "Files", "classname": "Filesystem", "configuration": {"path": str(tmp_path / "results")}}
    built = system(
        [task("Task1"), task("Task2", storage="Files"), task("Task3")],
        [flow("main", START, {"from": "Task1", "to": "Task2"}, {"from": "Task2", "to": "Task3"})],
        storages=[MEMORY, files],
    )
    result = run(built, "main", {"order": 7})
    assert result.state == "succeeded" and result.error is None
    nodes = by_name(result)
    first = {"task": "Task1", "args": {"order": 7}, "parents": {}}
    second = {"task": "Task2", "args": {"order": 7}, "parents": {"Task1": first}}
    assert stored("Task1", nodes["Task1"].id) == first
    record = json.loads((tmp_path / "results" / f"{nodes['Task2'].id}.json").read_text())
    assert record == {"flow_name": "main", "task_name": "Task2", "node_args": {"order": 7}, "result": second}
    assert nodes["Task2"].record_id == f"{nodes['Task2'].id}.json" and nodes["Task2"].storage == "Files"
    assert stored("Task3", nodes["Task3"].id)["parents"] == {"Task2": second}
    with pytest.raises(SelinonMissingDataException):  # Task2's result went to Files only
        StoragePool.get_connected_storage("Memory").retrieve("main", "Task2", nodes["Task2"].id)
    assert [name for name, _ in RUNS] == ["Task1", "Task2", "Task3"]
    assert nodes["Task3"].parent == {"Task2": nodes["Task2"].id}


def test_ids_and_names_reach_the_task() -> None:
    result = run(system([task("Task1", "Ids")], [flow("main", START)]), "main")
    node = by_name(result)["Task1"]
    assert stored("Task1", node.id) == {"flow": "main", "task_id": node.id, "dispatcher_id": result.id}


@pytest.mark.parametrize(("status", "branch"), [("ok", "Good"), ("bad", "Bad")])
def test_conditions_branch(status: str, branch: str) -> None:
    good = {"name": "fieldEqual", "node": "Task1", "args": {"key": "status", "value": "ok"}}
    built = system(
        [task("Task1", "Status"), task("Good"), task("Bad"), task("Code")],
        [
            flow(
                "main",
                START,
                {"from": "Task1", "to": "Good", "condition": good},
                {"from": "Task1", "to": "Bad", "condition": {"not": good}},
                {
                    "from": "Task1",
                    "to": "Code",
                    "condition": {
                        "and": [
                            {"name": "fieldEqual", "args": {"key": ["nested", "codes", 1], "value": 201}},
                            {"name": "argsFieldExist", "args": {"key": "code"}},
                        ]
                    },
                },
            )
        ],
    )
    result = run(built, "main", {"status": status, "code": 201})
    assert result.state == "succeeded"
    assert set(by_name(result)) == {"Task1", branch, "Code"}


def test_a_starting_condition_on_node_args() -> None:
    built = system(
        [task("Task1"), task("Task2")],
        [
            flow(
                "main",
                START,
                {
                    "from": [],
                    "to": "Task2",
                    "condition": {"name": "argsFieldEqual", "args": {"key": "both", "value": True}},
                },
            )
        ],
    )
    assert set(by_name(run(built, "main", {"both": True}))) == {"Task1", "Task2"}
    assert set(by_name(run(built, "main", {"both": False}))) == {"Task1"}


def test_a_join_fires_once_with_both_parents() -> None:
    built = system(
        [task("Task1"), task("Left"), task("Right"), task("Join")],
        [flow("main", START, {"from": "Task1", "to": ["Left", "Right"]}, {"from": ["Left", "Right"], "to": "Join"})],
    )
    result = run(built, "main")
    join = by_name(result)["Join"]
    assert set(stored("Join", join.id)["parents"]) == {"Left", "Right"}
    assert runs_per_task() == {"Task1": 1, "Left": 1, "Right": 1, "Join": 1}


def test_a_loop_with_a_way_out() -> None:
    loop = {
        "from": "Loop",
        "to": "Loop",
        "condition": {"not": {"name": "fieldEqual", "args": {"key": "n", "value": 3}}},
    }
    built = system([task("Loop", "Counter3")], [flow("main", {"from": [], "to": "Loop"}, loop)])
    result = run(built, "main")
    assert [stored("Loop", node.id)["n"] for node in result.tasks()] == [0, 1, 2, 3]


def test_tasks_run_concurrently() -> None:
    flow_tasks.barrier = threading.Barrier(3, timeout=10)
    built = system(
        [task("Task1"), *(task(f"T{i}", "Together") for i in range(3))],
        [flow("main", START, {"from": "Task1", "to": ["T0", "T1", "T2"]})],
    )
    assert run(built, "main", concurrency=3).state == "succeeded"


def test_a_raising_task_is_retried_then_succeeds() -> None:
    built = system(
        [task("Task1", "FailFirst", max_retry=2, retry_countdown=0.01), task("Task2")],
        [flow("main", START, {"from": "Task1", "to": "Task2"})],
    )
    result = run(built, "main", {"failures": 2})
    nodes = by_name(result)
    assert result.state == "succeeded" and nodes["Task1"].tries == 3
    assert stored("Task1", nodes["Task1"].id) == {"tries": 3}
    assert RUNS[:3] == [("Task1", nodes["Task1"].id)] * 3  # one task id across its tries
    assert runs_per_task()["Task2"] == 1


def test_retry_countdown_is_waited() -> None:
    import time

    built = system([task("Task1", "FailFirst", max_retry=1, retry_countdown=0.3)], [flow("main", START)])
    began = time.monotonic()
    assert run(built, "main", {"failures": 1}).state == "succeeded"
    assert time.monotonic() - began >= 0.3


def test_a_task_can_ask_for_a_retry() -> None:
    built = system([task("Task1", "AskRetry", max_retry=1)], [flow("main", START)])
    node = by_name(run(built, "main"))["Task1"]
    assert node.tries == 2 and stored("Task1", node.id) == {"tries": 2}
    built = system([task("Task1", "AskRetry")], [flow("main", START)])
    result = run(built, "main")
    assert result.state == "failed" and "asked to be retried with no tries left (max_retry: 0)" in str(result.error)


def test_a_task_that_keeps_failing_fails_the_flow_and_its_error_is_stored() -> None:
    built = system(
        [task("Task1", "Fail", max_retry=1, retry_countdown=0.01), task("Task2"), task("Side")],
        [flow("main", {"from": [], "to": ["Task1", "Side"]}, {"from": "Task1", "to": "Task2"})],
    )
    result = run(built, "main", {"n": 1})
    nodes = by_name(result)
    assert result.state == "failed"
    assert result.error == "task 'Task1' failed: ValueError: boom in Task1"
    assert nodes["Task1"].state == "failed" and nodes["Task1"].tries == 2 and nodes["Task1"].error_record == "stored"
    assert "Task2" not in nodes and nodes["Side"].state == "succeeded"  # what ran is kept; nothing new starts
    error = StoragePool.get_connected_storage("Memory").retrieve_error("main", "Task1", nodes["Task1"].id)
    assert error["type"] == "ValueError" or error["type"].endswith(".ValueError")
    assert error["message"] == "boom in Task1" and "flow_tasks.py" in error["traceback"]
    with pytest.raises(SelinonMissingDataException):
        stored("Task1", nodes["Task1"].id)


def test_store_error_not_supported_by_the_adapter() -> None:
    storage = {"name": "Old", "classname": "NoErrors", "import": "fault_adapters"}
    built = system([task("Task1", "Fail", storage="Old")], [flow("main", START)], storages=[storage])
    result = run(built, "main")
    node = by_name(result)["Task1"]
    assert result.state == "failed" and node.error_record == "not supported" and node.record_id is None


def test_read_only_and_storageless_tasks_store_nothing() -> None:
    built = system(
        [task("Task1", "Storage", storage_read_only=True), task("Task2", "Storage", storage=None)],
        [flow("main", {"from": [], "to": ["Task1", "Task2"]})],
    )
    result = run(built, "main")
    nodes = by_name(result)
    assert result.state == "succeeded" and nodes["Task1"].record_id is None and nodes["Task2"].record_id is None
    with pytest.raises(SelinonMissingDataException):
        StoragePool.get_connected_storage("Memory").retrieve("main", "Task1", nodes["Task1"].id)


def test_storage_property(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    monkeypatch.setattr(flow_tasks.Storage, "work", lambda self, node_args: seen.append(self.storage))
    built = system(
        [task("Task1", "Storage", storage_read_only=True), task("Task2", "Storage", storage=None)],
        [flow("main", {"from": [], "to": "Task1"}, {"from": "Task1", "to": "Task2"})],
    )
    run(built, "main")
    assert seen == [StoragePool.get_storage("Memory"), None] and seen[0].is_connected()


def test_storage_task_name_alias() -> None:
    built = system(
        [task("Task1", storage_task_name="Alias"), task("Task2")],
        [flow("main", START, {"from": "Task1", "to": "Task2"})],
    )
    nodes = by_name(run(built, "main"))
    record = StoragePool.get_connected_storage("Memory")._records[nodes["Task1"].id]
    assert record["task_name"] == "Alias"
    assert stored("Task2", nodes["Task2"].id)["parents"]["Task1"]["task"] == "Task1"


def test_node_args_from_first() -> None:
    built = system(
        [task("Task1", "Number"), task("Task2")],
        [flow("main", START, {"from": "Task1", "to": "Task2"}, node_args_from_first=True)],
    )
    result = run(built, "main", {"value": 5})
    nodes = by_name(result)
    assert stored("Task2", nodes["Task2"].id)["args"] == {"number": 5} and result.node_args == {"number": 5}


@pytest.mark.parametrize(("propagate", "expected"), [(True, {"k": 1}), (False, None), (["sub"], {"k": 1})])
def test_propagate_node_args_to_a_subflow(propagate: Any, expected: Any) -> None:
    built = system(
        [task("Task1"), task("Inner"), task("After", "Ids")],
        [
            flow(
                "main",
                START,
                {"from": "Task1", "to": "sub"},
                {"from": "sub", "to": "After"},
                propagate_node_args=propagate,
            ),
            flow("sub", {"from": [], "to": "Inner"}),
        ],
    )
    result = run(built, "main", {"k": 1})
    nodes = by_name(result)
    assert result.state == "succeeded"
    assert nodes["Inner"].flow_run.name == "sub" and nodes["Inner"].flow_run.parent_node is not None
    assert stored("Inner", nodes["Inner"].id)["args"] == expected
    assert stored("After", nodes["After"].id)["flow"] == "main"
    assert nodes["After"].parent == {"sub": nodes["Inner"].flow_run.id}


def test_a_failing_subflow_fails_its_parent() -> None:
    built = system(
        [task("Task1"), task("Inner", "Fail"), task("After")],
        [
            flow("main", START, {"from": "Task1", "to": "sub"}, {"from": "sub", "to": "After"}),
            flow("sub", {"to": "Inner"}),
        ],
    )
    result = run(built, "main")
    assert result.state == "failed"
    assert result.error == "sub-flow 'sub' failed: task 'Inner' failed: ValueError: boom in Inner"
    assert "After" not in by_name(result)


def test_a_flow_whose_start_condition_is_false_succeeds_empty() -> None:
    built = system([task("Task1")], [flow("main", {"to": "Task1", "condition": {"name": "alwaysFalse"}})])
    result = run(built, "main")
    assert result.state == "succeeded" and list(result.tasks()) == []


def test_output_schema_checks_results_before_storing(tmp_path: Path) -> None:
    pytest.importorskip("jsonschema")
    schema = {"type": "object", "properties": {"number": {"type": "integer"}}, "required": ["number"]}
    built = system([task("Task1", "Number", output_schema=schema)], [flow("main", START)])
    node = by_name(run(built, "main", {"value": 3}))["Task1"]
    assert stored("Task1", node.id) == {"number": 3}
    result = run(built, "main", {"value": "three"})
    node = by_name(result)["Task1"]
    assert result.state == "failed"
    assert (
        node.error
        == "OutputSchemaError: the result does not match output_schema at number: 'three' is not of type 'integer'"
    )
    assert node.error_record == "stored"
    (tmp_path / "schema.json").write_text(json.dumps({"type": "string"}))
    nodes_file = str(tmp_path / "nodes.yaml")  # a schema path is relative to the YAML file naming it
    from selinon import flows

    built = flows.from_documents(
        [(nodes_file, {"storages": [MEMORY], "tasks": [task("Task1", "Number", output_schema="schema.json")]}),
         ("flows.yaml", {"flow-definitions": [flow("main", START)]})]
    )  # fmt: skip
    assert "'type': 'string'" not in str(run(built, "main", {"value": 1}).error)
    assert "is not of type 'string'" in str(run(built, "main", {"value": 1}).error)


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": 5}, "nodes.yaml: task 'Task1': output_schema is not a valid JSON schema: 5 is not valid"),
        ("missing.json", "nodes.yaml: task 'Task1': cannot read output_schema 'missing.json'"),
    ],
)
def test_bad_output_schema(schema: Any, message: str) -> None:
    pytest.importorskip("jsonschema")
    built = system([task("Task1", "Number", output_schema=schema)], [flow("main", START)])
    with pytest.raises(ConfigurationError) as error:
        run(built, "main")
    assert str(error.value).startswith(message)


def test_output_schema_without_jsonschema(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jsonschema", None)
    built = system([task("Task1", "Number", output_schema={"type": "object"})], [flow("main", START)])
    with pytest.raises(ConfigurationError) as error:
        run(built, "main")
    assert str(error.value) == (
        "nodes.yaml: task 'Task1': `output_schema:` needs the jsonschema package; install it: "
        "pip install 'selinon-core[schema]'"
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"name": "Task1", "storage": "Memory"},
            "nodes.yaml: task 'Task1': `import:` is missing; name the module that defines class 'Task1'",
        ),
        (
            task("Task1", "Missing"),
            "nodes.yaml: task 'Task1': module 'flow_tasks' has no class 'Missing'; set `classname:`",
        ),
        (
            task("Task1", "NotATask"),
            "nodes.yaml: task 'Task1': flow_tasks.NotATask is not a SelinonTask; derive it from selinon.task.SelinonTask",
        ),
        (
            {"name": "Task1", "import": "no_such_module_here"},
            "nodes.yaml: task 'Task1': cannot import 'no_such_module_here': ModuleNotFoundError: No module named 'no_such_module_here'",
        ),
    ],
)
def test_task_classes_are_resolved_before_anything_runs(entry: dict[str, Any], message: str) -> None:
    built = system([task("Task0"), entry], [flow("main", {"to": "Task0"}, {"from": "Task0", "to": "Task1"})])
    with pytest.raises(ConfigurationError) as error:
        run(built, "main")
    assert str(error.value).startswith(message)
    assert RUNS == []


def test_unknown_flow() -> None:
    built = system([task("Task1")], [flow("main", START)])
    with pytest.raises(ConfigurationError, match="^no flow named 'other'; defined flows: main$"):
        Executor(built).run("other")


def test_progress_callback_sees_every_state() -> None:
    states: list[tuple[str, ...]] = []
    built = system(
        [task("Task1", "FailFirst", max_retry=1), task("Task2")],
        [flow("main", START, {"from": "Task1", "to": "Task2"})],
    )
    flow_tasks.RUNS.clear()
    Executor(built, on_change=lambda root: states.append(tuple(n.state for n in root.tasks()))).run(
        "main", {"failures": 1}
    )
    assert ("running",) in states and ("retrying",) in states and states[-1] == ("succeeded", "succeeded")


@pytest.mark.parametrize(
    ("node_args", "branches"),
    [
        (
            {"url": "https://example.com/a", "items": [1, 2, 3], "n": 4, "text": "ship it"},
            {"Https", "Many", "Even", "Env"},
        ),
        ({"url": "http://example.org/a", "items": [], "n": 3, "text": "hold"}, {"Few", "Odd", "Env"}),
    ],
)
def test_built_in_and_custom_predicates_choose_the_branches(
    monkeypatch: pytest.MonkeyPatch, node_args: dict[str, Any], branches: set[str]
) -> None:
    monkeypatch.setenv("SELINON_TEST_BRANCH", "on")
    on_task1 = {
        "Https": {
            "and": [
                {"name": "fieldUrlScheme", "args": {"key": ["args", "url"], "scheme": "https"}},
                {"name": "fieldUrlNetloc", "args": {"key": ["args", "url"], "netloc": "example.com"}},
            ]
        },
        "Many": {
            "and": [
                {"name": "isDict"},
                {"name": "fieldLenGreaterEqual", "args": {"key": ["args", "items"], "length": 3}},
            ]
        },
        "Few": {"name": "fieldLenLess", "args": {"key": ["args", "items"], "length": 3}},
        "Even": {"name": "isEven", "args": {"key": ["args", "n"]}},  # from flow_predicates
        "Odd": {"not": {"name": "isEven", "args": {"key": ["args", "n"]}}},
    }
    starting = {
        "Env": {
            "or": [
                {"name": "argsFieldContain", "args": {"key": "items", "value": 9}},
                {"name": "envExist", "args": {"env": "SELINON_TEST_BRANCH"}},
            ]
        },
        "Never": {
            "and": [
                {"name": "argsHasWord", "args": {"word": "ship"}},
                {"name": "argsFieldGreater", "args": {"key": "n", "value": 10}},
            ]
        },
    }
    names = [*on_task1, *starting]
    nodes = {
        "storages": [MEMORY],
        "tasks": [task(n) for n in ["Task1", *names]],
        "global": {"predicates_module": "flow_predicates"},
    }
    edges = [
        START,
        *({"from": "Task1", "to": name, "condition": condition} for name, condition in on_task1.items()),
        *({"from": [], "to": name, "condition": condition} for name, condition in starting.items()),
    ]
    built = flows.from_documents([("nodes.yaml", nodes), ("flows.yaml", {"flow-definitions": [flow("main", *edges)]})])
    result = run(built, "main", node_args)
    assert result.state == "succeeded", result.error
    assert set(by_name(result)) == {"Task1", *branches}
