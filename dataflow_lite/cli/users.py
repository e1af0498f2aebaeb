"""``dataflow-lite user`` and ``dataflow-lite key``: who may use the server, and their API keys."""

from __future__ import annotations

import sys

import click

from dataflow_lite.cli.base import CLI, echo_done, echo_json, main, runtime
from dataflow_lite.services.users import (
    add_user,
    issue_key,
    list_keys,
    list_users,
    revoke_key,
    set_password,
)


def _password_from_stdin() -> str:
    """One line of stdin, without its line ending (the services check the rules)."""
    return sys.stdin.readline().rstrip("\r\n")


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
def user_add(username: str, name: str, admin: bool, password_stdin: bool) -> None:
    """Add a user and print it as JSON."""
    password = _password_from_stdin() if password_stdin else None
    row = add_user(runtime(), CLI, username, name, is_admin=admin, password=password)
    echo_json(row.model_dump(include={"id", "username", "name", "is_admin"}))


@user.command("list")
def user_list() -> None:
    """List the users by username, one JSON object each (never their passwords)."""
    for row in list_users(runtime(), CLI):
        echo_json(
            row.model_dump(
                include={"id", "username", "name", "is_admin", "is_active", "created_at"}
            )
        )


@user.command("password")
@click.argument("username")
def user_password(username: str) -> None:
    """Set USERNAME's web login password from one line of stdin."""
    set_password(runtime(), CLI, username, _password_from_stdin())
    echo_done(f"password of {username!r} set")


@main.group()
def key() -> None:
    """Manage API keys."""


@key.command("create")
@click.argument("username")
@click.option("--name", default="", help="What the key is for.")
@click.option(
    "--expires-days",
    type=click.IntRange(min=1),
    default=None,
    help="Days until it expires (default: the api_key_days setting).",
)
def key_create(username: str, name: str, expires_days: int | None) -> None:
    """Create an API key for USERNAME and print it (only the key, on stdout; shown once)."""
    click.echo(issue_key(runtime(), CLI, username, name, expires_days).key)


@key.command("list")
@click.argument("username")
def key_list(username: str) -> None:
    """List USERNAME's keys, newest first (never the keys themselves)."""
    for row in list_keys(runtime(), CLI, username):
        echo_json(row.model_dump(exclude={"secret_sha256"}))


@key.command("revoke")
@click.argument("key_or_id")
def key_revoke(key_or_id: str) -> None:
    """Revoke a key, given the key itself or its id (from 'key list')."""
    row = revoke_key(runtime(), CLI, key_or_id)
    echo_done(f"API key {row.id} revoked")
