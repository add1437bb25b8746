"""Validation of `flows:` and `flow-definitions:`: one line naming the file, the flow, the edge and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from flowkit import flow, system, task

from selinon import flows
from selinon.errors import ConfigurationError
from selinon.executor import Executor
from selinon.flows.conditions import ALWAYS, Leaf

TASKS = [
    task("Task1"),
    task("Task2", max_retry=2, retry_countdown=0.5),
    task("NoStorage", storage=None),
    task("ReadOnly", storage_read_only=True),
]
START = {"from": [], "to": "Task1"}


def leaf(name: str, **args: Any) -> dict[str, Any]:
    return {"name": name, "args": args}


def test_a_valid_flow_with_its_options() -> None:
    built = system(
        TASKS,
        [
            flow(
                "main",
                START,
                {"from": "Task1", "to": ["Task2", "sub"], "condition": {"name": "fieldExist", "args": {"key": "a"}}},
                max_retry=3,
                retry_countdown=0.25,
                propagate_node_args=["sub"],
            ),
            flow("sub", {"to": "Task2"}, node_args_from_first=True),
        ],
    )
    main = built.flow("main")
    assert main.edges[0].from_ == () and main.edges[0].to == ("Task1",) and main.edges[0].condition is ALWAYS
    assert main.edges[1].condition == Leaf("fieldExist", "Task1", {"key": "a"})
    assert (main.max_retry, main.retry_countdown, main.propagate_node_args) == (3, 0.25, ("sub",))
    assert main.propagates_to("sub") and built.flow("sub").node_args_from_first
    spec = built.tasks["Task2"]
    assert (spec.import_path, spec.classname, spec.max_retry, spec.retry_countdown) == ("flow_tasks", "Echo", 2, 0.5)


def test_a_cycle_with_a_condition_is_allowed() -> None:
    loop = {
        "from": "Task1",
        "to": "Task1",
        "condition": {"not": {"name": "fieldEqual", "args": {"key": "n", "value": 3}}},
    }
    assert system(TASKS, [flow("main", START, loop)]).flow("main").edges[1].to == ("Task1",)


def test_flows_list_and_definitions_in_separate_files(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(
        yaml.safe_dump(
            {"storages": [{"name": "Memory", "classname": "InMemoryStorage"}], "tasks": TASKS, "flows": ["main"]}
        )
    )
    flow_file = tmp_path / "flows.yaml"
    flow_file.write_text(yaml.safe_dump({"flow-definitions": [flow("main", START)]}))
    built = flows.load([nodes, flow_file])
    assert list(built.flows) == ["main"] and built.flow("main").source == str(flow_file)
    assert set(built.configuration.tasks) == {"Task1", "Task2", "NoStorage", "ReadOnly"}
    with pytest.raises(ConfigurationError) as error:
        flows.load([nodes])
    assert str(error.value) == (
        f"{nodes}: flow 'main' is listed under `flows:` but not defined; pass the file that defines it under "
        "`flow-definitions:` (another -c option)"
    )
    flow_file.write_text("flow-definitions:\n  - name: main\n    edges: [{from: [], to: Task1}\n")
    with pytest.raises(ConfigurationError, match=r"flows.yaml:4:1: YAML syntax error"):
        flows.load([nodes, flow_file])


def test_from_configuration() -> None:
    built = system(TASKS, [flow("main", START)])
    again = flows.from_configuration(built.configuration)
    assert again.flow("main").edges == built.flow("main").edges


def test_unknown_flow_suggests() -> None:
    with pytest.raises(ConfigurationError, match=r"^no flow named 'mian'; did you mean 'main'\?$"):
        system(TASKS, [flow("main", START)]).flow("mian")


W = "flows.yaml: flow 'main'"


@pytest.mark.parametrize(
    ("definitions", "message"),
    [
        (
            [flow("main", START, {"from": "Task1", "to": "Tsk2"})],
            f"{W}: edges[1]: `to:` names unknown node 'Tsk2'; did you mean 'Task2'?",
        ),
        (
            [flow("main", {"from": "Nothing", "to": "Task1"}, START)],
            f"{W}: edges[0]: `from:` names unknown node 'Nothing'; define it under `tasks:` or `flow-definitions:`",
        ),
        (
            [
                flow(
                    "main",
                    {"to": "NoStorage"},
                    {"from": "NoStorage", "to": "Task2", "condition": {"name": "fieldExist", "args": {"key": "a"}}},
                )
            ],
            f"{W}: edges[1]: condition reads the result of task 'NoStorage', which has no storage; add `storage:` to task 'NoStorage' in nodes.yaml",
        ),
        (
            [
                flow(
                    "main",
                    {"to": "ReadOnly"},
                    {"from": "ReadOnly", "to": "Task2", "condition": {"name": "fieldExist", "args": {"key": "a"}}},
                )
            ],
            f"{W}: edges[1]: condition reads the result of task 'ReadOnly', whose storage is read-only",
        ),
        (
            [
                flow(
                    "main",
                    {"to": "sub"},
                    {"from": "sub", "to": "Task2", "condition": {"name": "fieldExist", "args": {"key": "a"}}},
                ),
                flow("sub", START),
            ],
            f"{W}: edges[1]: condition reads the result of 'sub', which is a flow",
        ),
        ([flow("main", {"from": "Task1", "to": "Task2"})], f"{W}: no starting edge; add one with an empty `from:`"),
        ([flow("main")], f"{W}: `edges:` must be a non-empty list"),
        ([flow("main", START, failures={})], f"{W}: `failures:` must be a list of {{nodes: [...], fallback: [...]}}"),
        (
            [flow("main", START, cache_config={})],
            f"{W}: `cache_config:` is not a Selinon flow option; did you mean `cache:`?",
        ),
        ([flow("main", START, max_retries=1)], f"{W}: unknown key 'max_retries'; did you mean 'max_retry'?"),
        ([flow("main", START, max_retry=-1)], f"{W}: `max_retry:` must be a whole number, 0 or more, not -1"),
        (
            [flow("main", START, retry_countdown="soon")],
            f"{W}: `retry_countdown:` must be a number of seconds from 0 to 86,400, not 'soon'",
        ),
        (
            [flow("main", START, {"to": "Task2"}, node_args_from_first=True)],
            f"{W}: `node_args_from_first: true` needs exactly one starting task",
        ),
        (
            [flow("main", START, propagate_node_args=["Task1"])],
            f"{W}: `propagate_node_args:` names 'Task1', which is not among the sub-flows this flow starts; they are: none",
        ),
        (
            [flow("main", START, propagate_node_args=3)],
            f"{W}: `propagate_node_args:` must be true, false, or a list of node names",
        ),
        (
            [flow("main", {"from": [], "to": "Task1", "foreach": {}})],
            f"{W}: edges[0]: foreach: `import:` is missing; name the module that defines the function",
        ),
        ([flow("main", {"from": [], "too": "Task1"})], f"{W}: edges[0]: unknown key 'too'; did you mean 'to'?"),
        (
            [
                flow(
                    "main",
                    START,
                    {"from": "Task1", "to": "Task2", "condition": leaf("fieldLenEqual", key="k", length="3")},
                )
            ],
            f"{W}: edges[1]: condition: `length:` of fieldLenEqual must be a whole number, 0 or more (without quotes), not '3'",
        ),
        (
            [
                flow(
                    "main",
                    START,
                    {"from": "Task1", "to": "Task2", "condition": {"not": leaf("fieldExist", key={"a": 1})}},
                )
            ],
            f"{W}: edges[1]: condition.not: `key:` of fieldExist must be a key: a string, a whole number, or a list of them such as [items, 0, sku], not a mapping",
        ),
        (
            [flow("main", {"from": [], "to": "Task1", "condition": leaf("argsFieldEqual", key=[["a"]], value=1)})],
            f"{W}: edges[0]: condition: `key:` of argsFieldEqual must be a key",
        ),
        (
            [
                flow(
                    "main",
                    {"from": [], "to": "Task1", "condition": leaf("httpStatus", host="h", path="/", status="200")},
                )
            ],
            f"{W}: edges[0]: condition: `status:` of httpStatus must be an HTTP status code such as 200 (without quotes), not '200'",
        ),
        (
            [flow("main", {"from": [], "to": "Task1", "condition": leaf("envExist", env="")})],
            f"{W}: edges[0]: condition: `env:` of envExist must be the name of an environment variable, not ''",
        ),
        (
            [flow("main", {"from": [], "to": "Task1", "condition": leaf("envEqual", env="E")})],
            f"{W}: edges[0]: condition: envEqual needs `args: {{value: ...}}`; add it",
        ),
        (
            [
                flow(
                    "main",
                    START,
                    {"from": "Task1", "to": "Task2", "condition": leaf("fieldUrlScheme", key="u", schema="https")},
                )
            ],
            f"{W}: edges[1]: condition: fieldUrlScheme takes no argument 'schema'; its arguments: key, scheme",
        ),
        (
            [flow("main", {"from": [], "to": "Task1", "condition": leaf("isDict")})],
            f"{W}: edges[0]: condition: isDict reads a parent result; a starting edge has no parent result; use argsIsDict, which reads the node arguments",
        ),
        (
            [flow("main", {"from": [], "to": "Task1", "condition": leaf("fieldLenLessEqal", key="k", length=1)})],
            f"{W}: edges[0]: condition: predicate 'fieldLenLessEqal' is not a built-in predicate; did you mean 'fieldLenLessEqual'?",
        ),
        ([flow("main", {"from": []})], f"{W}: edges[0]: `to:` is missing"),
        ([flow("main", {"from": [], "to": []})], f"{W}: edges[0]: `to:` is empty"),
        ([flow("main", {"from": ["Task1", "Task1"], "to": "Task2"})], f"{W}: edges[0]: `from:` lists a node twice"),
        ([flow("main", {"from": [], "to": 3})], f"{W}: edges[0]: `to:` must be a node name or a list of node names"),
        (
            [flow("main", START), flow("main", START)],
            "flows.yaml: flow 'main' is defined twice (also in flows.yaml); keep one",
        ),
        ([flow("Task1", START)], "flows.yaml: flow 'Task1' has the name of a task; rename one of them"),
        ([{"edges": []}], "flows.yaml: flow-definitions[0]: `name:` is missing; add it"),
    ],
)
def test_flow_errors(definitions: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        system(TASKS, definitions)
    assert str(error.value).startswith(message) or message in str(error.value), str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("definitions", "message"),
    [
        (
            [flow("main", START, {"from": "Task1", "to": "Task2"}, {"from": "Task2", "to": "Task1"})],
            f"{W}: cycle Task1 -> Task2 -> Task1 has no way out (no edge on it has a condition); add a condition to one of its edges",
        ),
        (
            [flow("main", START, {"from": "Task1", "to": "Task1", "condition": {"name": "alwaysTrue"}})],
            f"{W}: cycle Task1 -> Task1 has no way out",
        ),
        (
            [flow("main", {"to": "sub"}), flow("sub", {"to": "main"})],
            "flows.yaml: flow 'main': flows start each other in a loop with no way out (main -> sub -> main",
        ),
        (  # a flow that only starts an endless one
            [flow("main", {"to": "loop"}), flow("loop", {"to": "Task1"}, {"from": "Task1", "to": "Task1"})],
            "flows.yaml: flow 'loop': cycle Task1 -> Task1 has no way out",
        ),
    ],
)
def test_a_flow_that_could_never_end_loads_but_is_not_started(definitions: list[dict[str, Any]], message: str) -> None:
    built = system(TASKS, definitions)  # it loads: `selinon plot` draws it, `selinon inspect` reports it
    assert any(why.startswith(message) for why in built.endless.values()), built.endless
    with pytest.raises(ConfigurationError) as error:
        Executor(built).run("main")
    assert str(error.value).startswith(f"flow 'main' cannot be started: {message}"), str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (task("T", max_retry="3"), "nodes.yaml: task 'T': `max_retry:` must be a whole number, 0 or more, not '3'"),
        (task("T", retry_countdown=-1), "nodes.yaml: task 'T': `retry_countdown:` must be a number of seconds"),
        (task("T", output_schema=3), "nodes.yaml: task 'T': `output_schema:` must be a path to a JSON schema file"),
        (task("T", classname=["A"]), "nodes.yaml: task 'T': `classname:` must be a non-empty string, not a list"),
    ],
)
def test_task_option_errors(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^{message}"):
        system([entry], [])


def test_flows_listed_but_one_not_listed() -> None:
    documents = [
        ("nodes.yaml", {"storages": [], "tasks": [task("T", storage=None)], "flows": ["a"]}),
        ("flows.yaml", {"flow-definitions": [flow("a", {"to": "T"}), flow("b", {"to": "T"})]}),
    ]
    with pytest.raises(ConfigurationError, match=r"^flows.yaml: flow 'b' is defined but not listed under `flows:`"):
        flows.from_documents(documents)
    with pytest.raises(ConfigurationError, match=r"^nodes.yaml: `flows:` must be a list of flow names"):
        flows.from_documents([("nodes.yaml", {"flows": "a"})])
