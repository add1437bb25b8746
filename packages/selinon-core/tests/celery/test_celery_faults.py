"""Flows on real Celery workers through broker and backend faults, rolling deploys and a dead broker.

- A Redis that is broker and result backend at once (a redis-server of the test's own, persisting to a temporary
  directory) stopped for 8 s in the middle of 50 flows; a RabbitMQ node of the test's own stopped for 8 s in the
  middle of 50 flows and started again on its data; RabbitMQ's connections cut through a proxy for 5 s in the
  middle of 50 flows: every flow succeeds, every result is stored once, and no status read during the fault
  showed a final state that later changed.
- Workers of two configurations on one queue: a worker that does not know a flow or task hands its message back
  until one that knows it takes it (and fails it, with the reason, once its hand-back time is over).
- The dispatcher backs off while a task runs, and looks again soon after it ends.
- `python -m selinon.celery` fails in one line, with exit code 2, when the broker or the backend is down.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from celery_tasks import runs
from conftest import (
    HERE,
    POSTGRESQL,
    RABBITMQ,
    READY_TIMEOUT,
    Cluster,
    MakeCluster,
    Worker,
    python_path,
)

from selinon.pool import StoragePool
from selinon.testing import ServerProcess, TcpProxy, free_port, servers

pytestmark = pytest.mark.celery

ORDER = {"order": 7, "express": True, "items": [{"sku": "lamp", "price": 30, "quantity": 2}]}
FLOWS = 50


class Watcher:
    """Reads the status of every flow, over and over, from a thread, while a fault goes on; remembers each state
    seen, to prove that no final state it saw changed later."""

    def __init__(self, client: Any, flow_ids: list[str]) -> None:
        self.client, self.flow_ids = client, flow_ids
        self.seen: dict[str, list[str]] = {flow_id: [] for flow_id in flow_ids}
        self.unanswered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(30)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for flow_id in self.flow_ids:
                try:
                    state = self.client.status(flow_id).state
                except Exception:  # the backend is down: no answer is not a state
                    self.unanswered += 1
                    continue
                if not self.seen[flow_id] or self.seen[flow_id][-1] != state:
                    self.seen[flow_id].append(state)
            time.sleep(0.05)

    def changed_after_final(self) -> dict[str, list[str]]:
        """The flows whose states, once succeeded or failed, went on to something else."""
        found = {}
        for flow_id, states in self.seen.items():
            final = [i for i, state in enumerate(states) if state in ("succeeded", "failed")]
            if final and len(states) > final[0] + 1:
                found[flow_id] = states
        return found


class Supervisor:
    """Starts again a worker that exited or logged an unrecoverable error, as systemd or Kubernetes (with a liveness
    check) would: with Celery 5.7 and kombu 5.7, a worker may stop ("Unrecoverable error: AttributeError:
    'NoneType' object has no attribute 'hostname'", in kombu's Redis channel) when its Redis broker goes away while
    it holds unacknowledged messages, and its shutdown may then hang."""

    def __init__(self, workers: list[Worker]) -> None:
        self.workers, self.restarts = workers, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(READY_TIMEOUT)

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            for worker in self.workers:
                output = worker.output()
                if worker.exited or "Unrecoverable error" in output[output.rfind(" ready.") :]:
                    worker.kill()
                    self.restarts += 1
                    worker.start()


def start_flows(client: Any, run_dir: Path, count: int = FLOWS) -> list[str]:
    ids = []
    for number in range(count):
        (run_dir / str(number)).mkdir()
        ids.append(client.run_flow("orderFlow", {**ORDER, "order": number, "dir": str(run_dir / str(number))}))
    return ids


def wait_for_all(client: Any, flow_ids: list[str], timeout: float = 150) -> dict[str, Any]:
    """Every flow's final report; a flow not done in ``timeout`` fails the test with what its record says."""
    deadline, reports = time.monotonic() + timeout, {}
    for flow_id in flow_ids:
        try:
            reports[flow_id] = client.wait(flow_id, timeout=max(1.0, deadline - time.monotonic()))
        except TimeoutError:
            record = client.app.backend.get_task_meta(flow_id, cache=False)
            info = record.get("result") if isinstance(record.get("result"), dict) else {}
            nodes = [(t["task"], t["state"]) for t in info.get("tasks", [])]
            due = info.get("due") and round(info["due"] - time.time(), 1)
            raise AssertionError(
                f"flow {flow_id} not done: {record.get('status')}, pass {info.get('pass')}, chain "
                f"{info.get('chain')}, next look due in {due}s, nodes {nodes}"
            ) from None
    return reports


def wait_until_done(client: Any, flow_ids: list[str], at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while sum(client.status(f).done for f in flow_ids) < at_least:
        assert time.monotonic() < deadline, f"fewer than {at_least} flows done in {timeout}s"
        time.sleep(0.1)


def check_every_result_stored_once(cluster: Cluster, reports: dict[str, Any], run_dir: Path) -> None:
    """Each flow succeeded with its five tasks; each task's result reads back as the flow computed it, and the
    SQL storage holds exactly one row for each of its task ids."""
    failed = {flow_id: (r.state, r.error) for flow_id, r in reports.items() if r.state != "succeeded"}
    assert not failed, failed
    sql_ids = []
    for number, report in enumerate(reports.values()):
        assert Counter(t["task"] for t in report.tasks) == {
            "Order": 1, "Reserve": 1, "Express": 1, "Confirm": 1, "Audit": 1
        }  # fmt: skip
        assert report.result("Confirm") == {"reservation": f"R-{number}", "shipping": {"carrier": "courier", "days": 1}}
        assert report.result("Audit") == {"audited": number}
        sql_ids += [t["task_id"] for t in report.tasks if t["storage"] == "Sql"]
        ran = {name for name, _ in runs(run_dir / str(number))}
        assert ran == {"Order", "Reserve", "Express", "Confirm", "Audit"}
    engine = sa.create_engine(
        POSTGRESQL.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=sa.pool.NullPool
    )
    table = cluster.env["SELINON_TEST_TABLE"]
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(f'SELECT task_id, count(*) FROM "{table}" WHERE task_id IN :ids GROUP BY task_id').bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": sql_ids},
        ).all()
    engine.dispose()
    assert len(sql_ids) == 3 * FLOWS and {task_id: count for task_id, count in rows} == dict.fromkeys(sql_ids, 1)


def test_flows_survive_a_restart_of_their_redis_broker_and_result_backend(
    make_cluster: MakeCluster, own_redis: ServerProcess, run_dir: Path
) -> None:
    url = f"redis://127.0.0.1:{own_redis.port}/0"
    # Messages whose acknowledgement was lost with the connection come back after visibility_timeout.
    cluster = make_cluster("restart", url, visibility_timeout=10, backend=url)
    client = cluster.client()
    workers = [cluster.worker("restart-a"), cluster.worker("restart-b")]
    flow_ids = start_flows(client, run_dir)
    with Supervisor(workers) as supervisor, Watcher(client, flow_ids) as watcher:
        wait_until_done(client, flow_ids, at_least=5)
        own_redis.stop()
        time.sleep(8)
        own_redis.start()
        reports = wait_for_all(client, flow_ids)
    logs = "".join(w.output() for w in workers)
    print(f"workers started again after they exited: {supervisor.restarts}")
    assert watcher.unanswered > 0, "the watcher never saw the backend down"
    assert not watcher.changed_after_final(), watcher.changed_after_final()
    assert "Connection to broker lost" in logs or "Cannot connect to redis" in logs
    check_every_result_stored_once(cluster, reports, run_dir)


def test_flows_survive_cut_rabbitmq_connections(make_cluster: MakeCluster, run_dir: Path) -> None:
    """RabbitMQ, the machine's, is reached through a proxy that cuts every connection and refuses new ones for 5 s
    (RabbitMQ gives a cut connection's unacknowledged messages to other consumers at once); the result backend
    (Redis) stays up."""
    from urllib.parse import urlsplit

    target = urlsplit(RABBITMQ)
    with TcpProxy(target.hostname or "127.0.0.1", target.port or 5672) as proxy:
        broker = RABBITMQ.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}")
        cluster = make_cluster("cut", broker)
        client = cluster.client()
        workers = [cluster.worker("cut-a"), cluster.worker("cut-b")]
        flow_ids = start_flows(client, run_dir)
        with Watcher(client, flow_ids) as watcher:
            wait_until_done(client, flow_ids, at_least=5)
            proxy.refuse()
            cut = proxy.cut()
            time.sleep(5)
            proxy.accept()
            reports = wait_for_all(client, flow_ids)
        assert cut >= 2, "the workers' connections were cut"
        assert not watcher.changed_after_final(), watcher.changed_after_final()
        logs = "".join(w.output() for w in workers)
        assert "Connection to broker lost" in logs
        check_every_result_stored_once(cluster, reports, run_dir)


