"""Finding secrets in a storage configuration, and hiding them from everything that is shown or logged."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

MASK = "***"

# Option names whose values are secrets, whatever the adapter (case-insensitive, anywhere in the name).
_SECRET_NAME = re.compile(r"pass(word|wd|phrase)?$|secret|token|credential|private_key|api_key|session_key", re.I)
# user:password@ inside any URL or connection string.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/@\s]*:)(?P<password>[^@\s]+)(?=@)", re.I)


def is_secret_option(name: str, extra: Iterable[str] = ()) -> bool:
    return bool(_SECRET_NAME.search(name)) or name in extra


def secrets_in(configuration: Any, extra: Iterable[str] = ()) -> set[str]:
    """Every secret value in a configuration (nested mappings and lists included)."""
    extra = frozenset(extra)
    found: set[str] = set()
    for key, value in _walk(configuration):
        if isinstance(value, str):
            if key is not None and is_secret_option(key, extra) and value:
                found.add(value)
            found.update(m.group("password") for m in _URL_PASSWORD.finditer(value))
    return found


def mask_configuration(configuration: Any, extra: Iterable[str] = ()) -> Any:
    """A copy of the configuration that is safe to print."""
    extra = frozenset(extra)

    def mask(key: str | None, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: mask(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [mask(None, v) for v in value]
        if key is not None and value and is_secret_option(key, extra):
            return MASK
        if isinstance(value, str):
            return _URL_PASSWORD.sub(rf"\g<head>{MASK}", value)
        return value

    return mask(None, configuration)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every known secret, and every password inside a URL, in a message."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return _URL_PASSWORD.sub(rf"\g<head>{MASK}", text)


def _walk(value: Any, key: str | None = None) -> Iterator[tuple[str | None, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, str(k))
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _walk(v, None)
    else:
        yield key, value
