"""The Celery tests' `global: predicates_module`: a custom predicate beside the built-ins."""

from __future__ import annotations

from typing import Any


def fieldBelow(message: Any, key: str, limit: float) -> bool:
    """The number at ``key`` of the parent result is below ``limit``."""
    value = message.get(key) if isinstance(message, dict) else None
    return isinstance(value, int | float) and value < limit