def test_flows_survive_a_restart_of_their_rabbitmq_broker(
    make_cluster: MakeCluster, own_rabbitmq: servers.RabbitMQServer, run_dir: Path
) -> None:
    """RabbitMQ, a node of the test's own, stopped cleanly (as `systemctl stop` would) for 8 s in the middle of 50
    flows on three workers, and started again on the same port and data (durable queues, persistent messages);
    the result backend (Redis) stays up. The workers are not started again: Celery's consumer reconnects by itself
    (and a message it took before the stop, which RabbitMQ requeued, runs again: "Couldn't ack")."""
    cluster = make_cluster("rabbit-restart", own_rabbitmq.url)
    client = cluster.client()
    workers = [cluster.worker(f"rabbit-restart-{n}") for n in "abc"]
    flow_ids = start_flows(client, run_dir)
    with Watcher(client, flow_ids) as watcher:
        wait_until_done(client, flow_ids, at_least=5)
        own_rabbitmq.stop()
        done_when_stopped = sum(client.status(f).done for f in flow_ids)
        time.sleep(8)
        own_rabbitmq.start()
        reports = wait_for_all(client, flow_ids)
        time.sleep(2)  # copies of messages delivered again may still run: the watcher goes on looking
    logs = "".join(w.output() for w in workers)
    recovered = [line for line in logs.splitlines() if "sending it again" in line or "look was overdue" in line]
    print(f"flows done when RabbitMQ stopped: {done_when_stopped}; messages selinon sent again: {len(recovered)}")
    assert done_when_stopped < FLOWS, "RabbitMQ was stopped in the middle of the flows"
    assert not [w for w in workers if w.exited], "a worker exited"
    assert logs.count("Connection to broker lost") >= len(workers), "every worker lost its broker connection"
    assert not watcher.changed_after_final(), watcher.changed_after_final()
    assert {f: client.status(f).state for f in flow_ids} == {f: r.state for f, r in reports.items()}
    check_every_result_stored_once(cluster, reports, run_dir)


