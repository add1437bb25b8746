"""Loading and validating ``nodes.yaml``: the ``storages:`` and ``tasks:`` sections, in Selinon's schema.

Every error is one line that names the file, the entry, the key and the fix. Environment references
(``{NAME}``, with ``{{``/``}}`` for literal braces) are checked here and expanded where they are used, for every
adapter alike: a storage's configuration when the storage is built, a queue name when a message is sent. So an
unset variable is an error for what uses it only, not for reading results of another storage.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from selinon import secrets, yaml_loader
from selinon.errors import ConfigurationError

TOP_LEVEL_KEYS = ("storages", "tasks", "flows", "flow-definitions", "global")
STORAGE_KEYS = ("name", "classname", "import", "configuration", "cache", "retry")
RETRY_KEYS = ("attempts", "deadline", "backoff", "max_backoff")
#: What each `retry:` value may be: finite, and within what a worker can sensibly wait (a day at most).
RETRY_BOUNDS = {"attempts": (1, 1000), "deadline": (0, 86400), "backoff": (0, 3600), "max_backoff": (0, 3600)}
CACHE_KEYS = ("name", "import", "configuration")
#: Storage keys are checked here; the rest of Selinon's task keys are kept for the task runtime.
TASK_KEYS = (
    "name",
    "import",
    "classname",
    "storage",
    "storage_read_only",
    "storage_readonly",
    "storage_task_name",
    "max_retry",
    "retry_countdown",
    "queue",
    "output_schema",
    "throttling",
    "selective_run_function",
)

#: ``global:`` keys: every one Selinon 1.x knew, each with its 1.x meaning (docs/flows.md).
GLOBAL_KEYS = ("predicates_module", "trace", "default_task_queue", "default_dispatcher_queue", "migration_dir")
#: The tracers ``global: trace`` may name (Selinon 1.x's), and the keys of those that take a mapping.
TRACERS = ("logging", "json", "function", "sentry", "storage")
TRACER_KEYS = {"function": ("name", "import"), "sentry": ("dsn",), "storage": ("name", "method")}

_REFERENCE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


@dataclass(frozen=True)
class CacheConfig:
    name: str
    import_path: str | None = None
    configuration: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RetryConfig:
    """How the pool retries a call that failed on a transient error (a lost connection, a restarting server).

    It stops at whichever comes first: ``attempts`` calls or ``deadline`` seconds. The attempts are spread over
    the deadline (see :meth:`pause`), so that a server that restarts is waited for as long as the deadline says.
    """

    attempts: int = 5
    deadline: float = 30.0
    backoff: float = 0.1
    #: The longest single wait; None: as long as filling the deadline takes.
    max_backoff: float | None = None

    def pause(self, attempt: int, waited: float) -> float | None:
        """Seconds to wait after attempt number ``attempt`` failed, ``waited`` seconds after the first began;
        None when no attempt is left.

        The first wait is ``backoff``: a connection that was merely dropped works again at once. Each later wait
        doubles the one before, or more: long enough that the waits left, each doubling the one before, end at the
        deadline: with ``{attempts: 5, deadline: 10}`` the attempts start at about 0, 0.1, 1.5, 4.3 and 10 s.
        """
        left, remaining = self.attempts - attempt, self.deadline - waited
        if left <= 0 or remaining <= 0:
            return None
        wait: float = self.backoff * 2.0 ** (attempt - 1)
        if attempt > 1:  # the first of `left` waits that double and add up to what remains
            wait = max(wait, remaining / (2.0 ** min(left, 30) - 1))
        if self.max_backoff is not None:
            wait = min(wait, self.max_backoff)
        return min(wait, remaining)


@dataclass(frozen=True)
class StorageConfig:
    """One ``storages:`` entry, validated and with environment references expanded."""

    name: str
    classname: str
    import_path: str | None = None
    configuration: dict[str, Any] | list[Any] = field(default_factory=dict)
    cache: CacheConfig | None = None
    retry: RetryConfig = field(default_factory=RetryConfig)
    source: str = "<configuration>"
    #: Where the configuration's ``{NAME}`` references are looked up when the storage is built.
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False, compare=False)

    @property
    def where(self) -> str:
        return f"{self.source}: storage {self.name!r}"

    def resolved_configuration(self) -> dict[str, Any] | list[Any]:
        """The configuration with its environment references expanded (a new object); an unset variable raises."""
        return expand(self.configuration, self.environ, f"{self.where}: configuration")  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        shown = secrets.mask_configuration(self.configuration)
        return f"StorageConfig(name={self.name!r}, classname={self.classname!r}, configuration={shown!r})"

    __str__ = __repr__


@dataclass(frozen=True)
class TaskConfig:
    """One ``tasks:`` entry; keys other than the storage ones are kept in ``options`` for the task runtime."""

    name: str
    storage: str | None = None
    storage_read_only: bool = False
    storage_task_name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    source: str = "<configuration>"


@dataclass(frozen=True)
class TracerConfig:
    """One tracer of ``global: trace`` (run by :mod:`selinon.trace`): ``kind`` is one of :data:`TRACERS`.

    ``options``: for ``function``, ``import`` and ``name``; for ``sentry``, ``dsn`` (``{NAME}`` references
    expanded when the tracer starts); for ``storage``, ``name`` and ``method``."""

    kind: str
    options: dict[str, str] = field(default_factory=dict)
    source: str = "<configuration>"

    @property
    def where(self) -> str:
        return f"{self.source}: global: trace: {self.kind}"

    def __repr__(self) -> str:  # a Sentry DSN holds its project's key
        shown = {k: ("***" if k == "dsn" else v) for k, v in self.options.items()}
        return f"TracerConfig(kind={self.kind!r}, options={shown!r})"

    __str__ = __repr__


@dataclass(frozen=True)
class GlobalOptions:
    """The ``global:`` section, merged from every file (a key may be set in one file only)."""

    #: The module whose functions conditions may name besides the built-in predicates.
    predicates_module: str | None = None
    #: Celery queues of tasks and of dispatchers that name none (``{NAME}`` expanded when a message is sent).
    default_task_queue: str | None = None
    default_dispatcher_queue: str | None = None
    #: The tracers of ``trace:``, in order (none for ``trace: false``).
    trace: tuple[TracerConfig, ...] = ()
    #: The directory of migration files (``selinon.flows.migrations``), as written: relative to the working
    #: directory, as in Selinon 1.x.
    migration_dir: str | None = None
    #: The file that set each key, for errors about it.
    sources: dict[str, str] = field(default_factory=dict)

    def where(self, key: str) -> str:
        return f"{self.sources.get(key, '<configuration>')}: global: {key}"


@dataclass
class Configuration:
    storages: dict[str, StorageConfig] = field(default_factory=dict)
    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    global_options: GlobalOptions = field(default_factory=GlobalOptions)
    #: Sections this module does not interpret (flows, flow-definitions), by file, as loaded.
    other: dict[str, list[Any]] = field(default_factory=dict)


def load(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], environ: Mapping[str, str] | None = None
) -> Configuration:
    """Load and validate one or more YAML files into one :class:`Configuration`."""
    return from_documents(read_documents(paths), environ)


def read_documents(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[tuple[str, Any]]:
    """Each file parsed, with the name to use in errors; unreadable files and YAML errors are ConfigurationError."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    return [(str(path), yaml_loader.read(path)) for path in paths]


