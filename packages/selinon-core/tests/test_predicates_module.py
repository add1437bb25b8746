"""`global: predicates_module`: a module whose functions conditions name, checked when the flows are loaded."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flowkit import MEMORY, flow, task

from selinon import flows
from selinon.errors import ConfigurationError
from selinon.flows.predicates import BUILTIN

START = {"from": [], "to": "Task1"}
W = "flows.yaml: flow 'main': edges[1]: condition"


def load(module: str | None, condition: dict[str, Any], extra: dict[str, Any] | None = None) -> flows.System:
    nodes: dict[str, Any] = {"storages": [MEMORY], "tasks": [task("Task1"), task("Task2")]}
    if module is not None:
        nodes["global"] = {"predicates_module": module}
    edges = [START, {"from": "Task1", "to": "Task2", "condition": condition}]
    definitions = {"flow-definitions": [flow("main", *edges)]}
    return flows.from_documents([("nodes.yaml", nodes), ("flows.yaml", definitions), *(extra or {}).items()])


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on the Python path for modules written by a test; they are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def evaluate(built: flows.System, result: Any, node_args: Any = None) -> bool:
    return built.flow("main").edges[1].condition.evaluate(lambda name: result, node_args)


def test_custom_and_built_in_predicates_side_by_side() -> None:
    condition = {
        "and": [
            {"name": "isEven", "args": {"key": "n"}},
            {"name": "argsHasWord", "args": {"word": "GO"}},
            {"name": "fieldLenGreater", "args": {"key": "items", "length": 0}},
        ]
    }
    built = load("flow_predicates", condition)
    leaves = built.flow("main").edges[1].condition.parts  # type: ignore[attr-defined]
    assert [leaf.predicate.builtin for leaf in leaves] == [False, False, True]
    assert leaves[0].node == "Task1"  # it reads `message`, so the edge's one parent is implied
    assert evaluate(built, {"n": 4, "items": [1]}, {"text": "GO now"})
    assert not evaluate(built, {"n": 3, "items": [1]}, {"text": "GO now"})
    assert not evaluate(built, {"n": 4, "items": [1]}, {"text": "go now"})  # case_sensitive defaults to true
    assert not evaluate(built, {"n": 4, "items": []}, {"text": "GO now"})


def test_the_module_wins_over_a_built_in_of_the_same_name(module_dir: Path) -> None:
    (module_dir / "shadowing.py").write_text("def fieldExist(message, key):\n    return key == 'custom'\n")
    built = load("shadowing", {"name": "fieldExist", "args": {"key": "custom"}})
    assert evaluate(built, {}) and not built.flow("main").edges[1].condition.predicate.builtin  # type: ignore[attr-defined]
    # names it does not define are the built-ins, also when it does not import them
    assert evaluate(load("shadowing", {"name": "fieldEqual", "args": {"key": "a", "value": 1}}), {"a": 1})


def test_any_args_for_a_predicate_with_keyword_arguments(module_dir: Path) -> None:
    (module_dir / "open_ended.py").write_text(
        "def argsMatch(node_args, **expected):\n    return node_args == expected\n"
    )
    built = load("open_ended", {"name": "argsMatch", "args": {"a": 1, "b": 2}})
    assert evaluate(built, None, {"a": 1, "b": 2}) and not evaluate(built, None, {"a": 1})


@pytest.mark.parametrize(
    ("source", "condition", "message"),
    [
        (
            "def isEven(message, key):\n    return True\n",
            {"name": "isEvn", "args": {"key": "n"}},
            f"{W}: predicate 'isEvn' is neither built in nor defined in {{module}}; did you mean 'isEven'?",
        ),
        (
            "def isEven(message, key):\n    return True\n",
            {"name": "isEven", "args": {}},
            f"{W}: isEven needs `args: {{key: ...}}`; add it",
        ),
        (
            "def isEven(message, key):\n    return True\n",
            {"name": "isEven", "args": {"key": "n", "strict": True}},
            f"{W}: isEven takes no argument 'strict'; its arguments: key",
        ),
        ("threshold = 3\n", {"name": "threshold"}, f"{W}: {{module}}.threshold is not a function, so it cannot be"),
        (
            "def isEven(message, /):\n    return True\n",
            {"name": "isEven"},
            f"{W}: predicate 'isEven' has a positional-only parameter 'message'; predicates are called with keyword",
        ),
        (
            "raise RuntimeError('no database')\n",
            {"name": "alwaysTrue"},
            "nodes.yaml: global: predicates_module: cannot import '{module}': RuntimeError: no database; check the module name",
        ),
    ],
)
def test_errors_are_one_line_when_loaded(
    module_dir: Path, request: pytest.FixtureRequest, source: str, condition: dict[str, Any], message: str
) -> None:
    module = f"predicates_{abs(hash(request.node.name))}"
    (module_dir / f"{module}.py").write_text(source)
    with pytest.raises(ConfigurationError) as error:
        load(module, condition)
    assert str(error.value).startswith(message.replace("{module}", module)), str(error.value)
    assert "\n" not in str(error.value)


def test_a_missing_module_is_named() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"^nodes\.yaml: global: predicates_module: cannot import 'no_such_predicates': ModuleNotFoundError",
    ):
        load("no_such_predicates", {"name": "alwaysTrue"})


def test_the_module_may_be_set_in_any_file_but_once() -> None:
    built = load(
        None,
        {"name": "isEven", "args": {"key": "n"}},
        {"global.yaml": {"global": {"predicates_module": "flow_predicates"}}},
    )
    assert evaluate(built, {"n": 2})
    with pytest.raises(
        ConfigurationError,
        match=r"^global\.yaml: global: predicates_module: set twice \(also in nodes\.yaml\); keep one$",
    ):
        load(
            "flow_predicates",
            {"name": "alwaysTrue"},
            {"global.yaml": {"global": {"predicates_module": "flow_predicates"}}},
        )


def test_built_in_names_only_without_a_module() -> None:
    with pytest.raises(ConfigurationError, match=f"^{re.escape(W)}: predicate 'isEven' is not a built-in predicate; "):
        load(None, {"name": "isEven", "args": {"key": "n"}})
    assert "isEven" not in BUILTIN
