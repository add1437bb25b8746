"""Which storage classes exist, where they come from, and turning a YAML classname into a class.

Listing reads entry-point metadata only: an adapter module is imported when a configuration uses it or when a
command checks it (importing a driver costs 150-250 ms on every worker start).
"""

from __future__ import annotations

import importlib
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selinon import installed
from selinon.errors import BrokenPluginError, PluginError
from selinon.storage import DataStorage

GROUP = "selinon.storages"
CORE_DISTRIBUTION = "selinon-core"

#: Classnames of first-party adapters, with the distribution that provides each.
FIRST_PARTY = {
    "PostgreSQL": "selinon-storage-postgresql",
    "SqlStorage": "selinon-storage-postgresql",
    "Redis": "selinon-storage-redis",
    "MongoDB": "selinon-storage-mongodb",
    "S3Storage": "selinon-storage-s3",
    "S3": "selinon-storage-s3",
}


class LegacyImportWarning(UserWarning):
    """A Selinon 1.x ``import: 'selinon.storages.x'`` line that is no longer needed."""


@dataclass
class StorageEntry:
    """One storage class offered by an installed distribution or a hook plugin."""

    classname: str
    value: str  # "module:Class"
    distribution: str | None = None
    version: str | None = None
    source: str = "entry point"
    requires_core: str | None = None
    _class: type[DataStorage] | None = field(default=None, repr=False)

    @property
    def incompatibility(self) -> str | None:
        """Why this entry cannot run with the installed core, or None."""
        if not self.requires_core:
            return None
        core = core_version()
        if in_range(core, self.requires_core):
            return None
        return (
            f"{self.distribution} {self.version} requires selinon-core{self.requires_core}, "
            f"but selinon-core {core} is installed; upgrade {self.distribution} or install a matching core"
        )

    def load(self) -> type[DataStorage]:
        """Import and check the class; PluginError says why it cannot be used."""
        if self._class is not None:
            return self._class
        origin = f"{self.classname} ({self.value}" + (f", from {self.distribution})" if self.distribution else ")")
        reason = self.incompatibility
        if reason:
            raise BrokenPluginError(f"storage {origin} is incompatible: {reason}", reason=reason)
        module_name, _, attr = self.value.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.partition(".")[0] != module_name:
                reason += f"; {self._install_hint(exc.name.partition('.')[0])}"
            raise BrokenPluginError(f"storage {origin} is broken: {reason}", reason=reason) from exc
        if not (isinstance(obj, type) and issubclass(obj, DataStorage)):
            reason = f"{self.value} is not a selinon.DataStorage subclass"
            raise BrokenPluginError(f"storage {origin} is broken: {reason}", reason=reason)
        self._class = obj
        return obj

    def _install_hint(self, module: str) -> str:
        """What to pip install for a module the adapter imports and cannot find: the requirement of its
        distribution that the module is named after (``boto3``, ``SQLAlchemy``, ``psycopg[binary]``...)."""
        if not self.distribution:
            return f"install the package that provides {module!r}"
        for line in installed.distribution(self.distribution).requires or ():
            match = _REQUIREMENT.fullmatch(line)
            if match and not match.group(4) and _normalise(match.group(1)) == _normalise(module):
                wanted = "".join(part or "" for part in match.group(1, 2)) + _ordered(match.group(3).strip())
                return f"{self.distribution} needs it: pip install '{wanted}'"
        return f"{self.distribution} does not declare it: install the package that provides {module!r}"


#: One comparison with a final release (``>=0.2``, ``<1``): what adapters declare of the core.
_PLAIN_CLAUSE = re.compile(r"\s*(>=|<=|<|>|==|!=)\s*([0-9]+(?:\.[0-9]+)*)\s*")
_ORDER = {
    ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b, ">": lambda a, b: a > b,
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
}  # fmt: skip


def in_range(version: str, specifiers: str) -> bool:
    """Whether ``version`` is in the range ``specifiers``, pre-releases included, by packaging's rules.

    For a final release against comparisons with final releases (``>=0.2,<1``), PEP 440's rules come down to the
    order of packaging's ``Version``: that case is decided with it, which spares every command and worker start the
    import of ``packaging.specifiers`` (about 25 ms). Every other range goes to packaging's ``SpecifierSet``.
    """
    from packaging.version import InvalidVersion, Version

    try:
        candidate = Version(version)
    except InvalidVersion:
        candidate = None
    clauses = [_PLAIN_CLAUSE.fullmatch(clause) for clause in specifiers.split(",")]
    if candidate is not None and not (candidate.is_prerelease or candidate.is_postrelease or candidate.local):
        plain = [match for match in clauses if match is not None]
        if len(plain) == len(clauses):
            return all(_ORDER[match[1]](candidate, Version(match[2])) for match in plain)
    from packaging.specifiers import SpecifierSet

    return SpecifierSet(specifiers).contains(version, prereleases=True)


