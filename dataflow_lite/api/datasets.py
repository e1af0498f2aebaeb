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
from dataflow_lite.services import datasets, searches

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
        return searches.search_datasets(
            runtime(),
            current_identity(),
            args["q"],
            args["page"],
            page_size(args["per_page"]),
            args["after"],
        )


class FacetArgs(ma.Schema):
    q = ma.fields.String(
        load_default="", metadata={"description": "a search, as in /datasets/search"}
    )
    field_names = ma.fields.String(
        data_key="fields",
        required=True,
        validate=ma.validate.Length(max=2000),
        metadata={"description": "comma-separated: created (by month), instrument, creator, "
                  "or flattened metadata keys (dates by month)"},
    )  # fmt: skip
    top = ma.fields.Integer(load_default=10, validate=ma.validate.Range(min=1, max=50))


class BucketSchema(ma.Schema):
    value = ma.fields.Raw(allow_none=True)
    count = ma.fields.Integer()
    id = ma.fields.Integer(metadata={"description": "the instrument's or the user's id"})
    q = ma.fields.String(
        allow_none=True, metadata={"description": "the term that narrows the search to it"}
    )


class FacetsSchema(ma.Schema):
    total = ma.fields.Integer(metadata={"description": "datasets counted (at most 10,000)"})
    total_exact = ma.fields.Boolean(
        metadata={
            "description": "false when more matched: the buckets then count some 10,000 of "
            "them (not necessarily the newest), so each count is a lower bound"
        }
    )
    facets = ma.fields.Dict(
        keys=ma.fields.String(), values=ma.fields.List(ma.fields.Nested(BucketSchema))
    )


class KeySchema(ma.Schema):
    key = ma.fields.String()
    datasets = ma.fields.Integer()
    types = ma.fields.List(ma.fields.String(), metadata={"description": "JSON types seen"})


@blp.route("/datasets/facets")
class DatasetFacets(MethodView):
    @blp.arguments(FacetArgs, location="query")
    @blp.response(200, FacetsSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """The commonest values of ``fields`` among the datasets matching ``q``, with counts."""
        return searches.facets(
            runtime(), current_identity(), args["q"], args["field_names"].split(","), args["top"]
        )


@blp.route("/metadata-keys")
class MetadataKeys(MethodView):
    @blp.response(200, KeySchema(many=True))
    def get(self) -> Any:
        """Every flattened metadata key on the datasets you may see: how many, which types."""
        return searches.metadata_keys(runtime(), current_identity())