# -- rolling deploys -----------------------------------------------------------------------------------------


def older_configuration(directory: Path) -> str:
    """The test configuration without deployFlow and its task Deployed, as an older release of it: SELINON_CONFIG."""
    nodes = yaml.safe_load((HERE / "nodes.yaml").read_text())
    nodes["tasks"] = [t for t in nodes["tasks"] if t["name"] != "Deployed"]
    nodes["flows"] = [f for f in nodes["flows"] if f != "deployFlow"]
    definitions = yaml.safe_load((HERE / "flows.yaml").read_text())
    definitions["flow-definitions"] = [f for f in definitions["flow-definitions"] if f["name"] != "deployFlow"]
    (directory / "nodes.yaml").write_text(yaml.safe_dump(nodes))
    (directory / "flows.yaml").write_text(yaml.safe_dump(definitions))
    return os.pathsep.join(str(directory / name) for name in ("nodes.yaml", "flows.yaml"))


def test_a_worker_of_another_configuration_hands_messages_to_one_that_knows_them(
    make_cluster: MakeCluster, run_dir: Path, tmp_path: Path
) -> None:
    """An older worker alone on both queues gets the flow's dispatcher, then its task, and hands each back; newer
    workers, started one queue at a time, take them; the flow succeeds."""
    cluster = make_cluster("deploy")
    client = cluster.client()
    dispatch, tasks = cluster.queues
    older = cluster.worker("older", concurrency=1, SELINON_CONFIG=older_configuration(tmp_path))
    flow_id = client.run_flow("deployFlow", {"dir": str(run_dir)})
    time.sleep(2)
    assert client.status(flow_id).state == "pending"
    cluster.worker("newer-dispatcher", [dispatch])
    deadline = time.monotonic() + 30
    while "task 'Deployed' is not in this worker's configuration" not in older.output():
        assert time.monotonic() < deadline, older.output()[-3000:]
        time.sleep(0.2)
    time.sleep(1)
    assert client.status(flow_id).state == "running"
    cluster.worker("newer-tasks", [tasks])
    report = client.wait(flow_id, timeout=30)
    assert report.state == "succeeded", report
    assert runs(run_dir) == [("Deployed", report.tasks[0]["task_id"])]
    warnings = [line for line in older.output().splitlines() if "handed back for another worker" in line]
    assert len(warnings) == 2, warnings  # one line for the flow, one for the task, however often they came back
    assert "WARNING" in warnings[0] and "flow 'deployFlow' is not in this worker's configuration" in warnings[0]
    assert "selinon.task:deployFlow.Deployed" in warnings[1]


