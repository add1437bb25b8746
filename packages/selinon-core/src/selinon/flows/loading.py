"""Loading and validating ``flows:`` and ``flow-definitions:``, and the runtime options of ``tasks:``.

The files are read once: :mod:`selinon.config` validates storages and tasks, this module the flows, and every
error is one line naming the file, the flow, the edge and the fix. Task classes and output schemas are resolved
when a flow runs (:mod:`selinon.runtime`), so that reading results back needs neither the tasks' code nor
``jsonschema``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from selinon import config as config_module
from selinon.config import Configuration, TaskConfig, _suggest, _type_name
from selinon.errors import ConfigurationError
from selinon.flows.conditions import parse
from selinon.flows.graph import Edge, Flow, System, TaskSpec, check_cycles, check_recursion
from selinon.flows.predicates import Predicates

FLOW_KEYS = ("name", "edges", "node_args_from_first", "propagate_node_args", "max_retry", "retry_countdown", "queue")
EDGE_KEYS = ("from", "to", "condition")
#: Selinon keys that this runtime does not implement: named in the error, so that it does not read as a typo.
UNSUPPORTED_KEYS = (
    "failures",
    "nowait",
    "eager_failures",
    "cache_config",
    "sampling",
    "strategy",
    "throttling",
    "propagate_finished",
    "propagate_parent",
    "propagate_compound_finished",
    "propagate_compound_parent",
    "propagate_parent_failures",
    "propagate_compound_parent_failures",
    "foreach",
)


def load(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], environ: Mapping[str, str] | None = None
) -> System:
    """Load nodes and flow files (any split between them) into one validated :class:`System`."""
    documents = config_module.read_documents(paths)
    return from_documents(documents, environ)


def from_documents(documents: Iterable[tuple[str, Any]], environ: Mapping[str, str] | None = None) -> System:
    documents = list(documents)
    configuration = config_module.from_documents(documents, environ)
    sections = [(source, d) for source, d in documents if isinstance(d, dict)]
    return _system(configuration, sections, os.environ if environ is None else environ)


def from_configuration(configuration: Configuration) -> System:
    """A :class:`System` from an already loaded configuration (its errors cannot name the files)."""
    sections = []
    for key, values in configuration.other.items():
        sections += [("<configuration>", {key: value}) for value in values]
    return _system(configuration, sections, os.environ)


def _system(
    configuration: Configuration, documents: list[tuple[str, dict[str, Any]]], environ: Mapping[str, str]
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
    check_recursion(flows)
    return System(configuration, tasks, flows)


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
    return TaskSpec(
        config=task,
        import_path=import_path,
        classname=classname,
        max_retry=_count(options, "max_retry", where),
        retry_countdown=_seconds(options, "retry_countdown", where),
        output_schema=schema,
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
        if key in UNSUPPORTED_KEYS:
            raise ConfigurationError(f"{where}: `{key}:` is not supported by this runtime; remove it")
        if key not in FLOW_KEYS:
            raise ConfigurationError(f"{where}: unknown key {key!r}; {_suggest(str(key), FLOW_KEYS)}")
    raw_edges = entry.get("edges")
    if not isinstance(raw_edges, list) or not raw_edges:
        raise ConfigurationError(f"{where}: `edges:` must be a non-empty list of {{from: ..., to: ...}} mappings")
    known = [*tasks, *flows]
    edges = tuple(_edge(raw, f"{where}: edges[{i}]", known, tasks, predicates) for i, raw in enumerate(raw_edges))
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
    subflows = sorted(name for name in {n for e in edges for n in e.to} if name in flows)
    propagate = entry.get("propagate_node_args", False)
    if isinstance(propagate, list):
        for name in propagate:
            if name not in subflows:
                otherwise = f"its sub-flows: {', '.join(subflows) or 'none'}"
                raise ConfigurationError(
                    f"{where}: `propagate_node_args:` names {name!r}, which is not a sub-flow of this flow; "
                    f"{_suggest(str(name), subflows, otherwise)}"
                )
        propagate = tuple(propagate)
    elif not isinstance(propagate, bool):
        raise ConfigurationError(f"{where}: `propagate_node_args:` must be true, false or a list of sub-flow names")
    flow = Flow(
        name=entry["name"],
        edges=edges,
        node_args_from_first=from_first,
        propagate_node_args=propagate,
        max_retry=_count(entry, "max_retry", where),
        retry_countdown=_seconds(entry, "retry_countdown", where),
        source=source,
        queue=_queue(entry, where, environ),
    )
    check_cycles(flow)
    return flow


def _edge(raw: Any, where: str, known: list[str], tasks: dict[str, TaskSpec], predicates: Predicates) -> Edge:
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where}: must be a mapping such as {{from: Task1, to: Task2}}")
    for key in raw:
        if key in UNSUPPORTED_KEYS:
            raise ConfigurationError(f"{where}: `{key}:` is not supported by this runtime; remove it")
        if key not in EDGE_KEYS:
            raise ConfigurationError(f"{where}: unknown key {key!r}; {_suggest(str(key), EDGE_KEYS)}")
    if "to" not in raw:
        raise ConfigurationError(f"{where}: `to:` is missing; name the node(s) this edge starts")
    from_ = _names(raw.get("from"), "from", where, known)
    to = _names(raw["to"], "to", where, known)
    if not to:
        raise ConfigurationError(f"{where}: `to:` is empty; name the node(s) this edge starts")
    condition = parse(raw.get("condition"), from_, f"{where}: condition", predicates)
    for node in sorted(condition.nodes()):
        task = tasks.get(node)
        if task is None:
            raise ConfigurationError(
                f"{where}: condition reads the result of {node!r}, which is a flow; conditions read task results only"
            )
        if task.config.storage is None:
            raise ConfigurationError(
                f"{where}: condition reads the result of task {node!r}, which has no storage; "
                f"add `storage:` to task {node!r} in {task.config.source}"
            )
        if task.config.storage_read_only:
            raise ConfigurationError(
                f"{where}: condition reads the result of task {node!r}, whose storage is read-only so its results "
                "are not stored; drop `storage_read_only:` or test node arguments instead"
            )
    return Edge(from_, to, condition)


def _names(value: Any, key: str, where: str, known: list[str]) -> tuple[str, ...]:
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
    if len(set(names)) != len(names):
        raise ConfigurationError(f"{where}: `{key}:` lists a node twice; list each once")
    return tuple(names)


def _queue(entry: dict[str, Any], where: str, environ: Mapping[str, str]) -> str | None:
    queue = entry.get("queue")
    if queue is None:
        return None
    if not isinstance(queue, str) or not queue:
        raise ConfigurationError(f"{where}: `queue:` must be a non-empty string, not {_type_name(queue)}; quote it")
    return str(config_module.expand(queue, environ, f"{where}: queue"))


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
