"""The ``dataflow-lite`` command: set up an instance, manage what it serves, and serve it.

Every command works on one instance folder: ``--instance DIR``, else ``$DATAFLOW_LITE_INSTANCE``,
else ``./instance``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from flask import Flask
from sqlmodel import Session, col, select

from dataflow_lite.app import create_app
from dataflow_lite.cli import db as db_commands
from dataflow_lite.cli.supervisor import supervise
from dataflow_lite.services.logins import check_new_password, hash_password
from dataflow_lite.settings import ConfigError
from dataflow_lite.store import api_keys, db
from dataflow_lite.store.metadata import FIELD_TYPES
from dataflow_lite.store.models import ApiKey, Endpoint, Instrument, MetadataField, User, utcnow
from dataflow_lite.store.schema import SchemaError

DEFAULT_ENDPOINT = "local"
DEFAULT_BIND = "127.0.0.1:8000"
GLIBC_MALLOC_TUNING = {
    "MALLOC_MMAP_THRESHOLD_": str(16 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(64 << 20),
}


def _app(ctx: click.Context) -> Flask:
    if "app" not in ctx.obj:
        try:
            ctx.obj["app"] = create_app(instance_path=ctx.obj["instance"])
        except ConfigError as error:
            raise click.ClickException(f"configuration error: {error}") from error
        except SchemaError as error:  # one line naming 'db upgrade', never a traceback
            raise click.ClickException(str(error)) from error
    return ctx.obj["app"]


@contextmanager
def _session(ctx: click.Context) -> Iterator[Session]:
    with db.session_scope(_app(ctx).extensions["dataflow_lite.engine"]) as session:
        yield session


def _echo_json(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _user(session: Session, username: str) -> User:
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None:
        raise click.ClickException(f"no user {username!r}: add one with 'dataflow-lite user add'")
    return user


@click.group()
@click.option(
    "--instance",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DATAFLOW_LITE_INSTANCE",
    default="instance",
    show_default=True,
    help="The instance folder: database, keys, staging area, default destination.",
)
@click.version_option(package_name="dataflow-lite")
@click.pass_context
def main(ctx: click.Context, instance: Path) -> None:
    """dataflow-lite: move instrument data to storage, with its metadata."""
    ctx.obj = {"instance": instance.resolve()}


def _add_endpoint(
    ctx: click.Context,
    name: str,
    adapter_name: str,
    options: dict[str, Any],
    endpoint_id: str | None,
    default: bool,
) -> Endpoint:
    adapters = _app(ctx).extensions["dataflow_lite.adapters"]
    try:
        adapter_class = adapters.get_class(adapter_name)
        checked = adapter_class.check_options(options)
    except (LookupError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    try:
        endpoint_id = str(uuid.UUID(endpoint_id)) if endpoint_id else str(uuid.uuid4())
    except ValueError as error:
        raise click.ClickException(f"--id {endpoint_id!r} is not a UUID") from error
    with _session(ctx) as session:
        if session.exec(select(Endpoint).where(Endpoint.name == name)).first():
            raise click.ClickException(f"an endpoint named {name!r} exists already")
        if session.get(Endpoint, endpoint_id):
            raise click.ClickException(f"an endpoint with id {endpoint_id} exists already")
        endpoint = Endpoint(
            id=endpoint_id, name=name, adapter=adapter_name, options=checked, is_default=default
        )
        session.add(endpoint)
    return endpoint


def _init(ctx: click.Context, *, upgrade: bool = True) -> Flask:
    # serve and worker never upgrade: an older schema waits for 'db upgrade' and its backup.
    if upgrade and "app" not in ctx.obj:
        done = db_commands.upgrade_instance(ctx.obj["instance"])
        if done.from_revision is not None and done.from_revision != done.to_revision:
            db_commands.report(done, err=True)
    app = _app(ctx)
    with _session(ctx) as session:
        has_endpoint = session.exec(select(Endpoint)).first() is not None
    if not has_endpoint:
        destination = Path(app.instance_path) / app.config["DATAFLOW_LITE"]["destination_dir"]
        destination.mkdir(parents=True, exist_ok=True)
        _add_endpoint(ctx, DEFAULT_ENDPOINT, "local", {"path": str(destination)}, None, True)
    return app


@main.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the instance folder, its keys, the database and a default local endpoint."""
    click.echo(f"instance ready in {_init(ctx).instance_path}", err=True)


def _password_hash_from_stdin() -> str:
    """The hash of a password read from one line of stdin, once it passes the rules."""
    try:
        return hash_password(check_new_password(sys.stdin.readline().rstrip("\r\n")))
    except ValueError as error:
        raise click.ClickException(str(error)) from error


@main.group()
def user() -> None:
    """Manage users."""


