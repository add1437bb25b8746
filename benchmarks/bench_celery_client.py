"""Starts N flows at once through bench_celery_app and waits for all of them; prints the time taken and each
flow's dispatcher passes as JSON. Runs with either Selinon (this project's, or 1.4.0 in its own environment)."""

from __future__ import annotations

import json
import sys
import time

from bench_celery_app import PREFIX, app, flows


def main(flow: str, count: int) -> None:
    start = time.perf_counter()
    if flows is not None:
        ids = [flows.run_flow(flow) for _ in range(count)]
    else:  # Selinon 1.x
        from selinon import run_flow

        ids = [str(run_flow(flow)) for _ in range(count)]
    states = {}
    for flow_id in ids:
        deadline = time.monotonic() + 600
        while True:
            state = app.AsyncResult(flow_id).state
            if state in ("SUCCESS", "FAILURE") or time.monotonic() > deadline:
                states[flow_id] = state
                break
            time.sleep(0.05)
    elapsed = time.perf_counter() - start
    counter = app.backend.client
    passes = [int(counter.get(f"{PREFIX}passes:{flow_id}") or 0) for flow_id in ids]
    failed = [f"{flow_id}: {state}" for flow_id, state in states.items() if state != "SUCCESS"]
    print(json.dumps({"elapsed": elapsed, "passes": passes, "failed": failed}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