def core_version() -> str:
    from selinon import __version__

    return __version__


_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*\(?([^;)]*)\)?\s*(?:;(.*))?")


def _requires_core(requirements: list[str] | None) -> str | None:
    """The ``selinon-core`` version range among a distribution's requirements, if any.

    A ``Requires-Dist`` line is a name, extras, a version range and a marker (PEP 508); only the range is wanted,
    and only from a line without an ``extra`` marker. Splitting it here spares every command the 40 ms that
    importing packaging's full requirement parser costs; the range itself is checked by packaging's SpecifierSet.
    """
    for line in requirements or ():
        match = _REQUIREMENT.fullmatch(line)
        if match is None or _normalise(match.group(1)) != CORE_DISTRIBUTION:
            continue
        if match.group(4) and "extra" in match.group(4):
            continue
        return _ordered(match.group(3).strip()) or None
    return None


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _ordered(specifiers: str) -> str:
    """A version range as people write it, lower bound first (metadata lists ``<1,>=0.1``)."""
    parts = [part.strip() for part in specifiers.split(",") if part.strip()]
    return ",".join(sorted(parts, key=lambda part: (not part.startswith(">"), part.startswith("<"))))


def _about(dist: Any) -> tuple[str, str, str | None]:
    """Name, version and ``selinon-core`` range of a distribution, from one read of its metadata (each property
    of a Distribution reads and parses the file again; start-up is in the benchmarks)."""
    fields = dist.metadata
    name, version = fields["Name"], fields["Version"]
    if name == CORE_DISTRIBUTION:
        return name, version, None
    return name, version, _requires_core(fields.get_all("Requires-Dist") or dist.requires)


_scanned: tuple[tuple[StorageEntry, ...], bool] | None = None


def _installed() -> tuple[tuple[StorageEntry, ...], bool]:
    """The entry points' storage classes, and whether any hook plugin is installed: one scan of the installed
    distributions per process (a scan costs 25-40 ms; a configuration may name thousands of storages)."""
    global _scanned
    if _scanned is None:
        everything = installed.entry_points()  # one scan for both groups
        about: dict[Any, tuple[str | None, str | None, str | None]] = {None: (None, None, None)}
        found = []
        for ep in everything.select(group=GROUP):
            if ep.dist not in about:
                about[ep.dist] = _about(ep.dist)
            distribution, version, requires_core = about[ep.dist]
            found.append(StorageEntry(ep.name, ep.value, distribution, version, requires_core=requires_core))
        _scanned = (tuple(found), bool(everything.select(group="selinon")))
    return _scanned


def rescan() -> None:
    """Forget what :func:`entries` found installed: after distributions were installed in a running process."""
    global _scanned
    _scanned = None


def entries() -> list[StorageEntry]:
    """Every storage class on offer: entry points first, then classes registered through the hook."""
    from_entry_points, hook_plugins_installed = _installed()
    found = list(from_entry_points)

    def register(cls: type[DataStorage] | str, name: str | None = None) -> None:
        if isinstance(cls, str):
            value, cls_obj = cls, None
            name = name or cls.rpartition(":")[2].rpartition(".")[2]
        else:
            value, cls_obj = f"{cls.__module__}:{cls.__qualname__}", cls
            name = name or cls.__name__
        found.append(StorageEntry(classname=name, value=value, source="hook", _class=cls_obj))

    if "selinon.plugins" not in sys.modules and not hook_plugins_installed:
        return found  # no hook plugin installed nor registered in code: spare every command pluggy's import
    from selinon import plugins

    for impl in plugins.implementations("register_storages"):
        before = len(found)
        name = plugins.name_of(impl.plugin)
        try:
            plugins.call(impl, {"register": register})  # one by one, so each registered class knows its plugin
        except Exception as exc:
            del found[before:]  # all or nothing of a plugin
            plugins.mark_broken(name, f"register_storages raised {type(exc).__name__}: {exc}")
            continue
        dist = plugins.plugin_distributions.get(name)
        for entry in found[before:]:
            entry.distribution, entry.version = dist or (None, None)
            if entry.distribution and entry.distribution != CORE_DISTRIBUTION:
                entry.requires_core = _requires_core(installed.distribution(entry.distribution).requires)
    return found


