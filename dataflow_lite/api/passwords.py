"""``password-encryption``: a password encrypted with this server's key, for activation."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from dataflow_lite.api import Blueprint
from dataflow_lite.api.auth import current_identity
from dataflow_lite.api.schemas import utf8_text
from dataflow_lite.faces import runtime
from dataflow_lite.services import activation

blp = Blueprint("passwords", __name__, description="Encrypt a password for endpoint activation.")


class PasswordArgs(ma.Schema):
    password = ma.fields.String(required=True, validate=[ma.validate.Length(min=1), utf8_text])


class EncryptedSchema(ma.Schema):
    encrypted_password = ma.fields.String()


@blp.route("/password-encryption")
class PasswordEncryption(MethodView):
    @blp.arguments(PasswordArgs)
    @blp.response(200, EncryptedSchema)
    def post(self, args: dict[str, Any]) -> Any:
        """Encrypt a password (JSON ``{"password": ...}``) with this server's key.

        Pass the result as ``encrypted_password`` when activating an endpoint; only this server
        can decrypt it. The password is neither logged nor stored.
        """
        encrypted = activation.encrypt_password(runtime(), current_identity(), args["password"])
        return {"encrypted_password": encrypted}
