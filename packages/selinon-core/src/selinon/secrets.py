"""Finding secrets in a storage configuration, and hiding them from everything that is shown or logged.

This module is the one place that knows what a secret looks like: an option whose name says so, a password in
a URL (``scheme://user:password@host``) and a secret ``name=value`` pair of a query or connection string. It
runs when a configuration is loaded, printed or fails, never on a storage call that succeeds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import unquote

MASK = "***"

# Option names whose values are secrets, whatever the adapter (case-insensitive, anywhere in the name).
_SECRET_NAME = re.compile(r"pass(word|wd|phrase)?$|secret|token|credential|private_key|api_key|session_key", re.I)
# user:password@ inside any URL or connection string. The password runs to the last "@" before the host, so that
# one written with an unescaped "@" (user:p@ss@host) is hidden whole: the parts after its first "@" hold no "/",
# "?" or "#", which the host is followed by.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/\s]*:)(?P<password>[^@\s]*(?:@[^@\s/?#]*)*)(?=@)", re.I)
# name=value in a URL's query (?password=x&sslpassword=y) or a keyword/value string (host=h password=x).
_PARAMETER = re.compile(r"(?P<head>(?:^|(?<=[?&\s]))(?P<name>[a-z][\w.\-]*)=)(?P<value>[^&#\s]+)", re.I)


class Secrets(frozenset[str]):
    """Secret values; a repr tells how many there are, never what they are."""

    def __repr__(self) -> str:
        return f"<{len(self)} secrets hidden>"

    __str__ = __repr__


def is_secret_option(name: str, extra: Iterable[str] = ()) -> bool:
    return bool(_SECRET_NAME.search(name)) or name in extra


def secrets_in(configuration: Any, extra: Iterable[str] = ()) -> Secrets:
    """Every secret value in a configuration (nested mappings and lists included), as written and URL-decoded."""
    extra = frozenset(extra)
    found: set[str] = set()
    for key, value in _walk(configuration):
        if isinstance(value, str):
            if key is not None and is_secret_option(key, extra) and value:
                found.add(value)
            found.update(m.group("password") for m in _URL_PASSWORD.finditer(value))
            found.update(m.group("value") for m in _PARAMETER.finditer(value) if is_secret_option(m["name"], extra))
    return Secrets(form for secret in found for form in (secret, unquote(secret)) if form)


def mask_configuration(configuration: Any, extra: Iterable[str] = ()) -> Any:
    """A copy of the configuration that is safe to print.

    A positional configuration (Selinon 1.x's list form) names no option, so each string in it is masked: only
    the adapter's signature tells which one is a password."""
    extra = frozenset(extra)

    def mask(key: str | None, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: mask(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [mask(None, v) for v in value]
        if key is not None and value and is_secret_option(key, extra):
            return MASK
        if isinstance(value, str):
            return _mask_patterns(value, extra)
        return value

    if isinstance(configuration, list | tuple):
        return [MASK if isinstance(v, str) and v else mask(None, v) for v in configuration]
    return mask(None, configuration)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every known secret, and every password inside a URL or a query, in a message."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return _mask_patterns(text)


def leaks(exc: BaseException, secrets: Iterable[str]) -> bool:
    """Whether an exception, or one chained to it (as cause or context, shown in a traceback or not), shows a
    secret in its message or its arguments: such an exception must not be kept in a chain."""
    secrets = tuple(secrets)
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts = [_text(current), *(a if isinstance(a, str) else _text(a) for a in current.args)]
        if any(scrub(text, secrets) != text for text in texts):
            return True
        pending += [current.__cause__, current.__context__]
    return False


def _text(value: object) -> str:
    try:
        return value if isinstance(value, str) else (str(value) if isinstance(value, BaseException) else repr(value))
    except Exception:  # a broken __str__ or __repr__ shows nothing
        return ""


def _mask_patterns(text: str, extra: frozenset[str] = frozenset()) -> str:
    text = _URL_PASSWORD.sub(rf"\g<head>{MASK}", text)
    return _PARAMETER.sub(lambda m: m["head"] + MASK if is_secret_option(m["name"], extra) else m[0], text)


def _walk(value: Any, key: str | None = None) -> Iterator[tuple[str | None, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, str(k))
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _walk(v, None)
    else:
        yield key, value
