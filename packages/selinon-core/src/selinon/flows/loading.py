"""Loading and validating ``flows:`` and ``flow-definitions:``, and the runtime options of ``tasks:``.

The files are read once: :mod:`selinon.config` validates storages and tasks, this module the flows, and every
error is one line naming the file, the flow, the edge and the fix. Task classes and output schemas are resolved
when a flow runs (:mod:`selinon.runtime`), so that reading results back needs neither the tasks' code nor
``jsonschema``.
"""

from __future__ import annotations

import datetime
import importlib
import inspect
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from selinon import config as config_module
from selinon import strategies
from selinon.config import Configuration, TaskConfig, _suggest, _type_name
from selinon.errors import ConfigurationError
from selinon.flows.conditions import parse
from selinon.flows.graph import (
    Edge,
    Failure,
    Flow,
    Foreach,
    Propagate,
    Sampling,
    System,
    TaskSpec,
    covers,
    endless_cycle,
    endless_recursion,
)
from selinon.flows.migrations import Migrations, MigrationWarning, check_latest, read_directory
from selinon.flows.predicates import Predicates

PROPAGATE_KEYS = (
    "propagate_node_args",
    "propagate_parent",
    "propagate_parent_failures",
    "propagate_finished",
    "propagate_compound_finished",
    "propagate_failures",
    "propagate_compound_failures",
)
FLOW_KEYS = (
    "name",
    "edges",
    "node_args_from_first",
    "max_retry",
    "retry_countdown",
    "queue",
    "failures",
    "eager_failures",
    "nowait",
    "throttling",
    "cache",
    "sampling",
    *PROPAGATE_KEYS,
)
EDGE_KEYS = ("from", "to", "condition", "foreach", "selective")
SELECTIVE_KEYS = ("tasks", "follow_subflows", "run_subsequent")
FOREACH_KEYS = ("import", "function", "propagate_result")
FAILURE_KEYS = ("nodes", "fallback", "condition")
SAMPLING_KEYS = ("name", "import", "args")
FUNCTION_KEYS = ("name", "import")
THROTTLING_KEYS = ("days", "seconds", "microseconds", "milliseconds", "minutes", "hours", "weeks")
#: Names that look like flow options but are not Selinon's: the error names the option meant.
NOT_SELINON = {
    "cache_config": "cache",
    "strategy": "sampling",
    "propagate_compound_parent": "propagate_parent",
    "propagate_compound_parent_failures": "propagate_parent_failures",
}


def load(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    environ: Mapping[str, str] | None = None,
    *,
    read_migrations: bool = True,
) -> System:
    """Load nodes and flow files (any split between them) into one validated :class:`System`.

    ``read_migrations=False`` leaves ``global: migration_dir`` unread (``selinon migrate`` checks configurations
    whose migration is still to be written)."""
    documents = config_module.read_documents(paths)
    return from_documents(documents, environ, read_migrations=read_migrations)


def from_documents(
    documents: Iterable[tuple[str, Any]], environ: Mapping[str, str] | None = None, *, read_migrations: bool = True
) -> System:
    documents = list(documents)
    configuration = config_module.from_documents(documents, environ)
    sections = [(source, d) for source, d in documents if isinstance(d, dict)]
    return _system(configuration, sections, os.environ if environ is None else environ, read_migrations)


def from_configuration(configuration: Configuration) -> System:
    """A :class:`System` from an already loaded configuration (its errors cannot name the files)."""
    sections = []
    for key, values in configuration.other.items():
        sections += [("<configuration>", {key: value}) for value in values]
    return _system(configuration, sections, os.environ)