@user.command("add")
@click.argument("username")
@click.option("--name", default="", help="Full name, shown as the creator of datasets.")
@click.option("--admin", is_flag=True, help="An admin sees every dataset.")
@click.option(
    "--password-stdin", is_flag=True, help="Read a web login password from one line of stdin."
)
@click.pass_context
def user_add(
    ctx: click.Context, username: str, name: str, admin: bool, password_stdin: bool
) -> None:
    """Add a user."""
    password_hash = _password_hash_from_stdin() if password_stdin else None
    with _session(ctx) as session:
        if session.exec(select(User).where(User.username == username)).first():
            raise click.ClickException(f"user {username!r} exists already")
        row = User(username=username, name=name, is_admin=admin, password_hash=password_hash)
        session.add(row)
        session.flush()
        _echo_json(row.model_dump(include={"id", "username", "name", "is_admin"}))


@user.command("password")
@click.argument("username")
@click.pass_context
def user_password(ctx: click.Context, username: str) -> None:
    """Set USERNAME's web login password from one line of stdin."""
    password_hash = _password_hash_from_stdin()
    with _session(ctx) as session:
        _user(session, username).password_hash = password_hash
    click.echo(f"password of {username!r} set", err=True)


@main.group()
def key() -> None:
    """Manage API keys."""


@key.command("create")
@click.argument("username")
@click.option("--name", default="", help="What the key is for.")
@click.option(
    "--expires-days", type=click.IntRange(min=1), default=None, help="Days until it expires."
)
@click.pass_context
def key_create(ctx: click.Context, username: str, name: str, expires_days: int | None) -> None:
    """Create an API key for USERNAME and print it (only the key, on stdout; shown once)."""
    app = _app(ctx)
    days = expires_days or app.config["DATAFLOW_LITE"]["api_key_days"] or None
    with _session(ctx) as session:
        _, token = api_keys.issue_key(
            session, app.config["SECRET_KEY"], _user(session, username), name, days
        )
    click.echo(token)


@key.command("list")
@click.argument("username")
@click.pass_context
def key_list(ctx: click.Context, username: str) -> None:
    """List USERNAME's keys (never the keys themselves)."""
    with _session(ctx) as session:
        rows = session.exec(
            select(ApiKey)
            .where(ApiKey.user_id == _user(session, username).id)
            .order_by(col(ApiKey.id))
        )
        for row in rows:
            _echo_json(row.model_dump(exclude={"secret_sha256"}))


@key.command("revoke")
@click.argument("key_or_id")
@click.pass_context
def key_revoke(ctx: click.Context, key_or_id: str) -> None:
    """Revoke a key, given the key itself or its id (from 'key list')."""
    app = _app(ctx)
    key_id = (
        int(key_or_id)
        if key_or_id.isdigit()
        else api_keys.key_id_of(app.config["SECRET_KEY"], key_or_id)
    )
    with _session(ctx) as session:
        row = session.get(ApiKey, key_id) if key_id is not None else None
        if row is None:
            raise click.ClickException("no such API key")
        if row.revoked_at is None:
            api_keys.revoke(row, utcnow())
    click.echo(f"API key {key_id} revoked", err=True)


@main.group()
def instrument() -> None:
    """Manage instruments and their metadata forms."""


@instrument.command("add")
@click.argument("name")
@click.option("--description", default="")
@click.option("--type", "instrument_type", default=None, help="Kind of instrument, e.g. AFM.")
@click.pass_context
def instrument_add(
    ctx: click.Context, name: str, description: str, instrument_type: str | None
) -> None:
    """Add an instrument and print it as JSON."""
    with _session(ctx) as session:
        if session.exec(select(Instrument).where(Instrument.name == name)).first():
            raise click.ClickException(f"instrument {name!r} exists already")
        row = Instrument(name=name, description=description, instrument_type=instrument_type)
        session.add(row)
        session.flush()
        _echo_json(row.model_dump())


@instrument.command("field")
@click.argument("instrument_id", type=int)
@click.argument("name")
@click.option(
    "--type", "field_type", type=click.Choice(FIELD_TYPES), default="string", show_default=True
)
@click.option("--required", is_flag=True)
@click.option("--choice", "choices", multiple=True, help="An allowed value; repeat for each.")
@click.option("--unit", default="")
@click.option("--persist", is_flag=True, help="Pre-fill it from the user's previous dataset.")
@click.pass_context
def instrument_field(
    ctx: click.Context,
    instrument_id: int,
    name: str,
    field_type: str,
    required: bool,
    choices: tuple[str, ...],
    unit: str,
    persist: bool,
) -> None:
    """Add a metadata field to instrument INSTRUMENT_ID's form and print it as JSON."""
    parsed: list[Any] = []
    for choice in choices:
        try:
            parsed.append(json.loads(choice) if field_type != "string" else choice)
        except json.JSONDecodeError as error:
            raise click.ClickException(f"choice {choice!r} is not a {field_type}") from error
    with _session(ctx) as session:
        if session.get(Instrument, instrument_id) is None:
            raise click.ClickException(f"no instrument {instrument_id}")
        position = len(
            session.exec(
                select(MetadataField.id).where(MetadataField.instrument_id == instrument_id)
            ).all()
        )
        row = MetadataField(
            instrument_id=instrument_id,
            name=name,
            field_type=field_type,
            required=required,
            choices=parsed or None,
            unit=unit,
            position=position,
            persist=persist,
        )
        session.add(row)
        session.flush()
        _echo_json(row.model_dump())


