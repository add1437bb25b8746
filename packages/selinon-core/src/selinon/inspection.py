"""The static check of a whole project (``selinon inspect``): everything a worker would resolve, with nothing
connected.

Loading the files checks the flow language, predicates, foreach, sampling and selective-run functions. On top of
that, every task class is imported (a task that no flow uses and that names no ``import:`` is only a storage
mapping for ``selinon results``, and is left alone), every output schema is read, every storage is built by its
adapter class (which does no I/O), every cache is built, and every queue name is expanded. Each problem is one
line naming the file, the entry and the fix.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from selinon import config as config_module
from selinon import registry, runtime, secrets
from selinon.errors import PluginError, SelinonError
from selinon.flows import Flow, System, TaskSpec
from selinon.flows.conditions import ALWAYS, All, AnyOf, Condition, Leaf, Not


@dataclass
class Inspection:
    """What ``selinon inspect`` found: the loaded project (None when the files did not load) and its problems."""

    system: System | None
    problems: list[str]


def inspect_files(files: Iterable[str | os.PathLike[str]]) -> Inspection:
    """Load the files and check everything in them that can be checked without connecting anything."""
    from selinon import flows

    try:
        system = flows.load(files)
    except SelinonError as exc:
        return Inspection(None, [str(exc)])
    return Inspection(system, check(system))


def check(system: System) -> list[str]:
    """One line per problem, in the order a reader meets them: tasks, storages, flows' caches, queues, flows that
    could never end."""
    from selinon.pool import instantiate

    used = used_tasks(system)
    checks: list[Callable[[], Any]] = []
    for name, spec in system.tasks.items():
        if name in used or spec.import_path is not None:
            checks.append(functools.partial(runtime.task_class, spec))
        if spec.output_schema is not None:
            checks.append(functools.partial(runtime.validator, spec))
    checks += [functools.partial(instantiate, storage) for storage in system.configuration.storages.values()]
    checks += [functools.partial(runtime.flow_cache, flow) for flow in system.flows.values() if flow.cache]
    checks += [functools.partial(system.flow_queue, name) for name in system.flows]
    checks += [functools.partial(system.task_queue, name) for name in sorted(used)]
    problems: dict[str, None] = {}  # each once: a default queue that cannot be expanded fails every task using it
    for action in checks:
        try:
            action()
        except SelinonError as exc:
            problems[str(exc)] = None
    problems.update(dict.fromkeys(system.endless.values()))
    return list(problems)


def used_tasks(system: System) -> set[str]:
    """The tasks some flow runs (fallbacks included)."""
    return {name for flow in system.flows.values() for name in flow.nodes() if name in system.tasks}


def conditions(flow: Flow) -> list[Condition]:
    return [edge.condition for edge in flow.edges] + [failure.condition for failure in flow.failures]


def predicate_names(system: System) -> list[str]:
    """Every predicate the flows' conditions name (``alwaysTrue`` of edges without a condition left out)."""
    found: set[str] = set()

    def walk(condition: Condition) -> None:
        if isinstance(condition, Leaf):
            if condition is not ALWAYS:
                found.add(condition.name)
        elif isinstance(condition, All | AnyOf):
            for part in condition.parts:
                walk(part)
        elif isinstance(condition, Not):
            walk(condition.part)

    for flow in system.flows.values():
        for condition in conditions(flow):
            walk(condition)
    return sorted(found)


# -- queues ------------------------------------------------------------------------------------------------------


@dataclass
class Queue:
    """Where one task's or dispatcher's messages go on Celery."""

    kind: str  # "task" or "dispatcher"
    name: str
    #: The queue with ``{NAME}`` references expanded; as written where a variable is unset; None: the Celery app's
    #: default queue (``task_default_queue``, `celery` unless the app changes it).
    queue: str | None
    #: Where the queue comes from: "queue" (its own), "global: default_task_queue", ..., or "app default".
    origin: str
    unset: tuple[str, ...] = ()


def queues(system: System) -> list[Queue]:
    """Every dispatcher's and every used task's queue, flows first, each in name order."""
    options = system.configuration.global_options
    rows = []
    for kind, names, default_key in (
        ("dispatcher", sorted(system.flows), "default_dispatcher_queue"),
        ("task", sorted(used_tasks(system)), "default_task_queue"),
    ):
        default = getattr(options, default_key)
        for name in names:
            own = system.flows[name].queue if kind == "dispatcher" else system.tasks[name].queue
            raw, origin = (own, "queue") if own is not None else (default, f"global: {default_key}")
            if raw is None:
                rows.append(Queue(kind, name, None, "app default"))
                continue
            unset = tuple(n for n in config_module.references(raw) if n not in system.environ)
            shown = raw if unset else str(config_module.expand(raw, system.environ, origin))
            rows.append(Queue(kind, name, shown, origin, unset))
    return rows


