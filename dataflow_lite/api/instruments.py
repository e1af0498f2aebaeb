"""``instruments``: the instruments datasets come from."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from dataflow_lite.api import Blueprint
from dataflow_lite.api.auth import current_identity
from dataflow_lite.api.schemas import InstrumentDetailSchema, InstrumentSchema
from dataflow_lite.faces import runtime
from dataflow_lite.services import instruments

blp = Blueprint("instruments", __name__, description="Instruments and their metadata forms.")


@blp.route("/instruments")
class Instruments(MethodView):
    @blp.response(200, InstrumentSchema(many=True))
    def get(self) -> Any:
        """Every instrument."""
        return [
            form.instrument for form in instruments.list_instruments(runtime(), current_identity())
        ]


@blp.route("/instruments/<int:instrument_id>")
class InstrumentById(MethodView):
    @blp.response(200, InstrumentDetailSchema)
    def get(self, instrument_id: int) -> Any:
        """One instrument, with its metadata form; 0 is the untitled instrument."""
        form = instruments.get_instrument(runtime(), current_identity(), instrument_id)
        return {**form.instrument.model_dump(), "metadata_fields": form.fields}