def from_documents(documents: Iterable[tuple[str, Any]], environ: Mapping[str, str] | None = None) -> Configuration:
    """Validate already parsed documents, each given with the name to use in errors."""
    env = os.environ if environ is None else environ
    config = Configuration()
    for source, document in documents:
        if document is None:
            continue
        if not isinstance(document, dict):
            raise ConfigurationError(
                f"{source}: the top level must be a mapping with keys such as `storages:` and `tasks:`"
            )
        for key in document:
            if key not in TOP_LEVEL_KEYS:
                raise ConfigurationError(f"{source}: unknown top-level key {key!r}; {_suggest(key, TOP_LEVEL_KEYS)}")
        for index, entry in enumerate(_list(document, "storages", source)):
            storage = _storage(entry, index, source, env)
            if storage.name in config.storages:
                first = config.storages[storage.name].source
                raise ConfigurationError(
                    f"{source}: storage {storage.name!r} is defined twice (also in {first}); "
                    "give each storage a unique name"
                )
            config.storages[storage.name] = storage
        for index, entry in enumerate(_list(document, "tasks", source)):
            task = _task(entry, index, source, env)
            if task.name in config.tasks:
                first = config.tasks[task.name].source
                raise ConfigurationError(f"{source}: task {task.name!r} is defined twice (also in {first}); keep one")
            config.tasks[task.name] = task
        for key in ("flows", "flow-definitions"):
            if key in document:
                config.other.setdefault(key, []).append(document[key])
        if document.get("global") is not None:
            config.global_options = _global(document["global"], source, config.global_options)
    for tracer in config.global_options.trace:
        name = tracer.options.get("name", "")
        if tracer.kind == "storage" and name not in config.storages:
            raise ConfigurationError(
                f"{tracer.where}: storage {name!r} is not defined; "
                f"{_suggest(name, list(config.storages), 'add it under `storages:`')}"
            )
    for task in config.tasks.values():
        if task.storage is not None and task.storage not in config.storages:
            raise ConfigurationError(
                f"{task.source}: task {task.name!r}: storage {task.storage!r} is not defined; "
                f"{_suggest(task.storage, list(config.storages), 'add it under `storages:`')}"
            )
    return config


