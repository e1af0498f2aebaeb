"""``transfers``: where each file's move to its destination stands; retry and cancel."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from dataflow_lite.adapter import DONE, FAILED, QUEUED, RUNNING, VERIFYING
from dataflow_lite.api import Blueprint
from dataflow_lite.api.auth import current_identity
from dataflow_lite.api.schemas import MAX_INT
from dataflow_lite.faces import runtime
from dataflow_lite.services import transfers

blp = Blueprint("transfers", __name__, description="The transfer queue: each file's move.")

STATES = (QUEUED, RUNNING, VERIFYING, DONE, FAILED)


class TransferSchema(ma.Schema):
    id = ma.fields.Integer()
    kind = ma.fields.String(metadata={"description": "file, or metadata (metadata.json)"})
    dataset_id = ma.fields.Integer()
    file_id = ma.fields.Integer(allow_none=True)
    endpoint_id = ma.fields.String()
    adapter = ma.fields.String()
    state = ma.fields.String(metadata={"description": ", ".join(STATES)})
    attempts = ma.fields.Integer()
    last_error = ma.fields.String(allow_none=True)
    permanent = ma.fields.Boolean(metadata={"description": "whether retrying can help"})
    bytes_moved = ma.fields.Integer()
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()
    next_attempt_at = ma.fields.DateTime()
    finished_at = ma.fields.DateTime(allow_none=True)


class TransferArgs(ma.Schema):
    dataset_id = ma.fields.Integer(
        load_default=None, validate=ma.validate.Range(min=-MAX_INT, max=MAX_INT)
    )
    state = ma.fields.String(load_default=None, validate=ma.validate.OneOf(STATES))


@blp.route("/transfers")
class Transfers(MethodView):
    @blp.arguments(TransferArgs, location="query")
    @blp.response(200, TransferSchema(many=True))
    def get(self, args: dict[str, Any]) -> Any:
        """Transfers, newest first, optionally of one dataset or in one state."""
        rows = transfers.list_transfers(
            runtime(), current_identity(), dataset_id=args["dataset_id"], state=args["state"]
        )
        return [row.transfer for row in rows]


@blp.route("/transfers/<int:transfer_id>")
class TransferById(MethodView):
    @blp.response(200, TransferSchema)
    def get(self, transfer_id: int) -> Any:
        """One transfer."""
        return transfers.get_transfer(runtime(), current_identity(), transfer_id)


@blp.route("/transfers/<int:transfer_id>/retry")
class TransferRetry(MethodView):
    @blp.response(200, TransferSchema)
    def post(self, transfer_id: int) -> Any:
        """Queue a failed transfer again; 409 unless it failed."""
        return transfers.retry_transfer(runtime(), current_identity(), transfer_id)


@blp.route("/transfers/<int:transfer_id>/cancel")
class TransferCancel(MethodView):
    @blp.response(200, TransferSchema)
    def post(self, transfer_id: int) -> Any:
        """Stop a transfer that has not ended (it fails as "cancelled"); 409 if it has ended."""
        return transfers.cancel_transfer(runtime(), current_identity(), transfer_id)
