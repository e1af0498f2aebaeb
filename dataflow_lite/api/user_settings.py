"""``user-settings``: where the user's uploads go."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView

from dataflow_lite.api import Blueprint
from dataflow_lite.api.auth import current_user
from dataflow_lite.api.views import adapters
from dataflow_lite.services import user_settings
from dataflow_lite.store.db import get_session

blp = Blueprint("user_settings", __name__, description="The user's destination and transport.")


class SettingArgs(ma.Schema):
    setting = ma.fields.String(
        required=True, metadata={"description": ", ".join(user_settings.KNOWN)}
    )
    value = ma.fields.String(required=True)


@blp.route("/user-settings", strict_slashes=False)
class UserSettings(MethodView):
    @blp.response(200)
    def get(self):
        """The user's settings: destination endpoint and transport."""
        return user_settings.settings_view(get_session(), current_user())

    @blp.arguments(SettingArgs, location="query")
    @blp.response(200)
    def post(self, args):
        """Change one setting (``?setting=S&value=V``); answers with all the settings."""
        session = get_session()
        user = current_user()
        user_settings.change_setting(session, user, adapters(), args["setting"], args["value"])
        session.commit()
        return user_settings.settings_view(session, user)
