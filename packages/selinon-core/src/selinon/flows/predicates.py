"""Selinon's built-in predicates, and finding a predicate by name: built in, or from ``global: predicates_module``.

A predicate is a plain function that returns whether an edge fires. Two parameter names are filled in by the
runtime instead of ``args:``: ``message``, the stored result of the parent that the condition's ``node:`` names,
and ``node_args``, the flow's node arguments. The built-ins keep Selinon 1.x's names, parameters and behaviour: a
``key`` is one key or a list of keys and list indexes (``[items, 0, sku]``), and a value that is missing, or that
cannot be compared, measured or parsed, makes the predicate false rather than failing the flow.
"""

from __future__ import annotations

import functools
import http.client
import importlib
import inspect
import operator
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

from selinon.config import _suggest, _type_name
from selinon.errors import ConfigurationError

#: Parameters the runtime fills in; every other parameter comes from the condition's ``args:``.
IMPLICIT = ("message", "node_args")
#: Seconds ``httpStatus`` waits for an answer; a server that does not answer in time makes it false.
HTTP_TIMEOUT = 10.0

_MISSING = object()


def lookup(subject: Any, key: Any) -> Any:
    """The value at ``key`` (a key, or a list of keys and list indexes) in ``subject``; raises when it is absent."""
    return functools.reduce(operator.getitem, key if isinstance(key, list) else [key], subject)


def _holds(test: Callable[..., Any], subject: Any, key: Any, *arguments: Any) -> bool:
    try:
        return bool(test(lookup(subject, key), *arguments))
    except Exception:  # a missing key, or a value of another type than the test expects: the condition is false
        return False


def _url_part(part: str) -> Callable[[Any, str], bool]:
    return lambda found, expected: bool(getattr(urlparse(found), part) == expected)


def _is(cls: type | None) -> Callable[[Any], bool]:
    return (lambda value: value is None) if cls is None else (lambda value: isinstance(value, cls))


#: The tests of the ``field*`` predicates (each also has an ``argsField*`` twin that reads the node arguments):
#: name suffix -> (its parameters after ``key``, the test of the value found at ``key``).
FIELD_TESTS: dict[str, tuple[tuple[str, ...], Callable[..., Any]]] = {
    "Exist": ((), lambda found: True),
    "Equal": (("value",), operator.eq),
    "NotEqual": (("value",), operator.ne),
    "Greater": (("value",), operator.gt),
    "GreaterEqual": (("value",), operator.ge),
    "Less": (("value",), operator.lt),
    "LessEqual": (("value",), operator.le),
    "Contain": (("value",), lambda found, value: value in found),
    "LenEqual": (("length",), lambda found, length: len(found) == length),
    "LenNotEqual": (("length",), lambda found, length: len(found) != length),
    "LenGreater": (("length",), lambda found, length: len(found) > length),
    "LenGreaterEqual": (("length",), lambda found, length: len(found) >= length),
    "LenLess": (("length",), lambda found, length: len(found) < length),
    "LenLessEqual": (("length",), lambda found, length: len(found) <= length),
    "UrlScheme": (("scheme",), _url_part("scheme")),
    "UrlNetloc": (("netloc",), _url_part("netloc")),
    "UrlPath": (("path",), _url_part("path")),
    "Bool": ((), _is(bool)),
    "Dict": ((), _is(dict)),
    "Float": ((), _is(float)),
    "Int": ((), _is(int)),  # True and False are ints too, as in Python and Selinon 1.x
    "List": ((), _is(list)),
    "None": ((), _is(None)),
    "Str": ((), _is(str)),
}
#: The type tests of ``is*`` (the parent result itself) and ``argsIs*`` (the node arguments themselves).
TYPE_TESTS = ("Bool", "Dict", "Float", "Int", "List", "None", "Str")


def _named(name: str, parameters: Iterable[str], body: Callable[..., bool], doc: str) -> Callable[..., bool]:
    """A predicate function with 1.x's name and parameters, so that it is called and introspected as 1.x's was."""
    signature = inspect.Signature(
        [inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in parameters],
        return_annotation=bool,
    )

    def predicate(*args: Any, **kwargs: Any) -> bool:
        return body(**signature.bind(*args, **kwargs).arguments)

    predicate.__name__ = predicate.__qualname__ = name
    predicate.__module__ = __name__
    predicate.__doc__ = doc
    predicate.__signature__ = signature  # type: ignore[attr-defined]
    return predicate


