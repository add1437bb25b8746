"""The example order flow (examples/flow/) end to end through `selinon run` and `selinon results`, once per
adapter on its real server: results land in the adapter's storage, parent results reach children, the condition
branches both ways, the busy warehouse is retried, and a failed task's error is stored and read back."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_kit import Backend

from selinon.cli import main

pytestmark = pytest.mark.e2e

FLOW = Path(__file__).parents[4] / "examples" / "flow"
BOOK = {"sku": "book", "price": 12.5, "quantity": 2}
LAMP = {"sku": "lamp", "price": 30, "quantity": 2}


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    """Run the `selinon` command; (exit code, its output read as JSON when it is JSON, its error output)."""
    try:
        main(list(argv))
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    try:
        return code, json.loads(out), err
    except ValueError:
        return code, out, err


@pytest.fixture
def nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: Backend) -> Path:
    """The example's nodes-postgresql.yaml, with its storage on this adapter (the task module found beside it)."""
    monkeypatch.setattr(sys, "path", [str(FLOW), *sys.path])
    document = yaml.safe_load((FLOW / "nodes-postgresql.yaml").read_text())
    [storage] = document["storages"]
    storage.update(classname=backend.classname, configuration=backend.configuration(None))
    path = tmp_path / "nodes.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_the_example_flow(capsys: pytest.CaptureFixture[str], nodes: Path, backend: Backend) -> None:
    config = ["-c", str(nodes), "-c", str(FLOW / "flows.yaml")]
    runs = {}
    for name, order in {
        "standard": {"order": 9, "items": [LAMP]},
        "express": {"order": 11, "express": True, "items": [BOOK]},
        "empty": {"order": 10},
    }.items():
        code, report, err = cli(capsys, "run", *config, "orderFlow", "--node-args", json.dumps(order), "--json")
        assert code == (1 if name == "empty" else 0), err
        runs[name] = {t["task"]: t for t in report["tasks"]}

    # The condition branched each way; the busy warehouse was tried twice; nothing else ran twice.
    standard, express, empty = runs["standard"], runs["express"], runs["empty"]
    assert set(standard) == {"ValidateOrder", "ReserveStock", "StandardShipping", "Confirm"}
    assert set(express) == {"ValidateOrder", "ReserveStock", "ExpressShipping", "Confirm"}
    for tasks in (standard, express):
        assert {t: tasks[t]["tries"] for t in tasks} == {t: 2 if t == "ReserveStock" else 1 for t in tasks}
        assert all(task["state"] == "succeeded" and task["storage"] == "Orders" for task in tasks.values())
    failed = empty["ValidateOrder"]
    assert set(empty) == {"ValidateOrder"} and failed["state"] == "failed" and failed["error_record"] == "stored"

    # Every record is in the adapter's storage, once, as the plain driver reads it; beside each reservation, the
    # marker of the warehouse's "busy" answer (so that any worker's retry sees it).
    records = backend.records()
    expected = {t["task_id"]: name for tasks in runs.values() for name, t in tasks.items()}
    expected |= {f"{tasks['ReserveStock']['task_id']}-warehouse-busy": "WarehouseBusy" for tasks in (standard, express)}
    assert {task_id: record["task_name"] for task_id, record in records.items()} == expected
    assert records[f"{standard['ReserveStock']['task_id']}-warehouse-busy"]["result"] == {"answered": "busy"}
    confirm = records[standard["Confirm"]["task_id"]]["result"]
    reservation = records[standard["ReserveStock"]["task_id"]]["result"]
    assert reservation == {"order": 9, "reserved": 2, "reservation": "R-9"}  # ValidateOrder's result reached it
    assert confirm == {
        "order": 9,
        "reservation": "R-9",
        "message": "2 item(s) reserved; shipping by post (0.00), arriving in 4 days",
    }
    assert records[express["Confirm"]["task_id"]]["result"]["message"] == (
        "2 item(s) reserved; shipping by courier (9.90), arriving in 1 day"
    )
    error = records[failed["task_id"]]["error"]
    assert error["type"] == "builtins.ValueError" and error["message"] == "order 10 has no items"
    assert "in run" in error["traceback"]

    # `selinon results` reads them back through the adapter.
    shipping = standard["StandardShipping"]["task_id"]
    code, result, err = cli(capsys, "results", "get", "-c", str(nodes), "StandardShipping", shipping)
    assert code == 0 and result == {"carrier": "post", "days": 4, "cost": 0.0}, err
    code, result, err = cli(capsys, "results", "get", "-c", str(nodes), "ExpressShipping", shipping)
    assert code == 1 and result == "", "another task's record is not printed as this one's"
    assert "was stored by task 'StandardShipping' in flow 'orderFlow', not by task 'ExpressShipping'" in err
    code, result, err = cli(capsys, "results", "get", "-c", str(nodes), "ValidateOrder", failed["task_id"])
    assert code == 1 and result["error"]["message"] == "order 10 has no items"
    assert "order 10 has no items" in err
    code, _, err = cli(capsys, "results", "delete", "-c", str(nodes), "StandardShipping", shipping)
    assert code == 0, err
    code, _, err = cli(capsys, "results", "get", "-c", str(nodes), "StandardShipping", shipping)
    assert code == 1 and f"storage 'Orders' holds no record of task StandardShipping with task id {shipping!r}" in err
    assert shipping not in backend.records()