# -- the normalised configuration --------------------------------------------------------------------------------


def dump(system: System) -> dict[str, Any]:
    """The whole configuration as loaded, defaults filled in, as JSON data. Secrets are masked; ``{NAME}``
    references are shown as written, since the values of the environment may be secrets too."""
    configuration = system.configuration
    options = configuration.global_options
    return {
        "global": {
            "predicates_module": options.predicates_module,
            "default_task_queue": options.default_task_queue,
            "default_dispatcher_queue": options.default_dispatcher_queue,
        },
        "storages": [_storage(storage) for storage in configuration.storages.values()],
        "tasks": [_task(spec) for spec in system.tasks.values()],
        "flows": [_flow(flow) for flow in system.flows.values()],
    }


def _storage(storage: config_module.StorageConfig) -> dict[str, Any]:
    try:
        extra = registry.resolve(storage.classname, storage.import_path).secret_options
    except PluginError:
        extra = frozenset()  # inspect reports it; the core's rules still hide what looks secret
    cache = storage.cache
    return {
        "name": storage.name,
        "classname": storage.classname,
        "import": storage.import_path,
        "configuration": secrets.mask_configuration(storage.configuration, extra),
        "cache": None if cache is None else _cache(cache),
        "retry": vars(storage.retry).copy(),
        "source": storage.source,
    }


def _cache(cache: config_module.CacheConfig) -> dict[str, Any]:
    return {
        "name": cache.name,
        "import": cache.import_path,
        "configuration": secrets.mask_configuration(cache.configuration),
    }


def _function(function: Callable[..., Any] | None) -> str | None:
    return None if function is None else f"{function.__module__}.{function.__qualname__}"


def _task(spec: TaskSpec) -> dict[str, Any]:
    task = spec.config
    return {
        "name": spec.name,
        "import": spec.import_path,
        "classname": spec.classname,
        "storage": task.storage,
        "storage_read_only": task.storage_read_only,
        "storage_task_name": task.storage_task_name,
        "max_retry": spec.max_retry,
        "retry_countdown": spec.retry_countdown,
        "queue": spec.queue,
        "throttling_seconds": spec.throttle,
        "output_schema": spec.output_schema,
        "selective_run_function": _function(spec.selective_run),
        "source": task.source,
    }


def _condition(condition: Condition) -> Any:
    return None if condition.always_true and isinstance(condition, Leaf) else condition.tree()


def _propagate(value: bool | tuple[str, ...]) -> bool | list[str]:
    return value if isinstance(value, bool) else list(value)


def _flow(flow: Flow) -> dict[str, Any]:
    return {
        "name": flow.name,
        "edges": [
            {
                "from": list(edge.from_),
                "to": list(edge.to),
                "condition": _condition(edge.condition),
                "foreach": None
                if edge.foreach is None
                else {"function": edge.foreach.text, "propagate_result": edge.foreach.propagate_result},
                "selective": edge.selective,
            }
            for edge in flow.edges
        ],
        "failures": [
            {
                "nodes": sorted(failure.nodes),
                "fallback": failure.fallback if isinstance(failure.fallback, bool) else list(failure.fallback),
                "condition": _condition(failure.condition),
            }
            for failure in flow.failures
        ],
        "nowait": sorted(flow.nowait),
        "eager_failures": _propagate(flow.eager_failures),
        "node_args_from_first": flow.node_args_from_first,
        "propagate_node_args": _propagate(flow.propagate_node_args),
        "propagate_parent": _propagate(flow.propagate_parent),
        "propagate_parent_failures": _propagate(flow.propagate_parent_failures),
        "propagate_finished": _propagate(flow.propagate_finished),
        "propagate_compound_finished": _propagate(flow.propagate_compound_finished),
        "propagate_failures": _propagate(flow.propagate_failures),
        "propagate_compound_failures": _propagate(flow.propagate_compound_failures),
        "max_retry": flow.max_retry,
        "retry_countdown": flow.retry_countdown,
        "queue": flow.queue,
        "throttling_seconds": flow.throttle,
        "sampling": None if flow.sampling is None else {"name": flow.sampling.name, "args": flow.sampling.args},
        "cache": None if flow.cache is None else _cache(flow.cache),
        "source": flow.source,
    }
