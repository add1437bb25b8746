"""One dispatcher pass at a time per flow, and nudges from tasks that end, through keys of a Redis result backend.

A flow's dispatcher is a chain of Celery messages, each sent with a countdown (the flow's sampling strategy). With
a Redis result backend, a task that ends also *nudges* its flow: it sends a dispatcher message at once, so that the
flow goes on without waiting for the chain's next look. Several messages of one flow may then arrive together, so a
pass first takes the flow's lock (``SET NX`` with a lease, in case its worker dies), and a nudge that finds it taken
leaves a mark that the holder reads when it is done. A nudge is sent only when none is on its way already, so the
ends of many parallel tasks make one pass, not one each.

Other result backends have no such atomic operation: their flows have no lock and no nudges, only the chain.
"""

from __future__ import annotations

import uuid
from typing import Any

#: Seconds a pass holds its flow's lock at most (a worker that dies holding it delays the flow this long).
LEASE = 30
#: Seconds a nudge mark lives (a nudge lost on its way delays the flow at most this long, or the chain's look).
MARK = 60
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class Coordinator:
    """The flow locks and nudge marks of one Redis result backend (keys under the backend's key prefix)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    @classmethod
    def of(cls, backend: Any) -> Coordinator | None:
        """The coordinator of ``backend``, or None for a backend without atomic operations (no nudges)."""
        return cls(backend) if type(backend).__name__ in ("RedisBackend", "SentinelBackend") else None

    def _key(self, kind: str, flow_id: str) -> bytes:
        return self.backend.get_key_for_task(f"selinon-{kind}:{flow_id}")  # type: ignore[no-any-return]

    def acquire(self, flow_id: str) -> str | None:
        """Take the flow's lock: a token to release it with, or None when another pass holds it."""
        token = uuid.uuid4().hex
        taken = self.backend.client.set(self._key("lock", flow_id), token, nx=True, ex=LEASE)
        return token if taken else None

    def release(self, flow_id: str, token: str) -> None:
        self.backend.client.eval(_RELEASE, 1, self._key("lock", flow_id), token)

    def mark(self, flow_id: str) -> bool:
        """Ask for a look at the flow: True when none was asked for since the last pass began (send a nudge)."""
        return bool(self.backend.client.set(self._key("look", flow_id), b"1", nx=True, ex=MARK))

    def unmark(self, flow_id: str) -> None:
        """A pass begins: what was asked for until now, it sees."""
        self.backend.client.delete(self._key("look", flow_id))

    def marked(self, flow_id: str) -> bool:
        return bool(self.backend.client.exists(self._key("look", flow_id)))
