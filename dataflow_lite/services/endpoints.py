"""Destination endpoints: register, list, check and remove them (administrators)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from sqlmodel import col, func, select

from dataflow_lite.adapter import Check, Option
from dataflow_lite.bootstrap import Runtime
from dataflow_lite.services import audit
from dataflow_lite.services.errors import Conflict, Invalid, NotFound, invalid
from dataflow_lite.services.identity import Identity
from dataflow_lite.services.policy import authorize, use_case
from dataflow_lite.store import credentials
from dataflow_lite.store.db import unit_of_work
from dataflow_lite.store.models import Dataset, Endpoint, User, UserSetting, row_id

MAX_NAME = 150


def declared_options(rt: Runtime) -> dict[str, list[Option]]:
    """Each installed adapter's endpoint options, by adapter name (for forms and flags)."""
    return {name: list(rt.adapters.get_class(name).options) for name in rt.adapters.names}


@use_case("endpoint.register")
def register_endpoint(
    rt: Runtime,
    identity: Identity,
    name: str,
    adapter: str,
    options: dict[str, Any],
    endpoint_id: str | None = None,
    default: bool = False,
) -> Endpoint:
    """Register a destination endpoint served by ``adapter``, with the options it declares.

    ``default`` makes it the destination of users who have not chosen one (the previous
    default stops being one).
    """
    authorize(identity, "endpoint.register")
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise invalid("name", f"an endpoint's name is 1 to {MAX_NAME} characters")
    try:
        adapter_class = rt.adapters.get_class(adapter)
    except LookupError as error:
        raise invalid("type", str(error)) from error
    given = dict(options)
    id_option = adapter_class.id_option
    if id_option is not None:
        # The endpoint is the collection: one id names both, whichever was given.
        given[id_option] = given.get(id_option) or endpoint_id
        endpoint_id = endpoint_id or given[id_option]
    try:
        checked = adapter_class.check_options(given)
    except ValueError as error:
        raise Invalid(str(error)) from error
    try:
        endpoint_id = str(uuid.UUID(endpoint_id)) if endpoint_id else str(uuid.uuid4())
    except ValueError as error:
        raise invalid("id", f"{endpoint_id!r} is not a UUID") from error
    with unit_of_work(rt.engine) as work:
        session = work.session
        if session.exec(select(Endpoint).where(Endpoint.name == name)).first():
            raise Conflict(f"an endpoint named {name!r} exists already")
        if session.get(Endpoint, endpoint_id):
            raise Conflict(f"an endpoint with id {endpoint_id} exists already")
        for other in session.exec(select(Endpoint).where(Endpoint.adapter == adapter)):
            if adapter_class.overlaps(checked, other.options):
                # Two endpoints in one tree would share dataset folders and their metadata.json.
                raise Conflict(
                    f"endpoint {other.name} already uses {other.options.get('path', 'that tree')}:"
                    " the paths of two endpoints may not be the same or one inside the other"
                )
        if default:
            for other in session.exec(select(Endpoint).where(col(Endpoint.is_default))):
                other.is_default = False
        endpoint = Endpoint(
            id=endpoint_id, name=name, adapter=adapter, options=checked, is_default=default
        )
        session.add(endpoint)
        summary = {"name": name, "adapter": adapter, "options": checked, "default": default}
        audit.record(work, identity, "endpoint.register", "endpoint", endpoint_id, summary)
        return endpoint


@use_case("endpoint.list")
def list_endpoints(rt: Runtime, identity: Identity) -> Sequence[Endpoint]:
    """Every registered endpoint, oldest first."""
    authorize(identity, "endpoint.list")
    with unit_of_work(rt.engine, write=False) as work:
        return work.session.exec(select(Endpoint).order_by(col(Endpoint.created_at))).all()


def named_endpoint(session: Any, name: str) -> Endpoint:
    """The endpoint called ``name`` (or with that id), else NotFound."""
    endpoint = session.exec(select(Endpoint).where(Endpoint.name == name)).first()
    if endpoint is None:
        endpoint = session.get(Endpoint, name)
    if endpoint is None:
        raise NotFound(f"no endpoint named {name!r}")
    return endpoint


@use_case("endpoint.remove")
def remove_endpoint(rt: Runtime, identity: Identity, name: str) -> Endpoint:
    """Remove an endpoint that holds no dataset; users who chose it fall back to the default."""
    authorize(identity, "endpoint.remove")
    with unit_of_work(rt.engine) as work:
        session = work.session
        endpoint = named_endpoint(session, name)
        held = session.exec(
            select(func.count()).select_from(Dataset).where(Dataset.endpoint_id == endpoint.id)
        ).one()
        if held:
            raise Conflict(
                f"endpoint {endpoint.name} holds {held} dataset(s): they stay registered there"
            )
        for setting in session.exec(select(UserSetting).where(UserSetting.value == endpoint.id)):
            session.delete(setting)
        session.delete(endpoint)
        summary = {"name": endpoint.name, "adapter": endpoint.adapter}
        audit.record(work, identity, "endpoint.remove", "endpoint", endpoint.id, summary)
        return endpoint


@use_case("endpoint.check")
def check_endpoint(
    rt: Runtime, identity: Identity, name: str, as_username: str | None = None
) -> tuple[Endpoint, list[Check]]:
    """A live preflight of an endpoint: reachable, authenticated, writable, free space.

    With ``as_username``, the checks use that user's activation credentials.
    """
    authorize(identity, "endpoint.check")
    with unit_of_work(rt.engine, write=False) as work:
        endpoint = named_endpoint(work.session, name)
        kept = None
        if as_username:
            user = work.session.exec(select(User).where(User.username == as_username)).first()
            if user is None:
                raise NotFound(f"no user {as_username!r}")
            kept = credentials.load(work.session, rt.cipher, row_id(user), endpoint.id)
    return endpoint, live_checks(rt, endpoint, kept)


def live_checks(rt: Runtime, endpoint: Endpoint, kept: Any = None) -> list[Check]:
    """The adapter's live checks of ``endpoint``; a failure to check is a failed check."""
    try:
        return rt.adapters.for_endpoint(endpoint.adapter, endpoint.options).check(kept)
    except Exception as error:  # an unreachable host must not break the caller
        return [Check("reachable", False, str(error))]


@use_case("endpoint.check")
def check_all(rt: Runtime, identity: Identity) -> list[tuple[Endpoint, list[Check]]]:
    """Every endpoint with its live checks as last known (the server's own view, no user's
    credentials); an old answer is refreshed in the background (``dataflow_lite.live_checks``)."""
    authorize(identity, "endpoint.check")
    with unit_of_work(rt.engine, write=False) as work:
        endpoints = work.session.exec(select(Endpoint).order_by(col(Endpoint.created_at))).all()
    checked = []
    for endpoint in endpoints:
        known = rt.live.ask(
            ("check", endpoint.id),
            partial(live_checks, rt, endpoint),
            partial(_no_answer, rt, endpoint.name),
        )
        checked.append((endpoint, _aged(known.value, known.age)))
    return checked


def _no_answer(rt: Runtime, name: str) -> list[Check]:
    said = f"no answer within {rt.live.timeout} s: asking again in the background"
    return [Check("reachable", False, f"{name}: {said}")]


def _aged(checks: list[Check], age: float | None) -> list[Check]:
    """The checks, their details saying how old they are once that is a minute or more."""
    if age is None or age < 60:
        return checks
    return [replace(check, detail=f"{check.detail} ({int(age // 60)} min ago)") for check in checks]
