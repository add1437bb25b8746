"""``selinon plot`` and ``selinon inspect``: a whole project read, drawn and checked, with nothing connected.

Exit codes as for every command: 0 ok, 1 ``inspect`` found problems, 2 usage or configuration error.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click

from selinon.cli import EXIT_FAILED, _table, config_option

CONFIG = config_option("A nodes.yaml or flows file")


def on_python_path(files: tuple[str, ...]) -> None:
    """Put the directory of each configuration file on the Python path, as `selinon run` does, so that
    `import:` lines (tasks, predicates, foreach functions) may name modules beside the YAML."""
    for directory in dict.fromkeys(str(Path(f).resolve().parent) for f in files):
        if directory not in sys.path:
            sys.path.insert(0, directory)


def _file_name(flow: str) -> str:
    return re.sub(r"[^\w.-]", "_", flow).lstrip(".") or "_"


@click.command("plot")
@CONFIG
@click.argument("flow_names", metavar="[FLOW]...", nargs=-1)
@click.option(
    "-o",
    "--output-dir",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where to write one file per flow.",
)
@click.option(
    "--format",
    "image_format",
    type=click.Choice(["svg", "png", "dot", "mermaid"]),
    default="svg",
    show_default=True,
    help="svg and png need the plot extra and Graphviz's dot; dot and mermaid are text.",
)
@click.option(
    "--direction",
    type=click.Choice(["TB", "LR"]),
    default="TB",
    show_default=True,
    help="Top to bottom, or left to right.",
)
@click.option("--no-legend", is_flag=True, help="Leave out the legend of shapes and line styles.")
def plot(
    files: tuple[str, ...],
    flow_names: tuple[str, ...],
    output_dir: str,
    image_format: str,
    direction: str,
    no_legend: bool,
) -> None:
    """Draw every flow (or the FLOWs named) as a graph: one file per flow in the output directory.

    Tasks are rounded boxes, sub-flows 3-D boxes; edge labels are conditions, foreach functions and selective
    runs; failures and their fallbacks are dashed red lines. Without the graphviz package or Graphviz's dot,
    svg and png fall back to DOT text.
    """
    from selinon import flows
    from selinon.flows import plot as drawing

    on_python_path(files)
    system = flows.load(files)
    chosen = [system.flow(name) for name in dict.fromkeys(flow_names)] or list(system.flows.values())
    target = Path(output_dir)
    target.mkdir(parents=True, exist_ok=True)
    fallback = None
    for flow in chosen:
        picture = drawing.drawing(system, flow)
        content: str | bytes
        extension = drawing.EXTENSIONS[image_format]
        if image_format == "mermaid":
            content = drawing.mermaid_source(picture, direction)
        elif image_format == "dot":
            content = drawing.dot_source(picture, direction, legend=not no_legend)
        else:
            try:
                content = drawing.render(picture, image_format, direction, legend=not no_legend)
            except drawing.CannotRender as exc:
                fallback = str(exc)
                content, extension = drawing.dot_source(picture, direction, legend=not no_legend), "dot"
        path = target / f"{_file_name(flow.name)}.{extension}"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        click.echo(str(path))
    if fallback is not None:
        click.echo(
            f"selinon: wrote DOT text instead of {image_format}: {fallback}; for pictures, "
            f"{drawing.HOW_TO_GET_PICTURES}",
            err=True,
        )


@click.command("inspect")
@CONFIG
@click.option("--dump", is_flag=True, help="Print the normalised configuration as JSON (secrets masked).")
@click.option("--list-queues", is_flag=True, help="Print every dispatcher's and task's Celery queue.")
def inspect(files: tuple[str, ...], dump: bool, list_queues: bool) -> None:
    """Check a whole project without connecting anything; exit 1 with one line per problem.

    Task classes are imported, storages built by their adapters (no connection), predicates, foreach
    functions, caches and queue names resolved. The directory of each configuration file is put on the Python
    path, as for `selinon run`.
    """
    from selinon import inspection

    on_python_path(files)
    found = inspection.inspect_files(files)
    system = found.system
    if system is not None and dump:
        click.echo(json.dumps(inspection.dump(system), indent=2, ensure_ascii=False, default=str))
    if system is not None and list_queues:
        rows = []
        for row in inspection.queues(system):
            if row.queue is None:
                shown = "(app default)"
            elif row.unset:
                shown = f"{row.queue}  (unset: {', '.join(row.unset)})"
            else:
                shown = row.queue
            rows.append([row.kind, row.name, shown, "-" if row.queue is None else row.origin])
        _table(["KIND", "NAME", "QUEUE", "FROM"], rows)
    for problem in found.problems:
        click.echo(f"selinon: {problem}", err=True)
    if found.problems:
        count = len(found.problems)
        click.echo(f"selinon: {count} problem{'s' if count > 1 else ''} found", err=True)
        sys.exit(EXIT_FAILED)
    if dump or list_queues or system is None:
        return
    for label, value in _summary(system):
        click.echo(f"{label + ':':12}{value}")
    click.echo("no problems found; nothing was connected")


def _summary(system: object) -> list[tuple[str, str]]:
    from selinon import inspection
    from selinon.flows import System

    assert isinstance(system, System)
    used = inspection.used_tasks(system)
    storages = [f"{s.name} ({s.classname})" for s in system.configuration.storages.values()]
    queues = sorted({row.queue or "(app default)" for row in inspection.queues(system)})
    modules = sorted({spec.import_path for name, spec in system.tasks.items() if spec.import_path and name in used})
    return [
        ("flows", ", ".join(system.flows) or "none"),
        ("tasks", f"{len(system.tasks)}, {len(used)} in flows; classes imported from {', '.join(modules) or '-'}"),
        ("storages", ", ".join(storages) or "none"),
        ("predicates", ", ".join(inspection.predicate_names(system)) or "none"),
        ("queues", ", ".join(queues)),
    ]
