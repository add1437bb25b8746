"""`global: migration_dir`: Selinon 1.x's migration files read and checked, applied to dispatcher states written under
an earlier configuration (edges renumbered, tainted runs per strategy, skew), and written by `selinon migrate`."""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest

from selinon import flows
from selinon.cli import main
from selinon.errors import ConfigurationError, MigrationSkew
from selinon.executor import Executor
from selinon.flows import migrations
from selinon.flows.dispatcher import ENDED, FlowState, selective_run
from selinon.pool import StoragePool

FIXTURES = Path(__file__).parent / "fixtures" / "migrations_1x"
START = {"from": [], "to": "Task1"}
TASKS = [{"name": f"Task{n}", "import": "flow_tasks", "classname": "Echo", "storage": "Memory"} for n in range(1, 6)]
MEMORY = {"name": "Memory", "classname": "InMemoryStorage", "configuration": {"json": True}}


def build(edges: list[dict[str, Any]], migration_dir: Path | None = None, **options: Any) -> flows.System:
    nodes: dict[str, Any] = {"storages": [MEMORY], "tasks": TASKS}
    if migration_dir is not None:
        nodes["global"] = {"migration_dir": str(migration_dir)}
    definitions = [{"name": "flow1", "edges": edges, **options}]
    return flows.from_documents([("nodes.yaml", nodes), ("flows.yaml", {"flow-definitions": definitions})])


def migration(directory: Path, old: list[dict[str, Any]], new: list[dict[str, Any]], strategy: str = "IGNORE") -> None:
    migrations.write(str(directory), migrations.compute({"flow1": old}, {"flow1": new}), strategy, meta=False)


def look(state: FlowState) -> list[str]:
    """One dispatcher pass: the names of the nodes it starts."""
    starts, _ = state.advance(lambda key, interval: 0.0)
    return [start.name for start in starts]


def end(state: FlowState, name: str, succeeded: bool = True) -> None:
    node = next(n for n in state.nodes if n["name"] == name and n["state"] not in ENDED)
    state.ended(node["id"], succeeded)


def resume(system: flows.System, state: FlowState, **kwargs: Any) -> FlowState:
    """The next pass of ``state``'s dispatcher on a worker that runs ``system`` (as a Celery message carries it)."""
    data = json.loads(json.dumps(state.dump()))
    return FlowState(system, system.flows["flow1"], state.flow_id, state.node_args, data=data, **kwargs)


def started(state: FlowState) -> list[str]:
    return [node["name"] for node in state.nodes]


# -- reading -----------------------------------------------------------------------------------------------------


def test_a_migration_file_written_by_selinon_1_4_loads_and_sets_the_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES)  # migration_dir is relative to the working directory, as in 1.x
    system = flows.load([FIXTURES / "new" / "nodes.yaml", FIXTURES / "new" / "flows.yaml"])
    assert system.migrations.version == 1
    (first,) = system.migrations.files
    assert first.strategy == "IGNORE"
    assert first.flows["flow1"].translation == {1: 3, 2: None, 3: 2}
    assert first.flows["flow1"].tainting_nodes == {1: frozenset({"Task1"}), 4: frozenset({"Task2"})}
    assert first.flows["flow2"].translation == {0: 1, 1: 0}
    without = flows.load([FIXTURES / "new" / "nodes.yaml", FIXTURES / "new" / "flows.yaml"], read_migrations=False)
    assert without.migrations.version == 0


