"""The JSON policy: what would read back different is refused, with the path of the offending value."""

from __future__ import annotations

import enum
import json
from collections import OrderedDict, defaultdict
from typing import Any

import pytest

from selinon import jsonpolicy
from selinon.errors import StorageError
from selinon.jsonpolicy import NotJSONError


class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({1: "a", "1": "b"}, "result: key 1 is an int, not a string; JSON keeps only string keys, so it would read "
         "back as '1': make every key a string"),
        ({"a": {True: 1}}, "result['a']: key True is a bool, not a string"),
        ({"a": [{None: 1}]}, "result['a'][0]: key None is a NoneType, not a string"),
        ({"pair": [0, (1, 2)]}, "result['pair'][1]: a tuple would read back as a list; return a list"),
        ({"x": float("nan")}, "result['x']: nan is not a JSON number; store None or a string in its place"),
        ([float("-inf")], "result[0]: -inf is not a JSON number"),
        ({"raw": bytearray(b"x")}, "result['raw']: bytearray is not JSON; decode it to a string"),
        ({"raw": b"x"}, "result['raw']: bytes is not JSON"),
        ({"s": {1}}, "result['s']: set is not JSON; convert it to a dict, list, string, number, bool or None"),
    ],
)  # fmt: skip
def test_refused_with_the_path(value: Any, message: str) -> None:
    with pytest.raises(NotJSONError) as raised:
        jsonpolicy.check(value)
    assert str(raised.value).startswith(message)
    assert isinstance(raised.value, StorageError | TypeError | ValueError)


def test_a_cycle_is_refused_not_walked_forever() -> None:
    loop: list[Any] = []
    loop.append({"again": loop})
    with pytest.raises(NotJSONError, match=r"result\[0\]\['again'\]: the value contains itself"):
        jsonpolicy.check(loop)


def test_deep_nesting_is_walked_without_recursion() -> None:
    deep: list[Any] = []
    inner = deep
    for _ in range(50_000):
        inner.append([])
        inner = inner[0]
    jsonpolicy.check(deep)
    inner.append(float("nan"))
    with pytest.raises(NotJSONError, match="nested too deeply"):
        jsonpolicy.check(deep)


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, -0.0, 2**80, True, None, "é", {"": []}]},
        OrderedDict(a=1),
        defaultdict(list, a=[Colour.RED]),
        "x" * 1000,
    ],
)
def test_json_values_and_their_subclasses_pass_and_read_back_equal(value: Any) -> None:
    jsonpolicy.check(value)
    assert json.loads(jsonpolicy.dumps(value)) == value


def test_shared_references_are_not_cycles() -> None:
    shared = [1, 2]
    jsonpolicy.check({"x": shared, "y": [shared, shared]})


def test_dumps_is_compact_and_keeps_non_ascii() -> None:
    assert jsonpolicy.dumps({"a": ["é", 1]}) == '{"a":["é",1]}'
    with pytest.raises(NotJSONError):
        jsonpolicy.dumps({"a": float("inf")})
