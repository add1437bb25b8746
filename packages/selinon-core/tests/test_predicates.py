"""Every built-in predicate against the values Selinon 1.4 returned on the same inputs.

The expected values were observed by calling 1.4's predicates (``selinon==1.4.0``) on these inputs. Two of them
are taken from 1.4's own modules: its package namespace exported the ``*LenLessEqual`` functions under the
``*LenGreaterEqual`` names and lost the ``*LenLessEqual`` names, while each module holds the documented test.
"""

from __future__ import annotations

import http.server
import inspect
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import selinon.predicates
from selinon.flows.predicates import BUILTIN

DOC = {
    "a": 1,
    "b": {"c": [10, "x", None]},
    "s": "https://example.com:8080/p/q?x=1",
    "f": 1.5,
    "t": True,
    "n": None,
    "l": [1, 2, 3],
    "d": {},
    "e": "",
    "str": "hello",
    "0": "zero",
}

#: (suffix, args, subject, what 1.4 returned): ``field<suffix>`` reads the subject as the parent result,
#: ``argsField<suffix>`` as the node arguments, and both returned the same.
FIELD_CASES = [
    ("Exist", {"key": "a"}, DOC, True),
    ("Exist", {"key": ["b", "c", 0]}, DOC, True),
    ("Exist", {"key": ["b", "c", 5]}, DOC, False),
    ("Exist", {"key": "missing"}, DOC, False),
    ("Exist", {"key": ["l", "x"]}, DOC, False),
    ("Exist", {"key": []}, DOC, True),
    ("Exist", {"key": "0"}, DOC, True),
    ("Exist", {"key": 0}, DOC, False),
    ("Bool", {"key": "t"}, DOC, True),
    ("Bool", {"key": "d"}, DOC, False),
    ("Bool", {"key": "f"}, DOC, False),
    ("Bool", {"key": "a"}, DOC, False),
    ("Bool", {"key": "l"}, DOC, False),
    ("Bool", {"key": "n"}, DOC, False),
    ("Bool", {"key": "str"}, DOC, False),
    ("Bool", {"key": "missing"}, DOC, False),
    ("Bool", {"key": ["b", "c", 1]}, DOC, False),
    ("Dict", {"key": "t"}, DOC, False),
    ("Dict", {"key": "d"}, DOC, True),
    ("Dict", {"key": "f"}, DOC, False),
    ("Dict", {"key": "a"}, DOC, False),
    ("Dict", {"key": "l"}, DOC, False),
    ("Dict", {"key": "n"}, DOC, False),
    ("Dict", {"key": "str"}, DOC, False),
    ("Dict", {"key": "missing"}, DOC, False),
    ("Dict", {"key": ["b", "c", 1]}, DOC, False),
    ("Float", {"key": "t"}, DOC, False),
    ("Float", {"key": "d"}, DOC, False),
    ("Float", {"key": "f"}, DOC, True),
    ("Float", {"key": "a"}, DOC, False),
    ("Float", {"key": "l"}, DOC, False),
    ("Float", {"key": "n"}, DOC, False),
    ("Float", {"key": "str"}, DOC, False),
    ("Float", {"key": "missing"}, DOC, False),
    ("Float", {"key": ["b", "c", 1]}, DOC, False),
    ("Int", {"key": "t"}, DOC, True),
    ("Int", {"key": "d"}, DOC, False),
    ("Int", {"key": "f"}, DOC, False),
    ("Int", {"key": "a"}, DOC, True),
    ("Int", {"key": "l"}, DOC, False),
    ("Int", {"key": "n"}, DOC, False),
    ("Int", {"key": "str"}, DOC, False),
    ("Int", {"key": "missing"}, DOC, False),
    ("Int", {"key": ["b", "c", 1]}, DOC, False),
    ("List", {"key": "t"}, DOC, False),
    ("List", {"key": "d"}, DOC, False),
    ("List", {"key": "f"}, DOC, False),
    ("List", {"key": "a"}, DOC, False),
    ("List", {"key": "l"}, DOC, True),
    ("List", {"key": "n"}, DOC, False),
    ("List", {"key": "str"}, DOC, False),
    ("List", {"key": "missing"}, DOC, False),
    ("List", {"key": ["b", "c", 1]}, DOC, False),
    ("None", {"key": "t"}, DOC, False),
    ("None", {"key": "d"}, DOC, False),
    ("None", {"key": "f"}, DOC, False),
    ("None", {"key": "a"}, DOC, False),
    ("None", {"key": "l"}, DOC, False),
    ("None", {"key": "n"}, DOC, True),
    ("None", {"key": "str"}, DOC, False),
    ("None", {"key": "missing"}, DOC, False),
    ("None", {"key": ["b", "c", 1]}, DOC, False),
    ("Str", {"key": "t"}, DOC, False),
    ("Str", {"key": "d"}, DOC, False),
    ("Str", {"key": "f"}, DOC, False),
    ("Str", {"key": "a"}, DOC, False),
    ("Str", {"key": "l"}, DOC, False),
    ("Str", {"key": "n"}, DOC, False),
    ("Str", {"key": "str"}, DOC, True),
    ("Str", {"key": "missing"}, DOC, False),
    ("Str", {"key": ["b", "c", 1]}, DOC, True),
    ("Equal", {"key": "a", "value": 1}, DOC, True),
    ("Equal", {"key": "a", "value": 0}, DOC, False),
    ("Equal", {"key": "a", "value": 2}, DOC, False),
    ("Equal", {"key": "f", "value": 1.5}, DOC, True),
    ("Equal", {"key": "str", "value": 1}, DOC, False),
    ("Equal", {"key": "str", "value": "hello"}, DOC, True),
    ("Equal", {"key": "missing", "value": 1}, DOC, False),
    ("Equal", {"key": ["b", "c", 0], "value": 10}, DOC, True),
    ("Equal", {"key": "n", "value": None}, DOC, True),
    ("Equal", {"key": "n", "value": 0}, DOC, False),
    ("Equal", {"key": "t", "value": 1}, DOC, True),
    ("NotEqual", {"key": "a", "value": 1}, DOC, False),
    ("NotEqual", {"key": "a", "value": 0}, DOC, True),
    ("NotEqual", {"key": "a", "value": 2}, DOC, True),
    ("NotEqual", {"key": "f", "value": 1.5}, DOC, False),
    ("NotEqual", {"key": "str", "value": 1}, DOC, True),
    ("NotEqual", {"key": "str", "value": "hello"}, DOC, False),
    ("NotEqual", {"key": "missing", "value": 1}, DOC, False),
    ("NotEqual", {"key": ["b", "c", 0], "value": 10}, DOC, False),
    ("NotEqual", {"key": "n", "value": None}, DOC, False),
    ("NotEqual", {"key": "n", "value": 0}, DOC, True),
    ("NotEqual", {"key": "t", "value": 1}, DOC, False),
    ("Greater", {"key": "a", "value": 1}, DOC, False),
    ("Greater", {"key": "a", "value": 0}, DOC, True),
    ("Greater", {"key": "a", "value": 2}, DOC, False),
    ("Greater", {"key": "f", "value": 1.5}, DOC, False),
    ("Greater", {"key": "str", "value": 1}, DOC, False),
    ("Greater", {"key": "str", "value": "hello"}, DOC, False),
    ("Greater", {"key": "missing", "value": 1}, DOC, False),
    ("Greater", {"key": ["b", "c", 0], "value": 10}, DOC, False),
    ("Greater", {"key": "n", "value": None}, DOC, False),
    ("Greater", {"key": "n", "value": 0}, DOC, False),
    ("Greater", {"key": "t", "value": 1}, DOC, False),
    ("GreaterEqual", {"key": "a", "value": 1}, DOC, True),
    ("GreaterEqual", {"key": "a", "value": 0}, DOC, True),
    ("GreaterEqual", {"key": "a", "value": 2}, DOC, False),
    ("GreaterEqual", {"key": "f", "value": 1.5}, DOC, True),
    ("GreaterEqual", {"key": "str", "value": 1}, DOC, False),
    ("GreaterEqual", {"key": "str", "value": "hello"}, DOC, True),
    ("GreaterEqual", {"key": "missing", "value": 1}, DOC, False),
    ("GreaterEqual", {"key": ["b", "c", 0], "value": 10}, DOC, True),
    ("GreaterEqual", {"key": "n", "value": None}, DOC, False),
    ("GreaterEqual", {"key": "n", "value": 0}, DOC, False),
    ("GreaterEqual", {"key": "t", "value": 1}, DOC, True),
    ("Less", {"key": "a", "value": 1}, DOC, False),
    ("Less", {"key": "a", "value": 0}, DOC, False),
    ("Less", {"key": "a", "value": 2}, DOC, True),
    ("Less", {"key": "f", "value": 1.5}, DOC, False),
    ("Less", {"key": "str", "value": 1}, DOC, False),
    ("Less", {"key": "str", "value": "hello"}, DOC, False),
    ("Less", {"key": "missing", "value": 1}, DOC, False),
    ("Less", {"key": ["b", "c", 0], "value": 10}, DOC, False),
    ("Less", {"key": "n", "value": None}, DOC, False),
    ("Less", {"key": "n", "value": 0}, DOC, False),
    ("Less", {"key": "t", "value": 1}, DOC, False),
    ("LessEqual", {"key": "a", "value": 1}, DOC, True),
    ("LessEqual", {"key": "a", "value": 0}, DOC, False),
    ("LessEqual", {"key": "a", "value": 2}, DOC, True),
    ("LessEqual", {"key": "f", "value": 1.5}, DOC, True),
    ("LessEqual", {"key": "str", "value": 1}, DOC, False),
    ("LessEqual", {"key": "str", "value": "hello"}, DOC, True),
    ("LessEqual", {"key": "missing", "value": 1}, DOC, False),
    ("LessEqual", {"key": ["b", "c", 0], "value": 10}, DOC, True),
    ("LessEqual", {"key": "n", "value": None}, DOC, False),
    ("LessEqual", {"key": "n", "value": 0}, DOC, False),
    ("LessEqual", {"key": "t", "value": 1}, DOC, True),
    ("Contain", {"key": "l", "value": 2}, DOC, True),
    ("Contain", {"key": "l", "value": 9}, DOC, False),
    ("Contain", {"key": "str", "value": "ell"}, DOC, True),
    ("Contain", {"key": "b", "value": "c"}, DOC, True),
    ("Contain", {"key": "a", "value": 1}, DOC, False),
    ("Contain", {"key": "missing", "value": 1}, DOC, False),
    ("Contain", {"key": "n", "value": None}, DOC, False),
    ("Contain", {"key": "e", "value": ""}, DOC, True),
    ("LenEqual", {"key": "l", "length": 3}, DOC, True),
    ("LenEqual", {"key": "l", "length": 2}, DOC, False),
    ("LenEqual", {"key": "l", "length": 4}, DOC, False),
    ("LenEqual", {"key": "str", "length": 5}, DOC, True),
    ("LenEqual", {"key": "a", "length": 1}, DOC, False),
    ("LenEqual", {"key": "d", "length": 0}, DOC, True),
    ("LenEqual", {"key": "e", "length": 0}, DOC, True),
    ("LenEqual", {"key": "missing", "length": 0}, DOC, False),
    ("LenEqual", {"key": "n", "length": 0}, DOC, False),
    ("LenNotEqual", {"key": "l", "length": 3}, DOC, False),
    ("LenNotEqual", {"key": "l", "length": 2}, DOC, True),
    ("LenNotEqual", {"key": "l", "length": 4}, DOC, True),
    ("LenNotEqual", {"key": "str", "length": 5}, DOC, False),
    ("LenNotEqual", {"key": "a", "length": 1}, DOC, False),
    ("LenNotEqual", {"key": "d", "length": 0}, DOC, False),
    ("LenNotEqual", {"key": "e", "length": 0}, DOC, False),
    ("LenNotEqual", {"key": "missing", "length": 0}, DOC, False),
    ("LenNotEqual", {"key": "n", "length": 0}, DOC, False),
    ("LenGreater", {"key": "l", "length": 3}, DOC, False),
    ("LenGreater", {"key": "l", "length": 2}, DOC, True),
    ("LenGreater", {"key": "l", "length": 4}, DOC, False),
    ("LenGreater", {"key": "str", "length": 5}, DOC, False),
    ("LenGreater", {"key": "a", "length": 1}, DOC, False),
    ("LenGreater", {"key": "d", "length": 0}, DOC, False),
    ("LenGreater", {"key": "e", "length": 0}, DOC, False),
    ("LenGreater", {"key": "missing", "length": 0}, DOC, False),
    ("LenGreater", {"key": "n", "length": 0}, DOC, False),
    ("LenGreaterEqual", {"key": "l", "length": 3}, DOC, True),
    ("LenGreaterEqual", {"key": "l", "length": 2}, DOC, True),
    ("LenGreaterEqual", {"key": "l", "length": 4}, DOC, False),
    ("LenGreaterEqual", {"key": "str", "length": 5}, DOC, True),
    ("LenGreaterEqual", {"key": "a", "length": 1}, DOC, False),
    ("LenGreaterEqual", {"key": "d", "length": 0}, DOC, True),
    ("LenGreaterEqual", {"key": "e", "length": 0}, DOC, True),
    ("LenGreaterEqual", {"key": "missing", "length": 0}, DOC, False),
    ("LenGreaterEqual", {"key": "n", "length": 0}, DOC, False),
    ("LenLess", {"key": "l", "length": 3}, DOC, False),
    ("LenLess", {"key": "l", "length": 2}, DOC, False),
    ("LenLess", {"key": "l", "length": 4}, DOC, True),
    ("LenLess", {"key": "str", "length": 5}, DOC, False),
    ("LenLess", {"key": "a", "length": 1}, DOC, False),
    ("LenLess", {"key": "d", "length": 0}, DOC, False),
    ("LenLess", {"key": "e", "length": 0}, DOC, False),
    ("LenLess", {"key": "missing", "length": 0}, DOC, False),
    ("LenLess", {"key": "n", "length": 0}, DOC, False),
    ("LenLessEqual", {"key": "l", "length": 3}, DOC, True),
    ("LenLessEqual", {"key": "l", "length": 2}, DOC, False),
    ("LenLessEqual", {"key": "l", "length": 4}, DOC, True),
    ("LenLessEqual", {"key": "str", "length": 5}, DOC, True),
    ("LenLessEqual", {"key": "a", "length": 1}, DOC, False),
    ("LenLessEqual", {"key": "d", "length": 0}, DOC, True),
    ("LenLessEqual", {"key": "e", "length": 0}, DOC, True),
    ("LenLessEqual", {"key": "missing", "length": 0}, DOC, False),
    ("LenLessEqual", {"key": "n", "length": 0}, DOC, False),
    ("UrlScheme", {"key": "s", "scheme": "https"}, DOC, True),
    ("UrlScheme", {"key": "s", "scheme": "http"}, DOC, False),
    ("UrlScheme", {"key": "s", "scheme": ""}, DOC, False),
    ("UrlScheme", {"key": "str", "scheme": "https"}, DOC, False),
    ("UrlScheme", {"key": "str", "scheme": "http"}, DOC, False),
    ("UrlScheme", {"key": "str", "scheme": ""}, DOC, True),
    ("UrlScheme", {"key": "a", "scheme": "https"}, DOC, False),
    ("UrlScheme", {"key": "a", "scheme": "http"}, DOC, False),
    ("UrlScheme", {"key": "a", "scheme": ""}, DOC, False),
    ("UrlScheme", {"key": "missing", "scheme": "https"}, DOC, False),
    ("UrlScheme", {"key": "missing", "scheme": "http"}, DOC, False),
    ("UrlScheme", {"key": "missing", "scheme": ""}, DOC, False),
    ("UrlScheme", {"key": "e", "scheme": "https"}, DOC, False),
    ("UrlScheme", {"key": "e", "scheme": "http"}, DOC, False),
    ("UrlScheme", {"key": "e", "scheme": ""}, DOC, True),
    ("UrlScheme", {"key": "n", "scheme": "https"}, DOC, False),
    ("UrlScheme", {"key": "n", "scheme": "http"}, DOC, False),
    ("UrlScheme", {"key": "n", "scheme": ""}, DOC, False),
    ("UrlNetloc", {"key": "s", "netloc": "example.com:8080"}, DOC, True),
    ("UrlNetloc", {"key": "s", "netloc": "example.com"}, DOC, False),
    ("UrlNetloc", {"key": "s", "netloc": ""}, DOC, False),
    ("UrlNetloc", {"key": "str", "netloc": "example.com:8080"}, DOC, False),
    ("UrlNetloc", {"key": "str", "netloc": "example.com"}, DOC, False),
    ("UrlNetloc", {"key": "str", "netloc": ""}, DOC, True),
    ("UrlNetloc", {"key": "a", "netloc": "example.com:8080"}, DOC, False),
    ("UrlNetloc", {"key": "a", "netloc": "example.com"}, DOC, False),
    ("UrlNetloc", {"key": "a", "netloc": ""}, DOC, False),
    ("UrlNetloc", {"key": "missing", "netloc": "example.com:8080"}, DOC, False),
    ("UrlNetloc", {"key": "missing", "netloc": "example.com"}, DOC, False),
    ("UrlNetloc", {"key": "missing", "netloc": ""}, DOC, False),
    ("UrlNetloc", {"key": "e", "netloc": "example.com:8080"}, DOC, False),
    ("UrlNetloc", {"key": "e", "netloc": "example.com"}, DOC, False),
    ("UrlNetloc", {"key": "e", "netloc": ""}, DOC, True),
    ("UrlNetloc", {"key": "n", "netloc": "example.com:8080"}, DOC, False),
    ("UrlNetloc", {"key": "n", "netloc": "example.com"}, DOC, False),
    ("UrlNetloc", {"key": "n", "netloc": ""}, DOC, False),
    ("UrlPath", {"key": "s", "path": "/p/q"}, DOC, True),
    ("UrlPath", {"key": "s", "path": "/p/q?x=1"}, DOC, False),
    ("UrlPath", {"key": "s", "path": ""}, DOC, False),
    ("UrlPath", {"key": "str", "path": "/p/q"}, DOC, False),
    ("UrlPath", {"key": "str", "path": "/p/q?x=1"}, DOC, False),
    ("UrlPath", {"key": "str", "path": ""}, DOC, False),
    ("UrlPath", {"key": "a", "path": "/p/q"}, DOC, False),
    ("UrlPath", {"key": "a", "path": "/p/q?x=1"}, DOC, False),
    ("UrlPath", {"key": "a", "path": ""}, DOC, False),
    ("UrlPath", {"key": "missing", "path": "/p/q"}, DOC, False),
    ("UrlPath", {"key": "missing", "path": "/p/q?x=1"}, DOC, False),
    ("UrlPath", {"key": "missing", "path": ""}, DOC, False),
    ("UrlPath", {"key": "e", "path": "/p/q"}, DOC, False),
    ("UrlPath", {"key": "e", "path": "/p/q?x=1"}, DOC, False),
    ("UrlPath", {"key": "e", "path": ""}, DOC, True),
    ("UrlPath", {"key": "n", "path": "/p/q"}, DOC, False),
    ("UrlPath", {"key": "n", "path": "/p/q?x=1"}, DOC, False),
    ("UrlPath", {"key": "n", "path": ""}, DOC, False),
    ("Exist", {"key": 0}, None, False),
    ("Exist", {"key": 0}, "text", True),
    ("Exist", {"key": 0}, [5, 6], True),
    ("Exist", {"key": 0}, 42, False),
    ("Equal", {"key": 0, "value": 5}, None, False),
    ("Equal", {"key": 0, "value": 5}, "text", False),
    ("Equal", {"key": 0, "value": 5}, [5, 6], True),
    ("Equal", {"key": 0, "value": 5}, 42, False),
]

