"""The Celery app of the tests' workers; each worker reads its broker, queues and configuration from its environment."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from celery import Celery
from kombu import Queue

from selinon.celery import CeleryFlows, attach
from selinon.flows import System


def make_app(
    broker: str, backend: str, prefix: str, queues: Sequence[str], config: Any, visibility_timeout: float = 30
) -> tuple[Celery, CeleryFlows]:
    """An app whose every key and queue carries ``prefix``, so that test runs sharing a server never meet."""
    app = new_app(broker, backend, prefix, queues, visibility_timeout)
    system = config if isinstance(config, System) else list(config)
    # Test-sized: a look 0.2 s after a change, at most every 2 s while nothing changes (nudges do the rest); a
    # message of an unknown flow or task is handed back for SELINON_TEST_HAND_BACK seconds.
    hand_back = float(os.environ.get("SELINON_TEST_HAND_BACK", "60"))
    return app, attach(app, system, poll_interval=0.2, max_poll_interval=2.0, hand_back_timeout=hand_back)


def new_app(broker: str, backend: str, prefix: str, queues: Sequence[str], visibility_timeout: float = 30) -> Celery:
    app = Celery(f"selinon-test-{prefix}", broker=broker, backend=backend, set_as_current=False)
    transport: dict[str, Any] = {}
    if broker.startswith("redis"):
        # A message whose worker died is delivered again after visibility_timeout; look for them every second.
        transport = {
            "global_keyprefix": prefix,
            "visibility_timeout": visibility_timeout,
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        }
    app.conf.update(
        broker_transport_options=transport,
        result_backend_transport_options={"global_keyprefix": prefix},
        # RabbitMQ drops a test's queues ten minutes after their last use.
        task_queues=[Queue(q, routing_key=q, queue_arguments={"x-expires": 600_000}) for q in queues],
        task_default_queue=queues[0],
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        worker_prefetch_multiplier=1,
        # Celery events (what Flower shows), where a test asks for them.
        worker_send_task_events=bool(os.environ.get("SELINON_TEST_EVENTS")),
        task_send_sent_event=bool(os.environ.get("SELINON_TEST_EVENTS")),
    )
    return app


if "SELINON_TEST_BROKER" in os.environ:
    _settings = (
        os.environ["SELINON_TEST_BROKER"],
        os.environ["SELINON_TEST_BACKEND"],
        os.environ["SELINON_TEST_PREFIX"],
        os.environ["SELINON_TEST_QUEUES"].split(","),
    )
    _files = os.environ["SELINON_CONFIG"].split(os.pathsep)
    _visibility_timeout = float(os.environ.get("SELINON_TEST_VISIBILITY_TIMEOUT", "30"))
    if os.environ.get("SELINON_TEST_API") == "selinon1":  # a worker module as Selinon 1.x projects write it
        from selinon import Config

        app = new_app(*_settings, _visibility_timeout)
        Config.set_config_yaml(_files[0], _files[1:])
        Config.set_celery_app(app)
    else:
        app, flows = make_app(*_settings, _files, _visibility_timeout)
