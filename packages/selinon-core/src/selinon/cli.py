"""The ``selinon`` command line. Exit codes: 0 ok, 1 a check failed, 2 usage or configuration error."""

from __future__ import annotations

import importlib
import json
import sys
import warnings
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeVar

import click

from selinon import registry
from selinon.errors import BrokenPluginError, ConfigurationError, PluginError, SelinonError, StorageError

F = TypeVar("F", bound=Callable[..., Any])
EXIT_FAILED = 1
EXIT_USAGE = 2


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    for row in [headers, *rows]:
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip())


def _versions() -> dict[str, str]:
    found = {registry.CORE_DISTRIBUTION: registry.core_version()}
    for entry in registry.entries():
        if entry.distribution and entry.version:
            found.setdefault(entry.distribution, entry.version)
    return found


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        for distribution, version in _versions().items():
            click.echo(f"{distribution} {version}")
        ctx.exit()


class _Commands(click.Group):
    """The top-level group; commands kept in other modules are imported when run or listed in help, so that
    `selinon plugins list` on a worker does not pay for `selinon run` (start-up is in the benchmarks)."""

    lazy: ClassVar[dict[str, str]] = {
        "run": "selinon.cli_run:run",
        "results": "selinon.cli_run:results",
        "migrate": "selinon.cli_migrate:migrate",
        "plot": "selinon.cli_project:plot",
        "inspect": "selinon.cli_project:inspect",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            module, _, attr = self.lazy[name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the core's version and every installed adapter's, then exit.",
)
def cli() -> None:
    """Selinon: storages, their plugins and their configuration."""


@cli.command("version")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def version(as_json: bool) -> None:
    """Show the core's version and every installed adapter's."""
    versions = _versions()
    if as_json:
        _echo_json(versions)
    else:
        for distribution, number in versions.items():
            click.echo(f"{distribution} {number}")


# -- plugins -------------------------------------------------------------------------------------------------


@cli.group()
def plugins() -> None:
    """Installed storage adapters and hook plugins."""


def _entry_json(entry: registry.StorageEntry, status: str, reason: str | None = None) -> dict[str, Any]:
    return {
        "classname": entry.classname,
        "distribution": entry.distribution,
        "version": entry.version,
        "target": entry.value,
        "source": entry.source,
        "requires_core": entry.requires_core,
        "status": status,
        "reason": reason,
    }


def _hook_plugins(ok: str) -> list[dict[str, Any]]:
    """Every hook plugin, with ``ok`` as the status of a working one; none without importing pluggy when no
    plugin is installed (``registry.entries()`` loads them when there are any)."""
    if "selinon.plugins" not in sys.modules:
        return []
    from selinon.plugins import hook_plugins

    return [
        {
            "classname": None,  # the keys of a storage's record, so that a consumer may read every record alike
            "distribution": p.distribution,
            "version": p.version,
            "target": None,
            "source": "hook plugin",
            "requires_core": None,
            "status": "broken" if p.broken else ok,
            "reason": p.broken,
            "name": p.name,
            "hooks": p.hooks,
        }
        for p in hook_plugins()
    ]


def _report(records: list[dict[str, Any]], hooks: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        _echo_json(records + hooks)
        return

    def status(r: dict[str, Any]) -> str:
        return str(r["status"]) + (f": {r['reason']}" if r["reason"] else "")

    rows = [[r["classname"], r["distribution"] or "-", r["version"] or "-", r["target"], status(r)] for r in records]
    _table(["CLASSNAME", "DISTRIBUTION", "VERSION", "TARGET", "STATUS"], rows)
    if hooks:
        click.echo()
        rows = [
            [h["name"], h["distribution"] or "-", h["version"] or "-", ",".join(h["hooks"]) or "-", status(h)]
            for h in hooks
        ]
        _table(["HOOK PLUGIN", "DISTRIBUTION", "VERSION", "HOOKS", "STATUS"], rows)


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_list(as_json: bool) -> None:
    """List every storage classname on offer, without importing any adapter, and every hook plugin."""
    records = []
    for entry in registry.entries():
        reason = entry.incompatibility
        records.append(_entry_json(entry, "incompatible" if reason else "installed", reason))
    _report(records, _hook_plugins("installed"), as_json)


@plugins.command("check")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_check(as_json: bool) -> None:
    """Import every adapter and report it as ok or broken; exit 1 if any adapter or hook plugin is broken."""
    records = []
    for entry in registry.entries():
        try:
            entry.load()
        except PluginError as exc:
            records.append(_entry_json(entry, "incompatible" if entry.incompatibility else "broken", exc.reason))
        else:
            records.append(_entry_json(entry, "ok"))
    hooks = _hook_plugins("ok")
    _report(records, hooks, as_json)
    if any(r["status"] != "ok" for r in records + hooks):
        sys.exit(EXIT_FAILED)


def _plain(docstring: str) -> str:
    """reStructuredText markup as a terminal shows it: ``code`` and :role:`target` as `code` and `target`."""
    import re

    return re.sub(r"(?::[\w:.-]+:)?`{1,2}([^`]+)`{1,2}", r"`\1`", docstring)


@plugins.command("show")
@click.argument("classname")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_show(classname: str, as_json: bool) -> None:
    """Show one adapter: where it comes from and its configuration options with defaults."""
    import inspect

    from selinon.secrets import is_secret_option

    entry = registry.find(classname)
    cls = entry.load()
    options = []
    for parameter in inspect.signature(cls).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        required = parameter.default is parameter.empty
        options.append(
            {
                "name": parameter.name,
                "required": required,
                "default": None if required else cls.option_defaults.get(parameter.name, parameter.default),
                "secret": is_secret_option(parameter.name, cls.secret_options),
            }
        )
    summary = _plain((inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " "))
    details = {**_entry_json(entry, "ok"), "summary": summary, "thread_safe": cls.thread_safe, "options": options}
    if as_json:
        _echo_json(details)
        return
    for key in ("classname", "summary", "distribution", "version", "target", "requires_core", "thread_safe"):
        click.echo(f"{key + ':':15}{details[key] if details[key] is not None else '-'}")
    click.echo("options:")
    if not options:
        click.echo("  (none)")
    for option in options:
        default = "required" if option["required"] else f"default {option['default']!r}"
        click.echo(f"  {option['name']}: {default}" + (" (secret)" if option["secret"] else ""))


@plugins.command("new")
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where to create the project folder.",
)
@click.option("--classname", help="The adapter's class name (default: from NAME, such as 'AcmeDb' for 'acme-db').")
def plugins_new(name: str, directory: str, classname: str | None) -> None:
    """Create a ready-to-publish adapter project for backend NAME (such as 'acme')."""
    from pathlib import Path

    from selinon import scaffold

    target = scaffold.create(name, Path(directory), classname)
    values = scaffold.names(name, classname)
    click.echo(f"created {target}")
    click.echo(
        f"  classname {values['classname']} in {values['package']}; next: pip install -e {target} pytest "
        f"&& pytest {target}"
    )


# -- storages ------------------------------------------------------------------------------------------------


@cli.group()
def storages() -> None:
    """Configured storages."""


def config_option(what: str = "A nodes.yaml") -> Callable[[F], F]:
    """The ``-c/--config`` option every command that reads configuration files takes."""
    return click.option(
        "-c", "--config", "files", multiple=True, required=True, type=click.Path(dir_okay=False),
        help=f"{what}; repeat for several files.",
    )  # fmt: skip


@storages.command("check")
@config_option()
@click.option("--storage", "names", multiple=True, help="Check only this storage; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def storages_check(files: tuple[str, ...], names: tuple[str, ...], as_json: bool) -> None:
    """Connect to every configured storage and round-trip a probe record; exit 1 if any fails."""
    from selinon import config as config_module
    from selinon.pool import instantiate

    configuration = config_module.load(files)
    for name in names:
        if name not in configuration.storages:
            known = ", ".join(configuration.storages) or "none"
            raise ConfigurationError(f"{', '.join(files)}: no storage named {name!r}; configured: {known}")
    chosen = [configuration.storages[n] for n in names] if names else list(configuration.storages.values())
    broken = {}
    for storage in chosen:
        try:
            registry.resolve(storage.classname, storage.import_path)
        except BrokenPluginError as exc:  # as `plugins check` reports it: a failed check, exit 1
            broken[storage.name] = str(exc)
        except PluginError:
            pass  # a wrong classname or `import:` line: instantiate() says so, as a configuration error
    built = {s.name: instantiate(s) for s in chosen if s.name not in broken}  # configuration errors first: exit 2
    results = [
        _row(s, "broken", broken[s.name])
        if s.name in broken
        else _probe(s, built[s.name].adapter, built[s.name].secrets)
        for s in chosen
    ]
    if as_json:
        _echo_json(results)
    else:
        _table(
            ["STORAGE", "CLASSNAME", "STATUS", "MS", "DETAIL"],
            [[r["storage"], r["classname"], r["status"], f"{r['ms']:.1f}", r["detail"] or ""] for r in results],
        )
    if any(r["status"] != "ok" for r in results):
        sys.exit(EXIT_FAILED)


def _probe(storage: Any, adapter: Any, known_secrets: Iterable[str]) -> dict[str, Any]:
    """Connect, then store, read back and delete a probe record. The check leaves nothing behind: an adapter that
    cannot delete gets no probe record, and a Filesystem directory that connecting created is removed again."""
    import time
    import uuid

    from selinon.secrets import scrub
    from selinon.storage import DataStorage
    from selinon.storages.filesystem import Filesystem

    task_id = f"selinon-check-{uuid.uuid4()}"
    probe = {"probe": task_id, "text": "Selinon ✓", "numbers": [1, 2.5, None]}
    created = _missing_directories(adapter.path) if isinstance(adapter, Filesystem) else []
    step = "connect"
    start = time.perf_counter()
    detail = None
    try:
        adapter.connect()
        if type(adapter).delete is DataStorage.delete:
            detail = f"connected; no probe record written, since {type(adapter).__name__} cannot delete it"
        else:
            step = "store"
            adapter.store({"check": True}, "selinonCheck", "selinonCheck", task_id, probe)
            step = "retrieve"
            if adapter.retrieve("selinonCheck", "selinonCheck", task_id) != probe:
                raise SelinonError("the probe record read back differs from the one stored")
            step = "delete"
            adapter.delete("selinonCheck", "selinonCheck", task_id)
        status = "ok"
    except Exception as exc:
        status, detail = "failed", scrub(f"{step}: {type(exc).__name__}: {exc}", known_secrets)
    finally:
        try:
            adapter.disconnect()
        except Exception:
            pass
        for directory in created:  # deepest first; one that holds anything stays
            try:
                directory.rmdir()
            except OSError:
                break
    return _row(storage, status, detail, (time.perf_counter() - start) * 1000)


def _row(storage: Any, status: str, detail: str | None, ms: float = 0.0) -> dict[str, Any]:
    return {"storage": storage.name, "classname": storage.classname, "status": status, "ms": ms, "detail": detail}


def _missing_directories(path: Any) -> list[Any]:
    """The directories of ``path`` (itself and its parents) that do not exist yet, deepest first."""
    missing = []
    for directory in [path, *path.parents]:
        if directory.exists():
            break
        missing.append(directory)
    return missing


# -- entry point ---------------------------------------------------------------------------------------------


def _show_warning(message: Warning | str, category: type[Warning], *_args: Any, **_kwargs: Any) -> None:
    click.echo(f"selinon: warning: {message}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Run the command line; errors end as one line on standard error, never a traceback."""
    warnings.showwarning = _show_warning
    try:
        cli.main(args=argv, prog_name="selinon", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("selinon: aborted", err=True)
        sys.exit(EXIT_USAGE)
    except click.UsageError as exc:
        hint = f"; see '{exc.ctx.command_path} --help'" if exc.ctx else ""
        click.echo(f"selinon: error: {exc.format_message().rstrip('.')}{hint}", err=True)
        sys.exit(EXIT_USAGE)
    except SelinonError as exc:
        click.echo(f"selinon: error: {exc}", err=True)
        # A storage that could not do its work (down, refusing the password) is a failure, not a usage error.
        sys.exit(EXIT_FAILED if isinstance(exc, StorageError) else EXIT_USAGE)
