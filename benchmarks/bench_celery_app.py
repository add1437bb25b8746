"""The Celery app of the benchmark's workers (`celery -A bench_celery_app worker`), configured from the environment.

Every key and queue carries SELINON_BENCH_PREFIX, so runs sharing the Redis server never meet.
"""

from __future__ import annotations

import os

from celery import Celery

from selinon.celery import attach

PREFIX = os.environ["SELINON_BENCH_PREFIX"]
BROKER = os.environ["SELINON_BENCH_BROKER"]

app = Celery("selinon-bench", broker=BROKER, backend=BROKER, set_as_current=False)
app.conf.update(
    broker_transport_options={"global_keyprefix": PREFIX},
    result_backend_transport_options={"global_keyprefix": PREFIX},
    task_default_queue=f"{PREFIX}queue",
    result_expires=3600,
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
)
flows = attach(app)  # SELINON_CONFIG names the YAML files; the default poll interval, as users get it
