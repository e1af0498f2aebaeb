"""``transfers``: where each file's move to its destination stands, and retrying failed ones."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from sqlmodel import col, select

from dataflow_lite.adapter import DONE, FAILED, QUEUED, RUNNING, VERIFYING
from dataflow_lite.api import Blueprint
from dataflow_lite.api.auth import current_user
from dataflow_lite.api.errors import DataflowError
from dataflow_lite.api.schemas import MAX_INT
from dataflow_lite.api.views import transfers
from dataflow_lite.store.catalog import find
from dataflow_lite.store.db import get_session
from dataflow_lite.store.models import Transfer

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
    dataset_id = ma.fields.Integer(load_default=None, validate=ma.validate.Range(max=MAX_INT))
    state = ma.fields.String(load_default=None, validate=ma.validate.OneOf(STATES))


def get_transfer(transfer_id: int) -> Transfer:
    """The transfer if the user may see it (theirs, or any for an admin), else 404."""
    user = current_user()
    transfer = find(get_session(), Transfer, transfer_id)
    if transfer is None or not (user.is_admin or transfer.user_id == user.id):
        raise DataflowError(404, f"transfer {transfer_id} not found")
    return transfer


@blp.route("/transfers")
class Transfers(MethodView):
    @blp.arguments(TransferArgs, location="query")
    @blp.response(200, TransferSchema(many=True))
    def get(self, args):
        """Transfers, newest first, optionally of one dataset or in one state."""
        user = current_user()
        statement = select(Transfer).order_by(col(Transfer.id).desc()).limit(1000)
        if not user.is_admin:
            statement = statement.where(Transfer.user_id == user.id)
        if args["dataset_id"] is not None:
            statement = statement.where(Transfer.dataset_id == args["dataset_id"])
        if args["state"] is not None:
            statement = statement.where(Transfer.state == args["state"])
        return get_session().exec(statement).all()


@blp.route("/transfers/<int:transfer_id>")
class TransferById(MethodView):
    @blp.response(200, TransferSchema)
    def get(self, transfer_id):
        """One transfer."""
        return get_transfer(transfer_id)


@blp.route("/transfers/<int:transfer_id>/retry")
class TransferRetry(MethodView):
    @blp.response(200, TransferSchema)
    def post(self, transfer_id):
        """Queue a failed transfer again; 409 unless it failed."""
        transfer = get_transfer(transfer_id)
        session = get_session()
        session.commit()  # release the read transaction: the queue writes on its own
        if not transfers().retry(transfer_id):
            raise DataflowError(409, f"transfer {transfer_id} is {transfer.state}, not failed")
        session.refresh(transfer)
        return transfer
