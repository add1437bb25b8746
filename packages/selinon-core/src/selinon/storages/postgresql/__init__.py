"""Selinon 1.x's ``selinon.storages.postgresql`` module: PostgreSQL and Result, from the installed adapter distribution.

See :mod:`selinon.storages.legacy`.
"""

from selinon.storages.legacy import forward

__getattr__ = forward(__name__)
