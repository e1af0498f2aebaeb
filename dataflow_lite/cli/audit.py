"""``dataflow-lite audit``: read the audit trail, and check that no row was altered or removed."""

from __future__ import annotations

from datetime import datetime

import click

from dataflow_lite.cli.base import CLI, echo_json, main, runtime
from dataflow_lite.services import audit as trail


@main.group()
def audit() -> None:
    """The audit trail: who changed what, when."""


@audit.command("verify")
def audit_verify() -> None:
    """Recompute the trail's hash chain; exit 1 naming the first row altered or removed."""
    result = trail.verify(runtime())
    if not result.ok:
        raise click.ClickException(result.message)
    click.echo(result.message)


@audit.command("list")
@click.option("--user", "username", default=None, help="Only this user's events.")
@click.option("--object", "object_type", default=None, help="Only events on objects of this type.")
@click.option("--id", "object_id", default=None, help="Only events on the object with this id.")
@click.option("--since", type=click.DateTime(), default=None, help="From this time (UTC).")
@click.option("--limit", type=click.IntRange(1, trail.MAX_PER_PAGE), default=50, show_default=True)
def audit_list(
    username: str | None,
    object_type: str | None,
    object_id: str | None,
    since: datetime | None,
    limit: int,
) -> None:
    """The newest events first, as JSON."""
    _, events = trail.list_events(
        runtime(),
        CLI,
        user=username,
        object_type=object_type,
        object_id=object_id,
        since=since,
        per_page=limit,
    )
    for event in events:
        echo_json(event)
