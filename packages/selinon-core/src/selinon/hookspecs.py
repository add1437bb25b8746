"""The hooks a Selinon plugin may implement.

A plugin is any module or object with functions marked ``@selinon.hookimpl``. It is found through the
``selinon`` entry-point group, or registered in code with ``selinon.plugins.pm.register(plugin)``. An
implementation may accept any subset of a hook's arguments. What happens when one raises is in
:mod:`selinon.plugins`; the adapter guide (docs/adapters.md) describes each hook with examples.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("selinon")
hookimpl = pluggy.HookimplMarker("selinon")


@hookspec
def register_storages(register: Any) -> None:
    """Register storage classes: call ``register(cls, name=None)``. One that raises makes its plugin broken, with
    none of its classes registered.

    ``cls`` is a :class:`~selinon.DataStorage` subclass, or a ``"module:Class"`` string, which keeps the module
    unimported until a configuration uses it. ``name`` is the classname users write in YAML (the class's own
    name by default).
    """


@hookspec
def storage_configuration(storage_name: str, classname: str, configuration: dict[str, Any]) -> None:
    """Adjust a storage's configuration, in place, before its adapter is instantiated.

    Called after environment references are expanded; meant for filling in secrets from a vault or a file. One
    that raises fails the storage with a configuration error naming the plugin.
    """


@hookspec
def storage_event(
    event: str,
    storage_name: str,
    flow_name: str | None,
    task_name: str | None,
    task_id: str | None,
    duration: float,
    error: BaseException | None,
) -> None:
    """Observe one attempt of a storage call, after it, for logging or tracing; never given the result itself.

    ``event`` is the adapter method (``connect``, ``store``, ``retrieve``, ``delete``, ``store_error``,
    ``retrieve_error``), or ``retry`` for an attempt that failed with a transient error and is tried again;
    ``flow_name``, ``task_name`` and ``task_id`` are None on ``connect``; ``duration`` is the attempt's, in seconds;
    ``error`` is the exception it raised, or None. Observers never decide: one that raises is logged once and
    counted, and the call goes on.
    """


@hookspec
def selinon_event(event: str, fields: dict[str, Any], context: dict[str, str], exception: BaseException | None) -> None:
    """Observe a lifecycle event of a flow, a dispatcher, a task or a storage call, for logging or tracing.

    ``event`` is its name (``flow.started``, ``task.failed``, ``storage.store``, ...: :mod:`selinon.events`,
    and docs/operating.md for each event's fields). ``fields`` are plain JSON data (names, ids, tries, error
    text, seconds); never a task's result. Read them, do not change them. ``exception`` is the exception behind
    ``task.retry`` and ``task.failed``, else None. ``context`` ties the events of one flow run or one try of a
    task together across processes (see :mod:`selinon.events`): an observer may write ``str`` entries into it on
    ``flow.scheduled``, ``flow.started`` and ``task.started``, and reads them back on the later events of that
    run or try. Observers never decide: one that raises is logged once and counted, and the flow goes on.
    """
