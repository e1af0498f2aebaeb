"""Administration pages: users, instruments and their metadata forms, endpoints, transfers.

Each page reads the form, calls one service with the administrator's identity and shows the
answer. A refused form (Invalid) is shown again with the messages beside its fields; other
refusals of a form (a name taken, a transfer that has not failed) come back as a flashed message.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import NotFound

from dataflow_lite.adapter import FAILED, Option
from dataflow_lite.faces import runtime
from dataflow_lite.services import endpoints as endpoint_services
from dataflow_lite.services import instruments as instrument_services
from dataflow_lite.services import transfers
from dataflow_lite.services import users as user_services
from dataflow_lite.services.errors import Conflict, Invalid
from dataflow_lite.store.metadata import FIELD_TYPES
from dataflow_lite.web import instrument_forms
from dataflow_lite.web.pages import admin_required, current_identity, field_errors

bp = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates")

RECENT_TRANSFERS = 100
USER_CHANGES = (*user_services.USER_CHANGES, "password")


def _back(
    endpoint: str, message: str, category: str = "success", **values: Any
) -> ResponseReturnValue:
    flash(message, category)
    return redirect(url_for(endpoint, **values))


def _form_page(template: str, refused: Invalid | None, **values: Any) -> ResponseReturnValue:
    """A page with a form, shown again with 400 and the messages when it was refused."""
    page = render_template(
        template,
        error=refused.message if refused else None,
        errors=field_errors(refused),
        form=request.form,
        **values,
    )
    return page, 400 if refused else 200


@bp.get("")
@admin_required
def home() -> ResponseReturnValue:
    """The first admin page: users."""
    return redirect(url_for(".users"))


# Users -------------------------------------------------------------------------------------------


@bp.route("/users", methods=["GET", "POST"])
@admin_required
def users() -> ResponseReturnValue:
    """Every user; the form adds one with a password."""
    refused = None
    if request.method == "POST":
        form = request.form
        try:
            user = user_services.add_user(
                runtime(),
                current_identity(),
                form.get("username", ""),
                form.get("name", ""),
                is_admin=bool(form.get("is_admin")),
                password=form.get("password", ""),
            )
        except Invalid as error:
            refused = error
        except Conflict as error:
            return _back(".users", f"{error.message}.", "error")
        else:
            return _back(".users", f"User {user.username} is added.")
    rows = user_services.list_users(runtime(), current_identity())
    return _form_page("admin/users.html", refused, users=rows)


@bp.post("/users/<int:user_id>/<change>")
@admin_required
def change_user(user_id: int, change: str) -> ResponseReturnValue:
    """Deactivate or reactivate a user, make or unmake an admin, or set their password."""
    if change not in USER_CHANGES:
        raise NotFound(f"Unknown change {change!r}.")
    try:
        if change == "password":
            user = user_services.set_password(
                runtime(), current_identity(), user_id, request.form.get("password", "")
            )
            message = f"The password of {user.username} is changed."
        else:
            user = user_services.change_user(runtime(), current_identity(), user_id, change)
            if change in ("deactivate", "reactivate"):
                state = "reactivated" if user.is_active else "deactivated"
                message = f"{user.username} is {state}."
            else:
                role = "now" if user.is_admin else "no longer"
                message = f"{user.username} is {role} an administrator."
    except (Invalid, Conflict) as error:  # a row's form: nothing to show again but the message
        return _back(".users", f"{error.message}.", "error")
    return _back(".users", message)


# Instruments and their metadata forms ------------------------------------------------------------


@bp.route("/instruments", methods=["GET", "POST"])
@admin_required
def instruments() -> ResponseReturnValue:
    """Every instrument; the form adds one."""
    refused = None
    if request.method == "POST":
        form = request.form
        try:
            row = instrument_services.add_instrument(
                runtime(),
                current_identity(),
                form.get("name", ""),
                form.get("description", ""),
                form.get("instrument_type", "").strip() or None,
            )
        except Invalid as error:
            refused = error
        except Conflict as error:
            return _back(".instruments", f"{error.message}.", "error")
        else:
            return _back(".instrument", f"Instrument {row.name} is added.", instrument_id=row.id)
    forms = instrument_services.list_instruments(runtime(), current_identity())
    forms.sort(key=lambda form: form.instrument.name)
    return _form_page(
        "admin/instruments.html",
        refused,
        instruments=[form.instrument for form in forms],
        counts={form.instrument.id: len(form.fields) for form in forms},
    )


@bp.route("/instruments/<int:instrument_id>", methods=["GET", "POST"])
@admin_required
def instrument(instrument_id: int) -> ResponseReturnValue:
    """An instrument's metadata form; the form adds a field."""
    refused = None
    if request.method == "POST":
        try:
            field = instrument_forms.add_field(current_identity(), instrument_id, request.form)
        except Invalid as error:
            refused = error
        except Conflict as error:
            return _back(".instrument", f"{error.message}.", "error", instrument_id=instrument_id)
        else:
            return _back(
                ".instrument", f"Field {field.name} is added.", instrument_id=instrument_id
            )
    form = instrument_services.get_instrument(runtime(), current_identity(), instrument_id)
    if form.instrument.id == 0:  # the untitled instrument has no form to edit
        raise NotFound(f"There is no instrument {instrument_id}.")
    return _form_page(
        "admin/instrument.html",
        refused,
        instrument=form.instrument,
        fields=form.fields,
        field_types=FIELD_TYPES,
        choices_text=instrument_forms.choices_text,
    )


