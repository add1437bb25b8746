"""The hooks a Selinon plugin may implement.

A plugin is any module or object with functions marked ``@selinon.hookimpl``. It is found through the
``selinon`` entry-point group, or registered in code with ``selinon.plugins.pm.register(plugin)``. An
implementation may accept any subset of a hook's arguments.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("selinon")
hookimpl = pluggy.HookimplMarker("selinon")


@hookspec
def register_storages(register: Any) -> None:
    """Register storage classes: call ``register(cls, name=None)``.

    ``cls`` is a :class:`~selinon.DataStorage` subclass, or a ``"module:Class"`` string, which keeps the module
    unimported until a configuration uses it. ``name`` is the classname users write in YAML (the class's own
    name by default).
    """


@hookspec
def storage_configuration(storage_name: str, classname: str, configuration: dict[str, Any]) -> None:
    """Adjust a storage's configuration, in place, before its adapter is instantiated.

    Called after environment references are expanded; meant for filling in secrets from a vault or a file.
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
    """Observe a storage call for logging or tracing.

    ``event`` is one of ``connect``, ``store``, ``retrieve``, ``delete``, ``store_error``; ``error`` is the
    exception the call raised, if any; ``duration`` is in seconds. Never given the result itself.
    """