def test_files_that_are_not_migrations_are_skipped_and_metadata_is_accepted(tmp_path: Path) -> None:
    (tmp_path / ".1.json.swp").write_text("x")
    (tmp_path / "README.md").write_text("migrations of flow1")
    (tmp_path / "drafts.json").mkdir()
    document = {
        "migration": {"flow1": {"translation": {"1": None}, "tainted_edges": {"1": {}}, "tainting_nodes": {}}},
        "tainted_flow_strategy": "retry",  # 1.x read the name in any case
        "_meta": {"selinon_version": "1.0.0rc4", "host": "h", "datetime": "2018-05-04 07:11:09", "user": None},
    }
    (tmp_path / "1.json").write_text(json.dumps(document))
    found = migrations.read_directory(str(tmp_path), "nodes.yaml: global: migration_dir")
    assert found.version == 1 and found.files[0].strategy == "RETRY"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"one.json": "{}"}, "one.json: a migration file is named by its version number, such as 1.json"),
        ({"1.json": "{}", "3.json": "{}"}, "migration 2.json is missing (found up to 3.json)"),
        ({"0.json": "{}"}, "0.json: migrations are numbered from 1"),
        ({"1.json": "{}", "01.json": "{}"}, "1.json: 01.json has the same version; keep one of them"),
        ({"1.json": "[1"}, "1.json: cannot read the migration file"),
        ({"1.json": '{"migration": {}}'}, "1.json: `tainted_flow_strategy` is missing"),
        (
            {"1.json": '{"migration": {}, "tainted_flow_strategy": "SKIP"}'},
            "`tainted_flow_strategy` must be one of IGNORE, RETRY, FAIL, not 'SKIP'",
        ),
        ({"1.json": '{"migration": {}, "tainted_flow_strategy": "FAIL", "x": 1}'}, "1.json: unknown key 'x'"),
        (
            {"1.json": '{"migration": {"f": {"translation": {}}}, "tainted_flow_strategy": "FAIL"}'},
            "1.json: flow 'f': must be an object with exactly translation, tainted_edges, tainting_nodes",
        ),
        (
            {
                "1.json": '{"migration": {"f": {"translation": {"a": 1}, "tainted_edges": {}, "tainting_nodes": {}}},'
                ' "tainted_flow_strategy": "FAIL"}'
            },
            "1.json: flow 'f': translation: key 'a' is not an edge index",
        ),
        (
            {
                "1.json": '{"migration": {"f": {"translation": {"1": "2"}, "tainted_edges": {}, "tainting_nodes": {}}},'
                ' "tainted_flow_strategy": "FAIL"}'
            },
            "translation: edge 1 maps to '2', not to an edge index or null",
        ),
        (
            {
                "1.json": '{"migration": {"f": {"translation": {}, "tainted_edges": {}, "tainting_nodes": {"1": []}}},'
                ' "tainted_flow_strategy": "FAIL"}'
            },
            "tainting_nodes: edge 1 must list the node names it starts from",
        ),
    ],
)
def test_a_wrong_migration_directory_is_refused_naming_the_file(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigurationError, match="^" + str(tmp_path)) as error:
        migrations.read_directory(str(tmp_path), "nodes.yaml: global: migration_dir")
    assert expected in str(error.value)


def test_a_missing_directory_is_refused_and_a_migration_for_other_edges_warned_of_when_flows_load(
    tmp_path: Path,
) -> None:
    edges = [START, {"from": "Task1", "to": "Task2"}]
    with pytest.raises(ConfigurationError) as error:
        build(edges, tmp_path / "nowhere")
    assert str(error.value).startswith(
        f"nodes.yaml: global: migration_dir: '{tmp_path / 'nowhere'}' is not a directory"
    )
    assert "create it (`selinon migrate` writes its files there) or fix the path" in str(error.value)
    migration(tmp_path, edges, [*edges, {"from": "Task2", "to": "Task3"}])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build([*edges, {"from": "Task2", "to": "Task3"}], tmp_path)  # the configuration it leads to
    with pytest.warns(migrations.MigrationWarning) as warned:  # the new edge changed later, without a migration
        later = build([*edges, {"from": "Task1", "to": "Task3"}], tmp_path)
    assert str(warned[0].message) == (
        f"{tmp_path / '1.json'}: flow 'flow1': edges[2] is said to start from Task2, but it does not; its edges "
        "changed after this migration was written: write a migration for that change (`selinon migrate`)"
    )
    assert later.migrations.version == 1, "loads as Selinon 1.x did"


# -- applying ------------------------------------------------------------------------------------------------------


