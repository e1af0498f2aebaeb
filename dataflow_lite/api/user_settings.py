"""``user-settings``: where the user's uploads go."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from dataflow_lite.api import Blueprint
from dataflow_lite.api.auth import current_identity
from dataflow_lite.faces import runtime
from dataflow_lite.services import user_settings

blp = Blueprint("user_settings", __name__, description="The user's destination and transport.")


class SettingArgs(ma.Schema):
    setting = ma.fields.String(
        required=True, metadata={"description": ", ".join(user_settings.KNOWN)}
    )
    value = ma.fields.String(required=True)


@blp.route("/user-settings", strict_slashes=False)
class UserSettings(MethodView):
    @blp.response(200)
    def get(self) -> Any:
        """The user's settings: destination endpoint and transport."""
        return user_settings.get_settings(runtime(), current_identity())

    @blp.arguments(SettingArgs, location="query")
    @blp.response(200)
    def post(self, args: dict[str, Any]) -> Any:
        """Change one setting (``?setting=S&value=V``); answers with all the settings."""
        return user_settings.change_setting(
            runtime(), current_identity(), args["setting"], args["value"]
        )