#: (suffix, subject, what 1.4 returned) for ``is<suffix>`` (the parent result) and ``argsIs<suffix>`` (the node
#: arguments); suffix ``Empty`` stands for ``empty`` and ``argsEmpty``.
SUBJECT_CASES = [
    ("Bool", True, True),
    ("Bool", 1, False),
    ("Bool", 1.5, False),
    ("Bool", "s", False),
    ("Bool", [], False),
    ("Bool", [0], False),
    ("Bool", {}, False),
    ("Bool", {"a": 1}, False),
    ("Bool", None, False),
    ("Bool", "", False),
    ("Bool", 0, False),
    ("Dict", True, False),
    ("Dict", 1, False),
    ("Dict", 1.5, False),
    ("Dict", "s", False),
    ("Dict", [], False),
    ("Dict", [0], False),
    ("Dict", {}, True),
    ("Dict", {"a": 1}, True),
    ("Dict", None, False),
    ("Dict", "", False),
    ("Dict", 0, False),
    ("Float", True, False),
    ("Float", 1, False),
    ("Float", 1.5, True),
    ("Float", "s", False),
    ("Float", [], False),
    ("Float", [0], False),
    ("Float", {}, False),
    ("Float", {"a": 1}, False),
    ("Float", None, False),
    ("Float", "", False),
    ("Float", 0, False),
    ("Int", True, True),
    ("Int", 1, True),
    ("Int", 1.5, False),
    ("Int", "s", False),
    ("Int", [], False),
    ("Int", [0], False),
    ("Int", {}, False),
    ("Int", {"a": 1}, False),
    ("Int", None, False),
    ("Int", "", False),
    ("Int", 0, True),
    ("List", True, False),
    ("List", 1, False),
    ("List", 1.5, False),
    ("List", "s", False),
    ("List", [], True),
    ("List", [0], True),
    ("List", {}, False),
    ("List", {"a": 1}, False),
    ("List", None, False),
    ("List", "", False),
    ("List", 0, False),
    ("None", True, False),
    ("None", 1, False),
    ("None", 1.5, False),
    ("None", "s", False),
    ("None", [], False),
    ("None", [0], False),
    ("None", {}, False),
    ("None", {"a": 1}, False),
    ("None", None, True),
    ("None", "", False),
    ("None", 0, False),
    ("Str", True, False),
    ("Str", 1, False),
    ("Str", 1.5, False),
    ("Str", "s", True),
    ("Str", [], False),
    ("Str", [0], False),
    ("Str", {}, False),
    ("Str", {"a": 1}, False),
    ("Str", None, False),
    ("Str", "", True),
    ("Str", 0, False),
    ("Empty", True, True),
    ("Empty", 1, True),
    ("Empty", 1.5, True),
    ("Empty", "s", True),
    ("Empty", [], False),
    ("Empty", [0], True),
    ("Empty", {}, False),
    ("Empty", {"a": 1}, True),
    ("Empty", None, False),
    ("Empty", "", False),
    ("Empty", 0, False),
]


