"""The example order flow on Celery workers; see packages/selinon-core/docs/celery.md.

Run from the repository root with this directory on the Python path (results land in examples/flow/results/):
  PYTHONPATH=examples/flow celery -A celery_app worker -Q celery --concurrency 2
  PYTHONPATH=examples/flow python -m selinon.celery -A celery_app run orderFlow --node-args '{...}' --wait
"""

import os
from pathlib import Path

from celery import Celery

from selinon.celery import attach

HERE = Path(__file__).parent
BROKER = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")

app = Celery("orders", broker=BROKER, backend=os.environ.get("CELERY_RESULT_BACKEND", BROKER))
flows = attach(app, [HERE / "nodes.yaml", HERE / "flows.yaml"], poll_interval=0.5)
