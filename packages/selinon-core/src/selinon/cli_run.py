"""``selinon run`` and ``selinon results``: run a flow locally, and read back or delete what a task stored.

Exit codes as for every command: 0 ok, 1 the flow failed or the result is missing, 2 usage or configuration.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from selinon import jsonpolicy
from selinon.cli import EXIT_FAILED, _table, config_option
from selinon.errors import SelinonMissingDataException

if TYPE_CHECKING:
    from selinon.executor import FlowRun

CONFIG = config_option("A nodes.yaml or flows file")


def _json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def _node_args(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    try:
        return None if value is None else json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON ({exc}); for example '{{\"order\": 7}}'") from None


class _Progress:
    """One line on the terminal, rewritten as tasks start and end."""

    def __init__(self) -> None:
        self.width = 0

    def __call__(self, root: FlowRun) -> None:
        states = [node.state for node in root.tasks()]
        running = sum(state in ("running", "retrying") for state in states)
        line = f"{root.name}: {states.count('succeeded')} done, {running} running, {states.count('failed')} failed"
        click.echo("\r" + line.ljust(self.width), nl=False)
        self.width = len(line)

    def clear(self) -> None:
        if self.width:
            click.echo("\r" + " " * self.width + "\r", nl=False)
            self.width = 0


class _Messages(logging.Handler):
    """The executor's retry and failure messages, as `selinon:` lines on standard error, above the progress."""

    def __init__(self, progress: _Progress | None) -> None:
        super().__init__(logging.WARNING)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        if self.progress:
            self.progress.clear()
        click.echo(f"selinon: {record.getMessage()}", err=True)


def _report(root: FlowRun) -> dict[str, Any]:
    return {
        "flow": root.name,
        "flow_id": root.id,
        "state": root.state,
        "error": root.error,
        "tasks": [
            {
                "flow": node.flow_run.name,
                "task": node.name,
                "task_id": node.id,
                "state": node.state,
                "tries": node.tries,
                "storage": node.storage,
                "record_id": node.record_id,
                "error": node.error if node.state == "failed" else None,
                "error_record": node.error_record,
            }
            for node in root.tasks()
        ],
    }


SELECT = click.option(
    "--select", multiple=True, metavar="TASK", help="Run only this task and what it needs (repeat for several)."
)
FOLLOW_SUBFLOWS = click.option(
    "--follow-subflows",
    is_flag=True,
    help="With --select: look for the tasks in sub-flows too, and run those selectively.",
)
RUN_SUBSEQUENT = click.option("--run-subsequent", is_flag=True, help="With --select: also run what follows the tasks.")


def selective_options(select: tuple[str, ...], follow_subflows: bool, run_subsequent: bool) -> None:
    if (follow_subflows or run_subsequent) and not select:
        raise click.UsageError("--follow-subflows and --run-subsequent go with --select TASK")


@click.command("run")
@CONFIG
@click.argument("flow")
@click.option(
    "--node-args", callback=_node_args, metavar="JSON", help="The flow's node arguments, as JSON (default: null)."
)
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(min=1), help="Worker threads.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@SELECT
@FOLLOW_SUBFLOWS
@RUN_SUBSEQUENT
def run(
    files: tuple[str, ...],
    flow: str,
    node_args: Any,
    concurrency: int,
    as_json: bool,
    select: tuple[str, ...],
    follow_subflows: bool,
    run_subsequent: bool,
) -> None:
    """Run FLOW in this process and store its results; exit 1 if the flow failed.

    The directory of each configuration file is put on the Python path, so `import:` may name a module beside it.
    With --select, only the named tasks run, with what they need.
    """
    from selinon import flows
    from selinon.executor import Executor
    from selinon.pool import StoragePool

    for directory in dict.fromkeys(str(Path(f).resolve().parent) for f in files):
        if directory not in sys.path:
            sys.path.insert(0, directory)
    system = flows.load(files)  # after the path is set: it imports `global: predicates_module`
    system.flow(flow)
    progress = _Progress() if sys.stdout.isatty() and not as_json else None
    messages = _Messages(progress)
    logger = logging.getLogger("selinon.executor")
    logger.addHandler(messages)
    selective_options(select, follow_subflows, run_subsequent)
    try:
        executor = Executor(system, concurrency, on_change=progress)
        if select:
            root = executor.run_flow_selective(flow, list(select), node_args, follow_subflows, run_subsequent)
        else:
            root = executor.run(flow, node_args)
    finally:
        logger.removeHandler(messages)
        if progress:
            progress.clear()
        StoragePool.disconnect_all()
    show_report(_report(root), as_json)
    if root.failed:
        sys.exit(EXIT_FAILED)


