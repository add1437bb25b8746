"""Selinon 1.x's top-level API on this Selinon: ``Config``, ``run_flow`` and ``run_flow_selective``.

A 1.x worker or client module does::

    Config.set_config_yaml("nodes.yaml", ["flows.yaml"])
    Config.set_celery_app(app)

Here that loads and checks the YAML (:func:`selinon.flows.load`), configures the storage pool, and, once both are
given (in either order), attaches the flows to the app (:func:`selinon.celery.attach`). The attributes 1.x users
read (``Config.flows``, ``dispatcher_queues``, ``task_queues``, ``task_classes``, ``storage_mapping``, ...) are
computed from the loaded configuration. How this differs from 1.x is in docs/upgrading.md.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from typing import Any

from selinon.errors import ConfigNotInitializedError, ConfigurationError
from selinon.flows import System
from selinon.storage import DataStorage

__all__ = ["Config", "run_flow", "run_flow_selective"]

Paths = str | os.PathLike[str]
#: The queue 1.x sent to when neither the YAML nor the app named one: Celery's default.
DEFAULT_QUEUE = "celery"


class _ConfigType(type):
    """Class-level properties: 1.x code reads ``Config.flows`` and the like on the class itself."""

    _system: System | None
    _app: Any

    def system(cls) -> System:
        """The loaded configuration (a :class:`~selinon.flows.System`)."""
        if cls._system is None:
            raise ConfigNotInitializedError(
                "Selinon is not configured: call Config.set_config_yaml('nodes.yaml', ['flows.yaml']) first"
            )
        return cls._system

    def _attached(cls) -> Any:
        if cls._app is None:
            return None
        from selinon.celery import flows_of

        return flows_of(cls._app)

    @property
    def initialized(cls) -> bool:
        return cls._system is not None

    @property
    def celery_app(cls) -> Any:
        return cls._app

    @property
    def flows(cls) -> list[str]:
        return list(cls.system().flows)

    @property
    def dispatcher_queues(cls) -> dict[str, str]:
        system, attached = cls.system(), cls._attached()
        if attached is not None:
            return {name: attached.flow_queue(name) for name in system.flows}
        return {name: system.flow_queue(name) or DEFAULT_QUEUE for name in system.flows}

    @property
    def task_queues(cls) -> dict[str, str]:
        system, attached = cls.system(), cls._attached()
        if attached is not None:
            return {name: attached.task_queue(name) for name in system.tasks}
        return {name: system.task_queue(name) or DEFAULT_QUEUE for name in system.tasks}

    @property
    def task_classes(cls) -> dict[str, type]:
        """Every task's class, imported (1.x imported them all when it loaded the YAML)."""
        from selinon.runtime import task_class

        system = cls.system()
        return {name: task_class(spec) for name, spec in system.tasks.items()}

    @property
    def storage_mapping(cls) -> dict[str, DataStorage]:
        """Storage name -> the process's adapter instance (not connected until used)."""
        from selinon.pool import StoragePool

        return {name: StoragePool.get_storage(name) for name in cls.system().configuration.storages}

    @property
    def task2storage_mapping(cls) -> dict[str, str]:
        tasks = cls.system().configuration.tasks
        return {name: task.storage for name, task in tasks.items() if task.storage is not None}

    @property
    def storage_readonly(cls) -> dict[str, bool]:
        return {name: task.storage_read_only for name, task in cls.system().configuration.tasks.items()}

    @property
    def storage_task_name(cls) -> dict[str, str]:
        tasks = cls.system().configuration.tasks
        return {name: task.storage_task_name or name for name, task in tasks.items()}

    @property
    def max_retry(cls) -> dict[str, int]:
        return {name: spec.max_retry for name, spec in cls.system().tasks.items()}

    @property
    def retry_countdown(cls) -> dict[str, float]:
        return {name: spec.retry_countdown for name, spec in cls.system().tasks.items()}


