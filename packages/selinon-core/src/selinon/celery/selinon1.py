"""Selinon 1.x's Celery task names, answered by this Selinon's workers while a deployment upgrades
(docs/upgrading.md, "Celery: upgrading the workers").

- ``selinon.Dispatcher`` with a flow name and node arguments only is a flow that a 1.x client started with
  ``run_flow``: it starts here, under the same id, so the client's ``AsyncResult`` follows it.
- Anything else sent under those names belongs to a flow that a 1.x worker runs (a dispatcher pass carrying 1.x's
  state, a task envelope, a selective run computed by 1.x): this Selinon cannot continue it, so it is handed back to
  its queue for a 1.x worker, for :data:`HAND_BACK_FOR` seconds, and then fails with one line saying how to let
  1.x's flows finish first.

1.x workers, for their part, drop the messages of this Selinon (``selinon.dispatcher``, ``selinon.task``) as
unregistered tasks: the two must not share queues, which is why the upgrade drains 1.x's flows first.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from selinon.celery import delivery
from selinon.errors import ConfigurationError

if TYPE_CHECKING:
    from selinon.celery import CeleryFlows

log = logging.getLogger(__name__)

DISPATCHER = "selinon.Dispatcher"
ENVELOPE = "selinon.SelinonTaskEnvelope"
#: How long a message of a flow that Selinon 1.x runs is handed back, in seconds.
HAND_BACK_FOR = 600.0
_DRAIN = "let Selinon 1.x's workers finish their flows before they stop (docs/upgrading.md)"


def register(app: Any, flows: CeleryFlows) -> None:
    """Answer 1.x's task names on ``app``, for ``flows``."""
    options = {"bind": True, "shared": False, "acks_late": True, "reject_on_worker_lost": True}

    def dispatcher(task: Any, flow_name: str = "?", **arguments: Any) -> None:
        # 1.x's run_flow sends exactly these two; a 1.x dispatcher starting a sub-flow sends `parent` and more.
        if set(arguments) <= {"node_args"} and flow_name in flows.system.flows:
            flow_id = flows._start(flow_name, arguments.get("node_args"), None, flow_id=task.request.id)
            log.info("flow %s (%s): started by a Selinon 1.x client", flow_name, flow_id)
            raise delivery.Ignore()  # no record under the flow id: the dispatcher keeps its own there
        _hand_back(task, f"a pass of flow {flow_name!r} that Selinon 1.x started")

    def envelope(task: Any, task_name: str = "?", flow_name: str = "?", **_: Any) -> None:
        _hand_back(task, f"task {task_name!r} of flow {flow_name!r} that Selinon 1.x started")

    app.task(name=DISPATCHER, **options)(dispatcher)
    app.task(name=ENVELOPE, **options)(envelope)


def _hand_back(task: Any, what: str) -> None:
    delivery.hand_back(task, f"{what}: only a Selinon 1.x worker can run it", HAND_BACK_FOR)
    raise ConfigurationError(
        f"{what} ({task.request.id}) was handed back for {HAND_BACK_FOR:.0f}s and no Selinon 1.x worker took it: "
        f"it cannot run here; {_DRAIN}"
    )