def _system(
    configuration: Configuration,
    documents: list[tuple[str, dict[str, Any]]],
    environ: Mapping[str, str],
    read_migrations: bool = True,
) -> System:
    tasks = {name: _task_spec(task) for name, task in configuration.tasks.items()}
    options = configuration.global_options
    predicates = Predicates.from_module(options.predicates_module, options.where("predicates_module"))
    listed: dict[str, str] = {}
    definitions: list[tuple[str, int, Any]] = []
    for source, document in documents:
        names = document.get("flows")
        if names is not None:
            if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
                raise ConfigurationError(f"{source}: `flows:` must be a list of flow names, such as [flow1, flow2]")
            listed.update(dict.fromkeys(names, source))
        entries = document.get("flow-definitions")
        if entries is not None:
            if not isinstance(entries, list):
                raise ConfigurationError(
                    f"{source}: `flow-definitions:` must be a list of flows, each starting with `- name:`"
                )
            definitions += [(source, index, entry) for index, entry in enumerate(entries)]
    names_defined: dict[str, str] = {}
    for source, index, entry in definitions:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"{source}: flow-definitions[{index}]: `name:` is missing; add it")
        if name in names_defined:
            raise ConfigurationError(
                f"{source}: flow {name!r} is defined twice (also in {names_defined[name]}); keep one"
            )
        if name in tasks:
            raise ConfigurationError(f"{source}: flow {name!r} has the name of a task; rename one of them")
        names_defined[name] = source
    if listed:
        for name, source in names_defined.items():
            if name not in listed:
                raise ConfigurationError(
                    f"{source}: flow {name!r} is defined but not listed under `flows:`; add it to that list"
                )
        for name, source in listed.items():
            if name not in names_defined:
                raise ConfigurationError(
                    f"{source}: flow {name!r} is listed under `flows:` but not defined; pass the file that "
                    "defines it under `flow-definitions:` (another -c option)"
                )
    flows = {
        flow.name: flow
        for flow in (
            _flow(entry, source, tasks, names_defined, predicates, environ) for source, _, entry in definitions
        )
    }
    endless = {name: why for name, flow in flows.items() if (why := endless_cycle(flow))}
    endless = {**endless_recursion(flows), **endless}
    found = Migrations()
    if options.migration_dir is not None and read_migrations:
        found = read_directory(options.migration_dir, options.where("migration_dir"))
        for problem in check_latest(found, flows):
            warnings.warn(problem, MigrationWarning, stacklevel=2)
    system = System(configuration, tasks, flows, environ, found, endless)
    check_selective(system)
    return system


def check_selective(system: System) -> None:
    """Every selective edge reaches the tasks it names."""
    from selinon.flows.dispatcher import selective_run

    for flow in system.flows.values():
        for index, edge in enumerate(flow.edges):
            if edge.selective is not None:
                try:
                    selective_run(system, edge.to[0], **edge.selective)
                except ConfigurationError as exc:
                    raise ConfigurationError(f"{flow.where}: edges[{index}]: {exc}") from None


def _task_spec(task: TaskConfig) -> TaskSpec:
    where = f"{task.source}: task {task.name!r}"
    options = task.options
    schema = options.get("output_schema")
    if schema is not None and not (isinstance(schema, dict) or (isinstance(schema, str) and schema)):
        raise ConfigurationError(f"{where}: `output_schema:` must be a path to a JSON schema file, or a mapping")
    classname = options.get("classname", task.name)
    if not isinstance(classname, str) or not classname:
        raise ConfigurationError(f"{where}: `classname:` must be a non-empty string, not {_type_name(classname)}")
    import_path = options.get("import")
    if import_path is not None and (not isinstance(import_path, str) or not import_path):
        raise ConfigurationError(f"{where}: `import:` must be a module name such as 'myapp.tasks'")
    selective = options.get("selective_run_function")
    return TaskSpec(
        config=task,
        import_path=import_path,
        classname=classname,
        max_retry=_count(options, "max_retry", where),
        retry_countdown=_seconds(options, "retry_countdown", where),
        output_schema=schema,
        throttle=_throttling(options.get("throttling"), where),
        selective_run=None if selective is None else _named_function(selective, f"{where}: selective_run_function"),
        queue=_queue(options, where),
    )


