"""Selinon's flow language: ``flows:``, ``flow-definitions:`` and the runtime options of ``tasks:``.

Each part has its own module: :mod:`~selinon.flows.loading` reads and validates the YAML,
:mod:`~selinon.flows.conditions` holds edge conditions, and :mod:`~selinon.flows.graph` the validated tasks, flows
and edges. What running a flow means lives in :mod:`selinon.runtime`, which both executors drive.
"""

from selinon.flows.graph import Edge, Flow, System, TaskSpec
from selinon.flows.loading import from_configuration, from_documents, load

__all__ = ["Edge", "Flow", "System", "TaskSpec", "from_configuration", "from_documents", "load"]