def expand(value: Any, env: Mapping[str, str], where: str) -> Any:
    """Expand ``{NAME}`` environment references in every string of ``value``."""
    if isinstance(value, str):
        return _REFERENCE.sub(lambda match: _replacement(match, env, where), value)
    if isinstance(value, dict):
        return {k: expand(v, env, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def references(value: str) -> list[str]:
    """The names of the environment variables a string refers to, in order (``{{``/``}}`` are not references)."""
    return [m.group(1) for m in _REFERENCE.finditer(value) if m.group(1) is not None and _NAME.match(m.group(1))]


def check_references(value: str, where: str) -> None:
    """Refuse a malformed ``{NAME}`` reference now, without needing the variable to be set yet."""
    for match in _REFERENCE.finditer(value):
        if match.group(0) not in ("{{", "}}") and (match.group(1) is None or not _NAME.match(match.group(1))):
            _replacement(match, {}, where)


def _replacement(match: re.Match[str], env: Mapping[str, str], where: str) -> str:
    token = match.group(0)
    if token in ("{{", "}}"):
        return token[0]
    name = match.group(1)
    if name is None or not _NAME.match(name):
        raise ConfigurationError(
            f"{where}: {token!r} is not an environment reference such as {{DEPLOYMENT_PREFIX}}; "
            "write {{ and }} for literal braces"
        )
    if name not in env:
        raise ConfigurationError(f"{where}: environment variable {name} is not set; set it or change the option")
    return env[name]


def _list(document: dict[str, Any], key: str, source: str) -> list[Any]:
    value = document.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigurationError(f"{source}: `{key}:` must be a list of entries, each starting with `- name:`")
    return value


def _storage(entry: Any, index: int, source: str, env: Mapping[str, str]) -> StorageConfig:
    where = f"{source}: storages[{index}]"
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{where}: must be a mapping with at least `name:`")
    name = _required(entry, "name", where)
    where = f"{source}: storage {name!r}"
    for key in entry:
        if key not in STORAGE_KEYS:
            close = difflib.get_close_matches(str(key), STORAGE_KEYS, n=1, cutoff=0.85)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else f"adapter options go under `configuration:`; indent {key!r} beneath it"
            )
            raise ConfigurationError(f"{where}: unknown key {key!r}; {hint}")
    configuration = entry.get("configuration")
    if configuration is None:
        configuration = {}
    if not isinstance(configuration, dict | list):
        raise ConfigurationError(
            f"{where}: `configuration:` must be a mapping of adapter options (or a list of arguments), "
            f"not {'a string' if isinstance(configuration, str) else _type_name(configuration)}"
        )
    return StorageConfig(
        name=name,
        classname=_string(entry, "classname", where) or name,
        import_path=_string(entry, "import", where),
        configuration=_checked(configuration, f"{where}: configuration"),
        cache=_cache(entry.get("cache"), where, env),
        retry=_retry(entry.get("retry"), where),
        source=source,
        environ=env,
    )


def _checked(value: Any, where: str) -> Any:
    """``value`` as written, once every string in it has well-formed environment references."""
    if isinstance(value, str):
        check_references(value, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            _checked(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _checked(item, f"{where}[{index}]")
    return value


def _cache(entry: Any, where: str, env: Mapping[str, str]) -> CacheConfig | None:
    if entry is None:
        return None
    where = f"{where}: cache"
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{where}: must be a mapping such as {{name: LRU, configuration: {{size: 100}}}}")
    for key in entry:
        if key not in CACHE_KEYS:
            raise ConfigurationError(f"{where}: unknown key {key!r}; {_suggest(str(key), CACHE_KEYS)}")
    name = _required(entry, "name", where)
    import_path = _string(entry, "import", where)
    configuration = entry.get("configuration") or {}
    if not isinstance(configuration, dict):
        raise ConfigurationError(f"{where}: `configuration:` must be a mapping such as {{size: 100}}")
    if "max_cache_size" in configuration:  # Selinon 1.x's name of the built-in caches' size
        if "size" in configuration:
            raise ConfigurationError(
                f"{where}: both `size:` and `max_cache_size:` (its Selinon 1.x name) are set; keep one"
            )
        configuration = dict(configuration)
        configuration["size"] = configuration.pop("max_cache_size")
        if configuration["size"] == 0 and import_path is None:  # 1.x: a cache of size 0 keeps nothing
            return None
    if import_path is None:
        from selinon.caches import BUILTIN

        if name not in BUILTIN:
            raise ConfigurationError(
                f"{where}: unknown cache {name!r}; {_suggest(name, list(BUILTIN), 'or name its module with `import:`')}"
            )
    return CacheConfig(
        name=name, import_path=import_path, configuration=expand(configuration, env, f"{where}: configuration")
    )


def _retry(entry: Any, where: str) -> RetryConfig:
    if entry is None:
        return RetryConfig()
    where = f"{where}: retry"
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{where}: must be a mapping such as {{attempts: 5, deadline: 30}}")
    for key, value in entry.items():
        if key not in RETRY_KEYS:
            raise ConfigurationError(f"{where}: unknown key {key!r}; {_suggest(str(key), RETRY_KEYS)}")
        whole = key == "attempts"
        low, high = RETRY_BOUNDS[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int if whole else int | float)
            or not low <= value <= high  # NaN fails every comparison
        ):
            kind = "a whole number" if whole else "a number of seconds"
            raise ConfigurationError(f"{where}: `{key}:` must be {kind} from {low} to {high:,}, not {value!r}")
    return RetryConfig(**entry)


def _task(entry: Any, index: int, source: str, env: Mapping[str, str]) -> TaskConfig:
    where = f"{source}: tasks[{index}]"
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{where}: must be a mapping with at least `name:`")
    name = _required(entry, "name", where)
    where = f"{source}: task {name!r}"
    for key in entry:
        if key not in TASK_KEYS:
            raise ConfigurationError(f"{where}: unknown key {key!r}; {_suggest(str(key), TASK_KEYS)}")
    if "storage_read_only" in entry and "storage_readonly" in entry:
        raise ConfigurationError(
            f"{where}: both `storage_read_only:` and `storage_readonly:` (its Selinon 1.x spelling) are set; keep one"
        )
    read_only_key = "storage_readonly" if "storage_readonly" in entry else "storage_read_only"
    read_only = entry.get(read_only_key, False)
    if not isinstance(read_only, bool):
        raise ConfigurationError(f"{where}: `{read_only_key}:` must be true or false, not {_type_name(read_only)}")
    storage_keys = ("name", "storage", "storage_read_only", "storage_readonly", "storage_task_name")
    options = {k: v for k, v in entry.items() if k not in storage_keys}
    return TaskConfig(
        name=name,
        storage=_string(entry, "storage", where),
        storage_read_only=read_only,
        storage_task_name=_string(entry, "storage_task_name", where),
        options=options,
        source=source,
    )


def _global(section: Any, source: str, merged: GlobalOptions) -> GlobalOptions:
    if not isinstance(section, dict):
        raise ConfigurationError(
            f"{source}: `global:` must be a mapping such as {{predicates_module: myapp.predicates}}"
        )
    values: dict[str, Any] = {
        "predicates_module": merged.predicates_module,
        "default_task_queue": merged.default_task_queue,
        "default_dispatcher_queue": merged.default_dispatcher_queue,
        "trace": merged.trace,
        "migration_dir": merged.migration_dir,
    }
    sources = dict(merged.sources)
    for key, value in section.items():
        where = f"{source}: global: {key}"
        if key not in GLOBAL_KEYS:
            raise ConfigurationError(f"{source}: global: unknown key {key!r}; {_suggest(str(key), GLOBAL_KEYS)}")
        if key in sources:
            raise ConfigurationError(f"{where}: set twice (also in {sources[key]}); keep one")
        sources[key] = source
        if key == "trace":
            values[key] = _trace(value, where, source)
        if key == "predicates_module":
            if not isinstance(value, str) or not _MODULE.match(value):
                raise ConfigurationError(f"{where}: must be a module name such as myapp.predicates, not {value!r}")
            values[key] = value
        if key in ("default_task_queue", "default_dispatcher_queue"):
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"{where}: must be a queue name such as 'tasks', not {_type_name(value)}")
            check_references(value, where)
            values[key] = value
        if key == "migration_dir":
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"{where}: must be a directory such as 'migrations', not {_type_name(value)}")
            values[key] = value
    return GlobalOptions(**values, sources=sources)


