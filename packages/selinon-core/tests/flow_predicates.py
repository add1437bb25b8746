"""The flow tests' `global: predicates_module`, written as Selinon 1.x users write theirs."""

from __future__ import annotations

import functools
import operator
from typing import Any

from selinon.predicates import *  # noqa: F403 - 1.x predicate modules start so, to offer the built-ins as well


def isEven(message: Any, key: Any) -> bool:
    """The number at ``key`` in the parent result is even."""
    try:
        return functools.reduce(operator.getitem, key if isinstance(key, list) else [key], message) % 2 == 0
    except (KeyError, IndexError, TypeError):
        return False


def argsHasWord(node_args: Any, word: str, case_sensitive: bool = True) -> bool:
    """The node arguments' ``text`` holds ``word``; ``case_sensitive`` may be left out."""
    text = str(node_args.get("text", ""))
    return word in text if case_sensitive else word.lower() in text.lower()
