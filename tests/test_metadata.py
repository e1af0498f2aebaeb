"""Metadata as ordflow sends it: checked, shown on the wire, nested, typed in the catalog."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlmodel import Session, SQLModel, create_engine, select

from dataflow_lite.store import metadata
from dataflow_lite.store.models import MetadataField, MetadataValue


def field(name: str, field_type: str = "string", **options) -> MetadataField:
    return MetadataField(instrument_id=1, name=name, field_type=field_type, **options)


@pytest.mark.parametrize(
    "value",
    [["afm", "pzt"], [], [1, 2.5, True, None, "x"], 2.0, 0.25, None, True, "373"],
    ids=["list", "empty-list", "mixed-list", "float", "fraction", "null", "bool", "text"],
)
def test_free_form_values_may_be_scalars_or_lists_of_them(value):
    assert metadata.validate([("tags", value)], []) == {}


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"a": 1}, "must be a single value or a list of them, not an object"),
        ([["a"]], "must be a list of text, numbers, true/false or null"),
        ([{"a": 1}], "not one holding lists or objects"),
    ],
    ids=["object", "list-in-list", "object-in-list"],
)
def test_nested_containers_are_refused_with_what_would_fit(value, says):
    with pytest.raises(metadata.InvalidMetadata) as caught:
        metadata.validate([("tags", value)], [])
    assert says in caught.value.errors["tags"]
    assert caught.value.form_fields == set()  # nothing here is about a form


@pytest.mark.parametrize(
    ("form_field", "value", "says"),
    [
        (field("temperature", "number"), "hot", "must be a number, not 'hot'"),
        (field("temperature", "number"), True, "must be a number, not true"),
        (field("temperature", "number"), [300], "must be a number, not a list"),
        (field("scans", "integer"), 2.5, "must be an integer, not 2.5"),
        (field("scans", "integer"), 2.0, "must be an integer, not 2.0"),
        (field("cleaned", "boolean"), "yes", "must be true or false, not 'yes'"),
        (field("mode"), 373, "must be text, not 373"),
        (field("mode"), ["afm", "pzt"], "must be text, not a list"),
        (field("mode"), {"a": 1}, "must be text, not an object"),
        (field("mode", choices=["AC", "DC"]), "contact", "must be one of AC, DC, not 'contact'"),
    ],
    ids=[
        "text-for-number",
        "bool-for-number",
        "list-for-number",
        "fraction-for-integer",
        "float-for-integer",
        "text-for-boolean",
        "number-for-text",
        "list-for-text",
        "object-for-text",
        "not-a-choice",
    ],
)
def test_a_misfit_names_what_would_fit_and_what_was_given(form_field, value, says):
    with pytest.raises(metadata.InvalidMetadata) as caught:
        metadata.validate([(form_field.name, value)], [form_field])
    assert caught.value.errors == {form_field.name: says}
    assert caught.value.form_fields == {form_field.name}
    assert str(caught.value) == f"{form_field.name}: {says}"


def test_a_long_value_is_cut_in_the_message():
    number = field("temperature", "number")
    with pytest.raises(metadata.InvalidMetadata) as caught:
        metadata.validate([("temperature", "h" * 100)], [number])
    message = caught.value.errors["temperature"]
    assert message.startswith("must be a number, not 'hhh") and message.endswith("…")
    assert len(message) < 80


def test_a_float_fits_a_number_field_and_an_integer_field_takes_integers():
    fields = [field("temperature", "number"), field("scans", "integer")]
    assert metadata.validate([("temperature", 2.0), ("scans", 3)], fields).keys() == {
        "temperature",
        "scans",
    }


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        ("PZT", "PZT"),
        (373, "373"),
        (2.0, "2.0"),
        (0.25, "0.25"),
        (True, "true"),
        (None, None),
        (["afm", "pzt"], '["afm", "pzt"]'),
        (["café", 1.0, None], '["café", 1.0, null]'),
    ],
)
def test_the_wire_shows_values_as_dataflow_does(value, wire):
    assert metadata.wire_value(value) == wire


def test_page_text_shows_null_as_json():
    assert metadata.value_text(None) == "null"
    assert metadata.value_text(["a"]) == '["a"]'


def test_units_nest_like_the_metadata():
    names = ["Sample", "Stage-Temperature", "Stage-Tilt", "Mode", "A", "A-B"]
    units = {"Stage-Temperature": "K", "A-B": "nm", "Mode": ""}
    assert metadata.nest((name, 0) for name in names) == {
        "Sample": 0,
        "Stage": {"Temperature": 0, "Tilt": 0},
        "Mode": 0,
        "A": 0,
        "A-B": 0,  # both a value and a group: stays flat, and so does its unit
    }
    assert metadata.nest_units(names, units) == {"Stage": {"Temperature": "K"}, "A-B": "nm"}
    assert metadata.nest_units(names, {}) == {}


@pytest.fixture
def engine():
    engine = create_engine("sqlite://")
    SQLModel.metadata.create_all(engine)
    return engine


VALUES = [2.0, 0.25, 373, None, True, False, "373", "2.0", ["afm", 2.0, None], 1e100, -0.0]


def test_the_catalog_keeps_each_values_json_type(engine):
    with Session(engine) as session:
        session.add_all(MetadataValue(dataset_id=1, field_name="v", value=v) for v in VALUES)
        session.commit()
    with Session(engine) as session:
        kept = [row.value for row in session.exec(select(MetadataValue).order_by(MetadataValue.id))]
    assert [(v, type(v)) for v in kept] == [(v, type(v)) for v in VALUES]


def test_values_of_a_table_made_before_the_text_column_still_read(engine):
    # Tables created before metadata values were TEXT declared the column JSON (numeric
    # affinity): SQLite hands back the numbers it converted, not text.
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE metadatavalue"))
        connection.execute(
            text(
                "CREATE TABLE metadatavalue (id INTEGER PRIMARY KEY, dataset_id INTEGER NOT NULL,"
                " field_name VARCHAR NOT NULL, value JSON, metadata_field_id INTEGER,"
                " owner_id INTEGER)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO metadatavalue (dataset_id, field_name, value) VALUES"
                " (1, 'a', '373'), (1, 'b', '0.25'), (1, 'c', '\"PZT\"'), (1, 'd', '[1, 2]'),"
                " (1, 'e', 'null')"
            )
        )
    with Session(engine) as session:
        kept = [row.value for row in session.exec(select(MetadataValue).order_by(MetadataValue.id))]
    assert kept == [373, 0.25, "PZT", [1, 2], None]