def _field_predicates() -> Iterable[Callable[..., bool]]:
    for suffix, (extra, test) in FIELD_TESTS.items():
        for prefix, subject, whose in (
            ("field", "message", "the parent result"),
            ("argsField", "node_args", "the node arguments"),
        ):
            body = functools.partial(_field_body, test, subject, extra)
            doc = f"Whether the value at ``key`` in {whose} passes the {suffix} test; false when it is missing."
            yield _named(prefix + suffix, (subject, "key", *extra), body, doc)
    for suffix in TYPE_TESTS:
        body = functools.partial(_subject_body, FIELD_TESTS[suffix][1])
        yield _named(f"is{suffix}", ("message",), body, f"Whether the parent result itself passes the {suffix} test.")
        yield _named(f"argsIs{suffix}", ("node_args",), body, f"Whether the node arguments pass the {suffix} test.")


def _field_body(test: Callable[..., Any], subject: str, extra: tuple[str, ...], **arguments: Any) -> bool:
    return _holds(test, arguments[subject], arguments["key"], *(arguments[p] for p in extra))


def _subject_body(test: Callable[[Any], Any], **arguments: Any) -> bool:
    (subject,) = arguments.values()
    return bool(test(subject))


def alwaysTrue() -> bool:
    """Always holds; an edge without ``condition:`` has this one."""
    return True


def alwaysFalse() -> bool:
    """Never holds."""
    return False


def empty(message: Any) -> bool:
    """Holds when the parent result is NOT empty (truthy): the name says the opposite, the behaviour is 1.x's."""
    return bool(message)


def argsEmpty(node_args: Any) -> bool:
    """Holds when the node arguments are NOT empty (truthy): the name says the opposite, the behaviour is 1.x's."""
    return bool(node_args)


def envExist(env: str) -> bool:
    """The environment variable ``env`` is set (read when the condition is evaluated)."""
    return env in os.environ


def envEqual(env: str, value: Any) -> bool:
    """The environment variable ``env`` is set and equals ``value`` (a string)."""
    return env in os.environ and os.environ[env] == value


def httpStatus(host: str, path: str, status: int) -> bool:
    """A HEAD request to ``http://host/path`` answers with ``status``; false when the server cannot be reached."""
    connection = http.client.HTTPConnection(host, timeout=HTTP_TIMEOUT)
    try:
        connection.request("HEAD", path)
        return connection.getresponse().status == status
    except Exception:
        return False
    finally:
        connection.close()


_FIXED: tuple[Callable[..., bool], ...] = (alwaysTrue, alwaysFalse, empty, argsEmpty, envExist, envEqual, httpStatus)
BUILTIN: dict[str, Callable[..., bool]] = {f.__name__: f for f in (*_FIXED, *_field_predicates())}
globals().update(BUILTIN)  # importable by name, as ``from selinon.predicates import fieldEqual`` was in 1.x


@dataclass(frozen=True)
class Predicate:
    """A predicate found by name, with what a condition must give it and what the runtime fills in."""

    name: str
    function: Callable[..., Any]
    #: Parameters given through ``args:``, and those of them without a default.
    parameters: tuple[str, ...]
    required: tuple[str, ...]
    reads_result: bool
    reads_node_args: bool
    #: True when the function takes ``**kwargs``: then ``args:`` may hold any name.
    open_ended: bool = False
    builtin: bool = True

    def check_args(self, args: dict[str, Any], where: str) -> None:
        for arg in args:
            if arg not in self.parameters and not self.open_ended:
                expected = ", ".join(self.parameters) or "none"
                raise ConfigurationError(f"{where}: {self.name} takes no argument {arg!r}; its arguments: {expected}")
        for parameter in self.required:
            if parameter not in args:
                raise ConfigurationError(f"{where}: {self.name} needs `args: {{{parameter}: ...}}`; add it")
        if self.builtin:
            for arg, value in args.items():
                check, kind = ARGUMENT_TYPES.get(arg, (None, ""))
                if check is not None and not check(value):
                    raise ConfigurationError(f"{where}: `{arg}:` of {self.name} must be {kind}, not {_shown(value)}")


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str | int | float) and not isinstance(value, bool) else _type_name(value)


