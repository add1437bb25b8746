"""`selinon inspect`: the static check of a whole project (exit 0 with a summary, 1 with one line per problem),
`--dump` (the normalised configuration, secrets masked) and `--list-queues`; nothing is ever connected."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from clikit import run

PROBE = '''
from pathlib import Path
from selinon.storage import DataStorage


class Probe(DataStorage):
    """Writes a file when connected: the tests check that inspect never connects."""

    secret_options = frozenset({"signing"})

    def __init__(self, url, marker, password=None, signing=None, size=1):
        if size < 1:
            raise ValueError("size must be at least 1")
        self.marker = Path(marker)

    def connect(self):
        self.marker.write_text("connected")

    def disconnect(self):
        pass

    def is_connected(self):
        return False

    def store(self, node_args, flow_name, task_name, task_id, result):
        raise AssertionError("inspect stored something")

    def retrieve(self, flow_name, task_name, task_id):
        raise AssertionError("inspect read something")
'''

TASKS = """
from selinon.task import SelinonTask


class Fetch(SelinonTask):
    def run(self, node_args):
        return {"items": [1, 2]}


class Store(SelinonTask):
    def run(self, node_args):
        return node_args


class NotATask:
    pass


def each_item(storage_pool, node_args):
    return storage_pool.get("Fetch")["items"]
"""

PREDICATES = """
from selinon.predicates import *  # noqa: F403


def hasItems(message, least=1):
    return len(message.get("items", [])) >= least
"""


MODULES = ("inspect_probe", "inspect_tasks", "inspect_predicates")


def project(tmp_path: Path, nodes: str, flows: str) -> list[str]:
    """A project in ``tmp_path``: its own task, predicate and storage modules beside the YAML files."""
    (tmp_path / "inspect_probe.py").write_text(PROBE)
    (tmp_path / "inspect_tasks.py").write_text(TASKS)
    (tmp_path / "inspect_predicates.py").write_text(PREDICATES)
    (tmp_path / "nodes.yaml").write_text(textwrap.dedent(nodes))
    (tmp_path / "flows.yaml").write_text(textwrap.dedent(flows))
    return ["-c", str(tmp_path / "nodes.yaml"), "-c", str(tmp_path / "flows.yaml")]


NODES = """
    global:
      predicates_module: inspect_predicates
      default_task_queue: '{INSPECT_PREFIX}_tasks'
    storages:
      - name: Results
        classname: Probe
        import: inspect_probe
        configuration:
          url: 'redis://worker:{INSPECT_PASSWORD}@redis.internal:6379/0'
          password: hunter2-password
          signing: signing-key-value
          marker: '{MARKER}'
        cache: {name: LRU, configuration: {size: 10}}
    tasks:
      - {name: Fetch, import: inspect_tasks, storage: Results, max_retry: 2, queue: io}
      - {name: Store, import: inspect_tasks, storage: Results, output_schema: {type: object}}
      - {name: Legacy, storage: Results}     # no flow runs it and it names no module: a storage mapping only
    flows: [mainFlow, itemFlow]
"""
FLOWS = """
    flow-definitions:
      - name: mainFlow
        queue: '{INSPECT_PREFIX}_dispatch'
        edges:
          - {from: [], to: Fetch}
          - from: Fetch
            to: itemFlow
            condition: {and: [{name: hasItems, args: {least: 1}}, {name: fieldExist, args: {key: items}}]}
            foreach: {import: inspect_tasks, function: each_item, propagate_result: true}
      - name: itemFlow
        cache: {name: FIFO, configuration: {size: 5}}
        edges:
          - {from: [], to: Store}