def _flow(
    entry: dict[str, Any],
    source: str,
    tasks: dict[str, TaskSpec],
    flows: dict[str, str],
    predicates: Predicates,
    environ: Mapping[str, str],
) -> Flow:
    where = f"{source}: flow {entry['name']!r}"
    for key in entry:
        if key in NOT_SELINON:
            raise ConfigurationError(
                f"{where}: `{key}:` is not a Selinon flow option; did you mean `{NOT_SELINON[key]}:`?"
            )
        if key not in FLOW_KEYS:
            raise ConfigurationError(f"{where}: unknown key {key!r}; {_suggest(str(key), FLOW_KEYS)}")
    raw_edges = entry.get("edges")
    if not isinstance(raw_edges, list) or not raw_edges:
        raise ConfigurationError(f"{where}: `edges:` must be a non-empty list of {{from: ..., to: ...}} mappings")
    known = [*tasks, *flows]
    edges = tuple(
        _edge(raw, f"{where}: edges[{i}]", known, tasks, flows, predicates) for i, raw in enumerate(raw_edges)
    )
    starting = [edge for edge in edges if not edge.from_]
    if not starting:
        raise ConfigurationError(f"{where}: no starting edge; add one with an empty `from:` (such as `from: []`)")
    from_first = entry.get("node_args_from_first", False)
    if not isinstance(from_first, bool):
        raise ConfigurationError(f"{where}: `node_args_from_first:` must be true or false")
    if from_first and (len(starting) != 1 or len(starting[0].to) != 1 or starting[0].to[0] not in tasks):
        raise ConfigurationError(
            f"{where}: `node_args_from_first: true` needs exactly one starting task, whose result becomes the "
            "flow's node arguments; keep a single starting edge to a single task"
        )
    in_edges = {n for e in edges for n in (*e.from_, *e.to)}
    failures = _failures(entry.get("failures"), where, known, in_edges, predicates)
    started = {n for e in edges for n in e.to}
    fallbacks = {n for f in failures if not isinstance(f.fallback, bool) for n in f.fallback}
    sources = {n for e in edges for n in e.from_}
    nowait = frozenset(_names(entry.get("nowait"), "nowait", where, known))
    for name in sorted(nowait):
        if name in sources:
            raise ConfigurationError(
                f"{where}: `nowait:` names {name!r}, but an edge starts from it; the flow cannot go on from a node "
                "it does not wait for: remove it from `nowait:` or from that edge's `from:`"
            )
        if name not in started | fallbacks:
            raise ConfigurationError(f"{where}: `nowait:` names {name!r}, which no edge or fallback of it starts")
        if any(name in failure.nodes for failure in failures):
            raise ConfigurationError(
                f"{where}: `nowait:` names {name!r}, which `failures:` handles; a node the flow does not wait for "
                "cannot have fallbacks"
            )
    subflows = {n for n in started | fallbacks | sources if n in flows}
    eager = _propagate(entry, "eager_failures", where, in_edges | fallbacks, "nodes of this flow")
    propagate: dict[str, Propagate] = {}
    for key, candidates, what in (
        ("propagate_node_args", started | fallbacks, "sub-flows this flow starts"),
        ("propagate_parent", started, "sub-flows this flow starts from an edge"),
        ("propagate_parent_failures", fallbacks, "sub-flows this flow starts as fallbacks"),
        ("propagate_finished", sources, "sub-flows that edges of this flow start from"),
        ("propagate_compound_finished", sources, "sub-flows that edges of this flow start from"),
        ("propagate_failures", {n for f in failures for n in f.nodes}, "sub-flows that `failures:` handles"),
        ("propagate_compound_failures", {n for f in failures for n in f.nodes}, "sub-flows that `failures:` handles"),
    ):
        propagate[key] = _propagate(entry, key, where, candidates & subflows, what)
    pairs = [
        ("propagate_finished", "propagate_compound_finished"),
        ("propagate_failures", "propagate_compound_failures"),
    ]
    for plain, compound in pairs:
        both = _overlap(propagate[plain], propagate[compound], subflows)
        if both:
            raise ConfigurationError(
                f"{where}: `{plain}:` and `{compound}:` both apply to {', '.join(both)}; choose one form for each "
                "sub-flow (nested by sub-flow, or compound: every task under the sub-flow's name)"
            )
    for edge_index, edge in enumerate(edges):
        if edge.foreach is not None and edge.foreach.propagate_result:
            for name in edge.to:
                if covers(propagate["propagate_node_args"], name):
                    raise ConfigurationError(
                        f"{where}: edges[{edge_index}]: foreach `propagate_result: true` gives {name!r} the items as "
                        "node arguments, so `propagate_node_args:` cannot apply to it; remove one of the two"
                    )
    flow = Flow(
        name=entry["name"],
        edges=edges,
        node_args_from_first=from_first,
        propagate_node_args=propagate["propagate_node_args"],
        max_retry=_count(entry, "max_retry", where),
        retry_countdown=_seconds(entry, "retry_countdown", where),
        source=source,
        queue=_queue(entry, where),
        failures=failures,
        eager_failures=eager,
        nowait=nowait,
        propagate_parent=propagate["propagate_parent"],
        propagate_parent_failures=propagate["propagate_parent_failures"],
        propagate_finished=propagate["propagate_finished"],
        propagate_compound_finished=propagate["propagate_compound_finished"],
        propagate_failures=propagate["propagate_failures"],
        propagate_compound_failures=propagate["propagate_compound_failures"],
        throttle=_throttling(entry.get("throttling"), where),
        sampling=_sampling(entry.get("sampling"), where),
        cache=config_module._cache(entry.get("cache"), where, environ),
    )
    return flow