def test_a_run_whose_edges_were_renumbered_goes_on_as_the_new_configuration_says(tmp_path: Path) -> None:
    old = [START, {"from": "Task1", "to": "Task2"}, {"from": "Task2", "to": "Task3"}]
    new = [{"from": "Task2", "to": "Task3"}, {"from": "Task1", "to": "Task2"}, START]
    migration(tmp_path, old, new)
    state = FlowState(build(old), build(old).flows["flow1"], "run-1", {"n": 1})
    assert look(state) == ["Task1"] and state.migration_version == 0
    end(state, "Task1")
    assert look(state) == ["Task2"]
    upgraded = build(new, tmp_path)
    state = resume(upgraded, state)
    assert state.migration_version == 1
    assert sorted(state.fired) == [(1, (state.nodes[0]["id"],)), (2, ())], "the old indexes, renumbered"
    assert look(state) == [], "nothing fires twice"
    end(state, "Task2")
    assert look(state) == ["Task3"]
    end(state, "Task3")
    look(state)
    assert state.done and not state.failed_flow and started(state) == ["Task1", "Task2", "Task3"]
    assert resume(upgraded, state).dump()["migration_version"] == 1


def test_an_added_edge_whose_parent_still_runs_fires_and_does_not_taint(tmp_path: Path) -> None:
    old = [START, {"from": "Task1", "to": "Task2"}]
    new = [*old, {"from": "Task1", "to": "Task3"}]
    migration(tmp_path, old, new, "FAIL")
    state = FlowState(build(old), build(old).flows["flow1"], "run-2", None)
    look(state)
    state = resume(build(new, tmp_path), state)
    assert not state.failed_flow
    end(state, "Task1")
    assert sorted(look(state)) == ["Task2", "Task3"]


@pytest.mark.parametrize("strategy", ["IGNORE", "RETRY", "FAIL"])
def test_a_run_that_finished_the_parents_of_an_added_edge_is_tainted(
    tmp_path: Path, strategy: str, caplog: pytest.LogCaptureFixture
) -> None:
    old = [START, {"from": "Task1", "to": "Task2"}]
    new = [*old, {"from": "Task1", "to": "Task3"}]
    migration(tmp_path, old, new, strategy)
    state = FlowState(build(old), build(old).flows["flow1"], "run-3", None)
    look(state)
    first_id = state.nodes[0]["id"]
    end(state, "Task1")
    look(state)
    state = resume(build(new, tmp_path), state)
    assert "migration 1 adds edges[2] from Task1, which had already finished" in caplog.text
    if strategy == "IGNORE":  # goes on without the new edge: Task3 never runs
        end(state, "Task2")
        look(state)
        assert state.done and not state.failed_flow and started(state) == ["Task1", "Task2"]
    elif strategy == "RETRY":  # from the start, under the new configuration, with new node ids
        assert look(state) == ["Task1"] and state.nodes[0]["id"] != first_id
        end(state, "Task1")
        assert sorted(look(state)) == ["Task2", "Task3"]
        assert state.dump()["restarts"] == 1
    else:  # failed at once; Task2 already started still runs, but nothing new starts
        assert state.failed_flow and state.done
        assert state.error is not None and state.error.startswith("flow 'flow1' (run-3) is tainted by migrations:")
        assert look(state) == []


def test_a_run_that_fired_a_removed_edge_is_tainted_but_one_that_only_evaluated_it_is_not(tmp_path: Path) -> None:
    never = {"name": "argsFieldEqual", "args": {"key": "go", "value": True}}
    old = [START, {"from": "Task1", "to": "Task2", "condition": never}, {"from": "Task1", "to": "Task3"}]
    new = [START, {"from": "Task1", "to": "Task3"}]
    migration(tmp_path, old, new, "FAIL")
    for go, tainted in ((True, True), (False, False)):
        state = FlowState(build(old), build(old).flows["flow1"], f"run-{go}", {"go": go})
        look(state)
        end(state, "Task1")
        look(state)
        state = resume(build(new, tmp_path), state)
        assert state.failed_flow is tainted
        if tainted:
            assert "it fired the edge from [Task1] to [Task2], which migration 1 removes (FAIL)" in str(state.error)


