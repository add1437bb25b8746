"""Storage faults on the real servers while flows run, once per adapter: the adapter reaches its server through a
FaultProxy that the test drives at exact moments (from a task's run, or from the pool's storage events).

- Connections cut and replies lost while a flow runs: the pool's `retry:` policy retries the calls, the flow
  completes, every result is stored once and no task runs twice.
- The storage refusing connections for longer than the retry deadline while a task stores: that task is failed
  (its error record stored once the storage is back, or reported as not stored), the flow fails, and the results
  stored before are intact.
- A condition whose parent result cannot be read for a while: only the dispatcher is retried, after the flow's
  retry_countdown; the flow then completes (or fails once the flow's max_retry is spent), and no task runs twice.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import e2e_tasks
import pytest
from e2e_kit import Backend, Event, Events, FaultProxy

from selinon import StoragePool, flows
from selinon.executor import Executor, FlowRun, NodeRun
from selinon.task import SelinonTask

pytestmark = pytest.mark.e2e

POOL_GAVE_UP_AT_ONCE = r"storage '[^']*' \([^)]*\): \w+ failed: "


@pytest.fixture(autouse=True)
def fresh_tasks() -> Iterator[None]:
    e2e_tasks.reset()
    yield
    e2e_tasks.reset()


@pytest.fixture
def proxy(backend: Backend) -> Iterator[FaultProxy]:
    with FaultProxy(*backend.server) as fault_proxy:
        yield fault_proxy
    StoragePool.reset()  # before the server-side cleanup: no connection is left to the proxy


def task(name: str, storage: str = "Results", **options: Any) -> dict[str, Any]:
    return {"name": name, "import": "e2e_tasks", "classname": "Echo", "storage": storage, **options}


def execute(
    storages: list[dict[str, Any]],
    tasks: list[dict[str, Any]],
    edges: list[dict[str, Any]],
    node_args: Any,
    concurrency: int = 4,
    **flow_options: Any,
) -> FlowRun:
    nodes = {"storages": storages, "tasks": tasks}
    definitions = {"flow-definitions": [{"name": "e2eFlow", "edges": edges, **flow_options}]}
    system = flows.from_documents([("nodes.yaml", nodes), ("flows.yaml", definitions)])
    executor = Executor(system, concurrency)
    # Connected before the flow starts: faults meet established connections, and a slow first connection on a
    # busy machine is not mistaken for one.
    for storage in storages:
        StoragePool.get_connected_storage(storage["name"])
    return executor.run("e2eFlow", node_args)


def by_name(flow_run: FlowRun) -> dict[str, NodeRun]:
    found: dict[str, NodeRun] = {}
    for node in flow_run.tasks():
        assert node.name not in found, f"{node.name} ran more than once"
        found[node.name] = node
    return found


def echoed(node: NodeRun, node_args: Any, records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What Echo returned for this node, given its parents' stored results."""
    parents = {name: records[parent_id]["result"] for name, parent_id in sorted(node.parent.items())}
    return {"task": node.name, "task_id": node.id, "args": node_args, "parents": parents}


def check_retried(nodes: dict[str, NodeRun]) -> None:
    """A storage call that the pool gave up on at once (its error says no "after N attempts") was not retried."""
    at_once = [f"{n.name}: {n.error}" for n in nodes.values() if re.match(POOL_GAVE_UP_AT_ONCE, n.error or "")]
    if at_once:
        raise AssertionError(f"storage calls failed without a retry: {at_once}")


def branch(value: str) -> dict[str, Any]:
    return {"name": "fieldEqual", "args": {"key": ["args", "branch"], "value": value}}


WORKERS = ["Work1", "Work2", "Work3", "Work4"]


