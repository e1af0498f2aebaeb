"""``instruments``: the instruments datasets come from."""

from __future__ import annotations

from flask.views import MethodView
from sqlmodel import col, select

from dataflow_lite.api import Blueprint
from dataflow_lite.api.schemas import InstrumentDetailSchema, InstrumentSchema
from dataflow_lite.store import catalog
from dataflow_lite.store.db import get_session
from dataflow_lite.store.models import Instrument

blp = Blueprint("instruments", __name__, description="Instruments and their metadata forms.")


UNTITLED = {
    "id": 0,
    "name": catalog.UNTITLED_INSTRUMENT_NAME,
    "description": "",
    "instrument_type": None,
}


@blp.route("/instruments")
class Instruments(MethodView):
    @blp.response(200, InstrumentSchema(many=True))
    def get(self):
        """Every instrument."""
        return get_session().exec(select(Instrument).order_by(col(Instrument.id))).all()


@blp.route("/instruments/<int:instrument_id>")
class InstrumentById(MethodView):
    @blp.response(200, InstrumentDetailSchema)
    def get(self, instrument_id):
        """One instrument, with its metadata form; 0 is the untitled instrument."""
        session = get_session()
        if instrument_id == 0:
            return {**UNTITLED, "metadata_fields": []}
        instrument = catalog.get_instrument(session, instrument_id)
        return {
            **instrument.model_dump(),
            "metadata_fields": catalog.instrument_fields(session, instrument_id),
        }