def _gunicorn_command(bind: str, workers: int, timeout: int) -> list[str]:
    wsgi = Path(__file__).resolve().parents[2] / "wsgi.py"
    target = (
        ["--chdir", str(wsgi.parent), "wsgi:app"]
        if wsgi.exists()
        else ["dataflow_lite:create_app()"]
    )
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        bind,
        "--workers",
        str(workers),
        # Threads, not sync workers: a sync worker is killed after --timeout seconds even while
        # a slow upload is still arriving; the gthread worker keeps answering its heartbeat.
        "--worker-class",
        "gthread",
        "--threads",
        "8",
        "--no-control-socket",
        "--timeout",
        str(timeout),
        # The request line would carry activation passwords: log the path without the query.
        "--access-logfile",
        "-",
        "--access-logformat",
        '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms',
        *target,
    ]


@main.command()
@click.option("--bind", default=DEFAULT_BIND, show_default=True, help="HOST:PORT to listen on.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option(
    "--timeout",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Seconds before a silent worker is restarted (uploads may take longer).",
)
@click.option("--no-transfer-worker", is_flag=True, help="Serve the API only; run 'worker' apart.")
@click.pass_context
def serve(
    ctx: click.Context, bind: str, workers: int, timeout: int, no_transfer_worker: bool
) -> None:
    """Serve the API with gunicorn, and run the transfer worker beside it."""
    _init(ctx, upgrade=False)
    os.environ["DATAFLOW_LITE_INSTANCE"] = str(ctx.obj["instance"])
    # Uploads pass through the workers in 1 MiB chunks: glibc would map and unmap each one
    # afresh, and the page faults cost more CPU than hashing the bytes. Keep them on the heap.
    for name, value in GLIBC_MALLOC_TUNING.items():
        os.environ.setdefault(name, value)
    commands = [_gunicorn_command(bind, workers, timeout)]
    if not no_transfer_worker:
        commands.append([sys.executable, "-m", "dataflow_lite", "worker"])
    sys.exit(supervise(commands))


@main.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run the transfer queue's worker (``serve`` starts one)."""
    app = _init(ctx, upgrade=False)
    queue = app.extensions["dataflow_lite.transfers"]
    settings = app.config["DATAFLOW_LITE"]
    # Transfers whose worker died hold a lease until it runs out: look again just after that.
    woken = queue.sweep()
    queue.sweep_later(settings["transfer_lease_seconds"] + 1)
    click.echo(f"transfer worker: {woken} transfer(s) due", err=True)
    # An idle consumer polls less and less often, up to max_delay: keep a new upload's wait short.
    queue.huey.create_consumer(
        workers=settings["transfer_workers"], worker_type="thread", periodic=True, max_delay=1.0
    ).run()


@main.command()
@click.option("--user", "username", default="scientist", show_default=True, help="The first user.")
@click.option("--bind", default=DEFAULT_BIND, show_default=True, help="HOST:PORT to listen on.")
@click.pass_context
def quickstart(ctx: click.Context, username: str, bind: str) -> None:
    """Set up the instance, make sure USER exists (an admin), print a new API key, and serve.

    A user made here gets a random web password, printed once; an existing user keeps theirs.
    """
    app = _init(ctx)
    password = None
    with _session(ctx) as session:
        user = session.exec(select(User).where(User.username == username)).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            user = User(
                username=username,
                name=username,
                is_admin=True,
                password_hash=hash_password(password),
            )
            session.add(user)
            session.flush()
        _, token = api_keys.issue_key(session, app.config["SECRET_KEY"], user, "quickstart")
    url = f"http://{bind}/api/v1"
    width = shutil.get_terminal_size().columns
    click.echo("=" * min(width, 72))
    click.echo(f"dataflow-lite is starting at http://{bind}/ (the API at {url})")
    if password:
        click.echo(f"Web login: {username} / {password}")
    click.echo(f"API key for {username!r}: {token}")
    click.echo(
        f"Files land in {Path(app.instance_path) / app.config['DATAFLOW_LITE']['destination_dir']}"
    )
    click.echo(
        'Try: python -c "from ordflow import API; '
        f"print(API('{token}', server_url='{url}').settings_get())\""
    )
    click.echo("=" * min(width, 72))
    ctx.invoke(serve, bind=bind, workers=2, timeout=30, no_transfer_worker=False)
