"""``selinon migrate``: write the migration file for a change of flows (Selinon 1.x's ``selinon-cli migrate``).

The file lets dispatchers of runs started under the old configuration go on under the new one
(``selinon.flows.migrations``); it goes into ``global: migration_dir`` of the new configuration, as the next number.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from selinon.cli import config_option
from selinon.errors import ConfigurationError


@click.command("migrate")
@config_option("The configuration after the change: a nodes.yaml or flows file")
@click.option(
    "--old-config", "old_files", multiple=True, type=click.Path(dir_okay=False),
    help="The configuration before the change: a nodes.yaml or flows file; repeat for several files.",
)  # fmt: skip
@click.option("--git", "use_git", is_flag=True, help="Take the configuration before the change from git's HEAD.")
@click.option(
    "-m", "--migration-dir", type=click.Path(file_okay=False),
    help="Where migration files go (default: `global: migration_dir` of the configuration after the change).",
)  # fmt: skip
@click.option(
    "-t", "--tainted-flows", type=click.Choice(["IGNORE", "RETRY", "FAIL"], case_sensitive=False), default="IGNORE",
    show_default=True, help="What happens to a run the change taints: it goes on, starts again, or fails.",
)  # fmt: skip
@click.option("--no-meta", is_flag=True, help="Leave out of the file who wrote it, on which host and when.")
@click.option("--no-check", is_flag=True, help="Do not load and validate both configurations first.")
def migrate(
    files: tuple[str, ...],
    old_files: tuple[str, ...],
    use_git: bool,
    migration_dir: str | None,
    tainted_flows: str,
    no_meta: bool,
    no_check: bool,
) -> None:
    """Write the next migration file for the change from the old configuration to the new one (-c).

    Only edges matter: an edge that keeps its `from:` and `to:` keeps its identity, even when it moves or its
    condition changes. Nothing is written when no edge changed.
    """
    from selinon import config as config_module
    from selinon.flows import migrations

    if bool(old_files) == use_git:
        raise click.UsageError("give the configuration before the change: --old-config FILE ... or --git")
    with tempfile.TemporaryDirectory(prefix="selinon-migrate-") as scratch:
        old = _from_git(files, Path(scratch)) if use_git else list(old_files)
        before = "the configuration at git HEAD" if use_git else "the old configuration"
        if not no_check:
            _check(files, "the new configuration")
            _check(old, before)
        new_documents = config_module.read_documents(files)
        old_documents = config_module.read_documents(old)
    directory = migration_dir or _migration_dir(new_documents)
    if directory is None:
        raise ConfigurationError(
            f"{', '.join(files)}: no migration directory: set `global: migration_dir` or pass --migration-dir"
        )
    previous = _migration_dir(old_documents)
    if previous is not None and previous != directory:
        click.echo(
            f"selinon: warning: {before} keeps its migrations in {previous!r}, the new one in {directory!r}: move the "
            "earlier migration files there",
            err=True,
        )
    old_edges, new_edges = migrations.flow_edges(old_documents), migrations.flow_edges(new_documents)
    for name in sorted(set(new_edges) - set(old_edges)):
        click.echo(f"flow {name}: new (no run of it can be in flight)")
    for name in sorted(set(old_edges) - set(new_edges)):
        click.echo(f"flow {name}: removed (a run of it in flight cannot go on)")
    changes = migrations.compute(old_edges, new_edges)
    if not changes:
        click.echo("no edge changed: no migration is needed, nothing written")
        return
    if migrations.same_as_latest(directory, changes):
        click.echo(
            "selinon: warning: this migration repeats the latest one; if that one was for this change already, "
            "delete the new file (a run migrated twice goes wrong)",
            err=True,
        )
    path = migrations.write(directory, changes, tainted_flows, meta=not no_meta)
    for name, change in changes.items():
        click.echo(f"flow {name}: {_summary(change)}")
    click.echo(f"wrote {path} (tainted flows: {tainted_flows.upper()})")


def _check(files: list[str] | tuple[str, ...], what: str) -> None:
    from selinon import flows

    for directory in dict.fromkeys(str(Path(f).resolve().parent) for f in files):
        if directory not in sys.path:
            sys.path.insert(0, directory)
    try:
        flows.load(files, read_migrations=False)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{what}: {exc}") from None


def _from_git(files: tuple[str, ...], scratch: Path) -> list[str]:
    """Each file as committed at HEAD of its repository, copied into ``scratch`` (same names, one folder each)."""
    copies = []
    for number, name in enumerate(files):
        path = Path(name).resolve()
        done = subprocess.run(
            ["git", "-C", str(path.parent), "show", f"HEAD:./{path.name}"], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
            raise ConfigurationError(f"{name}: cannot read it from git's HEAD ({reason}); give --old-config instead")
        copy = scratch / str(number) / path.name
        copy.parent.mkdir()
        copy.write_text(done.stdout, encoding="utf-8")
        copies.append(str(copy))
    return copies


def _migration_dir(documents: list[tuple[str, Any]]) -> str | None:
    for _source, document in documents:
        if isinstance(document, dict) and isinstance(document.get("global"), dict):
            value = document["global"].get("migration_dir")
            if isinstance(value, str) and value:
                return value
    return None


def _summary(change: dict[str, Any]) -> str:
    moved = sum(1 for new in change["translation"].values() if new is not None)
    parts = [
        f"{moved} edge(s) renumbered" if moved else "",
        f"{len(change['tainted_edges'])} gone" if change["tainted_edges"] else "",
        f"{len(change['tainting_nodes'])} new with parents" if change["tainting_nodes"] else "",
    ]
    return ", ".join(part for part in parts if part) or "new starting edges only"
