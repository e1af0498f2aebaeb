"""Per-user settings as DataFlow names them: where uploads go, and by which adapter.

``globus.destination_endpoint`` names any registered endpoint (whatever its adapter: ordflow users
only ever set this one); ``transport.protocol`` then reads that endpoint's adapter.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from dataflow_lite.bootstrap import Runtime
from dataflow_lite.services import audit
from dataflow_lite.services.errors import Conflict, Invalid
from dataflow_lite.services.identity import Identity
from dataflow_lite.services.policy import authorize, use_case
from dataflow_lite.store.db import unit_of_work
from dataflow_lite.store.models import Endpoint, User, UserSetting, row_id

DESTINATION = "globus.destination_endpoint"
PROTOCOL = "transport.protocol"
KNOWN = (DESTINATION, PROTOCOL)


def default_endpoint(session: Session) -> Endpoint:
    """The server's default destination (``init`` registers one)."""
    endpoint = session.exec(
        select(Endpoint).order_by(col(Endpoint.is_default).desc(), col(Endpoint.created_at))
    ).first()
    if endpoint is None:
        raise Conflict("no destination endpoint is registered: run 'dataflow-lite init'")
    return endpoint


def destination(session: Session, user: User) -> Endpoint:
    """Where ``user``'s next datasets go."""
    chosen = session.get(UserSetting, (user.id, DESTINATION))
    endpoint = session.get(Endpoint, chosen.value) if chosen else None
    return endpoint or default_endpoint(session)


def _view(session: Session, user: User) -> dict[str, Any]:
    endpoint = destination(session, user)
    return {
        "globus": {"destination_endpoint": endpoint.id},
        "transport": {"protocol": endpoint.adapter},
    }


def _endpoint_list(endpoints: list[Endpoint]) -> list[str]:
    return [f"{endpoint.id} ({endpoint.name}, {endpoint.adapter})" for endpoint in endpoints]


@use_case("setting.read")
def get_settings(rt: Runtime, identity: Identity) -> dict[str, Any]:
    """The user's settings in DataFlow's shape: destination endpoint and transport."""
    authorize(identity, "setting.read")
    assert identity.user is not None
    with unit_of_work(rt.engine, write=False) as work:
        return _view(work.session, identity.user)


@use_case("setting.change")
def change_setting(rt: Runtime, identity: Identity, setting: str, value: str) -> dict[str, Any]:
    """Change one setting, or refuse naming what is allowed; answer with all the settings."""
    authorize(identity, "setting.change")
    assert identity.user is not None
    user = identity.user
    with unit_of_work(rt.engine) as work:
        before = _stored(work.session, user, setting)
        _change(work.session, user, rt.adapters.names, setting, value)
        changed = audit.changes({"value": before}, {"value": _stored(work.session, user, setting)})
        if changed:
            summary = {"setting": setting, **changed}
            audit.record(work, identity, "setting.change", "user", user.id, summary)
        return _view(work.session, user)


def _stored(session: Session, user: User, setting: str) -> str | None:
    """The value kept for ``setting``: None for the default and for derived settings."""
    row = session.get(UserSetting, (user.id, setting))
    return row.value if row else None


def _change(session: Session, user: User, installed: list[str], setting: str, value: str) -> None:
    endpoints = list(session.exec(select(Endpoint).order_by(col(Endpoint.created_at))).all())
    if setting == DESTINATION:
        if session.get(Endpoint, value.strip()) is None:
            raise Invalid(
                f"{value!r} is not a registered destination endpoint",
                {"value": [f"registered endpoints: {', '.join(_endpoint_list(endpoints))}"]},
            )
        session.merge(UserSetting(user_id=row_id(user), key=DESTINATION, value=value.strip()))
    elif setting == PROTOCOL:
        current = destination(session, user)
        if value not in installed:
            raise Invalid(
                f"transport {value!r} is not installed on this server",
                {"value": [f"installed transports: {', '.join(installed)}"]},
            )
        if value != current.adapter:
            of_type = [endpoint for endpoint in endpoints if endpoint.adapter == value]
            raise Invalid(
                f"the destination endpoint {current.id} uses {current.adapter!r}: choose an "
                f"endpoint of type {value!r} with {DESTINATION} to use {value!r}",
                {"value": [f"{value} endpoints: {', '.join(_endpoint_list(of_type)) or 'none'}"]},
            )
    else:
        raise Invalid(
            f"unknown setting {setting!r}",
            {"setting": [f"known settings: {', '.join(KNOWN)}"]},
        )
