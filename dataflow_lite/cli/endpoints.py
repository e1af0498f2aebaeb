"""``dataflow-lite endpoint`` and ``dataflow-lite transfers``: where files go, and how they fare.

``endpoint add`` takes the options each installed adapter declares (``TransferAdapter.options``)
as flags, built when the command runs: an adapter installed later brings its own flags.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from dataflow_lite import bootstrap
from dataflow_lite.adapter import DONE, Option
from dataflow_lite.cli.base import CLI, echo_done, echo_json, main, runtime
from dataflow_lite.services.endpoints import (
    check_endpoint,
    declared_options,
    list_endpoints,
    register_endpoint,
    remove_endpoint,
)
from dataflow_lite.services.transfers import (
    adopt_transfers,
    cancel_transfer,
    list_transfers,
    retry_transfer,
)
from dataflow_lite.store.models import Endpoint
from dataflow_lite.transfers.claims import host_name

# Adapter options reach the callback under this prefix, so that no option name can clash with
# the command's own parameters (an adapter may well declare a "name").
_PREFIX = "adapter_option_"
_PARAMS = "dataflow_lite.cli.endpoints.adapter_params"
SECRET_SHOWN_AS = "********"


def _installed_options() -> dict[str, Sequence[Option]]:
    """Each installed adapter's declared options, by adapter name, from the classes alone.

    Read from the adapter classes rather than the runtime so that ``--help`` opens no catalog.
    """
    return {name: cls.options for name, cls in sorted(bootstrap.discover_adapters().items())}


def _help(declared: list[tuple[str, Option]]) -> str:
    """The flag's help: what each adapter that declares it says, after the adapter's name."""
    helps = {option.help for _, option in declared}
    if len(helps) == 1:
        text = f"{', '.join(adapter for adapter, _ in declared)}: {helps.pop()}"
    else:
        text = "; ".join(f"{adapter}: {option.help}" for adapter, option in declared)
    return text + (" [secret]" if any(option.secret for _, option in declared) else "")


def adapter_params(reserved: set[str]) -> list[click.Option]:
    """One ``--flag`` per distinct option name across the installed adapters.

    Values stay text: each adapter's ``check_options`` converts and checks its own, and names
    the flag when one is wrong. Flags in ``reserved`` (the command's own) are left out.
    """
    by_name: dict[str, list[tuple[str, Option]]] = {}
    for adapter, options in _installed_options().items():
        for option in options:
            by_name.setdefault(option.name, []).append((adapter, option))
    params = []
    for name, declared in by_name.items():
        flag = declared[0][1].flag
        if flag in reserved:
            continue
        types = {option.type for _, option in declared}
        # Shown as the type the adapters convert it to, though click passes the text on.
        shown = click.types.convert_type(types.pop()) if len(types) == 1 else click.STRING
        params.append(
            click.Option(
                [flag, _PREFIX + name],
                metavar=shown.name.upper(),
                default=None,
                help=_help(declared),
            )
        )
    return params


class AdapterOptionsCommand(click.Command):
    """A command whose flags include every installed adapter's endpoint options."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        # Built once per invocation: click asks for the parameters several times while parsing.
        extra = ctx.meta.get(_PARAMS)
        if extra is None:
            reserved = {opt for param in params for opt in param.opts}
            extra = ctx.meta[_PARAMS] = adapter_params(reserved)
        own = len(self.params)
        return [*params[:own], *extra, *params[own:]]


def _shown(endpoint: Endpoint, declared: dict[str, list[Option]]) -> dict[str, Any]:
    """An endpoint as JSON, the values of secret options hidden."""
    secret = {option.name for option in declared.get(endpoint.adapter, ()) if option.secret}
    data = endpoint.model_dump()
    data["options"] = {
        name: SECRET_SHOWN_AS if name in secret else value
        for name, value in (endpoint.options or {}).items()
    }
    return data


@main.group()
def endpoint() -> None:
    """Manage destination endpoints."""


@endpoint.command("add", cls=AdapterOptionsCommand)
@click.argument("name")
@click.option(
    "--type", "adapter_name", required=True, help="The adapter that serves it (see the flags)."
)
@click.option(
    "--id",
    "endpoint_id",
    default=None,
    help="The endpoint's UUID (default: a new one); for an adapter whose endpoint is a "
    "collection (globus), the collection's.",
)
@click.option("--default", is_flag=True, help="Make it the destination of users without a setting.")
def endpoint_add(
    name: str, adapter_name: str, endpoint_id: str | None, default: bool, **given: str | None
) -> None:
    """Register a destination endpoint and print it as JSON.

    Each adapter takes the options it declares; the help of each flag names the adapters.
    """
    rt = runtime()
    options = {
        key.removeprefix(_PREFIX): value for key, value in given.items() if value is not None
    }
    declared = declared_options(rt)
    if adapter_name in declared:
        takes = {option.name for option in declared[adapter_name]}
        if unknown := [name for name in options if name not in takes]:
            flags = ", ".join(Option(name, "").flag for name in unknown)
            raise click.UsageError(f"a {adapter_name} endpoint does not take {flags}")
    row = register_endpoint(rt, CLI, name, adapter_name, options, endpoint_id, default)
    echo_json(_shown(row, declared))
    adapter = bootstrap.discover_adapters().get(row.adapter)
    for warning in adapter.option_warnings(row.options or {}) if adapter is not None else []:
        click.echo(f"warning: {warning}", err=True)


@endpoint.command("list")
def endpoint_list() -> None:
    """List the destination endpoints, oldest first."""
    rt = runtime()
    declared = declared_options(rt)
    for row in list_endpoints(rt, CLI):
        echo_json(_shown(row, declared))


@endpoint.command("remove")
@click.argument("name")
def endpoint_remove(name: str) -> None:
    """Remove endpoint NAME (or id), if it holds no dataset; its users get the default."""
    row = remove_endpoint(runtime(), CLI, name)
    echo_done(f"endpoint {row.name} removed")


@endpoint.command("check")
@click.argument("name")
@click.option("--as", "username", default=None, help="Use this user's activation credentials.")
def endpoint_check(name: str, username: str | None) -> None:
    """A live preflight of endpoint NAME: reachable, authenticated, writable, free space."""
    _, checks = check_endpoint(runtime(), CLI, name, username)
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
def transfers_list(state: str | None, dataset_id: int | None, limit: int) -> None:
    """List transfers, failed ones first, then newest first."""
    rt = runtime()
    rows = list_transfers(
        rt, CLI, dataset_id=dataset_id, state=state, failed_first=True, limit=limit
    )
    here = host_name(rt.settings)
    for row in rows:
        transfer = row.transfer
        error = f"  {transfer.last_error}" if transfer.last_error else ""
        elsewhere = transfer.staged_on not in (None, here) and transfer.state != DONE
        host = f" staged on {transfer.staged_on}" if elsewhere else ""
        click.echo(
            f"{transfer.id:>6} {transfer.state:<9} {transfer.kind:<8} dataset "
            f"{transfer.dataset_id} {transfer.adapter} attempts {transfer.attempts}{host}{error}"
        )


@transfers.command("adopt")
@click.argument("lost_host")
def transfers_adopt(lost_host: str) -> None:
    """Run here the transfers of LOST_HOST, a host that will not come back.

    First copy its staging folder's files into this host's; transfers whose staged file is not
    here are named and left to it.
    """
    adopted = adopt_transfers(runtime(), CLI, lost_host)
    for label, ids in (
        ("still running on it", adopted.running),
        ("staged file not here", adopted.missing),
    ):
        for transfer_id in ids:
            click.echo(f"transfer {transfer_id}: {label}: left on {lost_host}")
    echo_done(f"{len(adopted.taken)} transfer(s) of {lost_host} adopted by this host")


@transfers.command("retry")
@click.argument("transfer_ids", type=int, nargs=-1, required=True)
def transfers_retry(transfer_ids: tuple[int, ...]) -> None:
    """Queue failed transfers again (the worker picks them up)."""
    rt = runtime()
    for transfer_id in transfer_ids:
        retry_transfer(rt, CLI, transfer_id)
        echo_done(f"transfer {transfer_id} queued again")


@transfers.command("cancel")
@click.argument("transfer_ids", type=int, nargs=-1, required=True)
def transfers_cancel(transfer_ids: tuple[int, ...]) -> None:
    """Cancel transfers that have not finished; their staged files are kept."""
    rt = runtime()
    for transfer_id in transfer_ids:
        cancel_transfer(rt, CLI, transfer_id)
        echo_done(f"transfer {transfer_id} cancelled")
