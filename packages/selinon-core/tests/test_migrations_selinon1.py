"""`selinon migrate` against Selinon 1.4 itself: for the same change of edges, 1.4's `selinon-cli migrate` (its
Migrator, run in a virtual environment of its own: `nox -s compat`) and this core write the same migration."""

from __future__ import annotations

from typing import Any

import pytest

from selinon.flows import migrations
from selinon.testing.selinon1 import run_selinon1

pytestmark = pytest.mark.selinon1

START = {"from": None, "to": "Task1"}
CHANGES = {  # per case: each flow's edges before and after (1.4 lists a flow whose edges only moved only after one
    # that changed otherwise, so each case starts with such a flow)
    "an edge gone, one added, others moved": (
        {
            "a": [START, {"from": "Task1", "to": "Task2"}, {"from": "Task1", "to": "Task3"}],
            "b": [START, {"from": "Task1", "to": "Task2"}],
        },
        {
            "a": [START, {"from": "Task2", "to": "Task3"}, {"from": "Task1", "to": "Task2"}],
            "b": [{"from": "Task1", "to": "Task2"}, START],
        },
    ),
    "a join whose parents are listed in another order, and a condition changed": (
        {"a": [START, {"from": "Task1", "to": ["Task2", "Task3"]}, {"from": ["Task2", "Task3"], "to": "Task4"}]},
        {
            "a": [
                START,
                {"from": ["Task3", "Task2"], "to": "Task4", "condition": {"name": "alwaysFalse"}},
                {"from": "Task1", "to": ["Task3", "Task2"]},
                {"from": "Task4", "to": "Task1", "condition": {"name": "alwaysFalse"}},
            ]
        },
    ),
    "every edge replaced": (
        {"a": [START, {"from": "Task1", "to": "Task2"}]},
        {"a": [{"from": None, "to": "Task2"}, {"from": "Task2", "to": "Task1"}]},
    ),
}

SCRIPT = """
import json, os, tempfile, yaml
from selinon.migrations import Migrator, TaintedFlowStrategy
tasks = [{"name": f"Task{n}", "import": "mytasks"} for n in range(1, 5)]
folder = tempfile.mkdtemp()
paths = {}
for side, flows in (("old", ARGS["old"]), ("new", ARGS["new"])):
    nodes = os.path.join(folder, side + "-nodes.yaml")
    yaml.safe_dump({"tasks": tasks, "flows": sorted(flows), "global": {"migration_dir": folder}}, open(nodes, "w"))
    definitions = os.path.join(folder, side + "-flows.yaml")
    yaml.safe_dump({"flow-definitions": [{"name": n, "edges": e} for n, e in flows.items()]}, open(definitions, "w"))
    paths[side] = (nodes, [definitions])
written = Migrator(folder).create_migration_file(*paths["old"], *paths["new"], TaintedFlowStrategy.IGNORE, add_meta=False)
OUT = json.load(open(written))
"""


@pytest.mark.parametrize("case", list(CHANGES))
def test_selinon_migrate_computes_what_selinon_1_4_computes(case: str) -> None:
    old, new = CHANGES[case]
    written: dict[str, Any] = run_selinon1(SCRIPT, old=old, new=new)
    assert written["tainted_flow_strategy"] == "IGNORE"
    assert migrations.compute(old, new) == written["migration"]