@pytest.mark.parametrize(("suffix", "args", "subject", "expected"), FIELD_CASES)
def test_field_predicates_as_in_selinon_1(suffix: str, args: dict[str, Any], subject: Any, expected: bool) -> None:
    assert BUILTIN["field" + suffix](message=subject, **args) is expected
    assert BUILTIN["argsField" + suffix](node_args=subject, **args) is expected


@pytest.mark.parametrize(("suffix", "subject", "expected"), SUBJECT_CASES)
def test_subject_predicates_as_in_selinon_1(suffix: str, subject: Any, expected: bool) -> None:
    on_result, on_args = ("empty", "argsEmpty") if suffix == "Empty" else ("is" + suffix, "argsIs" + suffix)
    assert BUILTIN[on_result](message=subject) is expected
    assert BUILTIN[on_args](node_args=subject) is expected


#: The 69 predicates of Selinon 1.4 and their parameters, as ``inspect.signature`` showed them.
SIGNATURES = {
    "alwaysFalse": "()",
    "alwaysTrue": "()",
    "argsEmpty": "(node_args)",
    "argsFieldBool": "(node_args, key)",
    "argsFieldContain": "(node_args, key, value)",
    "argsFieldDict": "(node_args, key)",
    "argsFieldEqual": "(node_args, key, value)",
    "argsFieldExist": "(node_args, key)",
    "argsFieldFloat": "(node_args, key)",
    "argsFieldGreater": "(node_args, key, value)",
    "argsFieldGreaterEqual": "(node_args, key, value)",
    "argsFieldInt": "(node_args, key)",
    "argsFieldLenEqual": "(node_args, key, length)",
    "argsFieldLenGreater": "(node_args, key, length)",
    "argsFieldLenGreaterEqual": "(node_args, key, length)",
    "argsFieldLenLess": "(node_args, key, length)",
    "argsFieldLenLessEqual": "(node_args, key, length)",
    "argsFieldLenNotEqual": "(node_args, key, length)",
    "argsFieldLess": "(node_args, key, value)",
    "argsFieldLessEqual": "(node_args, key, value)",
    "argsFieldList": "(node_args, key)",
    "argsFieldNone": "(node_args, key)",
    "argsFieldNotEqual": "(node_args, key, value)",
    "argsFieldStr": "(node_args, key)",
    "argsFieldUrlNetloc": "(node_args, key, netloc)",
    "argsFieldUrlPath": "(node_args, key, path)",
    "argsFieldUrlScheme": "(node_args, key, scheme)",
    "argsIsBool": "(node_args)",
    "argsIsDict": "(node_args)",
    "argsIsFloat": "(node_args)",
    "argsIsInt": "(node_args)",
    "argsIsList": "(node_args)",
    "argsIsNone": "(node_args)",
    "argsIsStr": "(node_args)",
    "empty": "(message)",
    "envEqual": "(env, value)",
    "envExist": "(env)",
    "fieldBool": "(message, key)",
    "fieldContain": "(message, key, value)",
    "fieldDict": "(message, key)",
    "fieldEqual": "(message, key, value)",
    "fieldExist": "(message, key)",
    "fieldFloat": "(message, key)",
    "fieldGreater": "(message, key, value)",
    "fieldGreaterEqual": "(message, key, value)",
    "fieldInt": "(message, key)",
    "fieldLenEqual": "(message, key, length)",
    "fieldLenGreater": "(message, key, length)",
    "fieldLenGreaterEqual": "(message, key, length)",
    "fieldLenLess": "(message, key, length)",
    "fieldLenLessEqual": "(message, key, length)",
    "fieldLenNotEqual": "(message, key, length)",
    "fieldLess": "(message, key, value)",
    "fieldLessEqual": "(message, key, value)",
    "fieldList": "(message, key)",
    "fieldNone": "(message, key)",
    "fieldNotEqual": "(message, key, value)",
    "fieldStr": "(message, key)",
    "fieldUrlNetloc": "(message, key, netloc)",
    "fieldUrlPath": "(message, key, path)",
    "fieldUrlScheme": "(message, key, scheme)",
    "httpStatus": "(host, path, status)",
    "isBool": "(message)",
    "isDict": "(message)",
    "isFloat": "(message)",
    "isInt": "(message)",
    "isList": "(message)",
    "isNone": "(message)",
    "isStr": "(message)",
}