def test_chained_migrations_apply_in_order_and_the_strongest_strategy_wins(tmp_path: Path) -> None:
    v0 = [START, {"from": "Task1", "to": "Task2"}]
    v1 = [START, {"from": "Task1", "to": "Task4"}, {"from": "Task1", "to": "Task2"}]
    v2 = [{"from": "Task1", "to": "Task2"}, START, {"from": "Task1", "to": "Task4"}, {"from": "Task2", "to": "Task5"}]
    migration(tmp_path, v0, v1, "RETRY")
    migration(tmp_path, v1, v2, "IGNORE")
    state = FlowState(build(v0), build(v0).flows["flow1"], "run-4", None)
    look(state)
    end(state, "Task1")
    look(state)  # Task1 finished: migration 1's new edge taints the run (RETRY), migration 2's does not
    state = resume(build(v2, tmp_path), state)
    assert state.migration_version == 2 and state.restarts == 1 and look(state) == ["Task1"]
    state = FlowState(build(v0), build(v0).flows["flow1"], "run-5", None)
    look(state)  # Task1 still runs: nothing taints it, and both migrations renumber its edges
    state = resume(build(v2, tmp_path), state)
    assert sorted(state.fired) == [(1, ())]
    end(state, "Task1")
    assert sorted(look(state)) == ["Task2", "Task4"]
    end(state, "Task2")
    assert look(state) == ["Task5"]


def test_a_state_from_newer_migrations_is_a_skew(tmp_path: Path) -> None:
    edges = [START, {"from": "Task1", "to": "Task2"}]
    migration(tmp_path, edges, [*edges, {"from": "Task2", "to": "Task3"}])
    newer = build([*edges, {"from": "Task2", "to": "Task3"}], tmp_path)
    state = FlowState(newer, newer.flows["flow1"], "run-6", None)
    look(state)
    with pytest.raises(MigrationSkew) as error:
        resume(build(edges), state)
    assert error.value.available_migration_version == 0
    assert "flow 'flow1' (run-6) is at migration 1, but this worker has migrations up to 0" in str(error.value)
    selective = selective_run(newer, "flow1", ["Task2"])
    with pytest.raises(MigrationSkew, match="its selective run is at migration 1"):
        FlowState(build(edges), build(edges).flows["flow1"], "run-7", None, selective=selective)


def test_a_selective_run_computed_under_an_older_configuration_is_renumbered(tmp_path: Path) -> None:
    old = [START, {"from": "Task1", "to": "Task2"}, {"from": "Task1", "to": "Task3"}]
    new = [{"from": "Task1", "to": "Task3"}, {"from": "Task1", "to": "Task2"}, START]
    migration(tmp_path, old, new)
    selective = selective_run(build(old), "flow1", ["Task2"])
    assert selective["edges"]["flow1"] == {"0": ["Task1"], "1": ["Task2"]} and selective["migration_version"] == 0
    upgraded = build(new, tmp_path)
    state = FlowState(upgraded, upgraded.flows["flow1"], "run-8", None, selective=selective)
    assert state.selective is not None and state.selective["edges"]["flow1"] == {"2": ["Task1"], "1": ["Task2"]}
    assert look(state) == ["Task1"]
    end(state, "Task1")
    assert look(state) == ["Task2"], "Task3 is not selected"


def test_parents_of_a_firing_follow_the_from_order_of_the_new_configuration(tmp_path: Path) -> None:
    old = [START, {"from": "Task1", "to": ["Task2", "Task3"]}, {"from": ["Task2", "Task3"], "to": "Task4"}]
    new = [START, {"from": ["Task3", "Task2"], "to": "Task4"}, {"from": "Task1", "to": ["Task2", "Task3"]}]
    migration(tmp_path, old, new)
    state = FlowState(build(old), build(old).flows["flow1"], "run-9", None)
    look(state)
    end(state, "Task1")
    look(state)
    end(state, "Task2")
    end(state, "Task3")
    look(state)
    ids = {node["name"]: node["id"] for node in state.nodes}
    assert (2, (ids["Task2"], ids["Task3"])) in state.fired
    state = resume(build(new, tmp_path), state)
    assert (1, (ids["Task3"], ids["Task2"])) in state.fired


