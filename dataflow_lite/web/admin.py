"""Administration pages: users, instruments and their metadata forms, endpoints, transfers."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from sqlmodel import Session, col, select

from dataflow_lite.adapter import FAILED, Check
from dataflow_lite.api.errors import DataflowError
from dataflow_lite.api.views import adapters, transfers
from dataflow_lite.services.logins import check_new_password, hash_password
from dataflow_lite.store import catalog
from dataflow_lite.store.db import get_session
from dataflow_lite.store.metadata import FIELD_TYPES
from dataflow_lite.store.models import (
    Dataset,
    DatasetFile,
    Endpoint,
    Instrument,
    MetadataField,
    Transfer,
    User,
)
from dataflow_lite.web import instrument_forms
from dataflow_lite.web.pages import admin_required, current_user

bp = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates")

LOCAL_ADAPTER = "local"
RECENT_TRANSFERS = 100
MAX_NAME = 150


def _back(endpoint: str, message: str, category: str = "success", **values: Any):
    flash(message, category)
    return redirect(url_for(endpoint, **values))


def _get(session: Session, model: type, ident: int, what: str) -> Any:
    row = catalog.find(session, model, ident)
    if row is None:
        raise DataflowError(404, f"There is no {what} {ident}.")
    return row


@bp.get("")
@admin_required
def home():
    """The first admin page: users."""
    return redirect(url_for(".users"))


# Users -------------------------------------------------------------------------------------------


@bp.route("/users", methods=["GET", "POST"])
@admin_required
def users():
    """Every user; the form adds one with a password."""
    session = get_session()
    error, form = None, request.form
    if request.method == "POST":
        username = form.get("username", "").strip()
        try:
            if not username or len(username) > MAX_NAME or any(c.isspace() for c in username):
                raise ValueError(f"a username is 1 to {MAX_NAME} characters, without spaces")
            if session.exec(select(User).where(User.username == username)).first():
                raise ValueError(f"user {username!r} exists already")
            password_hash = hash_password(check_new_password(form.get("password", "")))
        except ValueError as problem:
            error = str(problem)
        else:
            user = User(
                username=username,
                name=form.get("name", "").strip(),
                is_admin=bool(form.get("is_admin")),
                password_hash=password_hash,
            )
            session.add(user)
            session.commit()
            return _back(".users", f"User {username} is added.")
    rows = session.exec(select(User).order_by(col(User.username))).all()
    page = render_template("admin/users.html", users=rows, error=error, form=form)
    return page, 400 if error else 200


@bp.post("/users/<int:user_id>/<change>")
@admin_required
def change_user(user_id: int, change: str):
    """Deactivate or reactivate a user, make or unmake an admin, or set their password."""
    session = get_session()
    user = _get(session, User, user_id, "user")
    if user.id == current_user().id and change in ("deactivate", "unmake-admin"):
        return _back(".users", "You cannot do that to your own account.", "error")
    if change == "password":
        try:
            user.password_hash = hash_password(check_new_password(request.form.get("password", "")))
        except ValueError as problem:
            return _back(".users", f"{user.username}: {problem}.", "error")
        message = f"The password of {user.username} is changed."
    elif change in ("deactivate", "reactivate"):
        user.is_active = change == "reactivate"
        message = f"{user.username} is {'reactivated' if user.is_active else 'deactivated'}."
    elif change in ("make-admin", "unmake-admin"):
        user.is_admin = change == "make-admin"
        message = f"{user.username} is {'now' if user.is_admin else 'no longer'} an administrator."
    else:
        raise DataflowError(404, f"Unknown change {change!r}.")
    session.commit()
    return _back(".users", message)


# Instruments and their metadata forms ------------------------------------------------------------


@bp.route("/instruments", methods=["GET", "POST"])
@admin_required
def instruments():
    """Every instrument; the form adds one."""
    session = get_session()
    error = None
    if request.method == "POST":
        name = request.form.get("name", "").strip()
        if not name or len(name) > MAX_NAME:
            error = f"An instrument's name is 1 to {MAX_NAME} characters."
        elif session.exec(select(Instrument).where(Instrument.name == name)).first():
            error = f"Instrument {name!r} exists already."
        else:
            instrument = Instrument(
                name=name,
                description=request.form.get("description", "").strip(),
                instrument_type=request.form.get("instrument_type", "").strip() or None,
            )
            session.add(instrument)
            session.commit()
            return _back(".instrument", f"Instrument {name} is added.", instrument_id=instrument.id)
    rows = session.exec(select(Instrument).order_by(col(Instrument.name))).all()
    counts = {row.id: len(catalog.instrument_fields(session, row.id)) for row in rows}
    page = render_template(
        "admin/instruments.html", instruments=rows, counts=counts, error=error, form=request.form
    )
    return page, 400 if error else 200


@bp.route("/instruments/<int:instrument_id>", methods=["GET", "POST"])
@admin_required
def instrument(instrument_id: int):
    """An instrument's metadata form; the form adds a field."""
    session = get_session()
    row = catalog.get_instrument(session, instrument_id)
    fields = catalog.instrument_fields(session, instrument_id)
    error = None
    if request.method == "POST":
        try:
            field = instrument_forms.new_field(row, fields, request.form)
        except ValueError as problem:
            error = str(problem)
        else:
            session.add(field)
            session.commit()
            return _back(".instrument", f"Field {field.name} is added.", instrument_id=row.id)
    page = render_template(
        "admin/instrument.html",
        instrument=row,
        fields=fields,
        field_types=FIELD_TYPES,
        error=error,
        form=request.form,
        choices_text=instrument_forms.choices_text,
    )
    return page, 400 if error else 200


