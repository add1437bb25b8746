"""Storage faults during a flow, injected by adapters that really fail: failed tasks, retried tasks and retried
dispatching, with nothing lost and nothing run twice."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from flow_tasks import RUNS, runs_per_task
from flowkit import by_name, flow, run, system, task

from selinon import StoragePool

START = {"from": [], "to": "Task1"}
READ_TASK1 = {"name": "fieldExist", "node": "Task1", "args": {"key": "task"}}


def faulty(retry: dict[str, Any] | None = None, **failures: int) -> list[dict[str, Any]]:
    """A Faulty storage whose calls the pool does not retry (unless told), so every fault reaches the executor."""
    return [
        {
            "name": "Faulty",
            "import": "fault_adapters",
            "configuration": failures,
            "retry": retry or {"attempts": 1},
        }
    ]


def adapter() -> Any:
    return StoragePool.get_storage("Faulty")


def test_a_failed_store_retries_the_task_with_the_same_id() -> None:
    built = system(
        [task("Task1", storage="Faulty", max_retry=2, retry_countdown=0.01), task("Task2", storage="Faulty")],
        [flow("main", START, {"from": "Task1", "to": "Task2"})],
        storages=faulty(fail_store=2),
    )
    result = run(built, "main", {"n": 1})
    nodes = by_name(result)
    assert result.state == "succeeded" and nodes["Task1"].tries == 3
    assert list(RUNS) == [("Task1", nodes["Task1"].id)] * 3 + [("Task2", nodes["Task2"].id)]
    assert adapter().calls["store"] == 4 and len(adapter()._records) == 2
    assert adapter().retrieve("main", "Task2", nodes["Task2"].id)["parents"]["Task1"]["args"] == {"n": 1}


def test_a_task_that_cannot_write_its_storage_fails_and_its_error_is_stored() -> None:
    built = system(
        [task("Task1", storage="Faulty", max_retry=1), task("Task2", storage="Faulty")],
        [flow("main", START, {"from": "Task1", "to": "Task2"})],
        storages=faulty(fail_store=5),
    )
    result = run(built, "main")
    node = by_name(result)["Task1"]
    assert result.state == "failed" and node.tries == 2 and node.error_record == "stored"
    assert node.error == (
        "storage 'Faulty' (Faulty): store failed: ConnectionResetError: store: connection reset by peer (injected)"
    )
    error = adapter().retrieve_error("main", "Task1", node.id)
    assert error["message"] == node.error
    assert "Task2" not in runs_per_task()


def test_when_store_error_fails_too_the_failure_is_reported() -> None:
    built = system(
        [task("Task1", "Fail", storage="Faulty")], [flow("main", START)], storages=faulty(fail_store_error=1)
    )
    node = by_name(run(built, "main"))["Task1"]
    assert node.state == "failed" and node.error == "ValueError: boom in Task1"
    assert node.error_record == (
        "not stored: storage 'Faulty' (Faulty): store_error failed: ConnectionResetError: store_error: connection "
        "reset by peer (injected)"
    )


def test_a_task_that_cannot_read_its_parent_result_fails_or_retries() -> None:
    tasks = [task("Task1", storage="Faulty"), task("Task2", storage="Faulty", retry_countdown=0.01)]
    built = system(tasks, [flow("main", START, {"from": "Task1", "to": "Task2"})], storages=faulty(fail_retrieve=1))
    result = run(built, "main")
    assert result.state == "failed"
    assert by_name(result)["Task2"].error == (
        "storage 'Faulty' (Faulty): retrieve failed: ConnectionResetError: retrieve: connection reset by peer (injected)"
    )
    tasks[1]["max_retry"] = 1
    built = system(tasks, [flow("main", START, {"from": "Task1", "to": "Task2"})], storages=faulty(fail_retrieve=1))
    result = run(built, "main")
    assert result.state == "succeeded" and by_name(result)["Task2"].tries == 2


def test_a_condition_that_cannot_be_read_retries_the_dispatcher_only() -> None:
    built = system(
        [task("Task1", storage="Faulty"), *(task(n, "Ids", storage="Faulty") for n in ("Plain", "Checked", "Last"))],
        [
            flow(
                "main",
                START,
                {"from": "Task1", "to": "Plain"},
                {"from": "Task1", "to": "Checked", "condition": READ_TASK1},
                {"from": ["Plain", "Checked"], "to": "Last"},
                max_retry=3,
                retry_countdown=0.2,
            )
        ],
        storages=faulty(fail_retrieve=2),
    )
    began = time.monotonic()
    result = run(built, "main")
    assert result.state == "succeeded" and result.dispatcher_retries == 2
    assert time.monotonic() - began >= 0.4  # two waits of the flow's retry_countdown
    assert runs_per_task() == {"Task1": 1, "Plain": 1, "Checked": 1, "Last": 1}  # nothing ran twice
    nodes = by_name(result)
    assert all(node.tries == 1 for node in nodes.values())
    assert adapter().retrieve("main", "Task1", nodes["Task1"].id)["task"] == "Task1"  # nothing lost
    for name in ("Plain", "Checked", "Last"):
        assert adapter().retrieve("main", name, nodes[name].id)["task_id"] == nodes[name].id


def test_a_condition_that_stays_unreadable_fails_the_flow_and_keeps_what_was_stored() -> None:
    built = system(
        [task("Task1", storage="Faulty"), task("Checked", storage="Faulty")],
        [
            flow(
                "main",
                START,
                {"from": "Task1", "to": "Checked", "condition": READ_TASK1},
                max_retry=1,
                retry_countdown=0.01,
            )
        ],
        storages=faulty(fail_retrieve=5),
    )
    result = run(built, "main")
    assert result.state == "failed" and result.dispatcher_retries == 1
    assert result.error == (
        "flow 'main': cannot evaluate the condition of edges[1]: storage 'Faulty' (Faulty): retrieve failed: "
        "ConnectionResetError: retrieve: connection reset by peer (injected)"
    )
    assert runs_per_task() == {"Task1": 1} and adapter().calls["retrieve"] == 2
    node = by_name(result)["Task1"]
    adapter().left["retrieve"] = 0
    assert adapter().retrieve("main", "Task1", node.id)["task"] == "Task1"


def test_transient_errors_are_absorbed_by_the_pools_retry_policy() -> None:
    built = system(
        [task("Task1", storage="Faulty")],
        [flow("main", START)],
        storages=faulty(retry={"attempts": 3, "backoff": 0.01}, fail_store=2),
    )
    result = run(built, "main")
    assert result.state == "succeeded" and by_name(result)["Task1"].tries == 1 and adapter().calls["store"] == 3


def test_an_unusable_filesystem_fails_the_task(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    storages = [{"name": "Files", "classname": "Filesystem", "configuration": {"path": str(blocker / "results")}}]
    built = system([task("Task1", storage="Files", max_retry=1)], [flow("main", START)], storages=storages)
    result = run(built, "main")
    node = by_name(result)["Task1"]
    assert result.state == "failed" and node.tries == 2
    assert node.error is not None and node.error.startswith(
        "storage 'Files' (Filesystem): connect failed: cannot create directory"
    )
    assert node.error_record is not None and node.error_record.startswith("not stored: ")


@pytest.mark.parametrize("concurrency", [1, 8])
def test_many_instances_and_faults_lose_nothing(concurrency: int) -> None:
    names = [f"T{i}" for i in range(12)]
    built = system(
        [task(n, storage="Faulty", max_retry=3) for n in ["Task1", *names, "End"]],
        [
            flow(
                "main",
                START,
                *({"from": "Task1", "to": n, "condition": READ_TASK1} for n in names),
                {"from": names, "to": "End"},
                max_retry=10,
                retry_countdown=0.01,
            )
        ],
        storages=faulty(fail_store=3, fail_retrieve=3),
    )
    result = run(built, "main", concurrency=concurrency)
    assert result.state == "succeeded"
    nodes = by_name(result)
    assert set(nodes) == {"Task1", "End", *names}
    assert all(count == nodes[name].tries for name, count in runs_per_task().items())
    assert runs_per_task()["End"] == 1
    assert len(adapter()._records) == len(nodes)