def _trace(value: Any, where: str, source: str) -> tuple[TracerConfig, ...]:
    """``trace:``: false, a mapping of tracers (``{logging: true, json: true}``), or a list of such mappings."""
    if value is False:
        return ()
    entries = value if isinstance(value, list) else [value]
    if not entries or not all(isinstance(entry, dict) and entry for entry in entries):
        raise ConfigurationError(
            f"{where}: must be false, a mapping of tracers such as {{logging: true}}, or a list of them "
            f"(tracers: {', '.join(TRACERS)}), not {_kind_of(value)}"
        )
    tracers: list[TracerConfig] = []
    for entry in entries:
        for kind, options in entry.items():
            if kind not in TRACERS:
                raise ConfigurationError(f"{where}: unknown tracer {kind!r}; {_suggest(str(kind), TRACERS)}")
            here = f"{where}: {kind}"
            if kind in ("logging", "json"):
                if not isinstance(options, bool):
                    raise ConfigurationError(f"{here}: must be true or false, not {_kind_of(options)}")
                if any(t.kind == kind for t in tracers):
                    raise ConfigurationError(f"{here}: set twice; keep one")
                if options:
                    tracers.append(TracerConfig(kind, source=source))
                continue
            tracers.append(TracerConfig(kind, _tracer_options(kind, options, here), source))
    return tuple(tracers)