def test_a_message_no_worker_knows_fails_once_its_hand_back_time_is_over(
    make_cluster: MakeCluster, run_dir: Path, tmp_path: Path
) -> None:
    cluster = make_cluster("unknown")
    client = cluster.client()
    cluster.worker("older-only", SELINON_CONFIG=older_configuration(tmp_path), SELINON_TEST_HAND_BACK="2")
    report = client.wait(client.run_flow("deployFlow", {"dir": str(run_dir)}), timeout=30)
    assert report.state == "failed"
    assert report.error == (
        "flow 'deployFlow' is not in this worker's configuration, nor in that of another worker that took it within 2s"
    )


# -- scheduling ------------------------------------------------------------------------------------------------


def test_the_dispatcher_backs_off_while_a_task_runs_and_looks_again_soon_after_it_ends(
    shared: Cluster, run_dir: Path
) -> None:
    """Nap runs 3 s: looking every 0.2 s (poll_interval) would take 15 passes; backing off up to 2 s takes a few,
    and Nap's end nudges the dispatcher, so Stamp starts well within the 2 s it might otherwise wait."""
    client = shared.client()
    flow_id = client.run_flow("napFlow", {"dir": str(run_dir), "nap": 3})
    report = client.wait(flow_id, timeout=30)
    assert report.state == "succeeded", report
    woke, stamped = report.result("Nap")["woke"], report.result("Stamp")["at"]
    assert 0 <= stamped - woke < 1.0, stamped - woke
    passes = client.app.AsyncResult(flow_id).info["pass"] + 1
    assert passes <= 9, passes


# -- what operators see ------------------------------------------------------------------------------------------


