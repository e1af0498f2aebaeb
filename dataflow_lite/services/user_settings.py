"""Per-user settings as DataFlow names them: where uploads go, and by which adapter.

``globus.destination_endpoint`` names any registered endpoint (whatever its adapter: ordflow users
only ever set this one); ``transport.protocol`` then reads that endpoint's adapter.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from dataflow_lite.adapter import Adapters
from dataflow_lite.api.errors import DataflowError
from dataflow_lite.store.models import Endpoint, User, UserSetting

DESTINATION = "globus.destination_endpoint"
PROTOCOL = "transport.protocol"
KNOWN = (DESTINATION, PROTOCOL)


def default_endpoint(session: Session) -> Endpoint:
    """The server's default destination (``init`` registers one)."""
    endpoint = session.exec(
        select(Endpoint).order_by(col(Endpoint.is_default).desc(), col(Endpoint.created_at))
    ).first()
    if endpoint is None:
        raise DataflowError(409, "no destination endpoint is registered: run 'dataflow-lite init'")
    return endpoint


def destination_endpoint(session: Session, user: User) -> Endpoint:
    """Where ``user``'s next datasets go."""
    chosen = session.get(UserSetting, (user.id, DESTINATION))
    endpoint = session.get(Endpoint, chosen.value) if chosen else None
    return endpoint or default_endpoint(session)


def settings_view(session: Session, user: User) -> dict[str, Any]:
    """The settings in DataFlow's shape."""
    endpoint = destination_endpoint(session, user)
    return {
        "globus": {"destination_endpoint": endpoint.id},
        "transport": {"protocol": endpoint.adapter},
    }


def _endpoint_list(endpoints: list[Endpoint]) -> list[str]:
    return [f"{endpoint.id} ({endpoint.name}, {endpoint.adapter})" for endpoint in endpoints]


def change_setting(
    session: Session, user: User, adapters: Adapters, setting: str, value: str
) -> None:
    """Change one setting, or raise a 400 that lists what is allowed."""
    endpoints = list(session.exec(select(Endpoint).order_by(col(Endpoint.created_at))).all())
    if setting == DESTINATION:
        if session.get(Endpoint, value.strip()) is None:
            raise DataflowError(
                400,
                f"{value!r} is not a registered destination endpoint",
                {"value": [f"registered endpoints: {', '.join(_endpoint_list(endpoints))}"]},
            )
        session.merge(UserSetting(user_id=user.id, key=DESTINATION, value=value.strip()))
    elif setting == PROTOCOL:
        current = destination_endpoint(session, user)
        if value not in adapters.names:
            raise DataflowError(
                400,
                f"transport {value!r} is not installed on this server",
                {"value": [f"installed transports: {', '.join(adapters.names)}"]},
            )
        if value != current.adapter:
            of_type = [endpoint for endpoint in endpoints if endpoint.adapter == value]
            raise DataflowError(
                400,
                f"the destination endpoint {current.id} uses {current.adapter!r}: choose an "
                f"endpoint of type {value!r} with {DESTINATION} to use {value!r}",
                {"value": [f"{value} endpoints: {', '.join(_endpoint_list(of_type)) or 'none'}"]},
            )
    else:
        raise DataflowError(
            400,
            f"unknown setting {setting!r}",
            {"setting": [f"known settings: {', '.join(KNOWN)}"]},
        )
