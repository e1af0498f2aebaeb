"""Endpoint activation: can the server write to an endpoint for a user now, and proving it can.

Live checks and logins reach other hosts and may take seconds: they run outside any
transaction, so a slow host never holds the catalog's write lock, and the activation state is
remembered and asked again in the background (``dataflow_lite.live_checks``), so that no page
or API call waits for a host that does not answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from dataflow_lite.adapter import (
    ACTIVATION_FAILED,
    ALREADY_ACTIVATED,
    AUTO_ACTIVATED,
    Activation,
    AdapterError,
    Credentials,
)
from dataflow_lite.bootstrap import Runtime
from dataflow_lite.live_checks import Known
from dataflow_lite.services import audit, user_settings
from dataflow_lite.services.errors import Invalid, NotFound, invalid
from dataflow_lite.services.identity import Identity
from dataflow_lite.services.policy import authorize, use_case
from dataflow_lite.store import credentials
from dataflow_lite.store.db import unit_of_work
from dataflow_lite.store.models import Endpoint, User

#: What clients may name instead of an endpoint id: the user's destination, and the server's own
#: staging area (the "source", always active).
DESTINATION, SOURCE = "destination", "source"
ACTIVE_CODES = (ALREADY_ACTIVATED, AUTO_ACTIVATED)


@dataclass(frozen=True)
class EndpointStatus:
    """A registered endpoint and whether it can take the user's files now."""

    endpoint: Endpoint
    activation: Activation
    #: Seconds since the adapter said so; None: no answer yet (asked in the background).
    age: float | None = 0.0
    #: Whether activating it takes a username and password (else no login can change it).
    takes_credentials: bool = False

    @property
    def active(self) -> bool:
        return self.activation.code in ACTIVE_CODES


def _endpoint(session: Session, user: User, endpoint_ref: str | None) -> Endpoint:
    if endpoint_ref in (None, "", DESTINATION):
        return user_settings.destination(session, user)
    endpoint = session.get(Endpoint, endpoint_ref)
    if endpoint is None:
        raise NotFound(f"endpoint {endpoint_ref} is not registered on this server")
    return endpoint


def _live_activation(
    rt: Runtime, endpoint: Endpoint, user_id: int, kept: Credentials | None
) -> Known[Activation]:
    """The endpoint's activation for the user, as last known (see ``live_checks``)."""

    def check() -> Activation:
        try:
            adapter = rt.adapters.for_endpoint(endpoint.adapter, endpoint.options)
            return adapter.activation(kept)
        except Exception as error:  # an unreachable host or a missing adapter is an answer too
            return Activation(ACTIVATION_FAILED, str(error))

    def pending() -> Activation:
        return Activation(
            ACTIVATION_FAILED,
            f"{endpoint.name} has not answered within {rt.live.timeout} s: asking again in "
            "the background",
        )

    # The credentials are part of the key: once they change (in any server process), the next
    # caller asks anew, and an answer for the old ones still on its way is never taken as new.
    return rt.live.ask(("activation", endpoint.id, user_id, hash(kept)), check, pending)


@use_case("endpoint.activation")
def activation_status(rt: Runtime, identity: Identity, endpoint_ref: str | None) -> Activation:
    """Whether an endpoint (default: the user's destination) is active for the user."""
    authorize(identity, "endpoint.activation")
    assert identity.user is not None
    with unit_of_work(rt.engine, write=False) as work:
        endpoint = _endpoint(work.session, identity.user, endpoint_ref)
        kept = credentials.load(work.session, rt.cipher, identity.uid, endpoint.id)
    return _live_activation(rt, endpoint, identity.uid, kept).value


@use_case("endpoint.activation")
def endpoint_statuses(rt: Runtime, identity: Identity) -> list[EndpointStatus]:
    """Every endpoint with its live activation status for the user."""
    authorize(identity, "endpoint.activation")
    assert identity.user is not None
    with unit_of_work(rt.engine, write=False) as work:
        endpoints = work.session.exec(select(Endpoint).order_by(col(Endpoint.created_at))).all()
        kept = {
            endpoint.id: credentials.load(work.session, rt.cipher, identity.uid, endpoint.id)
            for endpoint in endpoints
        }
    statuses = []
    for endpoint in endpoints:
        known = _live_activation(rt, endpoint, identity.uid, kept[endpoint.id])
        statuses.append(
            EndpointStatus(endpoint, known.value, known.age, _takes_credentials(rt, endpoint))
        )
    return statuses


def _takes_credentials(rt: Runtime, endpoint: Endpoint) -> bool:
    try:
        return rt.adapters.get_class(endpoint.adapter).takes_credentials
    except LookupError:
        return False


def _password(rt: Runtime, password: str | None, encrypted_password: str | None) -> str:
    if encrypted_password is not None:
        decrypted = rt.cipher.decrypt(encrypted_password)
        if decrypted is None:
            raise invalid(
                "encrypted_password",
                "cannot be decrypted with this server's key",
                "encrypted_password was not encrypted by this server: encrypt it with "
                "POST /api/v1/password-encryption",
            )
        return decrypted
    if password is None:
        raise invalid(
            "encrypted_password",
            "give encrypted_password or unencrypted_password",
            "a password is required",
        )
    return password


@use_case("endpoint.activate")
def activate(
    rt: Runtime,
    identity: Identity,
    endpoint_ref: str | None,
    username: str,
    password: str | None = None,
    encrypted_password: str | None = None,
) -> Endpoint | None:
    """Prove a username and password (raw, or encrypted by this server) against an endpoint.

    What the adapter asks to keep is stored encrypted, per user and endpoint. The source needs
    no login (None), though its password must still be readable.
    """
    authorize(identity, "endpoint.activate")
    assert identity.user is not None
    secret = _password(rt, password, encrypted_password)
    if endpoint_ref == SOURCE:
        return None
    with unit_of_work(rt.engine, write=False) as work:
        endpoint = _endpoint(work.session, identity.user, endpoint_ref)
    try:
        adapter = rt.adapters.for_endpoint(endpoint.adapter, endpoint.options)
        kept = adapter.activate(username, secret)
    except (AdapterError, LookupError) as error:
        raise Invalid(
            f"endpoint {endpoint.name} refused activation: {error} (endpoint id {endpoint.id})"
        ) from error
    if kept is not None:
        with unit_of_work(rt.engine) as work:
            credentials.store(work.session, rt.cipher, identity.uid, endpoint.id, kept)
            summary = {"endpoint": endpoint.name, "username": kept.username}
            audit.record(work, identity, "endpoint.activate", "endpoint", endpoint.id, summary)
    return endpoint


@use_case("password.encrypt")
def encrypt_password(rt: Runtime, identity: Identity, password: str) -> str:
    """``password`` encrypted with this server's key, for activation from scripts."""
    authorize(identity, "password.encrypt")
    if not password:
        raise invalid("password", "type the password to encrypt", "the password is empty")
    return rt.cipher.encrypt(password)
