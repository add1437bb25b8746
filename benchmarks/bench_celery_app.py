"""The Celery app of the benchmark's workers and clients, for this project's Selinon and for Selinon 1.4.0 alike.

`celery -A bench_celery_app worker`, configured from the environment: SELINON_CONFIG names the YAML files, every
key and queue carries SELINON_BENCH_PREFIX (so runs sharing the Redis server never meet). Each dispatcher run
(one pass over a flow) is counted in Redis under the flow id, the same way for both Selinons.
SELINON_BENCH_SCHEDULING=fixed gives this project's dispatchers the scheduling they had before nudges and backoff:
a look every second (poll_interval), whatever happens.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals

PREFIX = os.environ["SELINON_BENCH_PREFIX"]
BROKER = os.environ["SELINON_BENCH_BROKER"]
DISPATCHERS = ("selinon.dispatcher", "selinon.Dispatcher")  # this project's name, Selinon 1.x's

app = Celery("selinon-bench", broker=BROKER, backend=BROKER, set_as_current=False)
app.conf.update(
    broker_transport_options={"global_keyprefix": PREFIX},
    result_backend_transport_options={"global_keyprefix": PREFIX},
    task_default_queue=f"{PREFIX}queue",
    result_expires=3600,
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
)

try:
    from selinon.celery import attach
except ImportError:  # Selinon 1.x
    from selinon import Config

    nodes, *flow_files = os.environ["SELINON_CONFIG"].split(os.pathsep)
    Config.set_config_yaml(nodes, flow_files)
    # Selinon 1.x sends to the queues its configuration names ('celery' when it names none): the benchmark's own.
    Config.dispatcher_queues = dict.fromkeys(Config.dispatcher_queues, f"{PREFIX}queue")
    Config.task_queues = dict.fromkeys(Config.task_queues, f"{PREFIX}queue")
    Config.set_celery_app(app)
    app.set_current()  # Selinon 1.x sends its dispatcher through the current app
    flows: Any = None
else:
    if os.environ.get("SELINON_BENCH_SCHEDULING") == "fixed":
        flows = attach(app, poll_interval=1.0, max_poll_interval=1.0, nudge=False)
    else:
        flows = attach(app)  # the defaults, as users get them

_counter: Any = None


@signals.task_prerun.connect
def count_pass(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    global _counter
    if task is not None and task.name in DISPATCHERS:
        if _counter is None:
            import redis

            _counter = redis.Redis.from_url(BROKER)
        _counter.incr(f"{PREFIX}passes:{task_id}")
