"""My account: API keys, where my datasets go (endpoints and their activation), and passwords
encrypted for activation from scripts."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask import session as cookie
from flask.typing import ResponseReturnValue

from dataflow_lite.faces import runtime
from dataflow_lite.services import activation, endpoints, user_settings, users
from dataflow_lite.services.errors import Invalid
from dataflow_lite.store.models import utcnow
from dataflow_lite.web.pages import current_identity, login_required

bp = Blueprint("my_account", __name__, url_prefix="/account", template_folder="templates")

NEW_KEY = "new_api_key"


def _page(status: int = 200, new_key_id: int | None = None, **shown: Any) -> ResponseReturnValue:
    """The account page: three reads, one per section (keys, endpoints, settings)."""
    rt, identity = runtime(), current_identity()
    keys = users.list_keys(rt, identity)
    statuses = activation.endpoint_statuses(rt, identity)
    chosen = user_settings.get_settings(rt, identity)["globus"]["destination_endpoint"]
    page = render_template(
        "my_account/account.html",
        keys=keys,
        now=utcnow(),
        endpoints=statuses,
        destination=next(status.endpoint for status in statuses if status.endpoint.id == chosen),
        default_days=rt.settings["api_key_days"],
        new_key_row=next((key for key in keys if key.id == new_key_id), None),
        **shown,
    )
    return page, status


@bp.get("")
@login_required
def account() -> ResponseReturnValue:
    """My keys, my destination and the endpoints' activation, and password encryption."""
    # A key just created is shown on this one page view, then never again.
    sealed = cookie.pop(NEW_KEY, None)
    if not (isinstance(sealed, list) and len(sealed) == 2):
        return _page()
    key = runtime().cipher.decrypt(sealed[1])
    return _page(new_key=key, new_key_id=sealed[0]) if key else _page()


@bp.post("/keys")
@login_required
def create_key() -> ResponseReturnValue:
    """Issue a key and show it, this once."""
    days_text = request.form.get("expires_days", "").strip()
    if days_text and not (days_text.isascii() and days_text.isdigit()):
        return _page(400, key_error="The days until the key expires must be a whole number ≥ 1.")
    try:
        issued = users.issue_key(
            runtime(),
            current_identity(),
            name=request.form.get("name", ""),
            days=int(days_text) if days_text else None,
        )
    except Invalid as refused:
        return _page(400, key_error=refused.message)
    # Shown after a redirect, so that reloading the page does not create another key; the
    # session cookie carries it encrypted with the server's key, for that one page view.
    cookie[NEW_KEY] = [issued.row.id, runtime().cipher.encrypt(issued.key)]
    return redirect(url_for(".account"), 303)


@bp.post("/keys/<int:key_id>/revoke")
@login_required
def revoke_key(key_id: int) -> ResponseReturnValue:
    """Revoke one of my keys."""
    row = users.revoke_key(runtime(), current_identity(), key_id)
    flash(f"API key #{key_id}{f' ({row.name})' if row.name else ''} is revoked.", "success")
    return redirect(url_for(".account"))


@bp.post("/destination")
@login_required
def change_destination() -> ResponseReturnValue:
    """Choose the endpoint my next datasets go to."""
    value = request.form.get("endpoint", "")
    try:
        user_settings.change_setting(
            runtime(), current_identity(), user_settings.DESTINATION, value
        )
    except Invalid as refused:
        flash(refused.message, "error")
        return redirect(url_for(".account"))
    # The settings name the endpoint by id; the message names it as people do.
    names = {row.id: row.name for row in endpoints.list_endpoints(runtime(), current_identity())}
    flash(f"New datasets go to {names.get(value.strip(), value)}.", "success")
    return redirect(url_for(".account"))


@bp.post("/endpoints/<endpoint_id>/activate")
@login_required
def activate(endpoint_id: str) -> ResponseReturnValue:
    """Activate an endpoint with a username and password, kept encrypted if the adapter asks."""
    try:
        endpoint = activation.activate(
            runtime(),
            current_identity(),
            endpoint_id,
            request.form.get("username", ""),
            password=request.form.get("password", ""),
        )
    except Invalid as refused:
        flash(refused.message, "error")
        return redirect(url_for(".account"))
    flash(f"{endpoint.name if endpoint else 'The source'} is activated.", "success")
    return redirect(url_for(".account"))


@bp.post("/password-encryption")
@login_required
def encrypt_password() -> ResponseReturnValue:
    """A password encrypted with this server's key, as POST /api/v1/password-encryption."""
    try:
        encrypted = activation.encrypt_password(
            runtime(), current_identity(), request.form.get("password", "")
        )
    except Invalid as refused:
        message = "; ".join(refused.errors.get("password", [])) or refused.message
        return _page(400, encryption_error=message[:1].upper() + message[1:] + ".")
    return _page(encrypted=encrypted)
