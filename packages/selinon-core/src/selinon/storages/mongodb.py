"""Selinon 1.x's ``selinon.storages.mongodb`` module: MongoDB, from the installed adapter distribution.

See :mod:`selinon.storages.legacy`.
"""

from selinon.storages.legacy import forward

__getattr__ = forward(__name__)
