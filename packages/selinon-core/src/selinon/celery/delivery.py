"""Getting Selinon's Celery messages through broker and result-backend outages, and naming them for operators.

- Sends from workers (dispatcher passes, task envelopes, retries, nudges) use :data:`RETRY_POLICY`: a broker that
  restarts is waited for, about a minute, instead of failing the flow.
- :func:`patiently` does the same for result-backend calls and raises :class:`Unreachable` at the end; the caller
  then hands its message back to the broker rather than reporting anything final.
- :func:`hand_back` gives a message this worker cannot run (a flow or task of another configuration) to another
  worker, for a bounded time.
- :func:`names` gives every message a readable Celery name (``shadow``) and short argument reprs, and
  :func:`quiet_dispatcher_logs` moves Celery's per-pass INFO lines of dispatchers to DEBUG.
"""

from __future__ import annotations

import importlib
import logging
import reprlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

from selinon.errors import SelinonError

Ignore: Any = importlib.import_module("celery.exceptions").Ignore
Reject: Any = importlib.import_module("celery.exceptions").Reject
_kombu_errors: Any = importlib.import_module("kombu.exceptions")
OperationalError: Any = _kombu_errors.OperationalError
EncodeError: Any = _kombu_errors.EncodeError
ContentDisallowed: Any = _kombu_errors.ContentDisallowed

log = logging.getLogger(__name__)
T = TypeVar("T")

DISPATCHER = "selinon.dispatcher"
TASK = "selinon.task"

#: Sends from workers ride out a broker restart: tries 0.2 s apart at first, then every 2 s, for about a minute
#: (kombu's retry policy, as Celery's ``apply_async(retry_policy=...)`` takes it).
RETRY_POLICY = {"max_retries": 30, "interval_start": 0.2, "interval_step": 0.3, "interval_max": 2.0}
#: Seconds :func:`patiently` keeps trying a result-backend call, as long as :data:`RETRY_POLICY` lasts.
PATIENCE = 60.0

#: Message headers of a handed-back copy: when the message was first handed back (seconds since the epoch), and
#: how often.
HANDED_BACK = "selinon_handed_back"
HAND_BACKS = "selinon_hand_backs"


class Unreachable(SelinonError):
    """The broker or the result backend did not answer for :data:`PATIENCE` seconds: hand the message back."""


def transient_errors(app: Any) -> tuple[type[BaseException], ...]:
    """The errors of ``app``'s broker and result backend that mean "not reachable now": tried again."""
    backend = getattr(app.backend, "connection_errors", ())
    return (OperationalError, OSError, *(backend if isinstance(backend, tuple) else ()))


_last_warning = 0.0