def _known_keys(mapping: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    for key in mapping:
        if key not in keys:
            raise ConfigurationError(f"{where}: unknown key {key!r}; {_suggest(str(key), keys)}")


def _overlap(plain: Propagate, compound: Propagate, subflows: set[str]) -> list[str]:
    def names(option: Propagate) -> set[str]:
        return set(subflows) if option is True else set(option or ())

    return sorted(names(plain) & names(compound))


def _propagate(entry: dict[str, Any], key: str, where: str, candidates: set[str], what: str) -> Propagate:
    """A ``propagate_*``-style option: true, false, one name or a list of names among ``candidates``."""
    value = entry.get(key, False)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ConfigurationError(f"{where}: `{key}:` must be true, false, or a list of node names")
    for name in names:
        if name not in candidates:
            otherwise = f"they are: {', '.join(sorted(candidates)) or 'none'}"
            raise ConfigurationError(
                f"{where}: `{key}:` names {name!r}, which is not among the {what}; "
                f"{_suggest(name, sorted(candidates), otherwise)}"
            )
    return tuple(names)


def _failures(
    raw: Any, where: str, known: list[str], in_edges: set[str], predicates: Predicates
) -> tuple[Failure, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigurationError(f"{where}: `failures:` must be a list of {{nodes: [...], fallback: [...]}} mappings")
    failures = []
    for index, item in enumerate(raw):
        at = f"{where}: failures[{index}]"
        if not isinstance(item, dict):
            raise ConfigurationError(f"{at}: must be a mapping such as {{nodes: [Task1], fallback: [Fallback1]}}")
        _known_keys(item, FAILURE_KEYS, at)
        for key in ("nodes", "fallback"):
            if item.get(key) in (None, [], ""):
                raise ConfigurationError(f"{at}: `{key}:` is missing; name the node(s)")
        nodes = _names(item["nodes"], "nodes", at, known)
        for name in nodes:
            if name not in in_edges:
                raise ConfigurationError(f"{at}: `nodes:` names {name!r}, which no edge of this flow runs")
        fallback_value = item["fallback"]
        fallback: tuple[str, ...] | bool
        if isinstance(fallback_value, bool):
            if not fallback_value:
                raise ConfigurationError(
                    f"{at}: `fallback: false` would handle nothing; name fallback nodes, or write `fallback: true` "
                    "to mark the failure handled without running anything"
                )
            fallback = True
        else:
            fallback = _names(fallback_value, "fallback", at, known, repeat=True)
        no_parent = "a failure's condition tests the node arguments only"
        condition = parse(item.get("condition"), (), f"{at}: condition", predicates, no_parent)
        failures.append(Failure(frozenset(nodes), fallback, condition))
    return tuple(failures)


def _edge(
    raw: Any,
    where: str,
    known: list[str],
    tasks: dict[str, TaskSpec],
    flows: dict[str, str],
    predicates: Predicates,
) -> Edge:
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where}: must be a mapping such as {{from: Task1, to: Task2}}")
    _known_keys(raw, EDGE_KEYS, where)
    if "to" not in raw:
        raise ConfigurationError(f"{where}: `to:` is missing; name the node(s) this edge starts")
    from_ = _names(raw.get("from"), "from", where, known)
    to = _names(raw["to"], "to", where, known, repeat=True)
    if not to:
        raise ConfigurationError(f"{where}: `to:` is empty; name the node(s) this edge starts")
    condition = parse(raw.get("condition"), from_, f"{where}: condition", predicates)
    for node in sorted(condition.nodes()):
        _check_readable(node, tasks, f"{where}: condition reads the result of")

    # A foreach function may read the results of the edge's parent tasks (through its storage_pool argument);
    # whether it does is its own business, as in Selinon 1.x: a read that fails fails like a condition's.
    foreach = _foreach(raw.get("foreach"), where, to, flows)
    return Edge(from_, to, condition, foreach, _selective(raw.get("selective"), where, to, tasks, flows))


def _selective(
    raw: Any, where: str, to: tuple[str, ...], tasks: dict[str, TaskSpec], flows: dict[str, str]
) -> dict[str, Any] | None:
    """``selective:`` of an edge: its one destination, a sub-flow, runs only the named tasks (checked later, with
    every flow known, by :func:`check_selective`)."""
    if raw is None:
        return None
    at = f"{where}: selective"
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{at}: must be a mapping such as {{tasks: [Task1], run_subsequent: false}}")
    _known_keys(raw, SELECTIVE_KEYS, at)
    if len(to) != 1 or to[0] not in flows:
        raise ConfigurationError(f"{at}: a selective run starts one sub-flow; `to:` must name exactly one flow")
    names = raw.get("tasks")
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n in tasks for n in names):
        raise ConfigurationError(f"{at}: `tasks:` must name the tasks to run (tasks of the configuration)")
    follow = raw.get("follow_subflows", False)
    if not isinstance(follow, bool):
        raise ConfigurationError(f"{at}: `follow_subflows:` must be true or false")
    subsequent = raw.get("run_subsequent", False)
    if not isinstance(subsequent, bool) and not (
        isinstance(subsequent, list) and all(isinstance(n, str) and n in flows for n in subsequent)
    ):
        raise ConfigurationError(f"{at}: `run_subsequent:` must be true, false or a list of flow names")
    return {"task_names": names, "follow_subflows": follow, "run_subsequent": subsequent}


