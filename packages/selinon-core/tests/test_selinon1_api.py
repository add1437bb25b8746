"""Selinon 1.x's top-level Python API: Config, the error names, FatalTaskError, and what fallbacks read of the
failures they handle. Celery's side (set_celery_app, run_flow) is in tests/celery/test_celery_selinon1_api.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flow_tasks
import pytest
import yaml
from flowkit import by_name, flow, run, system, task

import selinon
from selinon import Config, StoragePool, failures
from selinon.errors import (
    ConfigNotInitializedError,
    ConfigurationError,
    NoParentNodeError,
    RequestError,
    SelectiveNoPathError,
    SelinonError,
    UnknownFlowError,
    UnknownStorageError,
)
from selinon.storages.memory import InMemoryStorage

# The names `selinon` 1.4.0 exports at its top level.
SELINON_1_4_NAMES = [
    "Cache", "CacheMissError", "Config", "ConfigNotInitializedError", "ConfigurationError", "DataStorage",
    "FatalTaskError", "FlowError", "NoParentNodeError", "RequestError", "Retry", "SelectiveNoPathError",
    "SelinonMissingDataException", "SelinonTask", "StorageError", "StoragePool", "Trace", "UnknownError",
    "UnknownFlowError", "UnknownStorageError", "run_flow", "run_flow_selective", "selinon_version",
]  # fmt: skip
# Its internals, which this Selinon does not have: using them says why, in one line.
SELINON_1_4_INTERNALS = ["Dispatcher", "SystemState", "Storage", "selinon_version_codename"]

NODES = {
    "global": {"default_task_queue": "work", "default_dispatcher_queue": "flows"},
    "tasks": [
        {"name": "First", "import": "flow_tasks", "classname": "Echo", "storage": "Memory"},
        {"name": "Second", "import": "flow_tasks", "classname": "Parents", "queue": "slow", "max_retry": 2},
    ],
    "flows": ["main", "other"],
    "storages": [{"name": "Memory", "classname": "InMemoryStorage"}],
}
FLOWS = {
    "flow-definitions": [
        {"name": "main", "queue": "main_flows", "edges": [{"from": [], "to": "First"}]},
        {"name": "other", "edges": [{"from": [], "to": "Second"}]},
    ]
}


@pytest.fixture(autouse=True)
def fresh_config() -> Iterator[None]:
    yield
    Config._system = None
    Config._app = None
    StoragePool.reset()


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Path]:
    nodes, flows_file = tmp_path / "nodes.yaml", tmp_path / "flows.yaml"
    nodes.write_text(yaml.safe_dump(NODES))
    flows_file.write_text(yaml.safe_dump(FLOWS))
    return nodes, flows_file


@pytest.mark.parametrize("name", SELINON_1_4_NAMES)
def test_every_top_level_name_of_selinon_1_4_is_there(name: str) -> None:
    assert getattr(selinon, name) is not None
    assert name in selinon.__all__


@pytest.mark.parametrize("name", SELINON_1_4_INTERNALS)
def test_selinon_1_internals_say_why_they_are_gone(name: str) -> None:
    with pytest.raises(AttributeError, match=rf"^selinon\.{name}: .+docs/upgrading\.md"):
        getattr(selinon, name)


def test_error_names_derive_from_what_this_core_raised_there_before() -> None:
    assert issubclass(UnknownFlowError, ConfigurationError)
    assert issubclass(UnknownStorageError, ConfigurationError)
    assert issubclass(SelectiveNoPathError, ConfigurationError)
    assert selinon.SelinonException is SelinonError
    assert issubclass(selinon.Retry, SelinonError)
    assert selinon.selinon_version == selinon.__version__
    # A 1.x custom cache imports `Cache` from selinon and `CacheMissError` from selinon.errors.
    assert selinon.CacheMissError is selinon.errors.CacheMissError is selinon.caches.CacheMissError


def test_set_config_yaml_gives_what_selinon_1_workers_read(project: tuple[Path, Path]) -> None:
    assert not Config.initialized
    Config.set_config_yaml(project[0], [project[1]])
    assert Config.initialized
    assert Config.flows == ["main", "other"]
    assert Config.dispatcher_queues == {"main": "main_flows", "other": "flows"}
    assert Config.task_queues == {"First": "work", "Second": "slow"}
    assert Config.task_classes == {"First": flow_tasks.Echo, "Second": flow_tasks.Parents}
    assert Config.task2storage_mapping == {"First": "Memory"}
    assert Config.max_retry == {"First": 0, "Second": 2}
    storage = Config.storage_mapping["Memory"]
    assert isinstance(storage, InMemoryStorage)
    assert storage is StoragePool.get_storage("Memory")  # the pool is configured too


def test_queues_default_to_celerys_default_queue_as_in_selinon_1(tmp_path: Path) -> None:
    nodes = {k: v for k, v in NODES.items() if k != "global"}
    Config.set_config_dict(nodes, [FLOWS])
    assert Config.dispatcher_queues == {"main": "main_flows", "other": "celery"}
    assert Config.task_queues == {"First": "celery", "Second": "slow"}


def test_set_config_dict_checks_as_strictly_as_the_files() -> None:
    Config.set_config_dict(NODES, [FLOWS])
    assert Config.flows == ["main", "other"]
    bad = {**NODES, "tasks": [{**NODES["tasks"][0], "retries": 1}]}  # type: ignore[dict-item]
    with pytest.raises(ConfigurationError, match=r"<nodes_definition>.*'First'.*retries"):
        Config.set_config_dict(bad, [FLOWS])


def test_a_single_flow_file_may_be_given_without_a_list(project: tuple[Path, Path]) -> None:
    Config.set_config_yaml(str(project[0]), str(project[1]))
    assert Config.flows == ["main", "other"]


@pytest.mark.parametrize("arguments", [{"config_py": "config.py"}, {"keep_config_py": True}])
def test_config_py_is_refused_in_one_line(project: tuple[Path, Path], arguments: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match=r"^config_py/keep_config_py: .*drop the argument") as caught:
        Config.set_config_yaml(project[0], [project[1]], **arguments)
    assert "\n" not in str(caught.value)
    assert not Config.initialized


def test_using_config_before_it_is_set_up_says_what_to_call() -> None:
    with pytest.raises(ConfigNotInitializedError, match=r"Config\.set_config_yaml"):
        Config.flows  # noqa: B018
    Config.set_config_dict(NODES, [FLOWS])
    with pytest.raises(ConfigNotInitializedError, match=r"Config\.set_celery_app\(app\) before run_flow"):
        selinon.run_flow("main", {})


def test_a_fatal_task_error_is_not_retried() -> None:
    built = system([task("Task1", "Fatal", max_retry=3)], [flow("main", {"from": [], "to": "Task1"})])
    result = run(built, "main")
    assert result.state == "failed"
    assert by_name(result)["Task1"].tries == 1
    assert flow_tasks.runs_per_task() == {"Task1": 1}
    assert "no point in retrying Task1" in (result.error or "")


@pytest.mark.parametrize("storage", ["Memory", None])
def test_a_fallback_reads_the_exception_of_the_task_it_handles(storage: str | None) -> None:
    built = system(
        [task("Task1", "Fail", storage=storage), task("Rescue", "Exceptions")],
        [flow("main", {"from": [], "to": "Task1"}, failures=[{"nodes": "Task1", "fallback": "Rescue"}])],
    )
    result = run(built, "main")
    assert result.state == "succeeded", result.error
    nodes = by_name(result)
    assert StoragePool.retrieve("main", "Rescue", nodes["Rescue"].id) == {"Task1": ["ValueError", "boom in Task1"]}


def test_a_failure_is_read_back_from_the_storage_by_a_process_that_did_not_run_it() -> None:
    built = system(
        [task("Task1", "Fail"), task("Rescue", "Exceptions")],
        [flow("main", {"from": [], "to": "Task1"}, failures=[{"nodes": "Task1", "fallback": "Rescue"}])],
    )
    result = run(built, "main")
    failed_id = by_name(result)["Task1"].id
    failures._recent.clear()  # as in another worker process
    reader = flow_tasks.Exceptions("main", "Rescue", {"Task1": failed_id}, "reader", result.id)
    exc = reader.parent_task_exception("Task1")
    assert type(exc) is ValueError
    assert str(exc) == "boom in Task1"


def test_a_fallback_reads_the_exceptions_of_a_failed_sub_flow() -> None:
    built = system(
        [task("Inner", "Fail"), task("Rescue", "Exceptions")],
        [
            flow(
                "main",
                {"from": [], "to": "sub"},
                failures=[{"nodes": "sub", "fallback": "Rescue"}],
                propagate_failures=True,
            ),
            flow("sub", {"from": [], "to": "Inner"}),
        ],
    )
    result = run(built, "main")
    assert result.state == "succeeded", result.error
    rescue = by_name(result)["Rescue"]
    assert StoragePool.retrieve("main", "Rescue", rescue.id) == {"sub/Inner": ["ValueError", "boom in Inner"]}


def test_asking_for_the_exception_of_a_parent_that_did_not_fail_is_a_request_error() -> None:
    built = system(
        [task("Task1"), task("Task2", "Parents")],
        [flow("main", {"from": [], "to": "Task1"}, {"from": "Task1", "to": "Task2"})],
    )
    result = run(built, "main")
    nodes = by_name(result)
    reader = flow_tasks.Exceptions("main", "Task2", {"Task1": nodes["Task1"].id}, "reader", result.id)
    with pytest.raises(RequestError, match=r"'Task1' .* did not fail"):
        reader.parent_task_exception("Task1")
    with pytest.raises(NoParentNodeError, match=r"has no parent 'Nope'; its parents: Task1"):
        reader.parent_task_exception("Nope")


def test_parent_flow_result_takes_the_last_run_by_default_as_selinon_1_did() -> None:
    reader = flow_tasks.Parents("main", "After", {"sub": {"Inner": ["id-0", "id-1"]}}, "x", "flow")
    assert reader._subflow_task_id(["sub"], "Inner", None) == "id-1"
    assert reader._subflow_task_id(["sub"], "Inner", 0) == "id-0"
    with pytest.raises(NoParentNodeError, match=r"index 5 of 'Inner' under sub: it ran 2 time"):
        reader._subflow_task_id(["sub"], "Inner", 5)


def test_a_rebuilt_exception_never_imports_a_module_named_in_a_record() -> None:
    exc = failures.rebuild({"type": "some_module_not_imported_here.Boom", "message": "it broke"})
    assert type(exc).__name__ == "Boom"
    assert type(exc).__module__ == "some_module_not_imported_here"
    assert str(exc) == "it broke"
    assert "some_module_not_imported_here" not in __import__("sys").modules