def patiently(call: Callable[[], T], what: str, transient: tuple[type[BaseException], ...]) -> T:
    """``call()``, tried again with growing pauses (0.1 s doubling to 2 s) while it raises a ``transient`` error,
    for up to :data:`PATIENCE` seconds; then :class:`Unreachable`. Other errors are raised at once."""
    global _last_warning
    began, pause = time.monotonic(), 0.1
    while True:
        try:
            return call()
        except transient as exc:
            if time.monotonic() - began + pause > PATIENCE:
                raise Unreachable(f"{what}: no answer for {PATIENCE:g}s: {type(exc).__name__}: {exc}") from None
            if time.monotonic() - _last_warning > 10:  # an outage is worth a line every 10 s, not one per call
                _last_warning = time.monotonic()
                log.warning("%s: %s: %s; trying again for up to %gs", what, type(exc).__name__, exc, PATIENCE)
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def publish(send: Callable[[], T], what: str) -> T:
    """``send()``, an ``apply_async`` given :data:`RETRY_POLICY`; tried again while it fails on anything but
    encoding the message, for up to :data:`PATIENCE` seconds, then :class:`Unreachable`.

    Not only connection errors: while a Redis broker restarts, kombu's Redis channel can fail a publish with an
    ``AttributeError`` (kombu 5.7) that its retry policy does not retry."""
    began, pause = time.monotonic(), 0.2
    while True:
        try:
            return send()
        except (EncodeError, ContentDisallowed):
            raise  # the message itself: sending it again would fail the same way
        except Exception as exc:
            if time.monotonic() - began + pause > PATIENCE:
                raise Unreachable(f"{what}: the broker did not take it: {type(exc).__name__}: {exc}") from None
            log.warning("%s: not sent (%s: %s); trying again", what, type(exc).__name__, exc)
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def hand_back(task: Any, reason: str, timeout: float) -> None:
    """Give the message ``task`` is running back to its queue for another worker, and end this run of it.

    For a worker that cannot run a message, such as one of an older or newer configuration during a rolling
    deploy: after a pause (0.5 s the first time, doubling up to 5 s, which keeps this worker from taking the message
    straight back), a copy with the same task id, arguments, tries and name goes back to the queue it came from, and
    this run ends without a result (``Ignore``). A process warns once per ``reason`` and ``timeout``; the other
    hand-backs log at DEBUG. Once the message has been handed back for ``timeout`` seconds this returns instead, and
    the caller ends the message its own way.
    """
    request = task.request
    headers = dict(getattr(request, "headers", None) or {})
    first, count = headers.get(HANDED_BACK), int(headers.get(HAND_BACKS) or 0)
    now = time.time()
    if first is not None and now - float(first) >= timeout:
        return
    where = f"{request.shadow or task.name}[{request.id}]"
    if now - _warned.get(reason, -timeout) >= timeout:
        _warned[reason] = now
        log.warning("%s: %s; handed back for another worker (for up to %gs)", where, reason, timeout)
    else:
        log.debug("%s: %s; handed back again (%d)", where, reason, count + 1)
    time.sleep(min(0.5 * 2**count, 5.0))
    copy = task.signature_from_request()  # the same task id, arguments, tries, queue and shadow name
    try:
        copy.apply_async(
            headers={**headers, HANDED_BACK: first or now, HAND_BACKS: count + 1},
            retry=True,
            retry_policy=RETRY_POLICY,
            argsrepr=getattr(request, "argsrepr", None),
            kwargsrepr=getattr(request, "kwargsrepr", None),
        )
    except Exception as exc:  # the broker is gone too: it has the message still, unacknowledged
        raise Reject(f"{reason}; it could not be handed back: {type(exc).__name__}: {exc}", requeue=True) from None
    raise Ignore()


#: When this process last warned of each hand-back reason.
_warned: dict[str, float] = {}


_short = reprlib.Repr()
_short.maxstring, _short.maxother, _short.maxlevel, _short.maxdict, _short.maxlist = 60, 60, 3, 6, 6


def short(value: Any) -> str:
    """A repr of at most a line: what Celery events and logs show of a message's arguments."""
    text = _short.repr(value)
    return text if len(text) <= 160 else text[:157] + "..."


def names(flow: str, task: str | None, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None) -> dict[str, str]:
    """``apply_async`` options that show a message as ``selinon.dispatcher:Flow`` (``task`` None) or
    ``selinon.task:Flow.Task`` in Celery's logs, events and Flower, with short reprs of ``args`` and ``kwargs``
    (what is worth showing, never a flow's whole state)."""
    name = f"{DISPATCHER}:{flow}" if task is None else f"{TASK}:{flow}.{task}"
    return {"shadow": name, "argsrepr": short(args), "kwargsrepr": short(kwargs or {})}


class _QuietPasses(logging.Filter):
    """Celery's INFO lines of each dispatcher message ("received", "ignored") as DEBUG: a flow makes several
    passes, and Selinon logs its start and end itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.levelno == logging.INFO and isinstance(args, dict) and str(args.get("name")).startswith(DISPATCHER):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def quiet_dispatcher_logs() -> None:
    for name in ("celery.app.trace", "celery.worker.strategy"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _QuietPasses) for f in logger.filters):
            logger.addFilter(_QuietPasses())
