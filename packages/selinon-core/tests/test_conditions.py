"""Conditions: Selinon's predicates and their YAML form, parsed strictly and evaluated lazily."""

from __future__ import annotations

from typing import Any

import pytest

from selinon.errors import ConfigurationError
from selinon.flows.conditions import ALWAYS, All, AnyOf, Leaf, Not, parse

RESULTS = {"Task1": {"status": "ok", "nested": {"codes": [200, 404]}, "empty": None}, "Task2": {"status": "bad"}}


def evaluate(tree: Any, nodes_from: tuple[str, ...] = ("Task1",), node_args: Any = None) -> bool:
    reads: list[str] = []

    def read(name: str) -> Any:
        reads.append(name)
        return RESULTS[name]

    return parse(tree, nodes_from, "flows.yaml: flow 'f': edges[1]: condition").evaluate(read, node_args)


@pytest.mark.parametrize(
    ("tree", "expected"),
    [
        ({"name": "fieldEqual", "args": {"key": "status", "value": "ok"}}, True),
        ({"name": "fieldEqual", "args": {"key": "status", "value": "bad"}}, False),
        ({"name": "fieldEqual", "args": {"key": ["nested", "codes", 1], "value": 404}}, True),
        ({"name": "fieldEqual", "args": {"key": ["nested", "codes", 7], "value": 404}}, False),
        ({"name": "fieldEqual", "args": {"key": ["status", "deeper"], "value": 1}}, False),
        ({"name": "fieldExist", "args": {"key": "empty"}}, True),
        ({"name": "fieldExist", "args": {"key": "missing"}}, False),
        ({"name": "alwaysFalse"}, False),
        ({"not": {"name": "alwaysFalse"}}, True),
        ({"and": [{"name": "alwaysTrue"}, {"name": "fieldExist", "args": {"key": "status"}}]}, True),
        ({"and": [{"name": "alwaysTrue"}, {"name": "alwaysFalse"}]}, False),
        ({"or": [{"name": "alwaysFalse"}, {"name": "fieldExist", "args": {"key": "status"}}]}, True),
    ],
)
def test_predicates_on_a_parent_result(tree: dict[str, Any], expected: bool) -> None:
    assert evaluate(tree) is expected


def test_args_predicates_read_node_args_and_no_result() -> None:
    args = {"user": {"name": "ann"}, "n": 0}
    assert evaluate({"name": "argsFieldEqual", "args": {"key": ["user", "name"], "value": "ann"}}, (), args)
    assert evaluate({"name": "argsFieldExist", "args": {"key": "n"}}, (), args)
    assert not evaluate({"name": "argsFieldExist", "args": {"key": "missing"}}, (), args)
    assert not evaluate({"name": "argsFieldEqual", "args": {"key": "n", "value": 1}}, (), None)


def test_node_names_which_parent_result_is_read() -> None:
    tree = {
        "and": [
            {"name": "fieldEqual", "node": "Task2", "args": {"key": "status", "value": "bad"}},
            {"name": "fieldEqual", "node": "Task1", "args": {"key": "status", "value": "ok"}},
        ]
    }
    condition = parse(tree, ("Task1", "Task2"), "here")
    assert condition.nodes() == {"Task1", "Task2"}
    assert condition.evaluate(RESULTS.__getitem__, None)


def test_results_are_read_only_when_needed() -> None:
    def read(name: str) -> Any:
        raise AssertionError("read")

    assert parse(None, ("Task1",), "here") is ALWAYS
    condition = parse({"or": [{"name": "alwaysTrue"}, {"name": "fieldExist", "args": {"key": "a"}}]}, ("Task1",), "h")
    assert condition.evaluate(read, None)  # `or` stops at its first true part
    assert condition.always_true


def test_parsed_shapes() -> None:
    tree = {"not": {"or": [{"name": "alwaysTrue"}, {"and": [{"name": "alwaysFalse"}]}]}}
    assert parse(tree, (), "here") == Not(AnyOf((Leaf("alwaysTrue"), All((Leaf("alwaysFalse"),)))))
    implied = parse({"name": "fieldExist", "args": {"key": "k"}}, ("Task1",), "here")
    assert implied == Leaf("fieldExist", "Task1", {"key": "k"})


PREFIX = "flows.yaml: flow 'f': edges[1]: condition"


@pytest.mark.parametrize(
    ("tree", "nodes_from", "message"),
    [
        ("fieldEqual", ("Task1",), f"{PREFIX}: a condition must be a mapping such as"),
        (
            {"name": "fieldEqul", "args": {}},
            ("Task1",),
            f"{PREFIX}: predicate 'fieldEqul' is not a built-in predicate; did you mean 'fieldEqual'?",
        ),
        (
            {"name": "checkQuota", "args": {}},
            ("Task1",),
            "predicate 'checkQuota' is not a built-in predicate; see the list of predicates in docs/flows.md",
        ),
        (
            {"name": "fieldEqual", "args": {"key": "a"}},
            ("Task1",),
            f"{PREFIX}: fieldEqual needs `args: {{value: ...}}`; add it",
        ),
        (
            {"name": "fieldExist", "args": {"key": "a", "value": 1}},
            ("Task1",),
            f"{PREFIX}: fieldExist takes no argument 'value'; its arguments: key",
        ),
        ({"name": "fieldExist", "args": "key"}, ("Task1",), "`args:` of fieldExist must be a mapping"),
        (
            {"name": "fieldExist", "args": {"key": "a"}},
            ("Task1", "Task2"),
            "fieldExist reads a parent result; name the node whose result it reads with `node:` (one of Task1, Task2)",
        ),
        (
            {"name": "fieldExist", "args": {"key": "a"}},
            (),
            "a starting edge has no parent result; use argsFieldExist, which reads the node arguments",
        ),
        (
            {"name": "fieldExist", "node": "Task3", "args": {"key": "a"}},
            ("Task1",),
            "`node: Task3` is not in the edge's `from:` (Task1)",
        ),
        ({"and": []}, ("Task1",), f"{PREFIX}: `and:` must be a non-empty list of conditions"),
        ({"or": {"name": "alwaysTrue"}}, ("Task1",), "`or:` must be a non-empty list"),
        (
            {"and": [{"name": "alwaysTrue"}], "name": "alwaysTrue"},
            ("Task1",),
            "`and:` must be alone in its mapping, found 'name' beside it",
        ),
        (
            {"not": {"nam": "alwaysTrue"}},
            ("Task1",),
            f"{PREFIX}.not: unknown key 'nam' in a condition; did you mean 'name'?",
        ),
        ({"or": [{"name": "alwaysTrue"}, {}]}, ("Task1",), f"{PREFIX}.or[1]: a condition must be a mapping"),
        ({"node": "Task1"}, ("Task1",), "a condition needs `name:` (a predicate) or `and:`/`or:`/`not:`"),
    ],
)
def test_condition_errors(tree: Any, nodes_from: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        parse(tree, nodes_from, PREFIX)
    assert message in str(error.value)
    assert "\n" not in str(error.value)
