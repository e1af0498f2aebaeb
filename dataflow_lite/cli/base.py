"""The ``dataflow-lite`` group: the instance it works on, its runtime, and how errors end.

Every command works on one instance folder: ``--instance DIR``, else ``$DATAFLOW_LITE_INSTANCE``,
else ``./instance``. Only ``init`` and ``quickstart`` make one (and ``db`` upgrades one); every
other command refuses a folder without a catalog rather than quietly start an empty instance.
Commands parse their arguments, call one service function as the system
identity ``system("cli")`` (an administrator) and print the answer; a refusal from a service is
one line on stderr and exit status 1, for every command at once (see ``ServiceGroup``).
"""

from __future__ import annotations

import json
import os
import select
import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import OperationalError

from dataflow_lite import bootstrap
from dataflow_lite.adapter import adapter_settings, discover_adapters
from dataflow_lite.bootstrap import Runtime
from dataflow_lite.services.errors import ServiceError
from dataflow_lite.services.identity import Identity, system
from dataflow_lite.settings import ConfigError, load_settings
from dataflow_lite.store.db import Database
from dataflow_lite.store.schema import SchemaError

#: Who the commands act as: whoever may run them administers the instance.
CLI: Identity = system("cli")

_RUNTIME = "runtime"


def one_line(error: ServiceError) -> str:
    """A service's refusal in one line: its message, then field messages that add something."""
    parts = [error.message]
    for field, messages in error.errors.items():
        parts += [f"{field}: {message}" for message in messages if message != error.message]
    return "; ".join(parts).replace("\n", " ")


class ServiceGroup(click.Group):
    """The top group: a ServiceError, a bad configuration or an OS error ends any command in one
    line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ServiceError as error:
            raise click.ClickException(one_line(error)) from error
        except ConfigError as error:
            raise click.ClickException(f"configuration error: {error}") from error
        except OperationalError as error:  # a database server that is down or refuses us
            reason = " ".join(str(error.orig).split())  # the driver's words, on one line
            raise click.ClickException(f"the catalog cannot be used: {reason}") from error
        except SchemaError as error:  # one line naming 'db upgrade', never a traceback
            raise click.ClickException(str(error)) from error
        except BrokenPipeError as error:
            if not _stdout_gone():
                raise click.ClickException(str(error)) from error
            # The reader went away (`| head`): stop without a word.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        except OSError as error:  # a folder or file the command cannot read or write
            raise click.ClickException(str(error)) from error


def is_instance(instance: Path) -> bool:
    """Whether ``instance`` is an instance folder: one whose catalog database exists."""
    if not instance.is_dir():
        return False
    settings = load_settings(instance, extra=adapter_settings(discover_adapters()))
    database = Database.from_setting(instance, settings["database"])
    # A folder configured with a server's catalog was set up on purpose: that is an instance.
    return database.path.is_file() if database.is_sqlite else True


def runtime() -> Runtime:
    """The runtime of the instance the command works on, built once per invocation.

    A folder that is not an instance is refused in one line (``init`` makes it one first).
    """
    root = click.get_current_context().find_root()
    rt = root.obj.get(_RUNTIME)
    if rt is None:
        instance = root.obj["instance"]
        if not is_instance(instance):
            raise click.ClickException(
                f"no dataflow-lite instance at {instance}: run `dataflow-lite init` or pass "
                "--instance"
            )
        rt = root.obj[_RUNTIME] = bootstrap.build(instance)
        # CliRunner runs many commands in one process: give their connections back.
        root.call_on_close(rt.engine.dispose)
    return rt


def echo_json(data: dict[str, Any]) -> None:
    """Print ``data`` as indented JSON on stdout (dates as strings)."""
    click.echo(json.dumps(data, indent=2, default=str))


def echo_done(message: str) -> None:
    """Say on stderr what a command did, so that stdout stays for its output."""
    click.echo(message, err=True)


@click.group(cls=ServiceGroup)
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


def _stdout_gone() -> bool:
    """Whether standard output's reader went away (its pipe broken), not some other pipe's."""
    if not hasattr(select, "poll"):  # Windows: no way to ask; a broken pipe is most likely it
        return True
    poller = select.poll()
    poller.register(sys.stdout.fileno(), select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))
