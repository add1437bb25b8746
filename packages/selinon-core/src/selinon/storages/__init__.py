"""Storages built into the core. Adapters of other distributions live in their own top-level packages."""
