"""Loading nodes.yaml: what is accepted, and the one-line error for each thing that is not."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from selinon import ConfigurationError
from selinon.config import load
from selinon.pool import instantiate


def write(tmp_path: Path, text: str, name: str = "nodes.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_storages_and_tasks(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        storages:
          - name: Memory
            classname: InMemoryStorage
            configuration: {echo: false}
            cache: {name: LRU, configuration: {size: 10}}
          - name: Positional
            classname: Filesystem
            configuration: ['/tmp/results']
          - name: InMemoryStorage
        tasks:
          - name: Fetch
            storage: Memory
            storage_task_name: FetchAlias
            max_retry: 3
            queue: 'fetch'
          - name: Audit
            storage: Memory
            storage_read_only: true
          - name: NoStorage
        """,
    )
    config = load(path)
    memory = config.storages["Memory"]
    assert (memory.classname, memory.configuration, memory.source) == ("InMemoryStorage", {"echo": False}, str(path))
    assert memory.cache is not None and memory.cache.name == "LRU" and memory.cache.configuration == {"size": 10}
    assert config.storages["Positional"].configuration == ["/tmp/results"]
    assert config.storages["InMemoryStorage"].classname == "InMemoryStorage"  # classname defaults to name
    fetch = config.tasks["Fetch"]
    assert (fetch.storage, fetch.storage_task_name, fetch.storage_read_only) == ("Memory", "FetchAlias", False)
    assert fetch.options == {"max_retry": 3, "queue": "fetch"}
    assert config.tasks["Audit"].storage_read_only is True
    assert config.tasks["NoStorage"].storage is None


def test_several_files_are_merged(tmp_path: Path) -> None:
    storages = write(tmp_path, "storages: [{name: Memory, classname: InMemoryStorage}]", "storages.yaml")
    tasks = write(tmp_path, "tasks: [{name: T, storage: Memory}]\nflows: [f]", "tasks.yaml")
    config = load([storages, tasks])
    assert config.tasks["T"].storage == "Memory"
    assert config.other["flows"] == [["f"]]


def test_environment_references(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        storages:
          - name: S
            classname: Filesystem
            configuration:
              path: '/data/{DEPLOYMENT_PREFIX}/results'
              nested: {list: ['{DEPLOYMENT_PREFIX}-x', 1]}
              literal: '{{not a reference}}'
        tasks:
          - name: T
            queue: '{DEPLOYMENT_PREFIX}_queue'
        """,
    )
    config = load(path, environ={"DEPLOYMENT_PREFIX": "prod"})
    assert config.storages["S"].configuration["path"] == "/data/{DEPLOYMENT_PREFIX}/results"  # expanded when built
    assert config.storages["S"].resolved_configuration() == {
        "path": "/data/prod/results",
        "nested": {"list": ["prod-x", 1]},
        "literal": "{not a reference}",
    }
    assert config.tasks["T"].options["queue"] == "{DEPLOYMENT_PREFIX}_queue"  # expanded when a message is sent


def test_missing_environment_variable_names_it(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        storages:
          - {name: S, classname: Filesystem, configuration: {path: '/x/{NOT_SET_ANYWHERE}'}}
          - {name: Other, classname: InMemoryStorage}
        """,
    )
    config = load(path, environ={})  # loading, and using another storage, need not the variable
    assert instantiate(config.storages["Other"]).adapter is not None
    with pytest.raises(ConfigurationError) as error:
        instantiate(config.storages["S"])
    assert str(error.value) == (
        f"{path}: storage 'S': configuration.path: environment variable NOT_SET_ANYWHERE is not set; "
        "set it or change the option"
    )


