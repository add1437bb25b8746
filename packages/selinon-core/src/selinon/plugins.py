"""The plugin manager: hook plugins from the ``selinon`` entry-point group, plus any registered in code."""

from __future__ import annotations

import pluggy

from selinon import hookspecs, installed

pm = pluggy.PluginManager("selinon")
pm.add_hookspecs(hookspecs)

#: Hook plugins that could not be loaded, by entry-point name, with the reason.
broken_plugins: dict[str, str] = {}
#: The distribution (name, version) of each entry-point plugin, by plugin name.
plugin_distributions: dict[str, tuple[str, str]] = {}
_loaded = False


def load_plugins() -> pluggy.PluginManager:
    """Load the entry-point plugins once; a broken one is recorded, never raised, so the others still work."""
    global _loaded
    if not _loaded:
        _loaded = True
        for entry_point in installed.entry_points(group="selinon"):
            if pm.has_plugin(entry_point.name):
                continue
            try:
                pm.register(entry_point.load(), name=entry_point.name)
                if entry_point.dist:
                    plugin_distributions[entry_point.name] = (entry_point.dist.name, entry_point.dist.version)
            except Exception as exc:
                broken_plugins[entry_point.name] = f"{type(exc).__name__}: {exc}"
    return pm
