"""Selinon 1.x's import path of the built-in predicates, for ``global: predicates_module`` modules that start with
``from selinon.predicates import *``; the predicates live in :mod:`selinon.flows.predicates`."""

from selinon.flows.predicates import BUILTIN

globals().update(BUILTIN)
__all__ = sorted(BUILTIN)
