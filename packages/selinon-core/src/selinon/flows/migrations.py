"""Flow migrations (``global: migration_dir``): changing a flow's edges while runs of it are in flight.

A dispatcher's state names edges by their index in its flow's ``edges:``, and Celery carries that state in its
messages, so a run started under one configuration may be continued by a worker that has another. A migration file
(``N.json``, one per change, numbered from 1; the migration version of a deployment is its highest number, 0 without
any) says, per changed flow, how the old indexes map to the new ones (``translation``: ``null`` for an edge that is
gone), which old edges are gone (``tainted_edges``) and which new edges start from nodes (``tainting_nodes``).

A run is *tainted* when it went where the new configuration would not go: it fired an edge that is gone, or the
parents of a new edge had all finished before the change (the new edge can no longer fire for them). The file's
``tainted_flow_strategy`` decides what then happens: ``IGNORE`` (go on), ``RETRY`` (start the flow again under the new
configuration, nothing of the old run reused) or ``FAIL``. Of chained migrations that taint a run, the strongest
strategy applies. Fallbacks are not edges: they follow the configuration in force, with or without migrations.

The format is Selinon 1.x's (``selinon-cli migrate`` wrote it, and users keep the files in their repositories);
:func:`compute` and :func:`write` make the same files for ``selinon migrate``.
"""

from __future__ import annotations

import copy
import datetime
import getpass
import json
import os
import platform
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selinon.errors import ConfigurationError, MigrationSkew

if TYPE_CHECKING:
    from selinon.flows.graph import Flow

#: Tainted-flow strategies, weakest first: of chained migrations that taint a run, the last one listed here wins.
STRATEGIES = ("IGNORE", "RETRY", "FAIL")
DEFAULT_STRATEGY = "IGNORE"
FILE_KEYS = ("migration", "tainted_flow_strategy", "_meta")
FLOW_KEYS = ("translation", "tainted_edges", "tainting_nodes")
_FILE_NAME = re.compile(r"([0-9]+)\.json\Z")
_INDEX = re.compile(r"(0|[1-9][0-9]*)\Z")


class MigrationError(ConfigurationError):
    """A migration does not fit the state it is applied to: it was written for other configurations."""


class MigrationWarning(UserWarning):
    """The latest migration does not lead to the configuration in force (see :func:`check_latest`)."""


@dataclass(frozen=True)
class FlowChange:
    """What one migration changes in one flow."""

    #: Old edge index -> new index, or None for an edge that is gone; an index not listed is unchanged.
    translation: Mapping[int, int | None]
    #: Old edges that are gone (a run that fired one is tainted), as the file describes them.
    tainted_edges: Mapping[int, Any]
    #: New edge index -> the nodes it starts from (a run in which they had all finished is tainted).
    tainting_nodes: Mapping[int, frozenset[str]]


@dataclass(frozen=True)
class Migration:
    version: int
    path: str
    strategy: str
    flows: Mapping[str, FlowChange]


@dataclass(frozen=True)
class Migrations:
    """The migrations of a deployment, numbered 1 to :attr:`version` without gaps (none: version 0)."""

    directory: str | None = None
    files: tuple[Migration, ...] = ()

    @property
    def version(self) -> int:
        return len(self.files)

    def since(self, version: int) -> tuple[Migration, ...]:
        """The migrations a state at ``version`` needs, in order."""
        return self.files[version:]


@dataclass
class Taint:
    """Why one migration found a run tainted, and that migration's strategy."""

    version: int
    strategy: str
    reason: str


@dataclass
class Migrated:
    """A state brought to the latest migration (``data``), and what tainted it on the way."""

    data: dict[str, Any]
    taints: list[Taint] = field(default_factory=list)

    @property
    def strategy(self) -> str | None:
        """The strongest strategy of the migrations that tainted the run; None when none did."""
        if not self.taints:
            return None
        return max((taint.strategy for taint in self.taints), key=STRATEGIES.index)


# -- reading ---------------------------------------------------------------------------------------------------


def read_directory(directory: str, where: str) -> Migrations:
    """Read and check every migration file of ``directory`` (``where``: the YAML key that names it, for errors).

    As in Selinon 1.x, files whose name does not end in ``.json`` and hidden files are not migrations; a ``.json``
    file whose name is not a number is an error, as is a gap in the numbers.
    """
    path = Path(directory)
    if not path.is_dir():
        raise ConfigurationError(
            f"{where}: {directory!r} is not a directory (relative paths start at the working directory, "
            f"{os.getcwd()}); create it (`selinon migrate` writes its files there) or fix the path"
        )
    numbered: dict[int, Path] = {}
    for entry in sorted(path.iterdir()):
        if entry.name.startswith(".") or not entry.name.endswith(".json") or not entry.is_file():
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise ConfigurationError(
                f"{entry}: a migration file is named by its version number, such as 1.json; rename it or move it "
                "out of the migration directory"
            )
        version = int(match.group(1))
        if version == 0:
            raise ConfigurationError(f"{entry}: migrations are numbered from 1; rename it")
        if version in numbered:
            raise ConfigurationError(f"{entry}: {numbered[version].name} has the same version; keep one of them")
        numbered[version] = entry
    for expected, version in enumerate(sorted(numbered), 1):
        if version != expected:
            raise ConfigurationError(
                f"{directory}: migration {expected}.json is missing (found up to {max(numbered)}.json); migrations "
                "are numbered from 1 without gaps: restore it"
            )
    return Migrations(directory, tuple(read_file(numbered[v], v) for v in sorted(numbered)))


