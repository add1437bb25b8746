"""Edge conditions in Selinon's YAML form, parsed once and evaluated by the executor.

A leaf names a predicate, ``{name: fieldEqual, node: Task1, args: {key: [a, b], value: 1}}``; leaves combine
with ``{and: [...]}``, ``{or: [...]}`` and ``{not: {...}}``. Predicates keep Selinon's names and arguments:
``message`` is the parent result named by ``node`` (read through the storage pool) and ``node_args`` the flow's
arguments; the rest come from ``args``.
"""

from __future__ import annotations

import abc
import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from selinon.config import _suggest, _type_name
from selinon.errors import ConfigurationError

#: Reads a parent's result by node name; the executor passes one that goes through StoragePool.
ReadResult = Callable[[str], Any]

_MISSING = object()


def _field(value: Any, key: Any) -> Any:
    """Follow ``key`` (a key, or a list of keys and list indexes) into ``value``; ``_MISSING`` if absent."""
    try:
        return functools.reduce(lambda current, k: current[k], key if isinstance(key, list) else [key], value)
    except (KeyError, IndexError, TypeError):
        return _MISSING


def alwaysTrue() -> bool:
    return True


def alwaysFalse() -> bool:
    return False


def fieldEqual(message: Any, key: Any, value: Any) -> bool:
    found = _field(message, key)
    return found is not _MISSING and bool(found == value)


def fieldExist(message: Any, key: Any) -> bool:
    return _field(message, key) is not _MISSING


def argsFieldEqual(node_args: Any, key: Any, value: Any) -> bool:
    found = _field(node_args, key)
    return found is not _MISSING and bool(found == value)


def argsFieldExist(node_args: Any, key: Any) -> bool:
    return _field(node_args, key) is not _MISSING


PREDICATES: dict[str, Callable[..., bool]] = {
    f.__name__: f for f in (alwaysTrue, alwaysFalse, fieldEqual, fieldExist, argsFieldEqual, argsFieldExist)
}
_IMPLICIT = ("message", "node_args")
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


@dataclass(frozen=True)
class Leaf(Condition):
    name: str
    node: str | None = None
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def reads_result(self) -> bool:
        return "message" in inspect.signature(PREDICATES[self.name]).parameters

    def evaluate(self, read: ReadResult, node_args: Any) -> bool:
        kwargs = dict(self.args)
        parameters = inspect.signature(PREDICATES[self.name]).parameters
        if "message" in parameters:
            assert self.node is not None  # checked when parsed
            kwargs["message"] = read(self.node)
        if "node_args" in parameters:
            kwargs["node_args"] = node_args
        return bool(PREDICATES[self.name](**kwargs))

    def nodes(self) -> set[str]:
        return {self.node} if self.node is not None and self.reads_result else set()

    @property
    def always_true(self) -> bool:
        return self.name == "alwaysTrue"


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


@dataclass(frozen=True)
class Not(Condition):
    part: Condition

    def evaluate(self, read: ReadResult, node_args: Any) -> bool:
        return not self.part.evaluate(read, node_args)

    def nodes(self) -> set[str]:
        return self.part.nodes()


ALWAYS = Leaf("alwaysTrue")


def parse(tree: Any, nodes_from: Sequence[str], where: str) -> Condition:
    """Build a condition from its YAML form; ``nodes_from`` is the edge's ``from:``, whose results it may read."""
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
            return Not(parse(value, nodes_from, f"{where}.not"))
        if not isinstance(value, list) or not value:
            raise ConfigurationError(f"{where}: `{key}:` must be a non-empty list of conditions")
        parts = tuple(parse(part, nodes_from, f"{where}.{key}[{i}]") for i, part in enumerate(value))
        return All(parts) if key == "and" else AnyOf(parts)
    return _leaf(tree, nodes_from, where)


def _leaf(tree: dict[str, Any], nodes_from: Sequence[str], where: str) -> Leaf:
    for key in tree:
        if key not in LEAF_KEYS:
            raise ConfigurationError(
                f"{where}: unknown key {key!r} in a condition; {_suggest(str(key), [*LEAF_KEYS, 'and', 'or', 'not'])}"
            )
    name = tree.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{where}: a condition needs `name:` (a predicate) or `and:`/`or:`/`not:`")
    if name not in PREDICATES:
        raise ConfigurationError(
            f"{where}: predicate {name!r} is not supported; {_suggest(name, PREDICATES)} "
            f"(supported: {', '.join(PREDICATES)})"
        )
    args = tree.get("args") or {}
    if not isinstance(args, dict):
        raise ConfigurationError(f"{where}: `args:` of {name} must be a mapping such as {{key: status, value: ok}}")
    parameters = [p for p in inspect.signature(PREDICATES[name]).parameters if p not in _IMPLICIT]
    for arg in args:
        if arg not in parameters:
            expected = ", ".join(parameters) or "none"
            raise ConfigurationError(f"{where}: {name} takes no argument {arg!r}; its arguments: {expected}")
    for parameter in parameters:
        if parameter not in args:
            raise ConfigurationError(f"{where}: {name} needs `args: {{{parameter}: ...}}`; add it")
    node = tree.get("node")
    if node is not None and (not isinstance(node, str) or node not in nodes_from):
        listed = ", ".join(nodes_from) or "none: this is a starting edge"
        raise ConfigurationError(
            f"{where}: `node: {node}` is not in the edge's `from:` ({listed}); a condition reads only those results"
        )
    leaf = Leaf(name, node, dict(args))
    if leaf.reads_result and node is None:
        if len(nodes_from) != 1:
            why = (
                "a starting edge has no parent result; use argsFieldEqual or argsFieldExist"
                if not nodes_from
                else f"name the node whose result it reads with `node:` (one of {', '.join(nodes_from)})"
            )
            raise ConfigurationError(f"{where}: {name} reads a parent result; {why}")
        leaf = Leaf(name, nodes_from[0], dict(args))
    return leaf
