"""Sampling strategies: how long a Celery dispatcher waits before it looks at its flow again (``sampling:``).

The names and arguments are Selinon 1.x's, so ``sampling: {name: biexponential_increase, args: {...}}`` keeps its
meaning. Each strategy gets ``status`` first, a mapping with ``previous_retry`` (the last wait, ``None`` on the
first pass), ``active_nodes`` (nodes the flow waits for), ``failed_nodes``, ``new_started_nodes``,
``new_fallback_nodes`` and ``finished_nodes``, then the ``args:`` of the configuration; ``new_finished_nodes`` (the
nodes whose end this pass took in) is this project's addition. It returns the seconds to wait, or ``None`` when
nothing is left to wait for. A custom strategy is such a function, named with ``import:``.
"""

from __future__ import annotations

import random as _random
from typing import Any


def _started(status: dict[str, Any]) -> bool:
    return bool(status["new_started_nodes"] or status["new_fallback_nodes"])


def linear_increase(status: dict[str, Any], start_retry: float, max_retry: float, step: float) -> float | None:
    """Grow by ``step`` after a pass that started nodes (up to ``max_retry``), back to ``start_retry`` otherwise."""
    if not status["active_nodes"]:
        return None
    previous: float | None = status["previous_retry"]
    if previous is None or not _started(status):
        return start_retry
    return min(previous + step, max_retry)


def linear_adapt(status: dict[str, Any], start_retry: float, max_retry: float, step: float) -> float | None:
    """Grow by ``step`` after a pass that started nodes (up to ``max_retry``), shrink by ``step`` otherwise."""
    if not status["active_nodes"]:
        return None
    previous: float | None = status["previous_retry"]
    if previous is None:
        return start_retry
    if _started(status):
        return min(previous + step, max_retry)
    return max(previous - step, start_retry)


def biexponential_increase(status: dict[str, Any], start_retry: float, max_retry: float) -> float | None:
    """Double after a pass that started nodes (up to ``max_retry``), back to ``start_retry`` otherwise."""
    if not status["active_nodes"]:
        return None
    previous: float | None = status["previous_retry"]
    if previous is None or not _started(status):
        return start_retry
    return min(previous * 2, max_retry)


def biexponential_decrease(status: dict[str, Any], start_retry: float, stop_retry: float) -> float | None:
    """Start at ``start_retry`` and halve on every pass, down to ``stop_retry``."""
    if not status["active_nodes"]:
        return None
    previous: float | None = status["previous_retry"]
    return start_retry if previous is None else max(previous / 2, stop_retry)


def biexponential_adapt(status: dict[str, Any], start_retry: float, max_retry: float) -> float | None:
    """Double after a pass that started nodes (up to ``max_retry``), halve otherwise (down to ``start_retry``)."""
    previous: float | None = status["previous_retry"]
    if previous is None:
        return start_retry
    if not status["active_nodes"]:
        return None
    if _started(status):
        return min(previous * 2, max_retry)
    return max(previous / 2, start_retry)


def random(status: dict[str, Any], start_retry: int, max_retry: int) -> float | None:
    """A random whole number of seconds between ``start_retry`` and ``max_retry``."""
    if not status["active_nodes"]:
        return None
    return _random.randint(start_retry, max_retry)  # timing, not security


def constant(status: dict[str, Any], retry: float) -> float | None:
    """Always ``retry`` seconds."""
    return retry if status["active_nodes"] else None


def backoff(status: dict[str, Any], start_retry: float, max_retry: float) -> float | None:
    """``start_retry`` after a pass in which something changed (a node ended or started), else twice the previous
    wait, up to ``max_retry``: a flow whose tasks run long is looked at less and less often. The default of Celery
    dispatchers (``start_retry`` is ``attach(poll_interval=...)``)."""
    if not status["active_nodes"]:
        return None
    previous: float | None = status["previous_retry"]
    if previous is None or _started(status) or status.get("new_finished_nodes"):
        return start_retry
    return min(max(previous, start_retry) * 2, max_retry)


BUILTIN = {
    f.__name__: f
    for f in (
        linear_increase,
        linear_adapt,
        biexponential_increase,
        biexponential_decrease,
        biexponential_adapt,
        random,
        constant,
        backoff,
    )
}
