"""``python -m selinon.celery -A APP ...``: start flows on Celery workers, follow them, list their queues.

APP is your Celery app (``module`` or ``module:attribute``, as for ``celery -A``), on which ``attach`` was called.
Exit codes as for ``selinon``: 0 ok, 1 the flow failed (or is not done within ``--timeout``), 2 usage or
configuration, a flow id that the result backend does not know, or a broker or result backend that does
not answer within ``broker_connection_timeout`` (one line).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from selinon.celery import CeleryFlows, FlowReport, UnknownFlowError, flows_of, unknown
from selinon.cli import EXIT_FAILED, EXIT_USAGE
from selinon.cli_run import FOLLOW_SUBFLOWS, RUN_SUBSEQUENT, SELECT, _json, _node_args, selective_options, show_report
from selinon.errors import SelinonError


@click.group()
@click.option("-A", "--app", "app_name", required=True, metavar="APP", help="Your Celery app, as for `celery -A`.")
@click.pass_context
def main(ctx: click.Context, app_name: str) -> None:
    """Flows of a nodes.yaml on Celery workers."""
    find_app = importlib.import_module("celery.app.utils").find_app
    try:
        app = find_app(app_name)
    except Exception as exc:
        raise click.UsageError(f"cannot load the Celery app {app_name!r}: {exc}") from None
    ctx.obj = flows_of(app)


def _reach(flows: CeleryFlows, broker: bool, backend: bool) -> None:
    """Fail at once, in one line, when what the command needs does not answer."""
    problem = flows.unreachable(broker=broker, backend=backend)
    if problem:
        raise SelinonError(problem)


def _finish(flows: CeleryFlows, flow_id: str, wait: bool, timeout: float | None, as_json: bool) -> None:
    try:
        report = flows.wait(flow_id, timeout=timeout) if wait else flows.status(flow_id)
    except TimeoutError as exc:
        click.echo(f"selinon: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    except flows.transient as exc:
        raise SelinonError(f"the result backend does not answer: {type(exc).__name__}: {exc}") from None
    if report.state == "unknown":
        raise UnknownFlowError(unknown(flow_id))
    _show(report, as_json)
    if report.failed:
        sys.exit(EXIT_FAILED)


def _show(report: FlowReport, as_json: bool) -> None:
    if not report.tasks and not as_json:  # nothing started yet, or a dispatcher that failed: one line
        name = f"{report.flow} ({report.flow_id})" if report.flow else report.flow_id
        click.echo(f"flow {name} {report.state}" + (f": {report.error}" if report.error else ""))
    else:
        show_report(report.as_dict(), as_json)


WAIT = click.option("--wait", is_flag=True, help="Wait until the flow has succeeded or failed.")
TIMEOUT = click.option("--timeout", type=float, metavar="SECONDS", help="With --wait: give up after this long.")
JSON = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@main.command()
@click.argument("flow")
@click.option("--node-args", callback=_node_args, metavar="JSON", help="The flow's node arguments (default: null).")
@WAIT
@TIMEOUT
@JSON
@SELECT
@FOLLOW_SUBFLOWS
@RUN_SUBSEQUENT
@click.pass_obj
def run(
    flows: CeleryFlows,
    flow: str,
    node_args: Any,
    wait: bool,
    timeout: float | None,
    as_json: bool,
    select: tuple[str, ...],
    follow_subflows: bool,
    run_subsequent: bool,
) -> None:
    """Start FLOW on the workers; prints its flow id, or with --wait its tasks and outcome."""
    selective_options(select, follow_subflows, run_subsequent)
    _reach(flows, broker=True, backend=wait)
    try:
        if select:
            flow_id = flows.run_flow_selective(flow, list(select), node_args, follow_subflows, run_subsequent)
        else:
            flow_id = flows.run_flow(flow, node_args)
    except flows.transient as exc:
        raise SelinonError(f"the broker did not take the flow: {type(exc).__name__}: {exc}") from None
    if not wait:
        _json({"flow": flow, "flow_id": flow_id}) if as_json else click.echo(flow_id)
        return
    _finish(flows, flow_id, wait, timeout, as_json)


@main.command()
@click.argument("flow_id")
@WAIT
@TIMEOUT
@JSON
@click.pass_obj
def status(flows: CeleryFlows, flow_id: str, wait: bool, timeout: float | None, as_json: bool) -> None:
    """The state and tasks of the flow FLOW_ID, as its dispatcher last reported them."""
    _reach(flows, broker=False, backend=True)
    _finish(flows, flow_id, wait, timeout, as_json)


@main.command()
@click.pass_obj
def queues(flows: CeleryFlows) -> None:
    """The queues the flows use, comma-separated, for `celery worker -Q`."""
    click.echo(",".join(flows.queues()))


def cli(argv: list[str] | None = None) -> None:
    try:
        main.main(args=argv, prog_name="python -m selinon.celery", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        click.echo(f"selinon: error: {exc.format_message()}", err=True)
        sys.exit(EXIT_USAGE)
    except SelinonError as exc:
        click.echo(f"selinon: error: {exc}", err=True)
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    cli()