def _check_readable(node: str, tasks: dict[str, TaskSpec], what: str) -> None:
    task = tasks.get(node)
    if task is None:
        raise ConfigurationError(f"{what} {node!r}, which is a flow; conditions read task results only")
    if task.config.storage is None:
        raise ConfigurationError(
            f"{what} task {node!r}, which has no storage; add `storage:` to task {node!r} in {task.config.source}"
        )
    if task.config.storage_read_only:
        raise ConfigurationError(
            f"{what} task {node!r}, whose storage is read-only so its results are not stored; drop "
            "`storage_read_only:` or test node arguments instead"
        )


def _foreach(raw: Any, where: str, to: tuple[str, ...], flows: dict[str, str]) -> Foreach | None:
    if raw is None:
        return None
    at = f"{where}: foreach"
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{at}: must be a mapping such as {{import: myapp.foreach, function: items}}")
    _known_keys(raw, FOREACH_KEYS, at)
    function = _function(raw.get("import"), raw.get("function"), at, "function")
    propagate = raw.get("propagate_result", False)
    if not isinstance(propagate, bool):
        raise ConfigurationError(f"{at}: `propagate_result:` must be true or false")
    if propagate:
        for name in to:
            if name not in flows:
                raise ConfigurationError(
                    f"{at}: `propagate_result: true` makes each item the node arguments of a sub-flow, but {name!r} "
                    "is a task; start a flow instead, or drop propagate_result"
                )
    return Foreach(function, propagate, f"{raw.get('import')}.{raw.get('function')}")


def _function(module_name: Any, name: Any, where: str, name_key: str) -> Callable[..., Any]:
    """Import ``module_name`` and return its function ``name`` (both from the YAML)."""
    if not isinstance(module_name, str) or not module_name:
        raise ConfigurationError(f"{where}: `import:` is missing; name the module that defines the function")
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{where}: `{name_key}:` is missing; name the function")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigurationError(
            f"{where}: cannot import {module_name!r}: {type(exc).__name__}: {exc}; check the module name and that "
            "it is on the Python path (selinon run and attach() add the directories of the YAML files)"
        ) from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ConfigurationError(f"{where}: module {module_name!r} has no function {name!r}")
    return function  # type: ignore[no-any-return]