def read_file(path: Path, version: int) -> Migration:
    """One migration file, checked: every key and index of it."""
    where = str(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"{where}: cannot read the migration file: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigurationError(
            f"{where}: a migration file is a JSON object with `migration` and `tainted_flow_strategy`"
        )
    for key in document:
        if key not in FILE_KEYS:
            raise ConfigurationError(f"{where}: unknown key {key!r}; a migration file has {', '.join(FILE_KEYS)}")
    for key in FILE_KEYS[:2]:
        if key not in document:
            raise ConfigurationError(f"{where}: `{key}` is missing; write migration files with `selinon migrate`")
    strategy = document["tainted_flow_strategy"]
    if not isinstance(strategy, str) or strategy.upper() not in STRATEGIES:
        raise ConfigurationError(
            f"{where}: `tainted_flow_strategy` must be one of {', '.join(STRATEGIES)}, not {strategy!r}"
        )
    flows = document["migration"]
    if not isinstance(flows, dict):
        raise ConfigurationError(f"{where}: `migration` must map flow names to their changes")
    return Migration(
        version,
        where,
        strategy.upper(),
        {name: _flow_change(change, f"{where}: flow {name!r}") for name, change in flows.items()},
    )


def _flow_change(raw: Any, where: str) -> FlowChange:
    if not isinstance(raw, dict) or set(raw) != set(FLOW_KEYS):
        raise ConfigurationError(f"{where}: must be an object with exactly {', '.join(FLOW_KEYS)}")
    translation: dict[int, int | None] = {}
    for key, value in _indexed(raw["translation"], f"{where}: translation"):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ConfigurationError(
                f"{where}: translation: edge {key} maps to {value!r}, not to an edge index or null"
            )
        translation[key] = value
    tainted = dict(_indexed(raw["tainted_edges"], f"{where}: tainted_edges"))
    tainting: dict[int, frozenset[str]] = {}
    for key, value in _indexed(raw["tainting_nodes"], f"{where}: tainting_nodes"):
        if not isinstance(value, list) or not value or not all(isinstance(n, str) and n for n in value):
            raise ConfigurationError(f"{where}: tainting_nodes: edge {key} must list the node names it starts from")
        tainting[key] = frozenset(value)
    return FlowChange(translation, tainted, tainting)


def _indexed(raw: Any, where: str) -> Iterable[tuple[int, Any]]:
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where}: must be an object whose keys are edge indexes")
    for key, value in raw.items():
        if not isinstance(key, str) or not _INDEX.match(key):
            raise ConfigurationError(f'{where}: key {key!r} is not an edge index such as "0"')
        yield int(key), value


def check_latest(migrations: Migrations, flows: Mapping[str, Flow]) -> list[str]:
    """What in the latest migration does not lead to the configuration in force: new indexes that are not edges of
    it, new edges that do not start from the nodes it says. (A flow it names that is gone since is fine.)

    A warning, not an error: Selinon 1.x did not check, and projects changed flows after their latest migration
    (with no run in flight); a state of an earlier migration that the mismatch concerns fails its run when it comes.
    """
    if not migrations.files:
        return []
    latest = migrations.files[-1]
    fix = "its edges changed after this migration was written: write a migration for that change (`selinon migrate`)"
    problems = []
    for name, change in latest.flows.items():
        flow = flows.get(name)
        if flow is None:
            continue
        count = len(flow.edges)
        for old, new in change.translation.items():
            if new is not None and new >= count:
                problems.append(
                    f"{latest.path}: flow {name!r}: edge {old} becomes edge {new}, but it has {count} edges; {fix}"
                )
        for new, names in change.tainting_nodes.items():
            if new >= count or set(flow.edges[new].from_) != names:
                problems.append(
                    f"{latest.path}: flow {name!r}: edges[{new}] is said to start from {', '.join(sorted(names))}, "
                    f"but {'the flow has no such edge' if new >= count else 'it does not'}; {fix}"
                )
    return problems


# -- applying --------------------------------------------------------------------------------------------------


