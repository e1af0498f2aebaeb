"""``transports/globus/activation`` and ``activate``: can the server write to an endpoint now?

DataFlow answered for Globus endpoints; here every endpoint answers through its own adapter, so
air-gapped labs drive local endpoints with the same client. The "source" is this server's own
staging area, always active.
"""

from __future__ import annotations

import marshmallow as ma
from flask import current_app, request
from flask.views import MethodView

from dataflow_lite.adapter import ALREADY_ACTIVATED, Activation, AdapterError
from dataflow_lite.api import Blueprint
from dataflow_lite.api.auth import current_user
from dataflow_lite.api.errors import DataflowError
from dataflow_lite.api.views import adapters
from dataflow_lite.services import user_settings
from dataflow_lite.store import credentials
from dataflow_lite.store.db import get_session
from dataflow_lite.store.instance_keys import PasswordCipher
from dataflow_lite.store.models import Endpoint

blp = Blueprint("transports", __name__, description="Endpoint activation, per adapter.")

SOURCE, DESTINATION = "source", "destination"
SOURCE_ACTIVATION = Activation(ALREADY_ACTIVATED, "the server's own staging area")


class ActivationArgs(ma.Schema):
    endpoint = ma.fields.String(load_default=None, metadata={"description": "an endpoint UUID"})


class ActivateArgs(ma.Schema):
    endpoint = ma.fields.String(
        load_default=DESTINATION,
        metadata={"description": "source, destination or an endpoint UUID"},
    )
    username = ma.fields.String(load_default="")
    encrypted_password = ma.fields.String(
        metadata={"description": "a password encrypted by POST /api/v1/password-encryption"}
    )
    unencrypted_password = ma.fields.String()


def _endpoint(endpoint_id: str | None) -> Endpoint:
    session = get_session()
    if endpoint_id in (None, "", DESTINATION):
        return user_settings.destination_endpoint(session, current_user())
    endpoint = session.get(Endpoint, endpoint_id)
    if endpoint is None:
        raise DataflowError(404, f"endpoint {endpoint_id} is not registered on this server")
    return endpoint


def _code(activation: Activation) -> dict[str, str]:
    return {"code": activation.code, "message": activation.message}


def _cipher() -> PasswordCipher:
    return current_app.extensions["dataflow_lite.password_cipher"]


def _raw_query_value(name: str) -> str | None:
    """A query value exactly as sent: ordflow does not URL-encode passwords (``+`` stays ``+``)."""
    for pair in request.query_string.decode("utf-8", "replace").split("&"):
        key, sep, value = pair.partition("=")
        if sep and key == name:
            return value
    return None


def _password() -> str:
    encrypted = _raw_query_value("encrypted_password")
    if encrypted is not None:
        password = _cipher().decrypt(encrypted)
        if password is None:
            raise DataflowError(
                400,
                "encrypted_password was not encrypted by this server: encrypt it with "
                "POST /api/v1/password-encryption",
                {"encrypted_password": ["cannot be decrypted with this server's key"]},
            )
        return password
    password = _raw_query_value("unencrypted_password")
    if password is None:
        raise DataflowError(
            400,
            "a password is required",
            {"encrypted_password": ["give encrypted_password or unencrypted_password"]},
        )
    return password


@blp.route("/transports/globus/activation")
class ActivationStatus(MethodView):
    @blp.arguments(ActivationArgs, location="query")
    @blp.response(200)
    def get(self, args):
        """Whether the source and a destination endpoint (default: the user's) are active."""
        endpoint = _endpoint(args["endpoint"])
        adapter = adapters().for_endpoint(endpoint.adapter, endpoint.options)
        kept = credentials.load(get_session(), _cipher(), current_user().id, endpoint.id)
        return {
            "source_activation": _code(SOURCE_ACTIVATION),
            "destination_activation": _code(adapter.activation(kept)),
        }


@blp.route("/transports/globus/activate")
class Activate(MethodView):
    @blp.arguments(ActivateArgs, location="query")
    @blp.response(200)
    def post(self, args):
        """Activate an endpoint with a username and password (never stored in clear)."""
        password = _password()
        if args["endpoint"] == SOURCE:
            return {"status": "ok"}
        endpoint = _endpoint(args["endpoint"])
        adapter = adapters().for_endpoint(endpoint.adapter, endpoint.options)
        get_session().commit()  # a live login may take seconds: hold no database lock during it
        try:
            kept = adapter.activate(args["username"], password)
        except AdapterError as error:
            raise DataflowError(
                400, f"endpoint {endpoint.id} refused activation: {error}"
            ) from error
        if kept is not None:
            session = get_session()
            credentials.store(session, _cipher(), current_user().id, endpoint.id, kept)
            session.commit()
        return {"status": "ok"}
