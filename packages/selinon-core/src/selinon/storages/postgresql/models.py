"""Selinon 1.x's ``selinon.storages.postgresql.models`` module: Result, from the installed adapter distribution.

See :mod:`selinon.storages.legacy`.
"""

from selinon.storages.legacy import forward

__getattr__ = forward(__name__)