"""


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in MODULES:  # each test imports its own project's modules
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setenv("MARKER", str(tmp_path / "connected"))
    monkeypatch.setenv("INSPECT_PASSWORD", "env-secret-value")
    monkeypatch.setenv("INSPECT_PREFIX", "prod")
    yield
    for name in MODULES:
        sys.modules.pop(name, None)


SECRETS = ("hunter2-password", "signing-key-value", "env-secret-value")


def test_a_sound_project_passes_with_a_short_summary_and_nothing_connected(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = project(tmp_path, NODES, FLOWS)
    code, out, err = run(capsys, "inspect", *config)
    assert code == 0 and err == ""
    assert out.splitlines() == [
        "flows:      mainFlow, itemFlow",
        "tasks:      3, 2 in flows; classes imported from inspect_tasks",
        "storages:   Results (Probe)",
        "predicates: fieldExist, hasItems",
        "queues:     (app default), io, prod_dispatch, prod_tasks",
        "no problems found; nothing was connected",
    ]
    assert not (tmp_path / "connected").exists(), "the storage was connected"


BAD_NODES = """
    global:
      default_task_queue: '{INSPECT_PREFIX}_tasks'
    storages:
      - name: Results
        classname: Probe
        import: inspect_probe
        configuration: {ur: 'redis://h', marker: '{MARKER}'}
      - {name: Typo, classname: Filesystm}
    tasks:
      - {name: Fetch, import: inspect_tasks, storage: Results}
      - {name: Store, import: inspect_tasks, output_schema: missing.json}
      - {name: Broken, import: inspect_tasks, classname: NotATask}
      - {name: Gone, import: inspect_tasks_gone}
      - {name: Unused, import: inspect_tasks, classname: Nope}
"""
BAD_FLOWS = """
    flow-definitions:
      - name: mainFlow
        queue: '{INSPECT_PREFIX}_dispatch'
        edges:
          - {from: [], to: Fetch}
          - {from: Fetch, to: [Store, Broken, Gone]}
          - {from: Store, to: Fetch}
