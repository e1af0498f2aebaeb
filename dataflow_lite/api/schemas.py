"""The shapes of API v1 responses and request bodies, as DataFlow's walkthrough shows them."""

from __future__ import annotations

import math

import marshmallow as ma

from dataflow_lite.api.dump_plan import Schema
from dataflow_lite.store.query import SYNTAX
from dataflow_lite.store.search_sql import WINDOW

UTC_SECONDS = "%Y-%m-%d %H:%M:%S UTC"


class InstrumentSchema(Schema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    description = ma.fields.String()
    instrument_type = ma.fields.String(allow_none=True)


class CreatorSchema(Schema):
    id = ma.fields.Integer()
    name = ma.fields.String()


class FileSchema(Schema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    file_length = ma.fields.Integer(allow_none=True)
    file_type = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime(format=UTC_SECONDS)
    relative_path = ma.fields.String()
    is_directory = ma.fields.Boolean()
    dataset_id = ma.fields.Integer()
    sha256 = ma.fields.String(allow_none=True)
    transfer_state = ma.fields.String(
        allow_none=True, metadata={"description": "queued, running, verifying, done or failed"}
    )


class UploadedFileSchema(FileSchema):
    transport = ma.fields.String(metadata={"description": "the adapter that takes the file"})
    destination = ma.fields.String(metadata={"description": "where the file lands"})
    transfer_id = ma.fields.Integer()


class MetadataFieldSchema(Schema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    field_type = ma.fields.String()
    required = ma.fields.Boolean()
    choices = ma.fields.List(ma.fields.Raw(), allow_none=True)
    unit = ma.fields.String()


class InstrumentDetailSchema(InstrumentSchema):
    metadata_fields = ma.fields.List(ma.fields.Nested(MetadataFieldSchema))


class MetadataValueSchema(Schema):
    id = ma.fields.Integer()
    field_value = ma.fields.String(
        allow_none=True,
        metadata={
            "description": "the value as text: strings as they are, numbers, true/false and "
            'lists as their JSON (`373`, `2.0`, `["afm", "pzt"]`), null as null'
        },
    )
    field_name = ma.fields.String()
    metadata_field = ma.fields.Nested(MetadataFieldSchema, allow_none=True)


class DatasetSchema(Schema):
    id = ma.fields.Integer()
    created_at = ma.fields.DateTime(format="%Y-%m-%dT%H:%M:%SZ")
    name = ma.fields.String()
    creator = ma.fields.Nested(CreatorSchema)
    dataset_files = ma.fields.List(ma.fields.Nested(FileSchema))
    instrument = ma.fields.Nested(InstrumentSchema, allow_none=True)
    metadata_field_values = ma.fields.List(ma.fields.Nested(MetadataValueSchema))
    destination = ma.fields.String(metadata={"description": "where the dataset's folder is"})


def utf8_text(value: str) -> None:
    """Refuse text that cannot be stored: JSON may carry lone surrogates such as ``\\ud800``."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ma.ValidationError("is not valid text (it holds a lone surrogate)") from None


def json_value(value: object) -> None:
    """Refuse metadata values that JSON cannot hold again: NaN, infinities, invalid text."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ma.ValidationError("must be a finite number")
    if isinstance(value, str):
        utf8_text(value)


# Ids and page numbers beyond these answer 400, not an overflow deep in SQLite.
MAX_INT = 2**31 - 1


Q_DESCRIPTION = f"""The search, in a small language (every term must match):

* `word`: full text over the name, metadata names and values, and file names (a prefix);
  `"a phrase"`: those words in a row; `-word`, `-"a phrase"`, `-key:value`: must not match;
* `key:value` (equal: text without regard to case, numbers as numbers, a `YYYY-MM-DD` date as
  that day), `key>N`, `key>=N`, `key<N`, `key<=N`, `key:N..M` (inclusive; `N..` and `..M` too),
  `key:*` (has the key), on flattened metadata keys: `Microscope-Vendor:"Asylum Research"`,
  `Stage-Temperature>300`; a quoted key (`"created":x`) is always a metadata key;
* `created:YYYY-MM-DD`, `created:YYYY-MM-DD..YYYY-MM-DD` (either side open),
  `instrument:NAME_OR_ID`, `creator:USERNAME` (an admin's search; a user's covers only their
  own datasets), `file:TEXT` (a file name containing TEXT);
* a bare `YYYY-MM-DD`: created that day (UTC).

A malformed search answers 400 naming the term. Syntax: {SYNTAX}"""


class SearchArgs(ma.Schema):
    q = ma.fields.String(load_default="", metadata={"description": Q_DESCRIPTION})
    page = ma.fields.Integer(
        load_default=1,
        validate=ma.validate.Range(min=1, max=MAX_INT),
        metadata={"description": f"page number, while the page lies in the first {WINDOW} "
                  "results; deeper, continue with `after`"},
    )  # fmt: skip
    per_page = ma.fields.Integer(
        load_default=None,
        validate=ma.validate.Range(min=1, max=MAX_INT),
        metadata={"description": "results per page: the server's `per_page` setting (20) unless "
                  "given, and at most its `max_per_page` (100; more is answered with that many)"},
    )  # fmt: skip
    after = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(max=64),
        metadata={"description": "the `next` of the previous page: the page after it (any depth)"},
    )


class FileSearchArgs(SearchArgs):
    q = ma.fields.String(
        load_default="",
        metadata={"description": "text a file or folder name contains (any case), or a "
                  "YYYY-MM-DD date: files added that day"},
    )  # fmt: skip
    dataset_id = ma.fields.Integer(load_default=None)


def search_page_schema(result_schema: type[ma.Schema]) -> type[ma.Schema]:
    """The search envelope ``{"total", "has_more", "results"}`` around ``result_schema``."""
    return Schema.from_dict(
        {
            "total": ma.fields.Integer(
                metadata={"description": f"exact up to {WINDOW}; past it a lower bound"}
            ),
            "total_exact": ma.fields.Boolean(
                metadata={"description": f"false when more than {WINDOW} match"}
            ),
            "has_more": ma.fields.Boolean(),
            "next": ma.fields.String(
                allow_none=True,
                metadata={"description": "pass as `after` for the next page; null on the last"},
            ),
            "results": ma.fields.List(ma.fields.Nested(result_schema)),
        },
        name=f"{result_schema.__name__.removesuffix('Schema')}SearchPage",
    )