def version_of(data: Mapping[str, Any] | None, selective: Mapping[str, Any] | None, current: int) -> int:
    """The migration a dispatcher state is at: its own record; a state not started yet is at the deployment's, or
    its selective run's (computed where it started); a state written before migrations existed is at 0."""
    if data:
        return int(data.get("migration_version", 0))
    if selective is not None:
        return int(selective.get("migration_version", 0))
    return current


def skew(what: str, version: int, migrations: Migrations) -> MigrationSkew:
    return MigrationSkew(
        f"{what} is at migration {version}, but this worker has migrations up to {migrations.version} "
        f"({migrations.directory or 'no migration_dir'}): a worker with the newer configuration must continue it",
        available_migration_version=migrations.version,
    )


def migrate_state(migrations: Migrations, flow: Flow, data: dict[str, Any], since: int) -> Migrated:
    """``data`` (a :meth:`FlowState.dump`) from migration ``since`` to the latest: edge indexes renumbered, edges
    that are gone forgotten, and what taints the run collected. ``data`` itself is not changed."""
    data = copy.deepcopy(data)
    taints: list[Taint] = []
    fired = [(int(i), tuple(ids)) for i, ids in data.get("fired", [])]
    pending = [(int(i), tuple(ids)) for i, ids in data.get("pending", [])]
    # Edges whose condition held; a state written before this was recorded counts every edge it evaluated.
    triggered = {int(i) for i in data["triggered"]} if "triggered" in data else {i for i, _ in fired}
    finished = {name for name, ids in data.get("finished", {}).items() if ids}
    for migration in migrations.since(since):
        change = migration.flows.get(flow.name)
        if change is None:
            continue
        for index in sorted(triggered & set(change.tainted_edges)):
            edge = change.tainted_edges[index]
            shown = _edge_text(edge) if isinstance(edge, dict) else f"edges[{index}]"
            taints.append(
                Taint(
                    migration.version,
                    migration.strategy,
                    f"it fired {shown}, which migration {migration.version} removes",
                )
            )
        for index, names in sorted(change.tainting_nodes.items()):
            if names <= finished:
                taints.append(
                    Taint(
                        migration.version,
                        migration.strategy,
                        f"migration {migration.version} adds edges[{index}] from {', '.join(sorted(names))}, which had "
                        "already finished",
                    )
                )
        fired = _renumbered(fired, change.translation)
        pending = _renumbered(pending, change.translation)
        triggered = {i for i in (_new_index(i, change.translation) for i in triggered) if i is not None}
    by_id = {node["id"]: node["name"] for node in data.get("nodes", [])}
    data["fired"] = [[i, list(ids)] for i, ids in sorted({_parents_in_order(flow, i, ids, by_id) for i, ids in fired})]
    data["pending"] = [[i, list(ids)] for i, ids in (_parents_in_order(flow, i, ids, by_id) for i, ids in pending)]
    data["triggered"] = sorted(triggered)
    data["migration_version"] = migrations.version
    return Migrated(data, taints)


def migrate_selective(migrations: Migrations, selective: dict[str, Any], since: int) -> dict[str, Any]:
    """A selective run's edges (per flow, edge index -> nodes to start) renumbered up to the latest migration."""
    selective = copy.deepcopy(selective)
    for migration in migrations.since(since):
        for flow_name, edges in selective.get("edges", {}).items():
            change = migration.flows.get(flow_name)
            if change is not None:
                renumbered = ((_new_index(int(i), change.translation), nodes) for i, nodes in edges.items())
                selective["edges"][flow_name] = {str(i): nodes for i, nodes in renumbered if i is not None}
    selective["migration_version"] = migrations.version
    return selective


def _new_index(index: int, translation: Mapping[int, int | None]) -> int | None:
    return translation.get(index, index)


def _renumbered(
    firings: list[tuple[int, tuple[str, ...]]], translation: Mapping[int, int | None]
) -> list[tuple[int, tuple[str, ...]]]:
    found = []
    for index, ids in firings:
        new = _new_index(index, translation)
        if new is not None:
            found.append((new, ids))
    return found


def _parents_in_order(
    flow: Flow, index: int, ids: tuple[str, ...], names: Mapping[str, str]
) -> tuple[int, tuple[str, ...]]:
    """A firing's parent ids in the order of the edge's ``from:`` in force (an edge keeps its parents when it is
    renumbered, not necessarily their order); a firing that does not fit its edge means a wrong migration."""
    if index >= len(flow.edges):
        raise MigrationError(
            f"flow {flow.name!r}: a migration leads to edges[{index}], but the flow has {len(flow.edges)} edges"
        )
    by_name = {names.get(node_id, "?"): node_id for node_id in ids}
    wanted = flow.edges[index].from_
    if set(by_name) != set(wanted) or len(by_name) != len(ids):
        raise MigrationError(
            f"flow {flow.name!r}: a migration leads the firing of {', '.join(sorted(by_name)) or 'the start'} to "
            f"edges[{index}], which starts from {', '.join(wanted) or 'nothing'}"
        )
    return index, tuple(by_name[name] for name in wanted)