def _tracer_options(kind: str, options: Any, where: str) -> dict[str, str]:
    keys = TRACER_KEYS[kind]
    example = {
        "function": "{name: trace_event, import: myapp.tracing}",
        "sentry": "{dsn: 'https://KEY@sentry.example.com/1'}",
        "storage": "{name: TraceStorage, method: trace}",
    }[kind]
    if not isinstance(options, dict):
        raise ConfigurationError(f"{where}: must be a mapping such as {example}, not {_kind_of(options)}")
    for key in options:
        if key not in keys:
            raise ConfigurationError(f"{where}: unknown key {key!r}; {_suggest(str(key), keys)}")
    found: dict[str, str] = {}
    for key in keys:
        if kind == "storage" and key == "method" and key not in options:
            found[key] = "trace"  # Selinon 1.x's default
            continue
        if options.get(key) is None:
            raise ConfigurationError(f"{where}: `{key}:` is missing; add it, as in {example}")
        value = options[key]
        if not isinstance(value, str) or not value:
            # A DSN holds a key: it is never shown, not even when it is of the wrong type.
            shown = "" if key == "dsn" else f", not {_kind_of(value)}"
            raise ConfigurationError(f"{where}: `{key}:` must be a non-empty string{shown}; quote it")
        if key == "import" and not _MODULE.match(value):
            raise ConfigurationError(f"{where}: `import:` must be a module name such as myapp.tracing, not {value!r}")
        if (key == "method" or (key == "name" and kind == "function")) and not _NAME.match(value):
            raise ConfigurationError(f"{where}: `{key}:` must be a Python name such as trace_event, not {value!r}")
        if key == "dsn":
            check_references(value, f"{where}: dsn")
        found[key] = value
    return found


def _required(entry: dict[str, Any], key: str, where: str) -> str:
    value = _string(entry, key, where)
    if value is None:
        raise ConfigurationError(f"{where}: `{key}:` is missing; add it")
    return value


def _string(entry: dict[str, Any], key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{where}: `{key}:` must be a non-empty string, not {_type_name(value)}; quote it")
    return value


def _kind_of(value: Any) -> str:
    """What a value is, for errors: an empty string is told apart from a string."""
    if isinstance(value, str) and value:
        return "a string"
    return "null" if value is None else _type_name(value)


def _type_name(value: Any) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "an empty string",
    }.get(type(value), type(value).__name__)


def _suggest(key: str, known: Iterable[str], otherwise: str | None = None) -> str:
    known = list(known)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return otherwise or f"expected one of: {', '.join(known)}"