def test_a_migration_that_does_not_fit_the_state_fails_the_run(tmp_path: Path) -> None:
    old = [START, {"from": "Task1", "to": "Task2"}]
    new = [START, {"from": "Task3", "to": "Task2"}, {"from": "Task1", "to": "Task3"}]
    state = FlowState(build(old), build(old).flows["flow1"], "run-10", None)
    look(state)
    end(state, "Task1")
    look(state)
    hand_written = {  # says edge 1 (from Task1) became edge 1 of the new flow, which starts from Task3
        "migration": {"flow1": {"translation": {}, "tainted_edges": {}, "tainting_nodes": {"2": ["Task1"]}}},
        "tainted_flow_strategy": "IGNORE",
    }
    (tmp_path / "1.json").write_text(json.dumps(hand_written))
    state = resume(build(new, tmp_path), state)
    assert state.failed_flow
    assert "it cannot be migrated: flow 'flow1': a migration leads the firing of Task1 to edges[1]" in str(state.error)


def test_a_restart_gives_the_first_task_the_node_arguments_the_flow_started_with(tmp_path: Path) -> None:
    old = [START, {"from": "Task1", "to": "Task2"}]
    new = [*old, {"from": "Task1", "to": "Task3"}]
    migration(tmp_path, old, new, "RETRY")
    system = build(old, node_args_from_first=True)
    StoragePool.configure(system.configuration)
    state = FlowState(system, system.flows["flow1"], "run-11", {"order": 7})
    look(state)
    StoragePool.set({"order": 7}, "flow1", "Task1", state.nodes[0]["id"], {"order": 7, "checked": True})
    end(state, "Task1")
    look(state)
    assert state.node_args == {"order": 7, "checked": True}
    upgraded = build(new, tmp_path, node_args_from_first=True)
    state = resume(upgraded, state)
    assert state.restarts == 1 and state.node_args == {"order": 7}
    look(state)
    assert state.nodes[0]["name"] == "Task1" and state.nodes[0]["state"] == "scheduled"


def test_the_local_executor_runs_at_the_configuration_s_migration(tmp_path: Path) -> None:
    edges = [START, {"from": "Task1", "to": "Task2"}]
    migration(tmp_path, edges, [*edges, {"from": "Task2", "to": "Task3"}])
    run = Executor(build([*edges, {"from": "Task2", "to": "Task3"}], tmp_path)).run("flow1", {"n": 1})
    assert run.state == "succeeded" and run.migration_version == 1
    assert [node.name for node in run.tasks()] == ["Task1", "Task2", "Task3"]
    assert Executor(build(edges)).run("flow1").migration_version == 0


# -- writing -------------------------------------------------------------------------------------------------------


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_selinon_migrate_writes_what_selinon_1_4_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = ["-c", str(FIXTURES / "new" / "nodes.yaml"), "-c", str(FIXTURES / "new" / "flows.yaml")]
    old = ["--old-config", str(FIXTURES / "old" / "nodes.yaml"), "--old-config", str(FIXTURES / "old" / "flows.yaml")]
    code, out, err = cli(["migrate", *new, *old, "--migration-dir", str(tmp_path), "--no-meta"], capsys)
    assert code == 0, err
    assert out.splitlines() == [
        "flow flow1: 2 edge(s) renumbered, 1 gone, 2 new with parents",
        "flow flow2: 2 edge(s) renumbered",
        f"wrote {tmp_path / '1.json'} (tainted flows: IGNORE)",
    ]
    written = json.loads((tmp_path / "1.json").read_text())
    assert written == json.loads((FIXTURES / "written_by_selinon_1.4" / "1.json").read_text())
    code, out, err = cli(["migrate", *new, *old, "-m", str(tmp_path), "-t", "fail"], capsys)
    assert code == 0 and f"wrote {tmp_path / '2.json'} (tainted flows: FAIL)" in out
    assert "this migration repeats the latest one" in err
    second = json.loads((tmp_path / "2.json").read_text())
    assert second["tainted_flow_strategy"] == "FAIL" and set(second["_meta"]) == {
        "selinon_version",
        "host",
        "datetime",
        "user",
    }
    assert migrations.read_directory(str(tmp_path), "test").version == 2


