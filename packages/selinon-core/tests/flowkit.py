"""Helpers for flow tests: build a validated System from Python data, and run a flow of it."""

from __future__ import annotations

from typing import Any

import flow_tasks

from selinon import flows
from selinon.executor import Executor, FlowRun

MEMORY = {"name": "Memory", "classname": "InMemoryStorage", "configuration": {"json": True}}


def task(name: str, cls: str = "Echo", storage: str | None = "Memory", **options: Any) -> dict[str, Any]:
    entry = {"name": name, "import": "flow_tasks", "classname": cls, **options}
    if storage is not None:
        entry["storage"] = storage
    return entry


def flow(name: str, *edges: dict[str, Any], **options: Any) -> dict[str, Any]:
    return {"name": name, "edges": list(edges), **options}


def system(
    tasks: list[dict[str, Any]], flow_definitions: list[dict[str, Any]], storages: list[dict[str, Any]] | None = None
) -> flows.System:
    nodes = {"storages": [MEMORY] if storages is None else storages, "tasks": tasks}
    return flows.from_documents([("nodes.yaml", nodes), ("flows.yaml", {"flow-definitions": flow_definitions})])


def run(built: flows.System, name: str, node_args: Any = None, concurrency: int = 4) -> FlowRun:
    flow_tasks.RUNS.clear()
    return Executor(built, concurrency).run(name, node_args)


def by_name(flow_run: FlowRun) -> dict[str, Any]:
    """Task name -> its one instance (tests that expect several use ``tasks()``)."""
    found = {}
    for node in flow_run.tasks():
        assert node.name not in found, f"{node.name} ran more than once"
        found[node.name] = node
    return found