def _named_function(raw: Any, where: str) -> Callable[..., Any]:
    """``{name, import}``, as Selinon 1.x's ``selective_run_function``; ``always_run`` needs no import."""
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where}: must be a mapping such as {{name: reuse_result, import: myapp.selective}}")
    _known_keys(raw, FUNCTION_KEYS, where)
    if raw.get("import") in (None, "selinon.routines") and raw.get("name", "always_run") == "always_run":
        return always_run
    return _function(raw.get("import"), raw.get("name"), where, "name")


def always_run(flow_name: str, node_name: str, node_args: Any, task_names: list[str], storage_pool: Any) -> None:
    """The default selective run function: run the task (never reuse an earlier result)."""
    return None


def _sampling(raw: Any, where: str) -> Sampling | None:
    if raw is None:
        return None
    at = f"{where}: sampling"
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{at}: must be a mapping such as {{name: constant, args: {{retry: 2}}}}")
    _known_keys(raw, SAMPLING_KEYS, at)
    name = raw.get("name")
    module = raw.get("import")
    if module in (None, "selinon.strategies"):
        if name not in strategies.BUILTIN:
            raise ConfigurationError(
                f"{at}: unknown strategy {name!r}; {_suggest(str(name), strategies.BUILTIN)}, or name its module with "
                "`import:`"
            )
        function = strategies.BUILTIN[name]
    else:
        function = _function(module, name, at, "name")
    args = raw.get("args") or {}
    if not isinstance(args, dict):
        raise ConfigurationError(f"{at}: `args:` must be a mapping of the strategy's arguments")
    try:
        parameters = list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        parameters = []
    expected = set(parameters[1:])
    if set(args) != expected:
        missing, extra = sorted(expected - set(args)), sorted(set(args) - expected)
        detail = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unknown {', '.join(extra)}" if extra else "",
            )
            if part
        )
        raise ConfigurationError(
            f"{at}: {name} takes {', '.join(sorted(expected)) or 'no arguments'} under `args:` ({detail})"
        )
    for key, value in args.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigurationError(f"{at}: `args: {key}` must be a number of seconds, 0 or more, not {value!r}")
    return Sampling(str(name), function, dict(args))


def _throttling(raw: Any, where: str) -> float | None:
    """``throttling:`` (timedelta fields, as in Selinon 1.x) in seconds; None when not throttled."""
    if raw is None:
        return None
    at = f"{where}: throttling"
    if not isinstance(raw, dict) or not raw:
        raise ConfigurationError(f"{at}: must be a mapping of times such as {{seconds: 10}} or {{minutes: 1}}")
    _known_keys(raw, THROTTLING_KEYS, at)
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigurationError(f"{at}: `{key}:` must be a number, 0 or more, not {value!r}")
    seconds = datetime.timedelta(**raw).total_seconds()
    return seconds or None


def _names(value: Any, key: str, where: str, known: list[str], repeat: bool = False) -> tuple[str, ...]:
    """One node name or a list of them; ``repeat``: a name may be listed more than once (parallel runs)."""
    if value is None:
        return ()
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ConfigurationError(f"{where}: `{key}:` must be a node name or a list of node names")
    for name in names:
        if name not in known:
            raise ConfigurationError(
                f"{where}: `{key}:` names unknown node {name!r}; "
                f"{_suggest(name, known, 'define it under `tasks:` or `flow-definitions:`')}"
            )
    if not repeat and len(set(names)) != len(names):
        raise ConfigurationError(f"{where}: `{key}:` lists a node twice; list each once")
    return tuple(names)


def _queue(entry: Mapping[str, Any], where: str) -> str | None:
    """A ``queue:``, checked for well-formed ``{NAME}`` references; they are expanded when a message is sent."""
    queue = entry.get("queue")
    if queue is None:
        return None
    if not isinstance(queue, str) or not queue:
        raise ConfigurationError(f"{where}: `queue:` must be a non-empty string, not {_type_name(queue)}; quote it")
    config_module.check_references(queue, f"{where}: queue")
    return queue


def _count(entry: Mapping[str, Any], key: str, where: str) -> int:
    value = entry.get(key, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{where}: `{key}:` must be a whole number, 0 or more, not {value!r}")
    return value


def _seconds(entry: Mapping[str, Any], key: str, where: str) -> float:
    value = entry.get(key, 0)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 86400:  # NaN fails too
        raise ConfigurationError(f"{where}: `{key}:` must be a number of seconds from 0 to 86,400, not {value!r}")
    return float(value)