def test_stray_brace_is_explained(tmp_path: Path) -> None:
    path = write(tmp_path, "storages: [{name: S, configuration: {pattern: 'a{b'}}]")
    with pytest.raises(ConfigurationError, match=r"configuration.pattern: '\{' is not an environment reference.*\{\{"):
        load(path, environ={})


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        # The two seed blocks: an adapter option beside `configuration:` instead of under it.
        (
            """
            storages:
              - name: 'MySqlStorage'
                classname: 'PostgreSQL'
                configuration:
                  connection_string: 'postgres://postgres:postgres@postgres:5432/postgres'
                echo: false
            """,
            "storage 'MySqlStorage': unknown key 'echo'; adapter options go under `configuration:`; indent 'echo' beneath it",
        ),
        (
            """
            storages:
              - name: 'MyMongoStorage'
                classname: 'MongoDB'
                configuration: {db_name: 'd', collection_name: 'c', host: 'mongohost'}
                port: 27017
            """,
            "storage 'MyMongoStorage': unknown key 'port'; adapter options go under `configuration:`",
        ),
        ("storages: [{name: S, clasname: Redis}]", "storage 'S': unknown key 'clasname'; did you mean 'classname'?"),
        ("storage: []", "unknown top-level key 'storage'; did you mean 'storages'?"),
        ("storages: {name: S}", "`storages:` must be a list of entries"),
        ("storages: [S]", "storages[0]: must be a mapping with at least `name:`"),
        ("storages: [{classname: Redis}]", "storages[0]: `name:` is missing; add it"),
        ("storages: [{name: 5}]", "storages[0]: `name:` must be a non-empty string, not a number; quote it"),
        ("storages: [{name: S, configuration: 5}]", "storage 'S': `configuration:` must be a mapping"),
        ("storages: [{name: S, import: ''}]", "storage 'S': `import:` must be a non-empty string"),
        ("storages: [{name: S}, {name: S}]", "storage 'S' is defined twice"),
        ("storages: [{name: S, cache: {name: LRX}}]", "cache: unknown cache 'LRX'; did you mean 'LRU'?"),
        ("storages: [{name: S, cache: {name: LRU, size: 3}}]", "cache: unknown key 'size'"),
        ("storages: [{name: S, cache: LRU}]", "cache: must be a mapping"),
        (
            "tasks: [{name: T, storage: Missing}]",
            "task 'T': storage 'Missing' is not defined; add it under `storages:`",
        ),
        (
            "storages: [{name: Memory}]\ntasks: [{name: T, storage: Memroy}]",
            "task 'T': storage 'Memroy' is not defined; did you mean 'Memory'?",
        ),
        ("tasks: [{name: T, storage_read_only: 'yes'}]", "`storage_read_only:` must be true or false"),
        (
            "tasks: [{name: T, storage_readonly: 1}]",
            "task 'T': `storage_readonly:` must be true or false, not a number",
        ),
        (
            "tasks: [{name: T, storage_readonly: true, storage_read_only: true}]",
            "task 'T': both `storage_read_only:` and `storage_readonly:` (its Selinon 1.x spelling) are set; keep one",
        ),
        (
            "global: {default_task_queue: 3}",
            "global: default_task_queue: must be a queue name such as 'tasks', not a number",
        ),
        (
            "global: {default_dispatcher_queue: '{bad name}'}",
            "global: default_dispatcher_queue: '{bad name}' is not an environment reference such as {DEPLOYMENT_PREFIX}",
        ),
        (
            "storages: [{name: S, configuration: 'put your configuration for S here'}]",
            "storage 'S': `configuration:` must be a mapping of adapter options (or a list of arguments), not a string",
        ),
        ("global: {migration_dir: 3}", "global: migration_dir: must be a directory such as 'migrations', not a number"),
        (
            "global: {trace: true}",
            "global: trace: must be false, a mapping of tracers such as {logging: true}, or a list of them",
        ),
        (
            "global: {trace: {function: f, import: m}}",
            "global: trace: function: must be a mapping such as {name: trace_event, import: myapp.tracing}, not a "
            "string",
        ),
        ("global: {predicate_module: m}", "global: unknown key 'predicate_module'; did you mean 'predicates_module'?"),
        (
            "global: {predicates_module: 'my app'}",
            "global: predicates_module: must be a module name such as myapp.predicates",
        ),
        ("global: {predicates_module: [m]}", "global: predicates_module: must be a module name"),
        ("global: [predicates_module]", "`global:` must be a mapping such as {predicates_module: myapp.predicates}"),
        ("tasks: [{name: T, storag: S}]", "task 'T': unknown key 'storag'; did you mean 'storage'?"),
        ("tasks: [{name: T}, {name: T}]", "task 'T' is defined twice"),
        ("- just\n- a list", "the top level must be a mapping"),
        ("storages: [{name: S\n", "YAML syntax error"),
    ],
)
def test_bad_configuration(tmp_path: Path, yaml_text: str, expected: str) -> None:
    path = write(tmp_path, yaml_text)
    with pytest.raises(ConfigurationError) as error:
        load(path, environ={})
    message = str(error.value)
    assert message.startswith(str(path)), message
    assert expected in message
    assert "\n" not in message


