"""A deployment that changes flows while runs of them are in flight (`global: migration_dir`): flows started by
dispatchers of the old configuration are finished by dispatchers of the new one, through the migration file that
`selinon migrate` wrote; a dispatcher not upgraded yet hands back a pass written under the newer migration."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from celery_app import make_app
from celery_tasks import runs
from conftest import REDIS, MakeCluster, Worker

from selinon import flows
from selinon.cli import main

pytestmark = pytest.mark.celery

TIMEOUT = 60
NODES = """
global:
  default_task_queue: '{{SELINON_TEST_QUEUE}}-tasks'
  default_dispatcher_queue: '{{SELINON_TEST_QUEUE}}-dispatch'
  {migration_dir}
storages:
  - name: Kv
    classname: Redis
    configuration:
      url: 'redis://127.0.0.1:{{SELINON_TEST_REDIS_PORT}}/0'
      key_prefix: '{{SELINON_TEST_PREFIX}}results:'
tasks:
  - {{name: Gate, import: celery_tasks, storage: Kv}}
  - {{name: Stamp, import: celery_tasks, storage: Kv}}
  - {{name: Item, import: celery_tasks, storage: Kv}}
flows: [pickFlow, retryFlow, skewFlow]
"""
# Version 1, and version 2 with the same edges moved (pickFlow) and a new edge from a task that has run (retryFlow).
FLOWS_V1 = """
flow-definitions:
  - {name: pickFlow, edges: [{from: [], to: Gate}, {from: Gate, to: Stamp}, {from: Gate, to: Item}]}
  - {name: retryFlow, edges: [{from: [], to: Item}, {from: Item, to: Gate}]}
  - {name: skewFlow, edges: [{from: [], to: Gate}, {from: Gate, to: Stamp}]}
"""
FLOWS_V2 = """
flow-definitions:
  - {name: pickFlow, edges: [{from: Gate, to: Stamp}, {from: Gate, to: Item}, {from: [], to: Gate}]}
  - {name: retryFlow, edges: [{from: [], to: Item}, {from: Item, to: Gate}, {from: Item, to: Stamp}]}
  - {name: skewFlow, edges: [{from: [], to: Gate}, {from: Gate, to: Stamp}]}
"""


def wait_for(what: str, check: Callable[[], bool], worker: Worker | None = None) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not check():
        assert time.monotonic() < deadline, f"{what}: {worker.output()[-3000:] if worker else 'timed out'}"
        time.sleep(0.1)


def names(directory: Path) -> list[str]:
    return sorted(name for name, _ in runs(directory))


def test_flows_started_under_the_old_configuration_finish_under_the_new_one(
    make_cluster: MakeCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = make_cluster("migrate")  # its tasks wait for gates: no redelivery of a task that runs long
    dispatch, tasks = cluster.queues
    v1, v2, migration_dir = tmp_path / "v1", tmp_path / "v2", tmp_path / "migrations"
    v1.mkdir(), v2.mkdir()
    (v1 / "nodes.yaml").write_text(NODES.format(migration_dir=""))
    (v1 / "flows.yaml").write_text(FLOWS_V1)
    (v2 / "nodes.yaml").write_text(NODES.format(migration_dir=f"migration_dir: '{migration_dir}'"))
    (v2 / "flows.yaml").write_text(FLOWS_V2)
    files = {version: [str(d / "nodes.yaml"), str(d / "flows.yaml")] for version, d in (("v1", v1), ("v2", v2))}
    new, old = [a for f in files["v2"] for a in ("-c", f)], [a for f in files["v1"] for a in ("--old-config", f)]
    main(["migrate", *new, *old, "--tainted-flows", "RETRY"])
    assert "wrote" in capsys.readouterr().out and json.loads((migration_dir / "1.json").read_text())["migration"]

    def client(version: str) -> Any:
        system = flows.load(files[version], environ={**os.environ, **cluster.env})
        return make_app(cluster.broker, REDIS, cluster.tag, cluster.queues, system)[1]

    pick, again, skew = tmp_path / "pick", tmp_path / "retry", tmp_path / "skew"
    for directory in (pick, again, skew):
        directory.mkdir()
    # Tasks run on a worker of their own; dispatchers are what the deployment replaces.
    cluster.worker("tasks", [tasks], SELINON_CONFIG=os.pathsep.join(files["v2"]))
    old_dispatcher = cluster.worker("dispatch-v1", [dispatch], SELINON_CONFIG=os.pathsep.join(files["v1"]))
    before = client("v1")
    pick_id = before.run_flow_selective("pickFlow", ["Stamp"], {"dir": str(pick)})
    retry_id = before.run_flow("retryFlow", {"dir": str(again)})
    wait_for("both gates were reached", lambda: "Gate" in names(pick) and "Gate" in names(again), old_dispatcher)
    old_dispatcher.stop()
    new_dispatcher = cluster.worker("dispatch-v2", [dispatch], SELINON_CONFIG=os.pathsep.join(files["v2"]))
    wait_for("both flows migrated", lambda: new_dispatcher.output().count("from migration 0 to 1") >= 2, new_dispatcher)
    (pick / "gate").touch(), (again / "gate").touch()
    after = client("v2")

    picked = after.wait(pick_id, timeout=TIMEOUT)
    assert picked.state == "succeeded", picked.error
    assert [t["task"] for t in picked.tasks] == ["Gate", "Stamp"], "the selected edge, renumbered: Stamp, not Item"
    assert names(pick) == ["Gate", "Stamp"]

    retried = after.wait(retry_id, timeout=TIMEOUT)
    assert retried.state == "succeeded", retried.error
    assert sorted(t["task"] for t in retried.tasks) == ["Gate", "Item", "Stamp"]
    assert "is tainted by migrations: migration 1 adds edges[2] from Item" in new_dispatcher.output()
    ran = runs(again)
    assert [n for n, _ in ran].count("Item") == 2 and len({i for n, i in ran if n == "Item"}) == 2, "run again, anew"
    assert names(again).count("Stamp") == 1

    # A dispatcher not upgraded yet gets a pass of a flow that an upgraded one started: it hands it back.
    skew_id = after.run_flow("skewFlow", {"dir": str(skew)})
    wait_for("the gate was reached", lambda: "Gate" in names(skew), new_dispatcher)
    new_dispatcher.stop()
    lagging = cluster.worker("dispatch-v1-again", [dispatch], SELINON_CONFIG=os.pathsep.join(files["v1"]))
    wait_for("the pass was handed back", lambda: "handed back for another worker" in lagging.output(), lagging)
    assert "skewFlow' " in lagging.output() and "is at migration 1, but this worker has migrations up to 0" in (
        lagging.output()
    )
    upgraded = cluster.worker("dispatch-v2-again", [dispatch], SELINON_CONFIG=os.pathsep.join(files["v2"]))
    (skew / "gate").touch()
    report = after.wait(skew_id, timeout=TIMEOUT)
    assert report.state == "succeeded", upgraded.output()[-3000:]
    assert names(skew) == ["Gate", "Stamp"]