@bp.post("/fields/<int:field_id>/<change>")
@admin_required
def change_field(field_id: int, change: str):
    """Move a field up or down, mark it required or persisting, or change its choices and unit."""
    session = get_session()
    field = _get(session, MetadataField, field_id, "metadata field")
    try:
        message = instrument_forms.change_field(session, field, change, request.form)
    except ValueError as problem:
        session.rollback()
        return _back(".instrument", str(problem), "error", instrument_id=field.instrument_id)
    session.commit()
    return _back(".instrument", message, instrument_id=field.instrument_id)


# Endpoints ---------------------------------------------------------------------------------------


def _checks(endpoint: Endpoint) -> list[Check]:
    try:
        adapter = adapters().for_endpoint(endpoint.adapter, endpoint.options)
        return adapter.check(None)
    except Exception as error:  # an unreachable host must not break the page
        return [Check("reachable", False, str(error))]


@bp.route("/endpoints", methods=["GET", "POST"])
@admin_required
def endpoints():
    """Every destination endpoint with its live check; the form adds a local one."""
    session = get_session()
    error = None
    if request.method == "POST":
        name = request.form.get("name", "").strip()
        try:
            if not name or len(name) > MAX_NAME:
                raise ValueError(f"an endpoint's name is 1 to {MAX_NAME} characters")
            if session.exec(select(Endpoint).where(Endpoint.name == name)).first():
                raise ValueError(f"an endpoint named {name!r} exists already")
            local = adapters().get_class(LOCAL_ADAPTER)
            options = local.check_options({"path": request.form.get("path", "").strip()})
        except (ValueError, LookupError) as problem:
            error = str(problem).replace("--path", "a path")
        else:
            default = bool(request.form.get("is_default"))
            if default:
                for other in session.exec(select(Endpoint).where(col(Endpoint.is_default))):
                    other.is_default = False
            endpoint = Endpoint(
                id=str(uuid.uuid4()),
                name=name,
                adapter=LOCAL_ADAPTER,
                options=options,
                is_default=default,
            )
            session.add(endpoint)
            session.commit()
            return _back(".endpoints", f"Endpoint {name} is added.")
    rows = session.exec(select(Endpoint).order_by(col(Endpoint.created_at))).all()
    session.commit()  # the live checks may take seconds: hold no database lock during them
    checks = {row.id: _checks(row) for row in rows}
    page = render_template(
        "admin/endpoints.html", endpoints=rows, checks=checks, error=error, form=request.form
    )
    return page, 400 if error else 200


# Transfers ---------------------------------------------------------------------------------------


@bp.get("/transfers")
@admin_required
def transfer_list():
    """Recent transfers, failed ones first, then newest first."""
    session = get_session()
    rows = session.exec(
        select(Transfer, Dataset, DatasetFile, User)
        .join(Dataset, col(Dataset.id) == Transfer.dataset_id)
        .join(User, col(User.id) == Transfer.user_id)
        .outerjoin(DatasetFile, col(DatasetFile.id) == Transfer.file_id)
        .order_by(col(Transfer.state) != FAILED, col(Transfer.id).desc())
        .limit(RECENT_TRANSFERS)
    ).all()
    return render_template("admin/transfers.html", rows=rows, failed=FAILED)


@bp.post("/transfers/<int:transfer_id>/retry")
@admin_required
def retry_transfer(transfer_id: int):
    """Queue a failed transfer again."""
    get_session().commit()  # the queue writes on its own connection
    if not transfers().retry(transfer_id):
        return _back(".transfer_list", f"Transfer {transfer_id} has not failed.", "error")
    return _back(".transfer_list", f"Transfer {transfer_id} is queued again.")
