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
from selinon.progress import GraphProgress, PlainProgress

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


class _Messages(logging.Handler):
    """The executor's retry and failure messages, as `selinon:` lines on standard error, above the progress."""

    def __init__(self, progress: GraphProgress | PlainProgress | None) -> None:
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
    progress: GraphProgress | PlainProgress | None = None
    if not as_json:
        progress = GraphProgress(sys.stdout) if sys.stdout.isatty() else PlainProgress(sys.stderr)
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
@click.option("--flow", default="", help="The flow the task ran in: the record must be of that flow too.")
def results_get(files: tuple[str, ...], task: str, task_id: str, flow: str) -> None:
    """Print the result TASK stored under TASK_ID, as JSON (bytes as they are); exit 1 if there is none.

    Records are keyed by task id alone: the record found must say it is TASK's (and, with --flow, that flow's),
    or nothing is printed; a storage that cannot tell is named in a warning.
    """
    from selinon.pool import StoragePool

    _configure(files)
    unchecked = None
    try:
        unchecked = _check_owner(flow, task, task_id)
        result = StoragePool.retrieve(flow, task, task_id)
    except SelinonMissingDataException:
        error = _error_record(flow, task, task_id)
        if error is not None:
            _json({"error": error})
            click.echo(f"selinon: task {task} ({task_id}) failed: {error.get('message', '')}", err=True)
            if unchecked:
                click.echo(f"selinon: warning: {unchecked}", err=True)
        else:
            click.echo(f"selinon: {_no_record(flow, task, task_id)}", err=True)
        sys.exit(EXIT_FAILED)
    finally:
        StoragePool.disconnect_all()
    if unchecked:
        click.echo(f"selinon: warning: {unchecked}", err=True)
    if type(result) is bytes:  # a raw object (S3 keeps bytes as bytes): as it is, for `> file`
        sys.stdout.buffer.write(result)
        return
    try:
        jsonpolicy.check(result, "result")
    except jsonpolicy.NotJSONError as exc:  # a record written before the JSON policy (a NaN, say)
        click.echo(f"selinon: cannot print the result of task {task} ({task_id}) as JSON: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(json.dumps(result, indent=2, ensure_ascii=False))


def _check_owner(flow: str, task: str, task_id: str) -> str | None:
    """Exit 1 when the record of ``task_id`` says it was stored by another task (or in another flow, with
    ``--flow``); the warning to show when its storage cannot tell. A missing record is left to the read."""
    from selinon.pool import StoragePool

    storage = StoragePool.get_storage_name_by_task_name(task)
    expected = StoragePool.get_configuration().tasks[task].storage_task_name or task
    try:
        record_flow, record_task = StoragePool.retrieve_owner(flow, task, task_id)
    except SelinonMissingDataException:
        return None
    except NotImplementedError:
        classname = StoragePool.get_storage_config(str(storage)).classname
        return (
            f"storage {storage!r} ({classname}) cannot tell which task stored a record: the record of id "
            f"{task_id!r} is shown unchecked; make sure the id is task {task}'s"
        )
    alias = f" (stored as {expected!r})" if expected != task else ""
    if record_task is not None and record_task != expected:
        in_flow = f" in flow {record_flow!r}" if record_flow else ""
        click.echo(
            f"selinon: the record of id {task_id!r} in storage {storage!r} was stored by task {record_task!r}"
            f"{in_flow}, not by task {task!r}{alias}; ask for the task that stored it",
            err=True,
        )
        sys.exit(EXIT_FAILED)
    if flow and record_flow is not None and record_flow != flow:
        click.echo(
            f"selinon: the record of id {task_id!r} in storage {storage!r} was stored in flow {record_flow!r}, "
            f"not {flow!r}; drop --flow or name that flow",
            err=True,
        )
        sys.exit(EXIT_FAILED)
    missing = [what for what, name in (("task", record_task), ("flow", record_flow if flow else "")) if name is None]
    if missing:
        return (
            f"the record of id {task_id!r} in storage {storage!r} does not keep its {' or '.join(missing)} name "
            "(an object written by Selinon 1.x): it is shown unchecked"
        )
    return None


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

    try:
        return StoragePool.retrieve_error(flow, task, task_id)
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
