"""My account: API keys, where my datasets go (endpoints and their activation), and passwords
encrypted for activation from scripts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask import session as cookie
from sqlmodel import Session, col, select

from dataflow_lite.adapter import (
    ACTIVATION_FAILED,
    ALREADY_ACTIVATED,
    AUTO_ACTIVATED,
    Activation,
    AdapterError,
)
from dataflow_lite.api.errors import DataflowError
from dataflow_lite.api.views import adapters
from dataflow_lite.services import user_settings
from dataflow_lite.store import api_keys, credentials
from dataflow_lite.store.catalog import find
from dataflow_lite.store.db import get_session
from dataflow_lite.store.instance_keys import PasswordCipher
from dataflow_lite.store.models import ApiKey, Endpoint, User, utcnow
from dataflow_lite.web.pages import current_user, login_required

bp = Blueprint("my_account", __name__, url_prefix="/account", template_folder="templates")

MAX_KEY_NAME = 200
NEW_KEY = "new_api_key"
ACTIVE_CODES = (ALREADY_ACTIVATED, AUTO_ACTIVATED)


@dataclass(frozen=True)
class EndpointStatus:
    """A registered endpoint and whether it can take the user's files now."""

    endpoint: Endpoint
    activation: Activation

    @property
    def active(self) -> bool:
        return self.activation.code in ACTIVE_CODES


def _cipher() -> PasswordCipher:
    return current_app.extensions["dataflow_lite.password_cipher"]


def endpoint_statuses(session: Session, user: User) -> list[EndpointStatus]:
    """Every endpoint with its live activation status for ``user``, asked of its adapter."""
    statuses = []
    for endpoint in session.exec(select(Endpoint).order_by(col(Endpoint.created_at))):
        adapter = adapters().for_endpoint(endpoint.adapter, endpoint.options)
        try:
            kept = credentials.load(session, _cipher(), user.id, endpoint.id)  # type: ignore[arg-type]
            activation = adapter.activation(kept)
        except Exception as error:  # one unreachable endpoint must not break the page
            activation = Activation(ACTIVATION_FAILED, str(error))
        statuses.append(EndpointStatus(endpoint, activation))
    return statuses


def _page(status: int = 200, **shown: Any):
    session = get_session()
    user = current_user()
    keys = session.exec(
        select(ApiKey).where(ApiKey.user_id == user.id).order_by(col(ApiKey.id).desc())
    ).all()
    page = render_template(
        "my_account/account.html",
        keys=keys,
        now=utcnow(),
        endpoints=endpoint_statuses(session, user),
        destination=user_settings.destination_endpoint(session, user),
        default_days=current_app.config["DATAFLOW_LITE"]["api_key_days"],
        **shown,
    )
    return page, status


@bp.get("")
@login_required
def account():
    """My keys, my destination and the endpoints' activation, and password encryption."""
    # A key just created is shown on this one page view, then never again.
    sealed = cookie.pop(NEW_KEY, None)
    key = _cipher().decrypt(sealed[1]) if isinstance(sealed, list) and len(sealed) == 2 else None
    if key is None:
        return _page()
    return _page(new_key=key, new_key_row=get_session().get(ApiKey, sealed[0]))


@bp.post("/keys")
@login_required
def create_key():
    """Issue a key and show it, this once."""
    name = request.form.get("name", "").strip()
    days_text = request.form.get("expires_days", "").strip()
    if len(name) > MAX_KEY_NAME:
        return _page(400, key_error=f"The name must be at most {MAX_KEY_NAME} characters long.")
    if days_text and (not days_text.isdigit() or int(days_text) < 1):
        return _page(400, key_error="The days until the key expires must be a whole number ≥ 1.")
    days = int(days_text) if days_text else current_app.config["DATAFLOW_LITE"]["api_key_days"]
    session = get_session()
    row, key = api_keys.issue_key(
        session, current_app.config["SECRET_KEY"], current_user(), name, days or None
    )
    session.commit()
    # Shown after a redirect, so that reloading the page does not create another key; the
    # session cookie carries it encrypted with the server's key, for that one page view.
    cookie[NEW_KEY] = [row.id, _cipher().encrypt(key)]
    return redirect(url_for(".account"), 303)


@bp.post("/keys/<int:key_id>/revoke")
@login_required
def revoke_key(key_id: int):
    """Revoke one of my keys."""
    session = get_session()
    row = find(session, ApiKey, key_id)
    if row is None or row.user_id != current_user().id:
        raise DataflowError(404, f"You have no API key {key_id}.")
    if row.revoked_at is None:
        api_keys.revoke(row)
        session.commit()
    flash(f"API key #{key_id}{f' ({row.name})' if row.name else ''} is revoked.", "success")
    return redirect(url_for(".account"))


@bp.post("/destination")
@login_required
def change_destination():
    """Choose the endpoint my next datasets go to."""
    session = get_session()
    value = request.form.get("endpoint", "")
    try:
        user_settings.change_setting(
            session, current_user(), adapters(), user_settings.DESTINATION, value
        )
    except DataflowError as error:
        flash(error.data["message"], "error")
        return redirect(url_for(".account"))
    session.commit()
    endpoint = user_settings.destination_endpoint(session, current_user())
    flash(f"New datasets go to {endpoint.name}.", "success")
    return redirect(url_for(".account"))


@bp.post("/endpoints/<endpoint_id>/activate")
@login_required
def activate(endpoint_id: str):
    """Activate an endpoint with a username and password, kept encrypted if the adapter asks."""
    session = get_session()
    endpoint = session.get(Endpoint, endpoint_id)
    if endpoint is None:
        raise DataflowError(404, f"Endpoint {endpoint_id} is not registered on this server.")
    adapter = adapters().for_endpoint(endpoint.adapter, endpoint.options)
    session.commit()  # a live login may take seconds: hold no database lock during it
    try:
        kept = adapter.activate(request.form.get("username", ""), request.form.get("password", ""))
    except AdapterError as error:
        flash(f"{endpoint.name} refused activation: {error}", "error")
        return redirect(url_for(".account"))
    if kept is not None:
        credentials.store(session, _cipher(), current_user().id, endpoint.id, kept)  # type: ignore[arg-type]
        session.commit()
    flash(f"{endpoint.name} is activated.", "success")
    return redirect(url_for(".account"))


@bp.post("/password-encryption")
@login_required
def encrypt_password():
    """A password encrypted with this server's key, as POST /api/v1/password-encryption."""
    password = request.form.get("password", "")
    if not password:
        return _page(400, encryption_error="Type the password to encrypt.")
    return _page(encrypted=_cipher().encrypt(password))