def test_storage_readonly_is_the_1x_spelling_of_storage_read_only(tmp_path: Path) -> None:
    config = load(write(tmp_path, "tasks: [{name: A, storage_readonly: true}, {name: B, storage_readonly: false}]"))
    assert config.tasks["A"].storage_read_only is True and config.tasks["B"].storage_read_only is False
    assert "storage_readonly" not in config.tasks["A"].options


def test_global_section(tmp_path: Path) -> None:
    config = load(write(tmp_path, "global: {predicates_module: myapp.predicates, trace: false}"))
    assert config.global_options.predicates_module == "myapp.predicates"  # imported when flows are loaded
    assert config.global_options.where("trace") == f"{tmp_path / 'nodes.yaml'}: global: trace"
    assert load(write(tmp_path, "global:\n")).global_options.predicates_module is None


def test_yaml_error_has_a_position(tmp_path: Path) -> None:
    path = write(tmp_path, "storages:\n  - name: S\n    classname: [unclosed\n")
    with pytest.raises(ConfigurationError, match=rf"^{path}:\d+:\d+: YAML syntax error"):
        load(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="nope.yaml: cannot read the file"):
        load(tmp_path / "nope.yaml")


def test_duplicate_across_files_names_both(tmp_path: Path) -> None:
    first = write(tmp_path, "storages: [{name: S}]", "a.yaml")
    second = write(tmp_path, "storages: [{name: S}]", "b.yaml")
    with pytest.raises(ConfigurationError, match=rf"^{second}: storage 'S' is defined twice \(also in {first}\)"):
        load([first, second])


def test_repr_hides_secrets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        storages:
          - name: S
            classname: PostgreSQL
            configuration:
              connection_string: 'postgresql://user:hunter2-url@db/x'
              password: hunter2-option
              aws_secret_access_key: hunter2-key
        """,
    )
    storage = load(path).storages["S"]
    for text in (repr(storage), str(storage)):
        assert "hunter2" not in text
        assert "postgresql://user:***@db/x" in text


def test_selinon_1x_cache_size_and_filesystem_path_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path,
        """
        storages:
          - name: Here
            classname: Filesystem
            configuration: {path: null}
            cache: {name: LRU, configuration: {max_cache_size: 20}}
          - name: NoCache
            classname: InMemoryStorage
            cache: {name: FIFO, configuration: {max_cache_size: 0}}
        """,
    )
    config = load(path)
    assert config.storages["Here"].cache is not None and config.storages["Here"].cache.configuration == {"size": 20}
    assert config.storages["NoCache"].cache is None  # Selinon 1.x: a cache of size 0 keeps nothing
    monkeypatch.chdir(tmp_path)
    assert str(instantiate(config.storages["Here"]).adapter.path) == str(tmp_path)