def test_cut_connections_and_lost_replies_are_retried_by_the_pool(
    backend: Backend, proxy: FaultProxy, tmp_path: Path
) -> None:
    """Each task on the adapter, as it returns, resets every connection open through the proxy (those of the
    tasks running beside it included) and has the reply to its own store lost after the server executed it."""
    files = {"name": "Files", "classname": "Filesystem", "configuration": {"path": str(tmp_path / "files")}}
    retry = {"attempts": 10, "deadline": 30, "backoff": 0.05, "max_backoff": 0.5}
    tasks = [task("Start"), *map(task, WORKERS), task("Join"), task("Aside", storage="Files"), task("Other")]
    edges = [
        {"from": [], "to": "Start"},
        {"from": "Start", "to": WORKERS, "condition": branch("main")},
        {"from": "Start", "to": "Other", "condition": branch("other")},
        {"from": "Start", "to": "Aside"},
        {"from": WORKERS, "to": "Join"},
    ]
    cuts = []

    def fault(task: SelinonTask) -> None:
        if task.task_name != "Aside":
            cuts.append(proxy.cut())
            proxy.lose_reply_to(task.task_id)

    e2e_tasks.before_store = fault
    node_args = {"branch": "main"}
    with Events() as events:
        flow_run = execute([backend.storage(proxy.address, retry), files], tasks, edges, node_args)
    nodes = by_name(flow_run)
    check_retried(nodes)
    assert flow_run.state == "succeeded", flow_run.error

    # The faults happened: every store lost its reply, connections were open when cut, and calls were retried.
    on_adapter = ["Start", *WORKERS, "Join"]
    assert proxy.replies_lost == len(on_adapter) and not proxy.pending
    assert sum(cuts) >= 1 and proxy.connections > 1
    # The pool retried calls, and no call failed for good.
    assert len(events.retries()) >= len(on_adapter) and not [
        e for e in events.seen if e.event != "retry" and e.error is not None
    ]
    # Nothing ran twice, the condition branched, and every result is stored once, in its own storage.
    assert e2e_tasks.runs() == {name: 1 for name in [*on_adapter, "Aside"]}
    assert all(node.tries == 1 and node.state == "succeeded" for node in nodes.values())
    records = backend.records()
    assert {task_id: record["task_name"] for task_id, record in records.items()} == {
        nodes[name].id: name for name in on_adapter
    }
    for name in on_adapter:
        assert records[nodes[name].id]["result"] == echoed(nodes[name], node_args, records)
    assert set(records[nodes["Join"].id]["result"]["parents"]) == set(WORKERS)  # parent results reached it
    assert (tmp_path / "files" / f"{nodes['Aside'].id}.json").is_file()


@pytest.mark.parametrize("error_record", ["stored", "not stored"])
def test_a_task_whose_storage_refuses_past_the_retry_deadline_fails(
    backend: Backend, proxy: FaultProxy, error_record: str
) -> None:
    """Save's store meets a storage that refuses every connection until the pool gives up; the storage is back
    for its store_error (or only after that, too)."""
    retry = {"attempts": 100, "deadline": 1.5, "backoff": 0.05, "max_backoff": 0.2}
    tasks = [task("Load"), task("Save"), task("Audit"), task("Publish")]
    edges = [
        {"from": [], "to": "Load"},
        {"from": "Load", "to": ["Save", "Audit"]},
        {"from": "Save", "to": "Publish"},
    ]
    audit_stored = threading.Event()

    def fault(task: SelinonTask) -> None:
        if task.task_name == "Save":  # once Audit, running beside it, has stored
            assert audit_stored.wait(30), "Audit did not store within 30 s"
            proxy.refuse()
            proxy.cut()

    def react(event: Event) -> None:
        if event.task_name == "Audit" and event.event == "store" and event.error is None:
            audit_stored.set()
        back_after = "store" if error_record == "stored" else "store_error"
        if event.task_name == "Save" and event.event == back_after and event.error is not None:
            proxy.accept()

    e2e_tasks.before_store = fault
    node_args = {"branch": "main"}
    with Events(react):
        flow_run = execute([backend.storage(proxy.address, retry)], tasks, edges, node_args)
    nodes = by_name(flow_run)
    save = nodes["Save"]
    check_retried(nodes)

    classname = backend.classname
    assert flow_run.state == "failed" and flow_run.error == f"task 'Save' failed: {save.error}"
    assert save.state == "failed" and save.tries == 1
    tried = re.fullmatch(
        rf"storage 'Results' \({classname}\): store failed after (\d+) attempts in ([\d.]+)s: .+", save.error or ""
    )
    assert tried and int(tried[1]) >= 2 and float(tried[2]) >= 1.0, save.error
    assert e2e_tasks.runs() == {"Load": 1, "Save": 1, "Audit": 1}  # Publish never started
    records = backend.records()
    expected = {nodes[name].id: name for name in ("Load", "Audit")}
    if error_record == "stored":
        assert save.error_record == "stored"
        expected[save.id] = "Save"
        error = records[save.id]["error"]
        assert error["type"] == "selinon.errors.StorageError" and error["message"] == save.error
    else:
        assert save.error_record.startswith(f"not stored: storage 'Results' ({classname}): store_error failed after ")
    # Nothing else was lost: the results stored before the outage are there, as they were.
    assert {task_id: record["task_name"] for task_id, record in records.items()} == expected
    for name in ("Load", "Audit"):
        assert records[nodes[name].id]["result"] == echoed(nodes[name], node_args, records)