@bp.post("/fields/<int:field_id>/<change>")
@admin_required
def change_field(field_id: int, change: str) -> ResponseReturnValue:
    """Move a field up or down, mark it required or persisting, or change its choices and unit."""
    # Read first: the choices are typed as the field's type, and the answer goes to its form.
    field = instrument_services.get_field(runtime(), current_identity(), field_id)
    try:
        message = instrument_forms.change_field(current_identity(), field, change, request.form)
    except (Invalid, Conflict) as error:
        return _back(".instrument", error.message, "error", instrument_id=field.instrument_id)
    return _back(".instrument", message, instrument_id=field.instrument_id)


# Endpoints ---------------------------------------------------------------------------------------


def input_name(adapter: str, option: Option) -> str:
    """The form input of one adapter's option: each adapter's inputs are apart (``sftp.host``)."""
    return f"{adapter}.{option.name}"


def _in_words(message: str, options: list[Option]) -> str:
    """A message about options in the page's words: the CLI's ``--key-file`` is ``key_file``."""
    for option in sorted(options, key=lambda option: -len(option.flag)):
        message = message.replace(option.flag, option.name)
    return message


@bp.route("/endpoints", methods=["GET", "POST"])
@admin_required
def endpoints() -> ResponseReturnValue:
    """Every destination endpoint with its live check; the form adds one of any installed type."""
    declared = endpoint_services.declared_options(runtime())
    refused = None
    if request.method == "POST":
        form = request.form
        adapter = form.get("type", "")
        options = declared.get(adapter, [])
        given = {
            option.name: form.get(input_name(adapter, option), "").strip() for option in options
        }
        try:
            endpoint = endpoint_services.register_endpoint(
                runtime(),
                current_identity(),
                form.get("name", ""),
                adapter,
                given,
                default=bool(form.get("is_default")),
            )
        except Invalid as error:
            refused = Invalid(_in_words(error.message, options), error.errors)
        except Conflict as error:
            return _back(".endpoints", f"{error.message}.", "error")
        else:
            return _back(".endpoints", f"Endpoint {endpoint.name} is added.")
    # The live checks may take seconds: the service runs them outside any transaction.
    checked = endpoint_services.check_all(runtime(), current_identity())
    return _form_page(
        "admin/endpoints.html",
        refused,
        checked=checked,
        declared=declared,
        input_name=input_name,
        chosen=request.form.get("type") or next(iter(declared), ""),
    )


# Transfers ---------------------------------------------------------------------------------------


# What the transfers page shows: ``?show=`` and the kind of transfer it lists.
TRANSFER_KINDS = {"files": "file", "metadata": "metadata", "all": None}


@bp.get("/transfers")
@admin_required
def transfer_list() -> ResponseReturnValue:
    """Recent transfers of files (or of metadata.json, or both), failed ones first."""
    show = request.args.get("show", "files")
    if show not in TRANSFER_KINDS:
        show = "files"
    rows = transfers.list_transfers(
        runtime(),
        current_identity(),
        kind=TRANSFER_KINDS[show],
        failed_first=True,
        limit=RECENT_TRANSFERS,
    )
    return render_template("admin/transfers.html", rows=rows, failed=FAILED, show=show)


@bp.post("/transfers/<int:transfer_id>/retry")
@admin_required
def retry_transfer(transfer_id: int) -> ResponseReturnValue:
    """Queue a failed transfer again."""
    try:
        transfers.retry_transfer(runtime(), current_identity(), transfer_id)
    except Conflict as error:
        return _back(".transfer_list", f"{error.message}.", "error")
    return _back(".transfer_list", f"Transfer {transfer_id} is queued again.")
