"""``init``, ``serve``, ``worker`` and ``quickstart``: set an instance up and run it."""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import signal
import socket
import sys
from pathlib import Path

import click

from dataflow_lite.bootstrap import Runtime
from dataflow_lite.cli.base import CLI, echo_done, main, runtime
from dataflow_lite.cli.db import report, upgrade_instance
from dataflow_lite.cli.supervisor import Child, supervise
from dataflow_lite.services.endpoints import list_endpoints, register_endpoint
from dataflow_lite.services.errors import Conflict
from dataflow_lite.services.users import add_user, issue_key
from dataflow_lite.transfers.debris import remove_debris

#: The endpoint ``init`` registers, named after the adapter that serves it. The one place the
#: core names a built-in adapter: a fresh instance needs somewhere to put files.
DEFAULT_ENDPOINT = "local"
#: Connections one worker holds at once (idle ones included) before it stops accepting more.
WORKER_CONNECTIONS = 1000
DEFAULT_BIND = "127.0.0.1:8000"
GLIBC_MALLOC_TUNING = {
    "MALLOC_MMAP_THRESHOLD_": str(16 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(64 << 20),
}


def _destination(rt: Runtime) -> Path:
    return rt.instance / rt.settings["destination_dir"]


def _init(*, upgrade: bool = True) -> Runtime:
    """The runtime, once the instance has a default endpoint (a local folder if it had none).

    ``init`` and ``quickstart`` upgrade the schema first; ``serve`` and ``worker`` never do: an
    older schema waits for ``db upgrade`` and its backup.
    """
    if upgrade:
        done = upgrade_instance(click.get_current_context().find_root().obj["instance"])
        if done.from_revision is not None and done.from_revision != done.to_revision:
            report(done, err=True)
    rt = runtime()
    if not list_endpoints(rt, CLI):
        destination = _destination(rt)
        destination.mkdir(parents=True, exist_ok=True)
        register_endpoint(
            rt,
            CLI,
            DEFAULT_ENDPOINT,
            DEFAULT_ENDPOINT,
            {"path": str(destination)},
            default=True,
        )
    return rt


def check_bind(bind: str) -> None:
    """Refuse in one line a HOST:PORT that cannot be listened on (most often: in use), before
    gunicorn retries it for seconds. Other forms (``unix:PATH``, ``fd://N``) go to gunicorn."""
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit() or "/" in bind:
        return
    host = host.strip("[]")
    # As gunicorn binds it: IPv6 for an IPv6 literal only, IPv4 for any name.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        _, kind, proto, _, address = socket.getaddrinfo(
            host, int(port), family, socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does
            probe.bind(address)
    except OSError as error:
        reason = error.strerror or str(error)
        raise click.ClickException(
            f"cannot listen on {bind}: {reason}; pass --bind HOST:PORT with a free port"
        ) from None


@main.command()
def init() -> None:
    """Create the instance folder, its keys, the database and a default local endpoint."""
    echo_done(f"instance ready in {_init().instance}")


def gunicorn_command(bind: str, workers: int, timeout: int) -> list[str]:
    """The command line of the gunicorn server that ``serve`` starts."""
    wsgi = Path(__file__).resolve().parents[2] / "wsgi.py"
    target = (
        ["--chdir", str(wsgi.parent), "wsgi:app"]
        if wsgi.exists()
        else ["dataflow_lite.app:served_app()"]
    )
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        bind,
        "--workers",
        str(workers),
        # gevent: each connection is a greenlet, not a thread, so connections that send
        # nothing or trickle their headers pin nothing, and a slow upload keeps its worker's
        # heartbeat going (a sync worker would be killed after --timeout seconds).
        "--worker-class",
        "gevent",
        "--worker-connections",
        str(WORKER_CONNECTIONS),
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
def serve(bind: str, workers: int, timeout: int, no_transfer_worker: bool) -> None:
    """Serve the API with gunicorn, and run the transfer worker beside it."""
    check_bind(bind)
    rt = _init(upgrade=False)
    os.environ["DATAFLOW_LITE_INSTANCE"] = str(rt.instance)
    # Uploads pass through the workers in 1 MiB chunks: glibc would map and unmap each one
    # afresh, and the page faults cost more CPU than hashing the bytes. Keep them on the heap.
    for name, value in GLIBC_MALLOC_TUNING.items():
        os.environ.setdefault(name, value)
    children = [Child(gunicorn_command(bind, workers, timeout), signal.SIGINT)]
    if not no_transfer_worker:
        children.append(Child([sys.executable, "-m", "dataflow_lite", "worker"], signal.SIGTERM))
    sys.exit(supervise(children))


@main.command()
def worker() -> None:
    """Run the transfer queue's worker (``serve`` starts one)."""
    rt = _init(upgrade=False)
    # What killed web workers and transfer workers left: before any transfer runs again.
    for line in remove_debris(rt.engine, rt.adapters, rt.adapters.context.staging_dir):
        echo_done(f"transfer worker: {line}")
    # Transfers whose worker died hold a lease until it runs out: look again just after that.
    woken = rt.queue.sweep()
    rt.queue.sweep_later(rt.settings["transfer_lease_seconds"] + 1)
    echo_done(f"transfer worker: {woken} transfer(s) due")
    rt.queue.listen()
    # An idle consumer polls less and less often, up to max_delay: keep a new upload's wait
    # short (a run of small files waits for it once per batch; one indexed read per poll).
    rt.queue.huey.create_consumer(
        workers=rt.settings["transfer_workers"], worker_type="thread", periodic=True, max_delay=0.2
    ).run()


@main.command()
@click.option("--user", "username", default="scientist", show_default=True, help="The first user.")
@click.option("--bind", default=DEFAULT_BIND, show_default=True, help="HOST:PORT to listen on.")
@click.pass_context
def quickstart(ctx: click.Context, username: str, bind: str) -> None:
    """Set up the instance, make sure USER exists (an admin), print a new API key, and serve.

    A user made here gets a random web password, printed once; an existing user keeps theirs.
    """
    check_bind(bind)
    rt = _init()
    password: str | None = secrets.token_urlsafe(12)
    try:
        add_user(rt, CLI, username, username, is_admin=True, password=password)
    except Conflict:  # the user exists: their password stays as it is
        password = None
    token = issue_key(rt, CLI, username, "quickstart").key
    url = f"http://{bind}/api/v1"
    rule = "=" * min(shutil.get_terminal_size().columns, 72)
    python = shlex.quote(sys.executable)
    click.echo(rule)
    click.echo(f"dataflow-lite is starting at http://{bind}/ (the API at {url})")
    if password:
        click.echo(f"Web login: {username} / {password}")
    click.echo(f"API key for {username!r}: {token}")
    click.echo(f"Files land in {_destination(rt)}")
    click.echo(
        f"Try: {python} -m pip install ordflow==0.0.2 && {python} -c "
        f"\"from ordflow import API; print(API('{token}', server_url='{url}').settings_get())\""
    )
    click.echo(rule)
    ctx.invoke(serve, bind=bind, workers=2, timeout=30, no_transfer_worker=False)