def _edge_text(edge: Mapping[str, Any]) -> str:
    def names(value: Any) -> str:
        return ", ".join(map(str, value)) if isinstance(value, list) else str(value)

    return f"the edge from [{names(edge.get('from', []))}] to [{names(edge.get('to', []))}]"


# -- writing ---------------------------------------------------------------------------------------------------


def flow_edges(documents: Iterable[tuple[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each flow's edges as the YAML writes them (``flow-definitions:`` of every file), for :func:`compute`."""
    found: dict[str, list[dict[str, Any]]] = {}
    for _source, document in documents:
        if not isinstance(document, dict):
            continue
        for entry in document.get("flow-definitions") or []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                found[entry["name"]] = [edge for edge in entry.get("edges") or [] if isinstance(edge, dict)]
    return found


def compute(old: Mapping[str, list[dict[str, Any]]], new: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The ``migration`` section between two configurations' edges (:func:`flow_edges`), for flows in both.

    An edge keeps its identity when its ``from:`` and ``to:`` stay the same (its condition may change: conditions do
    not shape the graph); it may move. Any other change is an edge gone plus an edge added. A flow is listed when it
    changed (Selinon 1.x left out a first changed flow whose edges were only renumbered: a run then fired the
    wrong edges).
    """
    changes: dict[str, Any] = {}
    for name in sorted(set(old) & set(new)):
        old_edges = [_shape(edge) for edge in old[name]]
        new_edges = [_shape(edge) for edge in new[name]]
        matched: dict[int, int] = {}
        taken: set[int] = set()
        for old_index, edge in enumerate(old_edges):
            for new_index, candidate in enumerate(new_edges):
                if new_index not in taken and candidate == edge:
                    matched[old_index] = new_index
                    taken.add(new_index)
                    break
        translation = {str(i): matched.get(i) for i in range(len(old_edges)) if matched.get(i) != i}
        tainted_edges = {
            str(i): {
                "from": sorted(old_edges[i][0]),
                "to": list(old_edges[i][1]),
                "condition_str": old[name][i].get("condition") or {"name": "alwaysTrue"},
            }
            for i in range(len(old_edges))
            if i not in matched
        }
        tainting_nodes = {
            str(i): sorted(new_edges[i][0]) for i in range(len(new_edges)) if i not in taken and new_edges[i][0]
        }
        if translation or tainted_edges or tainting_nodes:
            changes[name] = {
                "translation": translation,
                "tainted_edges": tainted_edges,
                "tainting_nodes": tainting_nodes,
            }
    return changes


def _shape(edge: Mapping[str, Any]) -> tuple[frozenset[str], tuple[str, ...]]:
    """What makes an edge the same edge: the set of its parents and what it starts (a node listed twice in
    ``to:`` starts twice)."""

    def names(value: Any) -> list[str]:
        if value is None:
            return []
        return [value] if isinstance(value, str) else [str(v) for v in value]

    return frozenset(names(edge.get("from"))), tuple(sorted(names(edge.get("to"))))


def write(directory: str, changes: dict[str, Any], strategy: str, meta: bool = True) -> Path:
    """Write ``changes`` as the next migration file of ``directory`` (created if missing); its path."""
    from selinon import __version__

    if strategy.upper() not in STRATEGIES:
        raise ConfigurationError(f"tainted flow strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    existing = read_directory(directory, f"migration directory {directory!r}")
    content: dict[str, Any] = {"migration": changes, "tainted_flow_strategy": strategy.upper()}
    if meta:
        content["_meta"] = {
            "selinon_version": __version__,
            "host": platform.node(),
            "datetime": str(datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)),
            "user": _user(),
        }
    target = path / f"{existing.version + 1}.json"
    target.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return target


def same_as_latest(directory: str, changes: dict[str, Any]) -> bool:
    """Whether ``changes`` repeat the directory's latest migration (applying one twice breaks runs)."""
    path = Path(directory)
    if not path.is_dir():
        return False
    existing = read_directory(directory, f"migration directory {directory!r}")
    if not existing.files:
        return False
    latest = json.loads(Path(existing.files[-1].path).read_text(encoding="utf-8"))["migration"]
    return bool(_essential(latest) == _essential(changes))


def _essential(changes: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: (
            change["translation"],
            sorted(change["tainted_edges"]),
            {k: sorted(v) for k, v in change["tainting_nodes"].items()},
        )
        for name, change in changes.items()
        if change["translation"] or change["tainted_edges"] or change["tainting_nodes"]
    }


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (a container without one)
        return None