def test_events_and_logs_name_flows_and_tasks_and_show_no_flow_state(make_cluster: MakeCluster, run_dir: Path) -> None:
    """Celery's events (Flower's view) name each message selinon.dispatcher:Flow or selinon.task:Flow.Task, with
    short argument reprs and never a flow's state; the worker's INFO log has no line per dispatcher pass."""
    cluster = make_cluster("events")
    client = cluster.client()
    worker = cluster.worker("events", SELINON_TEST_EVENTS="1")
    seen: list[dict[str, Any]] = []
    with client.app.connection_for_read() as connection:
        receiver = client.app.events.Receiver(connection, handlers={"*": seen.append})
        listening = threading.Thread(target=lambda: receiver.capture(limit=None, timeout=None, wakeup=False))
        listening.start()
        time.sleep(1)
        report = client.wait(client.run_flow("orderFlow", {**ORDER, "dir": str(run_dir)}), timeout=60)
        time.sleep(1)
        receiver.should_stop = True
        listening.join(10)
    assert report.state == "succeeded"
    names = {e["name"] for e in seen if e["type"] in ("task-sent", "task-received") and e.get("name")}
    assert {"selinon.dispatcher:orderFlow", "selinon.dispatcher:auditFlow", "selinon.task:orderFlow.Order",
            "selinon.task:orderFlow.Reserve", "selinon.task:auditFlow.Audit"} <= names, names  # fmt: skip
    shown = [str(e.get(k)) for e in seen for k in ("args", "kwargs") if e.get(k) is not None]
    assert shown and max(map(len, shown)) <= 200 and not [s for s in shown if "'nodes'" in s or "'fired'" in s]
    passes = [line for line in worker.output().splitlines() if "INFO" in line and "selinon.dispatcher" in line]
    assert not passes, passes[:5]
    assert f"flow orderFlow ({report.flow_id}) succeeded" in worker.output()


# -- the command line with the broker down ---------------------------------------------------------------------


@pytest.fixture
def dead_broker_env(make_cluster: MakeCluster) -> Iterator[dict[str, str]]:
    """The environment of `python -m selinon.celery -A celery_app` with broker and backend on a port where
    nothing listens."""
    cluster = make_cluster("dead")
    dead = f"redis://:{'planted-' + os.urandom(4).hex()}@127.0.0.1:{free_port()}/0"
    yield {
        **os.environ,
        **cluster.env,
        "PYTHONPATH": python_path(HERE),
        "SELINON_CONFIG": os.pathsep.join(str(HERE / f) for f in ("nodes.yaml", "flows.yaml")),
        "SELINON_TEST_BROKER": dead,
        "SELINON_TEST_BACKEND": dead,
        "SELINON_TEST_PREFIX": cluster.tag,
        "SELINON_TEST_QUEUES": ",".join(cluster.queues),
    }


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "orderFlow"], "selinon: error: cannot reach the broker at redis://:**@127.0.0.1:"),
        (["run", "orderFlow", "--wait"], "selinon: error: cannot reach the broker at redis://:**@127.0.0.1:"),
        (["status", "some-flow-id", "--wait"], "selinon: error: cannot reach the result backend at redis://"),
    ],
)
def test_the_client_commands_fail_in_one_line_when_the_broker_is_down(
    dead_broker_env: dict[str, str], argv: list[str], expected: str
) -> None:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "selinon.celery", "-A", "celery_app", *argv],
        env=dead_broker_env, cwd=HERE, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    took = time.monotonic() - began
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and len(done.stderr.splitlines()) == 1 and done.stderr.startswith(expected), done.stderr
    assert "planted-" not in done.stderr
    assert took < 4.0 + 6.0, took  # the connect timeout (broker_connection_timeout, 4 s) and Python's start


# -- a task's outcome when the result backend lost it ----------------------------------------------------------


@pytest.fixture
def no_workers(make_cluster: MakeCluster) -> Iterator[Any]:
    """A client on queues no worker reads: what a dispatcher pass decides is observed, not carried out."""
    client = make_cluster("outcomes").client()
    yield client


def started_task(client: Any, flow: str = "slowFlow") -> tuple[Any, dict[str, Any]]:
    """A flow state whose first pass started its first task (not sent anywhere)."""
    from selinon.flows.dispatcher import FlowState

    run = FlowState(client.system, client.system.flow(flow), str(uuid.uuid4()), {"dir": "-"})
    starts, _ = run.advance(client.throttle)
    return run, run.node(starts[0].id)