def test_a_task_whose_store_reply_is_lost_is_tried_again_and_stored_once(backend: Backend, proxy: FaultProxy) -> None:
    """With no pool retries (attempts: 1), the server executes Save's first store but its reply is lost: the try
    fails, the task is run again with the same task id after its retry_countdown, and one record is left."""
    tasks = [task("Load"), task("Save", max_retry=1, retry_countdown=0.1), task("Publish")]
    edges = [{"from": [], "to": "Load"}, {"from": "Load", "to": "Save"}, {"from": "Save", "to": "Publish"}]

    def fault(task: SelinonTask) -> None:
        if task.task_name == "Save" and e2e_tasks.runs()["Save"] == 1:
            proxy.lose_reply_to(task.task_id)

    e2e_tasks.before_store = fault
    node_args = {"branch": "main"}
    with Events() as events:
        flow_run = execute([backend.storage(proxy.address, {"attempts": 1})], tasks, edges, node_args)
    nodes = by_name(flow_run)
    assert flow_run.state == "succeeded", flow_run.error
    assert proxy.replies_lost == 1 and not proxy.pending and not events.retries()
    [failed_store] = [e for e in events.seen if e.error is not None]
    assert failed_store.event == "store" and failed_store.task_id == nodes["Save"].id
    assert nodes["Save"].tries == 2 and e2e_tasks.runs() == {"Load": 1, "Save": 2, "Publish": 1}
    records = backend.records()
    assert {task_id: record["task_name"] for task_id, record in records.items()} == {
        node.id: name for name, node in nodes.items()
    }
    for node in nodes.values():
        assert records[node.id]["result"] == echoed(node, node_args, records)


@pytest.mark.parametrize("outcome", ["recovers", "gives up"])
def test_a_condition_that_cannot_be_read_retries_the_dispatcher(
    backend: Backend, proxy: FaultProxy, outcome: str
) -> None:
    """Check's result is stored, then the storage refuses connections until two reads of the conditions on Check
    have failed (each after the pool's own retries). A driver may take a little longer to find its server back
    (pymongo waits for its monitor): each failed read costs one dispatcher retry, within the flow's max_retry."""
    retry = {"attempts": 3, "deadline": 0.5, "backoff": 0.05, "max_backoff": 0.1}
    countdown = 0.3
    max_retry = 6 if outcome == "recovers" else 1
    tasks = [task("Check"), task("Left"), task("Right"), task("Report")]
    edges = [
        {"from": [], "to": "Check"},
        {"from": "Check", "to": "Left", "condition": {**branch("left"), "node": "Check"}},
        {"from": "Check", "to": "Right", "condition": {"not": {**branch("left"), "node": "Check"}}},
        {"from": "Left", "to": "Report"},
    ]
    failed_reads: list[Event] = []

    def react(event: Event) -> None:
        if event.task_name == "Check" and event.event == "store" and event.error is None:
            proxy.refuse()
            proxy.cut()
        if event.task_name == "Check" and event.event == "retrieve" and event.error is not None:
            failed_reads.append(event)
            if len(failed_reads) == 2:
                proxy.accept()

    node_args = {"branch": "left"}
    with Events(react) as events:
        flow_run = execute(
            [backend.storage(proxy.address, retry)],
            tasks,
            edges,
            node_args,
            max_retry=max_retry,
            retry_countdown=countdown,
        )
    nodes = by_name(flow_run)
    check = nodes["Check"]
    assert len(failed_reads) >= 2 and all(read.task_id == check.id for read in failed_reads)
    records = backend.records()
    assert records[check.id]["result"] == echoed(check, node_args, records)  # nothing lost
    if outcome == "gives up":
        assert flow_run.state == "failed" and flow_run.dispatcher_retries == 1 and len(failed_reads) == 2
        assert "cannot evaluate the condition of edges[2]" in (flow_run.error or "")
        assert e2e_tasks.runs() == {"Check": 1}
        assert set(records) == {check.id}
        return
    assert flow_run.state == "succeeded", flow_run.error
    assert flow_run.dispatcher_retries == len(failed_reads)
    # The dispatcher (the thread that called Executor.run) read the conditions of edges[1] and edges[2] again,
    # each after the flow's retry_countdown, until both reads passed; the right branch ran, once.
    dispatcher = threading.get_ident()
    reads = [e for e in events.seen if e.event == "retrieve" and e.thread == dispatcher]
    assert all(read.task_id == check.id for read in reads) and len(reads) == len(failed_reads) + 2
    assert sum(read.error is None for read in reads) == 2  # each condition was evaluated once, in the end
    assert all(again.at - read.at >= countdown for read, again in zip(reads, reads[2:], strict=False))
    assert e2e_tasks.runs() == {"Check": 1, "Left": 1, "Report": 1}
    assert all(node.tries == 1 for node in nodes.values())
    assert {task_id: record["task_name"] for task_id, record in records.items()} == {
        nodes[name].id: name for name in ("Check", "Left", "Report")
    }
    for name in ("Left", "Report"):
        assert records[nodes[name].id]["result"] == echoed(nodes[name], node_args, records)