def test_the_predicates_and_parameters_of_selinon_1() -> None:
    parameters = {name: f"({', '.join(inspect.signature(f).parameters)})" for name, f in BUILTIN.items()}
    assert parameters == SIGNATURES


def test_selinon_predicates_is_the_1x_import_path() -> None:
    from selinon.predicates import fieldEqual, fieldLenLessEqual  # what 1.x predicate modules import

    assert fieldEqual is BUILTIN["fieldEqual"] and fieldLenLessEqual({"k": [1]}, "k", 1)
    assert sorted(selinon.predicates.__all__) == sorted(SIGNATURES)
    assert fieldEqual({"k": [1, 2]}, ["k", 1], 2)  # positional arguments, as 1.x's functions took them


def test_always() -> None:
    assert BUILTIN["alwaysTrue"]() is True and BUILTIN["alwaysFalse"]() is False


def test_env_predicates_as_in_selinon_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELINON_TEST_SET", "1")
    monkeypatch.delenv("SELINON_TEST_UNSET", raising=False)
    env_exist, env_equal = BUILTIN["envExist"], BUILTIN["envEqual"]
    assert env_exist(env="SELINON_TEST_SET") is True and env_exist(env="SELINON_TEST_UNSET") is False
    assert env_exist(env="") is False
    assert env_equal(env="SELINON_TEST_SET", value="1") is True
    assert env_equal(env="SELINON_TEST_SET", value=1) is False  # the environment holds strings
    assert env_equal(env="SELINON_TEST_SET", value="2") is False
    assert env_equal(env="SELINON_TEST_UNSET", value="1") is False
    assert env_equal(env="SELINON_TEST_SET", value=None) is False
    assert env_equal(env="SELINON_TEST_UNSET", value=None) is False
    monkeypatch.setenv("SELINON_TEST_UNSET", "now set")  # read when evaluated, not when loaded
    assert env_exist(env="SELINON_TEST_UNSET") is True


class _Status(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response({"/ok": 200, "/redirect": 302}.get(self.path, 404))
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_host() -> Iterator[str]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("path", "status", "expected"),
    [
        ("/ok", 200, True),
        ("/ok", "200", False),
        ("/nope", 404, True),
        ("/nope", 200, False),
        ("/redirect", 302, True),
        ("ok", 200, False),
    ],
)
def test_http_status_as_in_selinon_1(http_host: str, path: str, status: Any, expected: bool) -> None:
    assert BUILTIN["httpStatus"](host=http_host, path=path, status=status) is expected


def test_http_status_of_an_unreachable_server_is_false() -> None:
    with socket.socket() as probe:  # a port that was just free: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert BUILTIN["httpStatus"](host=f"127.0.0.1:{port}", path="/", status=200) is False


def test_the_docs_list_every_predicate() -> None:
    text = (Path(__file__).parents[1] / "docs" / "flows.md").read_text(encoding="utf-8")
    # an argsField* predicate is documented through its field* twin ("each has an argsField* twin")
    listed = {name.replace("argsField", "field", 1) for name in BUILTIN}
    assert "`argsField*` twin" in text
    assert [name for name in sorted(listed) if f"`{name}`" not in text] == []