def find(classname: str) -> StorageEntry:
    """The one entry providing ``classname``; PluginError when none or several distributions do."""
    all_entries = entries()
    matches: dict[str, StorageEntry] = {}
    for entry in all_entries:
        if entry.classname == classname:
            matches.setdefault(entry.value, entry)
    if len(matches) == 1:
        return next(iter(matches.values()))
    if matches:
        claims = " and ".join(f"{e.distribution or 'a plugin'} ({e.value})" for e in matches.values())
        raise PluginError(
            f"classname {classname!r} is provided by both {claims}; uninstall one of them, or add "
            f"`import: <module>` to the storage entry to choose"
        )
    if classname in FIRST_PARTY:
        dist = FIRST_PARTY[classname]
        raise PluginError(f"no installed distribution provides classname {classname!r}; install it: pip install {dist}")
    import difflib

    present = sorted({e.classname for e in all_entries})
    by_lower = {name.lower(): name for name in [*FIRST_PARTY, *present]}  # installed ones win
    close = [by_lower[n] for n in difflib.get_close_matches(classname.lower(), list(by_lower), n=3, cutoff=0.75)]

    def named(name: str) -> str:
        return repr(name) if name in present else f"{name!r} (not installed: pip install {FIRST_PARTY[name]})"

    hint = (
        f"did you mean {' or '.join(named(c) for c in close)}?"
        if close
        else f"installed: {', '.join(present) or 'none'}"
    )
    raise PluginError(f"no installed distribution provides classname {classname!r}; {hint}")


def _module_hint(import_path: str) -> str:
    """How to make an ``import:`` module importable: the ``selinon`` script, unlike ``python -m``, does not look
    in the current directory."""
    top = import_path.partition(".")[0]
    if Path(f"{top}.py").is_file() or Path(top, "__init__.py").is_file():
        return (
            f"{top!r} is in the current directory, which the `selinon` command does not search: put it on the "
            "Python path (PYTHONPATH=. selinon ...), or install its package"
        )
    return "check `import:`, and install its package or put the directory holding it on the Python path (PYTHONPATH)"


_warned: set[str] = set()


def resolve(classname: str, import_path: str | None = None) -> type[DataStorage]:
    """The class for a YAML storage entry: an explicit ``import:`` wins, else the registry decides."""
    if not import_path:
        return find(classname).load()
    from selinon.storages.legacy import MODULES

    if import_path in MODULES:
        return _legacy(classname, import_path)
    try:
        module = importlib.import_module(import_path)
    except ModuleNotFoundError as exc:
        if exc.name != import_path and not import_path.startswith(f"{exc.name}."):
            # The module is there, but something it imports is not: a broken adapter, not a wrong line.
            raise BrokenPluginError(f"cannot import {import_path!r}: {exc}; install what it needs") from exc
        if not (import_path.startswith("selinon.storages.") and exc.name == import_path):
            raise PluginError(f"cannot import {import_path!r}: {exc}; {_module_hint(import_path)}") from exc
        return _legacy(classname, import_path)
    except Exception as exc:
        raise BrokenPluginError(f"cannot import {import_path!r}: {type(exc).__name__}: {exc}") from exc
    found = getattr(module, classname, None)
    if found is None:
        raise PluginError(f"module {import_path!r} has no class {classname!r}; check `classname:`")
    if not (isinstance(found, type) and issubclass(found, DataStorage)):
        raise PluginError(f"{import_path}.{classname} is not a selinon.DataStorage subclass")
    _check_core_range(found, import_path)
    return found


def _legacy(classname: str, import_path: str) -> type[DataStorage]:
    """A Selinon 1.x configuration naming an adapter module of 1.x's (now the adapter's own distribution): the
    classname is looked up like any other (an error names the ``pip install``), and a one-time warning says that
    the ``import:`` line can go."""
    cls = find(classname).load()
    if import_path not in _warned:
        _warned.add(import_path)
        warnings.warn(
            f"`import: {import_path}` is no longer needed: {classname} is found by its classname; "
            "remove the `import:` line",
            LegacyImportWarning,
            stacklevel=3,
        )
    return cls


def _check_core_range(cls: type[DataStorage], import_path: str) -> None:
    """A class named by ``import:`` gets the same check of its distribution's ``selinon-core`` range as one
    found by its classname: the distribution is the one whose entry points live in the class's top-level
    package (a module no distribution declares has no range to check)."""
    package = cls.__module__.partition(".")[0]
    for entry in _installed()[0]:
        if entry.value.partition(".")[0].partition(":")[0] == package and entry.incompatibility:
            raise BrokenPluginError(
                f"storage {cls.__name__} (import: {import_path}) is incompatible: {entry.incompatibility}"
            )
