"""What installed distributions declare (entry points, versions, requirements).

The standard library's ``importlib.metadata`` from Python 3.12 on; before that, the ``importlib-metadata``
backport, a dependency only there, whose entry-point selection and ``EntryPoint.dist`` the code relies on.
"""

import sys

if sys.version_info >= (3, 12):
    from importlib.metadata import distribution, entry_points
else:
    from importlib_metadata import distribution, entry_points

__all__ = ["distribution", "entry_points"]
