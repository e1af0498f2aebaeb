"""``datasets``: create, view and search datasets."""

from __future__ import annotations

import marshmallow as ma
from flask import current_app
from flask.views import MethodView

from dataflow_lite.api import Blueprint
from dataflow_lite.api.auth import current_user
from dataflow_lite.api.errors import DataflowError
from dataflow_lite.api.schemas import (
    DatasetSchema,
    SearchArgs,
    json_value,
    search_page_schema,
    utf8_text,
)
from dataflow_lite.api.views import dataset_view, transfers
from dataflow_lite.services import user_settings
from dataflow_lite.store import catalog, search
from dataflow_lite.store.db import get_session

blp = Blueprint("datasets", __name__, description="Datasets: a measurement's files and metadata.")


class MetadataValueArgs(ma.Schema):
    field_name = ma.fields.String(
        required=True, validate=[ma.validate.Length(min=1, max=255), utf8_text]
    )
    field_value = ma.fields.Raw(required=True, allow_none=True, validate=json_value)


class DatasetArgs(ma.Schema):
    name = ma.fields.String(
        required=True, validate=[ma.validate.Length(min=1, max=1000), utf8_text]
    )
    instrument_id = ma.fields.Integer(load_default=0, allow_none=True, strict=True)
    metadata_field_values_attributes = ma.fields.List(
        ma.fields.Nested(MetadataValueArgs), load_default=list
    )


def page_size(requested: int | None) -> int:
    """The page size a search uses: as asked, within the configured bounds."""
    settings = current_app.config["DATAFLOW_LITE"]
    return min(requested or settings["per_page"], settings["max_per_page"])


@blp.route("/datasets")
class Datasets(MethodView):
    @blp.arguments(DatasetArgs)
    @blp.response(201, DatasetSchema)
    def post(self, args):
        """Create a dataset; its folder and ``metadata.json`` appear at the destination."""
        session = get_session()
        user = current_user()
        if not args["name"].strip():
            raise DataflowError(400, "the dataset name is blank", {"name": ["must not be blank"]})
        values = [
            (value["field_name"], value["field_value"])
            for value in args["metadata_field_values_attributes"]
        ]
        endpoint = user_settings.destination_endpoint(session, user)
        dataset = catalog.create_dataset(
            session, user, args["name"], args["instrument_id"], values, endpoint
        )
        transfer = transfers().add(session, dataset, endpoint)
        session.commit()
        transfers().wake(transfer.id)  # type: ignore[arg-type]
        return dataset_view(session, dataset)


@blp.route("/datasets/<int:dataset_id>")
class DatasetById(MethodView):
    @blp.response(200, DatasetSchema)
    def get(self, dataset_id):
        """One dataset with its files and metadata."""
        session = get_session()
        return dataset_view(session, catalog.get_dataset(session, current_user(), dataset_id))


@blp.route("/datasets/search")
class DatasetSearch(MethodView):
    @blp.arguments(SearchArgs, location="query")
    @blp.response(200, search_page_schema(DatasetSchema))
    def get(self, args):
        """Datasets whose name, metadata or file names match ``q``, or created on ``q``'s date."""
        session = get_session()
        found = search.search_datasets(
            session, current_user(), args["q"], args["page"], page_size(args["per_page"])
        )
        return {
            "total": found.total,
            "has_more": found.has_more,
            "results": [dataset_view(session, dataset) for dataset in found.results],
        }