def test_a_result_in_storage_wins_over_an_envelope_failure_outside_the_task(no_workers: Any) -> None:
    """The backend says FAILURE, not from the task but from the envelope (a ConnectionError while Celery wrote the
    outcome): the task's storage holds its result, so it succeeded."""
    run, node = started_task(no_workers)
    StoragePool.set({"dir": "-"}, run.flow.name, node["name"], node["id"], {"slow": "done"})
    no_workers.app.backend.store_result(node["id"], ConnectionError("lost the backend"), "FAILURE")
    no_workers._poll(run, node)
    assert node["state"] == "succeeded" and node["tries"] is None


def test_an_envelope_failure_outside_the_task_sends_the_task_again_then_fails_it(no_workers: Any) -> None:
    run, node = started_task(no_workers)
    backend = no_workers.app.backend
    for resent in range(1, 4):
        backend.store_result(node["id"], ConnectionError("lost the backend"), "FAILURE")
        no_workers._poll(run, node)
        assert (node["state"], node["resent"]) == ("scheduled", resent)
        assert backend.get_task_meta(node["id"], cache=False)["status"] == "PENDING", "forgotten, then sent again"
    backend.store_result(node["id"], ConnectionError("lost the backend"), "FAILURE")
    no_workers._poll(run, node)
    assert node["state"] == "failed"
    assert node["error"] == "its envelope failed 4 times, last: ConnectionError: lost the backend"


def test_a_task_not_started_a_minute_after_it_was_sent_is_looked_for_and_sent_again(no_workers: Any) -> None:
    """PENDING a minute after it was sent: with no result in its storage, the message may be lost (kombu's Redis
    transport can lose one a worker was taking when the broker stopped): it is sent again, once a minute, three
    times at most; with a result stored, the backend lost its record, and the task succeeded."""
    run, node = started_task(no_workers)
    node["sent"] = time.time() - 61
    no_workers._poll(run, node)
    assert (node["state"], node["resent"]) == ("scheduled", 1) and time.time() - node["sent"] < 5
    no_workers._poll(run, node)
    assert node["resent"] == 1, "not again within the minute"
    node["sent"] = node["looked"] = time.time() - 61
    StoragePool.set({"dir": "-"}, run.flow.name, node["name"], node["id"], {"slow": "done"})
    no_workers._poll(run, node)
    assert node["state"] == "succeeded" and node["resent"] == 1


def test_a_flow_whose_next_look_is_long_overdue_is_nudged_and_its_chain_goes_on(no_workers: Any) -> None:
    """A sub-flow's chain message lost with a broker: its parent's pass sees its next look a minute overdue and
    nudges it; that nudged pass sends the chain's next message, and the record says so."""
    from celery.exceptions import Ignore

    from selinon.flows.dispatcher import FlowState

    parent, sub = started_task(no_workers, "finishFlow")
    assert sub["kind"] == "flow" and sub["name"] == "auditFlow"
    child = FlowState(no_workers.system, no_workers.system.flow("auditFlow"), sub["id"], {"dir": "-"})
    child.advance(no_workers.throttle)
    resume = {"node_args": {"dir": "-"}, "parent": {}, "selective": None, "caller": None,
              "state": {"pass": 3, "flow": child.dump()}}  # fmt: skip
    overdue = time.time() - 61
    backend = no_workers.app.backend
    record = {"flow": "auditFlow", "flow_id": sub["id"], "state": "running", "tasks": [], "pass": 2}
    backend.store_result(sub["id"], {**record, "resume": resume, "chain": 3, "due": overdue}, "RUNNING")
    no_workers._poll(parent, sub)
    assert no_workers.coordinator.marked(sub["id"]), "the sub-flow was nudged"
    carrier = type("Message", (), {"backend": backend})()  # what _pass uses of a Celery task: its backend
    message = {"state": {}, "parent": None, "selective": None, "caller": None, "node_args": None}
    with pytest.raises(Ignore):
        no_workers._pass(carrier, no_workers.system.flow("auditFlow"), sub["id"], message, True)
    parked = backend.get_task_meta(sub["id"], cache=False)["result"]
    assert (parked["pass"], parked["chain"]) == (3, 4) and parked["due"] > time.time()
