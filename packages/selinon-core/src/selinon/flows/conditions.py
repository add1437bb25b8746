"""Edge conditions in Selinon's YAML form, parsed once and evaluated by the executor.

A leaf names a predicate, ``{name: fieldEqual, node: Task1, args: {key: [a, b], value: 1}}``; leaves combine
with ``{and: [...]}``, ``{or: [...]}`` and ``{not: {...}}``. Predicates keep Selinon's names and arguments:
``message`` is the parent result named by ``node`` (read through the storage pool) and ``node_args`` the flow's
arguments; the rest come from ``args``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from selinon.config import _suggest, _type_name
from selinon.errors import ConfigurationError
from selinon.flows.predicates import BUILTIN, BUILTINS, Predicate, Predicates, alwaysTrue

#: Reads a parent's result by node name; the executor passes one that goes through StoragePool.
ReadResult = Callable[[str], Any]

LEAF_KEYS = ("name", "node", "args")
EXAMPLE = "{name: fieldEqual, node: Task1, args: {key: status, value: ok}}"


class Condition(abc.ABC):
    """A parsed condition: what it reads, and whether it holds."""

    @abc.abstractmethod
    def evaluate(self, read: ReadResult, node_args: Any) -> bool: ...

    @abc.abstractmethod
    def nodes(self) -> set[str]:
        """Names of the nodes whose stored results it reads."""

    @property
    def always_true(self) -> bool:
        return False

    @abc.abstractmethod
    def text(self, show_node: bool = False) -> str:
        """A short readable form, such as ``and(fieldEqual(key=['a'], value=1), not(argsFieldExist(key='b')))``;
        ``show_node``: name the parent a leaf reads (an edge with several ``from`` nodes)."""

    @abc.abstractmethod
    def tree(self) -> Any:
        """The YAML form, normalised: every leaf that reads a result names its ``node``."""


@dataclass(frozen=True)
class Leaf(Condition):
    name: str
    node: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    #: The function behind ``name``, found when the condition was parsed (default: the built-in of that name).
    predicate: Predicate = field(default=None, compare=False, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.predicate is None:
            object.__setattr__(self, "predicate", BUILTINS.get(self.name, "condition"))

    @property
    def reads_result(self) -> bool:
        return self.predicate.reads_result

    def evaluate(self, read: ReadResult, node_args: Any) -> bool:
        kwargs = dict(self.args)
        if self.predicate.reads_result:
            assert self.node is not None  # checked when parsed
            kwargs["message"] = read(self.node)
        if self.predicate.reads_node_args:
            kwargs["node_args"] = node_args
        return bool(self.predicate.function(**kwargs))

    def nodes(self) -> set[str]:
        return {self.node} if self.node is not None and self.reads_result else set()

    @property
    def always_true(self) -> bool:
        return self.predicate.function is alwaysTrue

    def text(self, show_node: bool = False) -> str:
        named = [f"node={self.node}"] if show_node and self.reads_result and self.node is not None else []
        return f"{self.name}({', '.join(named + [f'{k}={v!r}' for k, v in self.args.items()])})"

    def tree(self) -> Any:
        found: dict[str, Any] = {"name": self.name}
        if self.reads_result and self.node is not None:
            found["node"] = self.node
        if self.args:
            found["args"] = dict(self.args)
        return found


@dataclass(frozen=True)
class All(Condition):
    parts: tuple[Condition, ...]

    def evaluate(self, read: ReadResult, node_args: Any) -> bool:
        return all(part.evaluate(read, node_args) for part in self.parts)

    def nodes(self) -> set[str]:
        return set().union(*(part.nodes() for part in self.parts))

    @property
    def always_true(self) -> bool:
        return all(part.always_true for part in self.parts)

    def text(self, show_node: bool = False) -> str:
        return f"and({', '.join(part.text(show_node) for part in self.parts)})"

    def tree(self) -> Any:
        return {"and": [part.tree() for part in self.parts]}


@dataclass(frozen=True)
class AnyOf(Condition):
    parts: tuple[Condition, ...]

    def evaluate(self, read: ReadResult, node_args: Any) -> bool:
        return any(part.evaluate(read, node_args) for part in self.parts)

    def nodes(self) -> set[str]:
        return set().union(*(part.nodes() for part in self.parts))

    @property
    def always_true(self) -> bool:
        return any(part.always_true for part in self.parts)

    def text(self, show_node: bool = False) -> str:
        return f"or({', '.join(part.text(show_node) for part in self.parts)})"

    def tree(self) -> Any:
        return {"or": [part.tree() for part in self.parts]}


@dataclass(frozen=True)
class Not(Condition):
    part: Condition

    def evaluate(self, read: ReadResult, node_args: Any) -> bool:
        return not self.part.evaluate(read, node_args)

    def nodes(self) -> set[str]:
        return self.part.nodes()

    def text(self, show_node: bool = False) -> str:
        return f"not({self.part.text(show_node)})"

    def tree(self) -> Any:
        return {"not": self.part.tree()}


ALWAYS = Leaf("alwaysTrue")


#: Why a condition without parents cannot read a result, by default: it is on a starting edge.
STARTING_EDGE = "a starting edge has no parent result"


def parse(
    tree: Any,
    nodes_from: Sequence[str],
    where: str,
    predicates: Predicates = BUILTINS,
    no_parent: str = STARTING_EDGE,
) -> Condition:
    """Build a condition from its YAML form; ``nodes_from`` is the edge's ``from:``, whose results it may read;
    ``no_parent`` says why a condition with no ``nodes_from`` reads no result."""
    if tree is None:
        return ALWAYS
    if not isinstance(tree, dict) or not tree:
        raise ConfigurationError(f"{where}: a condition must be a mapping such as {EXAMPLE}, not {_type_name(tree)}")
    combinators = [key for key in ("and", "or", "not") if key in tree]
    if combinators:
        if len(tree) != 1:
            others = ", ".join(repr(k) for k in tree if k != combinators[0])
            raise ConfigurationError(
                f"{where}: `{combinators[0]}:` must be alone in its mapping, found {others} beside it; "
                "nest the other conditions inside it"
            )
        key = combinators[0]
        value = tree[key]
        if key == "not":
            return Not(parse(value, nodes_from, f"{where}.not", predicates, no_parent))
        if not isinstance(value, list) or not value:
            raise ConfigurationError(f"{where}: `{key}:` must be a non-empty list of conditions")
        parts = tuple(
            parse(part, nodes_from, f"{where}.{key}[{i}]", predicates, no_parent) for i, part in enumerate(value)
        )
        return All(parts) if key == "and" else AnyOf(parts)
    return _leaf(tree, nodes_from, where, predicates, no_parent)


def _leaf(tree: dict[str, Any], nodes_from: Sequence[str], where: str, predicates: Predicates, no_parent: str) -> Leaf:
    for key in tree:
        if key not in LEAF_KEYS:
            raise ConfigurationError(
                f"{where}: unknown key {key!r} in a condition; {_suggest(str(key), [*LEAF_KEYS, 'and', 'or', 'not'])}"
            )
    name = tree.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{where}: a condition needs `name:` (a predicate) or `and:`/`or:`/`not:`")
    predicate = predicates.get(name, where)
    args = tree.get("args") or {}
    if not isinstance(args, dict):
        raise ConfigurationError(f"{where}: `args:` of {name} must be a mapping such as {{key: status, value: ok}}")
    predicate.check_args(args, where)
    node = tree.get("node")
    if node is not None and (not isinstance(node, str) or node not in nodes_from):
        listed = ", ".join(nodes_from) or "none: this is a starting edge"
        raise ConfigurationError(
            f"{where}: `node: {node}` is not in the edge's `from:` ({listed}); a condition reads only those results"
        )
    if predicate.reads_result and node is None:
        if len(nodes_from) != 1:
            twin = f"args{name[0].upper()}{name[1:]}"
            instead = (
                f"{twin}, which reads the node arguments"
                if twin in BUILTIN
                else "a predicate of the node arguments (argsField*, argsIs*)"
            )
            why = (
                f"{no_parent}; use {instead}"
                if not nodes_from
                else f"name the node whose result it reads with `node:` (one of {', '.join(nodes_from)})"
            )
            raise ConfigurationError(f"{where}: {name} reads a parent result; {why}")
        node = nodes_from[0]
    return Leaf(name, node, dict(args), predicate)
