"""The plugin manager: hook plugins from the ``selinon`` entry-point group, plus any registered in code.

Hooks are called one implementation at a time (:func:`implementations`, :func:`call`), so that a failure is put
down to the plugin that raised it: a broken plugin is reported and skipped, an observer that raises is logged
and counted, and neither changes what the others, or the storage calls, do.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pluggy

from selinon import hookspecs, installed

log = logging.getLogger("selinon.plugins")

pm = pluggy.PluginManager("selinon")
pm.add_hookspecs(hookspecs)

#: Hook plugins that could not be loaded or failed to register their storages, by name, with the reason.
broken_plugins: dict[str, str] = {}
#: The distribution (name, version) of each entry-point plugin, by plugin name.
plugin_distributions: dict[str, tuple[str, str]] = {}
#: How many times each plugin's observer hooks (``storage_event``, ``selinon_event``) raised in this process
#: (logged the first time only).
observer_failures: Counter[str] = Counter()
_failures_lock = threading.Lock()
_loaded = False


def load_plugins() -> pluggy.PluginManager:
    """Load the entry-point plugins once; a broken one is recorded and logged, never raised, so the others
    still work."""
    global _loaded
    if not _loaded:
        _loaded = True
        for entry_point in installed.entry_points(group="selinon"):
            if pm.has_plugin(entry_point.name):
                continue
            if entry_point.dist:
                plugin_distributions[entry_point.name] = (entry_point.dist.name, entry_point.dist.version)
            try:
                pm.register(entry_point.load(), name=entry_point.name)
            except Exception as exc:
                mark_broken(entry_point.name, f"{type(exc).__name__}: {exc}")
    return pm


def mark_broken(name: str, reason: str) -> None:
    """Record (and log, the first time) that a plugin cannot be used."""
    if name not in broken_plugins:
        log.warning("hook plugin %s is broken: %s", describe(name), reason)
    broken_plugins[name] = reason


def implementations(hook: str) -> list[pluggy.HookImpl]:
    """A hook's implementations, in the order pluggy calls them (the last registered first)."""
    caller: pluggy.HookCaller = getattr(load_plugins().hook, hook)
    return caller.get_hookimpls()[::-1]


def call(impl: pluggy.HookImpl, arguments: dict[str, Any]) -> Any:
    """Call one implementation with the subset of the hook's arguments it takes."""
    return impl.function(*(arguments[name] for name in impl.argnames))


def name_of(plugin: object) -> str:
    """The name a plugin was registered under (an installed one's entry-point name); for one registered in code
    without a name (pluggy then names it by its id()), its module or class."""
    name = pm.get_name(plugin)
    if name and name != str(id(plugin)):
        return name
    return getattr(plugin, "__name__", None) or f"{type(plugin).__module__}.{type(plugin).__qualname__}"


def describe(name: str) -> str:
    """``'name' (distribution version)`` for a plugin installed from a distribution, ``'name'`` otherwise."""
    dist = plugin_distributions.get(name)
    return f"{name!r}" + (f" ({dist[0]} {dist[1]})" if dist else "")


def observer_failed(impl: pluggy.HookImpl, reason: str, hook: str = "storage_event") -> None:
    """An observer hook's implementation raised: count it, and log it the first time for its plugin."""
    observer_raised(name_of(impl.plugin), reason, hook)


def observer_raised(name: str, reason: str, hook: str) -> None:
    """Count a failure of observer ``name`` (a plugin, or a tracer of :mod:`selinon.trace`); log the first."""
    with _failures_lock:
        observer_failures[name] += 1
        first = observer_failures[name] == 1
    if first:
        log.error(
            "hook plugin %s raised in %s, which is ignored (flows and storage calls go on unchanged; its further "
            "failures are counted in selinon.plugins.observer_failures, not logged): %s",
            describe(name),
            hook,
            reason,
        )


@dataclass
class HookPlugin:
    """A hook plugin as ``selinon plugins list`` shows it."""

    name: str
    distribution: str | None
    version: str | None
    hooks: list[str]
    broken: str | None  # why it is not used, or None


def hook_plugins() -> Iterable[HookPlugin]:
    """Every hook plugin, loaded or broken."""
    load_plugins()
    for plugin in pm.get_plugins():
        name = name_of(plugin)
        distribution, version = plugin_distributions.get(name, (None, None))
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())
        yield HookPlugin(name, distribution, version, hooks, broken_plugins.get(name))
    for name, reason in broken_plugins.items():
        if not pm.has_plugin(name):
            distribution, version = plugin_distributions.get(name, (None, None))
            yield HookPlugin(name, distribution, version, [], reason)
