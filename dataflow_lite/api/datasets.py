"""``datasets``: create, view and search datasets."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from dataflow_lite.api import Blueprint
from dataflow_lite.api.auth import current_identity
from dataflow_lite.api.schemas import (
    DatasetSchema,
    SearchArgs,
    json_value,
    search_page_schema,
    utf8_text,
)
from dataflow_lite.faces import runtime
from dataflow_lite.services import datasets

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
    settings = runtime().settings
    return min(requested or settings["per_page"], settings["max_per_page"])


@blp.route("/datasets")
class Datasets(MethodView):
    @blp.arguments(DatasetArgs)
    @blp.response(201, DatasetSchema)
    def post(self, args: dict[str, Any]) -> Any:
        """Create a dataset; its folder and ``metadata.json`` appear at the destination."""
        values = [
            (value["field_name"], value["field_value"])
            for value in args["metadata_field_values_attributes"]
        ]
        return datasets.create_dataset(
            runtime(), current_identity(), args["name"], args["instrument_id"], values
        )


@blp.route("/datasets/<int:dataset_id>")
class DatasetById(MethodView):
    @blp.response(200, DatasetSchema)
    def get(self, dataset_id: int) -> Any:
        """One dataset with its files and metadata."""
        return datasets.get_dataset(runtime(), current_identity(), dataset_id)


@blp.route("/datasets/search")
class DatasetSearch(MethodView):
    @blp.arguments(SearchArgs, location="query")
    @blp.response(200, search_page_schema(DatasetSchema))
    def get(self, args: dict[str, Any]) -> Any:
        """Datasets matching ``q`` (words, phrases, typed metadata, dates; see ``q``), newest
        first. ``total`` is exact up to 10,000 (then ``total_exact`` is false)."""
        return datasets.search_datasets(
            runtime(),
            current_identity(),
            args["q"],
            args["page"],
            page_size(args["per_page"]),
            args["after"],
        )