def show_report(report: dict[str, Any], as_json: bool = False) -> None:
    """A flow run's report (``_report``'s shape, also what Celery dispatchers keep) as JSON or as a table."""
    if as_json:
        _json(report)
        return
    rows = [
        [
            t["task"] if t["flow"] == report["flow"] else f"{t['flow']}/{t['task']}",
            t["state"],
            "-" if t["tries"] is None else str(t["tries"]),  # None: the outcome was read from the storage
            t["storage"] or "-",
            "-" if t["record_id"] is None else str(t["record_id"]),
            t["task_id"],
        ]
        for t in report["tasks"]
    ]
    _table(["TASK", "STATE", "TRIES", "STORAGE", "RECORD ID", "TASK ID"], rows)
    for task in report["tasks"]:
        if task["state"] == "failed":
            click.echo(f"{task['task']}: {task['error']} (error record: {task['error_record']})")
    ending = f"failed: {report['error']}" if report["state"] == "failed" else report["state"]
    click.echo(f"flow {report['flow']} ({report['flow_id']}) {ending}")


@click.group()
def results() -> None:
    """Read back or delete what a task stored."""


def _configure(files: tuple[str, ...]) -> None:
    from selinon.pool import StoragePool

    StoragePool.configure(files)


@results.command("get")
@CONFIG
@click.argument("task")
@click.argument("task_id")
@click.option("--flow", default="", help="The flow the task ran in, for adapters that use it (most key by task id).")
def results_get(files: tuple[str, ...], task: str, task_id: str, flow: str) -> None:
    """Print the result TASK stored under TASK_ID, as JSON (bytes as they are); exit 1 if there is none."""
    from selinon.pool import StoragePool

    _configure(files)
    try:
        result = StoragePool.retrieve(flow, task, task_id)
    except SelinonMissingDataException:
        error = _error_record(flow, task, task_id)
        if error is not None:
            _json({"error": error})
            click.echo(f"selinon: task {task} ({task_id}) failed: {error.get('message', '')}", err=True)
        else:
            click.echo(f"selinon: {_no_record(flow, task, task_id)}", err=True)
        sys.exit(EXIT_FAILED)
    finally:
        StoragePool.disconnect_all()
    if type(result) is bytes:  # a raw object (S3 keeps bytes as bytes): as it is, for `> file`
        sys.stdout.buffer.write(result)
        return
    try:
        jsonpolicy.check(result, "result")
    except jsonpolicy.NotJSONError as exc:  # a record written before the JSON policy (a NaN, say)
        click.echo(f"selinon: cannot print the result of task {task} ({task_id}) as JSON: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(json.dumps(result, indent=2, ensure_ascii=False))


def _no_record(flow: str, task: str, task_id: str) -> str:
    """Where nothing was found, and what to check."""
    from selinon.pool import StoragePool

    storage = StoragePool.get_configuration().tasks[task].storage
    in_flow = f" in flow {flow!r}" if flow else ""
    return (
        f"storage {storage!r} holds no record of task {task} with task id {task_id!r}{in_flow}; "
        "check the id (`selinon run` prints each task's)"
    )


def _error_record(flow: str, task: str, task_id: str) -> dict[str, str] | None:
    """What ``store_error`` kept for a failed task, where the adapter can read it back."""
    from selinon.pool import StoragePool

    config = StoragePool.get_configuration().tasks[task]
    try:
        return StoragePool.get_storage_by_task_name(task).retrieve_error(
            flow, config.storage_task_name or task, task_id
        )
    except Exception:
        return None


@results.command("delete")
@CONFIG
@click.argument("task")
@click.argument("task_id")
@click.option("--flow", default="", help="The flow the task ran in, for adapters that use it (most key by task id).")
def results_delete(files: tuple[str, ...], task: str, task_id: str, flow: str) -> None:
    """Delete the record TASK stored under TASK_ID; exit 1 if there is none."""
    from selinon.pool import StoragePool

    _configure(files)
    try:
        StoragePool.delete(flow, task, task_id)
    except SelinonMissingDataException:
        click.echo(f"selinon: {_no_record(flow, task, task_id)}", err=True)
        sys.exit(EXIT_FAILED)
    finally:
        StoragePool.disconnect_all()
    click.echo(f"deleted the record of task {task} with id {task_id}")