def _is_key_part(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool)


def _is_key(value: Any) -> bool:
    return _is_key_part(value) or (isinstance(value, list) and all(_is_key_part(v) for v in value))


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


#: Checks of built-in predicates' arguments, by name, made when a flow is loaded: a condition that could never
#: hold, such as ``length: '3'`` (a string is never a length), is refused instead of silently staying false.
ARGUMENT_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "key": (_is_key, "a key: a string, a whole number, or a list of them such as [items, 0, sku]"),
    "length": (_is_count, "a whole number, 0 or more (without quotes)"),
    "status": (_is_count, "an HTTP status code such as 200 (without quotes)"),
    "env": (lambda v: isinstance(v, str) and bool(v), "the name of an environment variable"),
    "host": (lambda v: isinstance(v, str) and bool(v), "a host name, with an optional port, such as example.com:8080"),
    "path": (lambda v: isinstance(v, str), "a string such as /index.html"),
    "scheme": (lambda v: isinstance(v, str), "a string such as https"),
    "netloc": (lambda v: isinstance(v, str), "a string such as example.com:8080"),
}


def describe(name: str, function: Callable[..., Any], builtin: bool, where: str) -> Predicate:
    """What ``function`` needs, from its signature; a function that cannot be called with keywords is an error."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"{where}: predicate {name!r} is not a function; define it with `def {name}(...)`"
        ) from None
    parameters, required, open_ended = [], [], False
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            open_ended = True
        elif parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise ConfigurationError(
                f"{where}: predicate {name!r} has a positional-only parameter {parameter.name!r}; predicates are "
                "called with keyword arguments, so drop the `/` from its definition"
            )
        elif parameter.kind is not inspect.Parameter.VAR_POSITIONAL and parameter.name not in IMPLICIT:
            parameters.append(parameter.name)
            if parameter.default is inspect.Parameter.empty:
                required.append(parameter.name)
    names = signature.parameters
    return Predicate(
        name=name,
        function=function,
        parameters=tuple(parameters),
        required=tuple(required),
        reads_result="message" in names,
        reads_node_args="node_args" in names,
        open_ended=open_ended,
        builtin=builtin,
    )


_BUILTIN_PREDICATES = {name: describe(name, f, True, "selinon") for name, f in BUILTIN.items()}


@dataclass(frozen=True)
class Predicates:
    """The predicates a configuration can name: those of its ``predicates_module`` first, then the built-ins."""

    module: ModuleType | None = None

    @classmethod
    def from_module(cls, name: str | None, where: str) -> Predicates:
        if name is None:
            return BUILTINS
        try:
            return cls(importlib.import_module(name))
        except Exception as exc:
            raise ConfigurationError(
                f"{where}: cannot import {name!r}: {type(exc).__name__}: {exc}; check the module name and that it "
                "is on the Python path (selinon run and attach() add the directories of the YAML files)"
            ) from None

    def get(self, name: str, where: str) -> Predicate:
        if self.module is not None:
            function = getattr(self.module, name, _MISSING)
            if function is not _MISSING and function is not BUILTIN.get(name):
                if not callable(function):
                    raise ConfigurationError(
                        f"{where}: {self.module.__name__}.{name} is not a function, so it cannot be a predicate; "
                        "rename it or the predicate"
                    )
                return describe(name, function, False, where)
        if name in _BUILTIN_PREDICATES:
            return _BUILTIN_PREDICATES[name]
        known = sorted({*BUILTIN, *self._module_functions()})
        where_looked = (
            f"neither built in nor defined in {self.module.__name__}" if self.module else "not a built-in predicate"
        )
        raise ConfigurationError(
            f"{where}: predicate {name!r} is {where_looked}; "
            f"{_suggest(name, known, 'see the list of predicates in docs/flows.md')}"
        )

    def _module_functions(self) -> list[str]:
        if self.module is None:
            return []
        return [n for n, v in vars(self.module).items() if not n.startswith("_") and inspect.isfunction(v)]


BUILTINS = Predicates()