"""


def test_each_problem_is_one_line_naming_file_entry_and_fix(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = project(tmp_path, BAD_NODES, BAD_FLOWS)
    monkeypatch.delenv("INSPECT_PREFIX")
    code, out, err = run(capsys, "inspect", *config)
    assert code == 1 and out == ""
    nodes_yaml, flows_yaml, schema = tmp_path / "nodes.yaml", tmp_path / "flows.yaml", str(tmp_path / "missing.json")
    assert err.splitlines() == [
        f"selinon: {nodes_yaml}: task 'Store': cannot read output_schema {schema!r}: [Errno 2] No such file or "
        f"directory: {schema!r}",
        f"selinon: {nodes_yaml}: task 'Broken': inspect_tasks.NotATask is not a SelinonTask; derive it from "
        "selinon.task.SelinonTask",
        f"selinon: {nodes_yaml}: task 'Gone': cannot import 'inspect_tasks_gone': ModuleNotFoundError: No module "
        "named 'inspect_tasks_gone'; check `import:` and that the module is on the Python path",
        f"selinon: {nodes_yaml}: task 'Unused': module 'inspect_tasks' has no class 'Nope'; set `classname:`",
        f"selinon: {nodes_yaml}: storage 'Results': `configuration:` does not fit Probe: missing a required "
        "argument: 'url'; its options are: url, marker, password, signing, size",
        f"selinon: {nodes_yaml}: storage 'Typo': no installed distribution provides classname 'Filesystm'; "
        "did you mean 'Filesystem'?",
        f"selinon: {flows_yaml}: flow 'mainFlow': queue: environment variable INSPECT_PREFIX is not set; set it or "
        "change the option",
        # Once, though three tasks use that queue.
        f"selinon: {nodes_yaml}: global: default_task_queue: environment variable INSPECT_PREFIX is not set; set it "
        "or change the option",
        # It loads (so that it can be drawn), but it would never end.
        f"selinon: {flows_yaml}: flow 'mainFlow': cycle Fetch -> Store -> Fetch has no way out (no edge on it has a "
        "condition); add a condition to one of its edges",
        "selinon: 9 problems found",
    ]
    assert not (tmp_path / "connected").exists()


def test_a_project_that_does_not_load_is_one_problem(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = project(tmp_path, NODES, FLOWS.replace("name: hasItems", "name: hasItem"))
    code, out, err = run(capsys, "inspect", *config)
    assert code == 1 and out == ""
    (line, total) = err.splitlines()
    assert line.startswith(f"selinon: {tmp_path / 'flows.yaml'}: flow 'mainFlow': edges[1]: condition.and[0]: ")
    assert "'hasItem'" in line and "did you mean 'hasItems'?" in line
    assert total == "selinon: 1 problem found"


def test_dump_prints_the_normalised_configuration_with_secrets_masked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = project(tmp_path, NODES, FLOWS)
    code, out, err = run(capsys, "inspect", *config, "--dump")
    assert code == 0 and err == ""
    assert not [secret for secret in SECRETS if secret in out]
    dump = json.loads(out)
    (storage,) = dump["storages"]
    assert storage["configuration"] == {
        "url": "redis://worker:***@redis.internal:6379/0",  # references are shown as written, and masked
        "password": "***",
        "signing": "***",  # the adapter's own secret_options
        "marker": "{MARKER}",
    }
    assert storage["retry"] == {"attempts": 5, "deadline": 30.0, "backoff": 0.1, "max_backoff": None}
    assert storage["cache"] == {"name": "LRU", "import": None, "configuration": {"size": 10}}
    tasks = {task["name"]: task for task in dump["tasks"]}
    assert tasks["Fetch"]["classname"] == "Fetch" and tasks["Fetch"]["max_retry"] == 2
    assert tasks["Fetch"]["queue"] == "io" and tasks["Store"]["queue"] is None
    assert tasks["Legacy"] == {**tasks["Legacy"], "import": None, "storage": "Results"}
    flows = {flow["name"]: flow for flow in dump["flows"]}
    assert flows["mainFlow"]["queue"] == "{INSPECT_PREFIX}_dispatch"
    assert flows["mainFlow"]["edges"] == [
        {"from": [], "to": ["Fetch"], "condition": None, "foreach": None, "selective": None},
        {
            "from": ["Fetch"],
            "to": ["itemFlow"],
            "condition": {  # the parent each leaf reads is written out
                "and": [
                    {"name": "hasItems", "node": "Fetch", "args": {"least": 1}},
                    {"name": "fieldExist", "node": "Fetch", "args": {"key": "items"}},
                ]
            },
            "foreach": {"function": "inspect_tasks.each_item", "propagate_result": True},
            "selective": None,
        },
    ]
    assert flows["itemFlow"]["cache"] == {"name": "FIFO", "import": None, "configuration": {"size": 5}}
    assert dump["global"]["predicates_module"] == "inspect_predicates"
    assert not (tmp_path / "connected").exists()


def test_list_queues_expands_references_and_marks_unset_ones(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = project(tmp_path, NODES, FLOWS)
    code, out, err = run(capsys, "inspect", *config, "--list-queues")
    assert code == 0 and err == ""
    assert [line.split() for line in out.splitlines()] == [
        ["KIND", "NAME", "QUEUE", "FROM"],
        ["dispatcher", "itemFlow", "(app", "default)", "-"],
        ["dispatcher", "mainFlow", "prod_dispatch", "queue"],
        ["task", "Fetch", "io", "queue"],
        ["task", "Store", "prod_tasks", "global:", "default_task_queue"],
    ]
    monkeypatch.delenv("INSPECT_PREFIX")
    code, out, err = run(capsys, "inspect", *config, "--list-queues")
    assert code == 1
    rows = {line.split()[1]: line for line in out.splitlines()[1:]}
    assert "{INSPECT_PREFIX}_dispatch  (unset: INSPECT_PREFIX)" in rows["mainFlow"]
    assert "{INSPECT_PREFIX}_tasks  (unset: INSPECT_PREFIX)" in rows["Store"]
    assert err.splitlines()[-1] == "selinon: 2 problems found"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "inspect")
    assert code == 2 and out == "" and "Missing option '-c'" in err
