"""``dataflow-lite endpoint`` and ``dataflow-lite transfers``: where files go, and how they fare."""

from __future__ import annotations

import click
from sqlmodel import col, select

from dataflow_lite.adapter import FAILED
from dataflow_lite.cli.base import _add_endpoint, _app, _echo_json, _session, _user, main
from dataflow_lite.store.credentials import load as load_credentials
from dataflow_lite.store.models import Endpoint, Transfer


@main.group()
def endpoint() -> None:
    """Manage destination endpoints."""


@endpoint.command("add")
@click.argument("name")
@click.option("--type", "adapter_name", required=True, help="The adapter: local, sftp, globus...")
@click.option("--path", help="The destination directory (on the host or collection).")
@click.option("--host", help="SSH host (sftp).")
@click.option("--port", type=click.IntRange(1, 65535), help="SSH port (sftp).")
@click.option("--username", help="SSH user (sftp).")
@click.option("--key-file", type=click.Path(dir_okay=False), help="SSH private key (sftp).")
@click.option("--known-hosts", type=click.Path(dir_okay=False), help="known_hosts file (sftp).")
@click.option(
    "--id", "endpoint_id", default=None, help="The endpoint's UUID; for globus, the collection's."
)
@click.option("--default", is_flag=True, help="Make it the destination of users without a setting.")
@click.pass_context
def endpoint_add(
    ctx: click.Context,
    name: str,
    adapter_name: str,
    endpoint_id: str | None,
    default: bool,
    **given,
) -> None:
    """Register a destination endpoint and print it as JSON."""
    # Each adapter takes the options it declares; a Globus endpoint's id is its collection.
    options = {**given, "collection": endpoint_id}
    row = _add_endpoint(ctx, name, adapter_name, options, endpoint_id, default)
    _echo_json(row.model_dump())


@endpoint.command("list")
@click.pass_context
def endpoint_list(ctx: click.Context) -> None:
    """List the destination endpoints."""
    with _session(ctx) as session:
        for row in session.exec(select(Endpoint).order_by(col(Endpoint.created_at))):
            _echo_json(row.model_dump())


@endpoint.command("check")
@click.argument("name")
@click.option("--as", "username", default=None, help="Use this user's activation credentials.")
@click.pass_context
def endpoint_check(ctx: click.Context, name: str, username: str | None) -> None:
    """A live preflight of endpoint NAME: reachable, authenticated, writable, free space."""
    app = _app(ctx)
    with _session(ctx) as session:
        row = session.exec(select(Endpoint).where(Endpoint.name == name)).first()
        if row is None:
            raise click.ClickException(f"no endpoint named {name!r}")
        kept = None
        if username:
            cipher = app.extensions["dataflow_lite.password_cipher"]
            kept = load_credentials(session, cipher, _user(session, username).id, row.id)  # type: ignore[arg-type]
    adapter = app.extensions["dataflow_lite.adapters"].for_endpoint(row.adapter, row.options)
    checks = adapter.check(kept)
    for check in checks:
        click.echo(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    if not all(check.ok for check in checks):
        raise SystemExit(1)


@main.group()
def transfers() -> None:
    """See, retry and cancel transfers."""


@transfers.command("list")
@click.option("--state", default=None, help="Only transfers in this state (failed, queued...).")
@click.option("--dataset", "dataset_id", type=int, default=None, help="Only this dataset's.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.pass_context
def transfers_list(
    ctx: click.Context, state: str | None, dataset_id: int | None, limit: int
) -> None:
    """List transfers, failed ones first, then newest first."""
    statement = select(Transfer).order_by(col(Transfer.state) != FAILED, col(Transfer.id).desc())
    if state:
        statement = statement.where(Transfer.state == state)
    if dataset_id is not None:
        statement = statement.where(Transfer.dataset_id == dataset_id)
    with _session(ctx) as session:
        for row in session.exec(statement.limit(limit)):
            error = f"  {row.last_error}" if row.last_error else ""
            click.echo(
                f"{row.id:>6} {row.state:<9} {row.kind:<8} dataset {row.dataset_id} "
                f"{row.adapter} attempts {row.attempts}{error}"
            )


@transfers.command("retry")
@click.argument("transfer_ids", type=int, nargs=-1, required=True)
@click.pass_context
def transfers_retry(ctx: click.Context, transfer_ids: tuple[int, ...]) -> None:
    """Queue failed transfers again (the worker picks them up)."""
    queue = _app(ctx).extensions["dataflow_lite.transfers"]
    for transfer_id in transfer_ids:
        if not queue.retry(transfer_id):
            raise click.ClickException(f"transfer {transfer_id} does not exist or has not failed")
        click.echo(f"transfer {transfer_id} queued again", err=True)


@transfers.command("cancel")
@click.argument("transfer_ids", type=int, nargs=-1, required=True)
@click.pass_context
def transfers_cancel(ctx: click.Context, transfer_ids: tuple[int, ...]) -> None:
    """Cancel transfers that have not finished; their staged files are kept."""
    queue = _app(ctx).extensions["dataflow_lite.transfers"]
    for transfer_id in transfer_ids:
        if not queue.cancel(transfer_id):
            raise click.ClickException(f"transfer {transfer_id} does not exist or has ended")
        click.echo(f"transfer {transfer_id} cancelled", err=True)
