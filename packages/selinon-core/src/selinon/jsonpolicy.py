"""What a storage accepts as a task's result: a JSON value that reads back equal to what was stored.

JSON encoders rewrite some Python values without a word: ``{1: 'a'}`` becomes ``{'1': 'a'}`` (and collides with a
real ``'1'`` key), a tuple becomes a list, ``NaN`` becomes a token other parsers refuse. Every first-party adapter
runs :func:`check` (or :func:`dumps`) before it writes, so that such a result is refused, with the path of the
offending value, instead of coming back different. The walk visits containers only; strings, however long,
cost nothing (the benchmarks compare adapters with raw drivers that do no such check).
"""

from __future__ import annotations

import json
import math
from typing import Any

from selinon.errors import StorageError


class NotJSONError(StorageError, TypeError, ValueError):
    """The value would not read back as it was stored; the message names where it is and what to do.

    A ``TypeError`` and a ``ValueError`` too: what ``json.dumps`` raised before for the same values."""


_SCALARS = (str, int, bool, type(None))


#: More containers than any result holds: reaching it means a cycle (or a structure that shares one list so often
#: that its JSON text would not fit in memory); the slow path then says which.
MAX_CONTAINERS = 5_000_000


def check(value: Any, what: str = "result") -> None:
    """Raise :class:`NotJSONError` unless ``value`` is made of dicts with string keys, lists, strings, booleans,
    ``None``, integers and finite floats (subclasses of these too: they read back equal), without cycles."""
    stack: list[Any] = [value]
    pop, extend = stack.pop, stack.extend
    budget = MAX_CONTAINERS
    while stack:
        item = pop()
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue
        if kind is float:
            if item - item != 0.0:  # NaN and the infinities
                _fail(value, what)
            continue
        if kind is not dict and kind is not list:
            if isinstance(item, _SCALARS) or (isinstance(item, float) and math.isfinite(item)):
                continue
            if not isinstance(item, dict | list):
                _fail(value, what)
        budget -= 1
        if not budget:
            _fail(value, what)
        if isinstance(item, dict):
            for key in item:
                if type(key) is not str and not isinstance(key, str):
                    _fail(value, what)
            extend(item.values())
        else:
            extend(item)


def dumps(value: Any, what: str = "result") -> str:
    """Compact JSON text of a checked value; non-ASCII characters are kept as they are."""
    check(value, what)
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _fail(value: Any, what: str) -> None:
    """Find the first offending value, depth first, and raise with its path (the slow path: errors only)."""
    try:
        path, reason = _first_problem(value, what, set())
    except RecursionError:
        path, reason = what, "nested too deeply to walk; flatten it"
    if not reason:
        reason = f"holds more than {MAX_CONTAINERS:,} lists and dicts; store it in parts"
    raise NotJSONError(f"{path}: {reason}")


def _first_problem(value: Any, path: str, inside: set[int]) -> tuple[str, str]:
    if isinstance(value, dict | list):
        if id(value) in inside:
            return path, "the value contains itself; JSON cannot hold a cycle"
        inside.add(id(value))
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(value, dict) and not isinstance(key, str):
                return path, (
                    f"key {key!r} is {_a(key)}, not a string; JSON keeps only string keys, so it would read back "
                    f"as {json.dumps(key)!r}: make every key a string"
                )
            found = _first_problem(item, f"{path}[{key!r}]", inside)
            if found[1]:
                return found
        inside.discard(id(value))
        return path, ""
    if isinstance(value, _SCALARS):
        return path, ""
    if isinstance(value, float):
        if math.isfinite(value):
            return path, ""
        return path, f"{value!r} is not a JSON number; store None or a string in its place"
    if isinstance(value, tuple):
        return path, "a tuple would read back as a list; return a list"
    if isinstance(value, bytes | bytearray | memoryview):
        return path, f"{type(value).__name__} is not JSON; decode it to a string (or base64-encode it)"
    return path, f"{type(value).__name__} is not JSON; convert it to a dict, list, string, number, bool or None"


def _a(value: Any) -> str:
    name = type(value).__name__
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"
