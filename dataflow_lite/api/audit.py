"""``audit``: the audit trail, for administrators."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from dataflow_lite.api import Blueprint
from dataflow_lite.api.auth import current_identity
from dataflow_lite.api.schemas import MAX_INT
from dataflow_lite.faces import runtime
from dataflow_lite.services import audit

blp = Blueprint("audit", __name__, description="The audit trail: who changed what, when.")


class AuditArgs(ma.Schema):
    user = ma.fields.String(load_default=None, metadata={"description": "a username"})
    object_type = ma.fields.String(load_default=None, metadata={"description": "e.g. dataset"})
    object_id = ma.fields.String(load_default=None)
    since = ma.fields.AwareDateTime(load_default=None, default_timezone=None)
    until = ma.fields.AwareDateTime(load_default=None, default_timezone=None)
    page = ma.fields.Integer(load_default=1, validate=ma.validate.Range(min=1, max=MAX_INT))
    per_page = ma.fields.Integer(
        load_default=50, validate=ma.validate.Range(min=1, max=audit.MAX_PER_PAGE)
    )


class AuditEventSchema(ma.Schema):
    id = ma.fields.Integer()
    at = ma.fields.DateTime(format="%Y-%m-%dT%H:%M:%S.%fZ")
    user_id = ma.fields.Integer(allow_none=True)
    username = ma.fields.String(allow_none=True)
    via = ma.fields.String(metadata={"description": "api-key <id>, web-session, cli, worker"})
    address = ma.fields.String(allow_none=True)
    action = ma.fields.String()
    object_type = ma.fields.String()
    object_id = ma.fields.String(allow_none=True)
    summary = ma.fields.Dict(metadata={"description": "what changed; secrets are masked"})
    prev_sha256 = ma.fields.String()
    sha256 = ma.fields.String()


class AuditPageSchema(ma.Schema):
    total = ma.fields.Integer()
    has_more = ma.fields.Boolean()
    results = ma.fields.List(ma.fields.Nested(AuditEventSchema))


@blp.route("/audit")
class Audit(MethodView):
    @blp.arguments(AuditArgs, location="query")
    @blp.response(200, AuditPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """Audit events, newest first, by user, object and time (``since <= at < until``)."""
        total, events = audit.list_events(runtime(), current_identity(), **args)
        return {
            "total": total,
            "has_more": args["page"] * args["per_page"] < total,
            "results": events,
        }
