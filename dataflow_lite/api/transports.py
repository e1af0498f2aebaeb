"""``transports/globus/activation`` and ``activate``: can the server write to an endpoint now?

DataFlow answered for Globus endpoints; here every endpoint answers through its own adapter, so
air-gapped labs drive local endpoints with the same client. The "source" is this server's own
staging area, always active.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import request
from flask.views import MethodView

from dataflow_lite.adapter import ALREADY_ACTIVATED, Activation
from dataflow_lite.api import Blueprint
from dataflow_lite.api.auth import current_identity
from dataflow_lite.faces import runtime
from dataflow_lite.services import activation

blp = Blueprint("transports", __name__, description="Endpoint activation, per adapter.")

SOURCE_ACTIVATION = Activation(ALREADY_ACTIVATED, "the server's own staging area")


class ActivationArgs(ma.Schema):
    endpoint = ma.fields.String(load_default=None, metadata={"description": "an endpoint UUID"})


class ActivateArgs(ma.Schema):
    endpoint = ma.fields.String(
        load_default=activation.DESTINATION,
        metadata={"description": "source, destination or an endpoint UUID"},
    )
    username = ma.fields.String(load_default="")
    encrypted_password = ma.fields.String(
        metadata={"description": "a password encrypted by POST /api/v1/password-encryption"}
    )
    unencrypted_password = ma.fields.String()


def _code(status: Activation) -> dict[str, str]:
    return {"code": status.code, "message": status.message}


def _raw_query_value(name: str) -> str | None:
    """A query value exactly as sent: ordflow does not URL-encode passwords (``+`` stays ``+``)."""
    for pair in request.query_string.decode("utf-8", "replace").split("&"):
        key, sep, value = pair.partition("=")
        if sep and key == name:
            return value
    return None


@blp.route("/transports/globus/activation")
class ActivationStatus(MethodView):
    @blp.arguments(ActivationArgs, location="query")
    @blp.response(200)
    def get(self, args: dict[str, Any]) -> Any:
        """Whether the source and a destination endpoint (default: the user's) are active."""
        status = activation.activation_status(runtime(), current_identity(), args["endpoint"])
        return {
            "source_activation": _code(SOURCE_ACTIVATION),
            "destination_activation": _code(status),
        }


@blp.route("/transports/globus/activate")
class Activate(MethodView):
    @blp.arguments(ActivateArgs, location="query")
    @blp.response(200)
    def post(self, args: dict[str, Any]) -> Any:
        """Activate an endpoint with a username and password (never stored in clear)."""
        password = _raw_query_value("unencrypted_password")
        encrypted = _raw_query_value("encrypted_password")
        activation.activate(
            runtime(), current_identity(), args["endpoint"], args["username"], password, encrypted
        )
        return {"status": "ok"}