class Config(metaclass=_ConfigType):
    """The process's Selinon configuration, set up as in Selinon 1.x."""

    _system: System | None = None
    _app: Any = None

    @classmethod
    def set_config_yaml(
        cls,
        nodes_definition_file: Paths,
        flow_definition_files: Paths | Iterable[Paths],
        config_py: Paths | None = None,
        keep_config_py: bool = False,
    ) -> None:
        """Load ``nodes.yaml`` and the flow files; they replace any configuration set before."""
        _no_config_py(config_py, keep_config_py)
        from selinon import flows

        if isinstance(flow_definition_files, str | os.PathLike):
            flow_definition_files = [flow_definition_files]
        cls._use(flows.load([nodes_definition_file, *flow_definition_files]))

    @classmethod
    def set_config_dict(cls, nodes_definition: dict[str, Any], flow_definitions: Iterable[dict[str, Any]]) -> None:
        """The same from already parsed YAML documents (a mapping, and a list of mappings)."""
        from selinon import flows

        documents = [("<nodes_definition>", nodes_definition)]
        documents += [(f"<flow_definitions[{i}]>", d) for i, d in enumerate(flow_definitions)]
        cls._use(flows.from_documents(documents))

    @classmethod
    def set_config_py(cls, config_code: Paths) -> None:
        """Refused: 1.x ran a Python module it had generated from the YAML; this Selinon generates none."""
        _no_config_py(config_code, False)

    @classmethod
    def set_celery_app(cls, celery_app: Any) -> None:
        """Run the flows on ``celery_app``: its workers run them, and ``run_flow`` sends to it."""
        cls._app = celery_app
        if cls._system is not None:
            cls._attach()

    @classmethod
    def init(
        cls,
        celery_app: Any,
        nodes_definition_file: Paths,
        flow_definition_files: Paths | Iterable[Paths],
        config_py: Paths | None = None,
        keep_config_py: bool = False,
    ) -> None:
        cls.set_config_yaml(nodes_definition_file, flow_definition_files, config_py, keep_config_py)
        cls.set_celery_app(celery_app)

    @classmethod
    def trace_by_logging(cls) -> None:
        _trace().trace_by_logging()

    @classmethod
    def trace_by_json(cls) -> None:
        _trace().trace_by_json()

    @classmethod
    def trace_by_func(cls, trace_func: Any) -> None:
        _trace().trace_by_func(trace_func)

    @classmethod
    def trace_by_sentry(cls, dsn: str | None = None) -> None:
        _trace().trace_by_sentry(dsn)

    @classmethod
    def _use(cls, system: System) -> None:
        from selinon.pool import StoragePool

        StoragePool.configure(system.configuration)
        cls._system = system
        if cls._app is not None:
            cls._attach()

    @classmethod
    def _attach(cls) -> None:
        from selinon.celery import attach

        attach(cls._app, cls._system)

    @classmethod
    def _celery(cls) -> Any:
        if cls._app is None:
            raise ConfigNotInitializedError(
                "flows run on Celery: call Config.set_celery_app(app) before run_flow (or use `selinon run`)"
            )
        cls.system()
        return cls._attached()


def run_flow(flow_name: str, node_args: Any = None) -> Any:
    """Start ``flow_name`` on the Celery app; returns the ``AsyncResult`` of its dispatcher (``.id``: the flow id)."""
    app = Config._celery()
    return Config.celery_app.AsyncResult(app.run_flow(flow_name, node_args))


def run_flow_selective(
    flow_name: str,
    task_names: list[str],
    node_args: Any = None,
    follow_subflows: bool = False,
    run_subsequent: bool = False,
) -> Any:
    """Start only ``task_names`` of the flow and what they need; returns the dispatcher's ``AsyncResult``."""
    app = Config._celery()
    flow_id = app.run_flow_selective(flow_name, task_names, node_args, follow_subflows, run_subsequent)
    return Config.celery_app.AsyncResult(flow_id)


def _no_config_py(config_py: Paths | None, keep_config_py: bool) -> None:
    if config_py is not None or keep_config_py:
        raise ConfigurationError(
            "config_py/keep_config_py: this Selinon generates no config.py from the YAML; drop the argument "
            "(`selinon inspect --dump` prints the configuration as loaded)"
        )


def _trace() -> Any:
    return importlib.import_module("selinon.trace").Trace
