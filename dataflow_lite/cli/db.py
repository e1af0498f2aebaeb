"""``dataflow-lite db``: the catalog's schema revision, and upgrading it after an update.

``db upgrade`` copies an SQLite database beside itself (SQLite's online backup) before it changes
anything (on PostgreSQL it runs in one transaction; copies are ``pg_dump``'s); ``serve``,
``worker`` and every other command refuse a database older than the code.
"""

from __future__ import annotations

from pathlib import Path

import click

from dataflow_lite.adapter import adapter_key_files, adapter_settings, discover_adapters
from dataflow_lite.cli.base import main
from dataflow_lite.settings import load_settings
from dataflow_lite.store import schema
from dataflow_lite.store.db import Database
from dataflow_lite.store.instance_keys import key_file_names, keys_folder


def _database(instance: Path) -> tuple[Database, int]:
    # Not the runtime: it refuses to open a catalog older than the code.
    settings = load_settings(instance, extra=adapter_settings(discover_adapters()))
    return Database.from_setting(instance, settings["database"]), settings["busy_timeout_ms"]


def upgrade_instance(instance: Path) -> schema.Upgrade:
    """Upgrade the catalog of ``instance`` to the head revision (creating it if there is none)."""
    database, busy_timeout_ms = _database(instance)
    instance.mkdir(parents=True, exist_ok=True)
    return schema.upgrade(database, busy_timeout_ms)


def report(done: schema.Upgrade, *, err: bool = False) -> None:
    """Say where the backup went and which revisions the schema moved between."""
    if done.backup is not None:
        click.echo(f"database backed up to {done.backup}", err=err)
    before = schema.describe(done.from_revision, done.backup is not None)
    click.echo(f"schema upgraded: {before} -> {done.to_revision}", err=err)


@main.group("db")
def db_group() -> None:
    """The catalog database: its schema's revision, upgrading it, rebuilding search's rows."""


@db_group.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Upgrade the database's schema to this version's, backing an SQLite file up first."""
    done = upgrade_instance(ctx.find_root().obj["instance"])
    if done.from_revision == done.to_revision:
        click.echo(f"schema already at {done.to_revision}: nothing to upgrade")
    else:
        report(done)


@db_group.command("current")
@click.pass_context
def db_current(ctx: click.Context) -> None:
    """Print the database's schema revision and the one this version needs (head)."""
    database, busy_timeout_ms = _database(ctx.find_root().obj["instance"])
    if not database.exists():
        current = "none (no database yet)"
    else:
        current = schema.describe(*schema.status(database, busy_timeout_ms))
    click.echo(f"current: {current}")
    click.echo(f"head: {schema.head()}")


@db_group.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def db_backup(ctx: click.Context, file: Path) -> None:
    """Copy the catalog database to FILE (a new file), consistent while the server runs."""
    instance = ctx.find_root().obj["instance"]
    adapters = discover_adapters()
    settings = load_settings(instance, extra=adapter_settings(adapters))
    database = Database.from_setting(instance, settings["database"])
    if not database.is_sqlite:
        raise click.ClickException(
            f"the catalog is on PostgreSQL ({database}): back it up with pg_dump"
        )
    if not database.exists():
        raise click.ClickException(f"no database at {database}: nothing to back up")
    if file.exists():
        raise click.ClickException(f"{file} exists already: give the backup a new name")
    if not file.parent.is_dir():
        raise click.ClickException(f"{file.parent} is not a directory")
    schema.copy_database(database.path, file)
    click.echo(f"database backed up to {file} ({file.stat().st_size} bytes)")
    keys = keys_folder(instance, settings["keys_dir"])
    names = key_file_names(adapter_key_files(adapters))
    click.echo(
        f"keep {', '.join(str(keys / name) for name in names)} with it: without them API keys, "
        "stored credentials and the endpoints' marked folders cannot be used",
        err=True,
    )