def test_selinon_migrate_lists_a_flow_whose_edges_only_moved(tmp_path: Path) -> None:
    old = {"flow1": [START, {"from": "Task1", "to": "Task2"}], "flow2": [START]}
    new = {"flow1": [{"from": "Task1", "to": "Task2"}, START], "flow2": [START]}
    assert migrations.compute(old, new) == {
        "flow1": {"translation": {"0": 1, "1": 0}, "tainted_edges": {}, "tainting_nodes": {}}
    }
    assert migrations.compute(old, old) == {}
    doubled = {"flow1": [START, {"from": "Task1", "to": ["Task2", "Task2"]}], "flow2": [START]}
    assert migrations.compute(old, doubled)["flow1"]["tainting_nodes"] == {"1": ["Task1"]}


def test_selinon_migrate_without_changes_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = ["-c", str(FIXTURES / "new" / "nodes.yaml"), "-c", str(FIXTURES / "new" / "flows.yaml")]
    old = ["--old-config", str(FIXTURES / "new" / "nodes.yaml"), "--old-config", str(FIXTURES / "new" / "flows.yaml")]
    code, out, _ = cli(["migrate", *new, *old, "-m", str(tmp_path / "m")], capsys)
    assert code == 0 and out == "no edge changed: no migration is needed, nothing written\n"
    assert not (tmp_path / "m").exists()


def test_selinon_migrate_refuses_unclear_requests_and_bad_configurations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = ["-c", str(FIXTURES / "new" / "nodes.yaml"), "-c", str(FIXTURES / "new" / "flows.yaml")]
    code, _, err = cli(["migrate", *new], capsys)
    assert code == 2 and "give the configuration before the change: --old-config FILE ... or --git" in err
    broken = tmp_path / "flows.yaml"
    broken.write_text(
        "flow-definitions:\n  - {name: flow1, edges: [{from: [], to: Tsk1}]}\n  - {name: flow2, edges: []}\n"
    )
    args = ["migrate", *new, "--old-config", str(FIXTURES / "old" / "nodes.yaml"), "--old-config", str(broken)]
    code, _, err = cli([*args, "-m", str(tmp_path)], capsys)
    assert code == 2 and err.startswith(f"selinon: error: the old configuration: {broken}: flow 'flow1': edges[0]")
    bare = tmp_path / "nodes.yaml"
    bare.write_text(
        "tasks: [{name: Task1, import: mytasks}]\nflow-definitions: [{name: flow1, edges: [{to: Task1}]}]\n"
    )
    code, _, err = cli(["migrate", "-c", str(bare), "--old-config", str(bare)], capsys)
    assert code == 2 and "no migration directory: set `global: migration_dir` or pass --migration-dir" in err


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_selinon_migrate_takes_the_old_configuration_from_git(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURES / "old", repo)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "v1"], check=True)
    shutil.copy(FIXTURES / "new" / "flows.yaml", repo / "flows.yaml")
    files = ["-c", str(repo / "nodes.yaml"), "-c", str(repo / "flows.yaml")]
    code, _, err = cli(["migrate", *files, "--git", "-m", str(tmp_path / "m"), "--no-meta"], capsys)
    assert code == 0, err
    written = json.loads((tmp_path / "m" / "1.json").read_text())
    assert written == json.loads((FIXTURES / "written_by_selinon_1.4" / "1.json").read_text())
    code, _, err = cli(["migrate", "-c", str(tmp_path / "m" / "1.json"), "--git", "-m", str(tmp_path)], capsys)
    assert code == 2 and "cannot read it from git's HEAD" in err
