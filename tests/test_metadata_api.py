"""ordflow's real payloads through the API: lists, floats, booleans and null, misfits, units."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

API = "/api/v1"

# What ordflow sends for metadata={"tags": ["afm", "pzt"], "Stage": {"Temperature": 2.0}, ...}.
FLATTENED = [
    ("tags", ["afm", "pzt"]),
    ("Stage-Temperature", 2.0),
    ("Stage-Tilt", 0.25),
    ("cleaned", True),
    ("notes", None),
    ("count", 373),
]


def body(values, name="scan", **extra) -> dict:
    return {
        "name": name,
        "metadata_field_values_attributes": [
            {"field_name": field_name, "field_value": value} for field_name, value in values
        ],
        **extra,
    }


def document(dataset: dict) -> dict:
    return json.loads((Path(dataset["destination"]) / "metadata.json").read_text())


@pytest.fixture
def cypher(cli) -> int:
    """Instrument Cypher: a number Stage-Temperature in K, an integer Scans, a text Mode."""
    ident = str(cli.json("instrument", "add", "Cypher")["id"])
    cli("instrument", "field", ident, "Stage-Temperature", "--type", "number", "--unit", "K")
    cli("instrument", "field", ident, "Scans", "--type", "integer", "--unit", "")
    cli("instrument", "field", ident, "Mode", "--choice", "AC", "--choice", "contact")
    return int(ident)


def test_lists_floats_booleans_and_null_without_an_instrument(client, auth):
    response = client.post(f"{API}/datasets", json=body(FLATTENED), headers=auth)
    assert response.status_code == 201, response.json
    created = response.json
    wire = [(v["field_name"], v["field_value"]) for v in created["metadata_field_values"]]
    assert wire == [
        ("tags", '["afm", "pzt"]'),
        ("Stage-Temperature", "2.0"),
        ("Stage-Tilt", "0.25"),
        ("cleaned", "true"),
        ("notes", None),
        ("count", "373"),
    ]
    shown = client.get(f"{API}/datasets/{created['id']}", headers=auth).json
    assert shown["metadata_field_values"] == created["metadata_field_values"]
    assert document(created)["dataset"]["metadata"] == {
        "tags": ["afm", "pzt"],
        "Stage": {"Temperature": 2.0, "Tilt": 0.25},
        "cleaned": True,
        "notes": None,
        "count": 373,
    }
    assert document(created)["dataset"]["units"] == {}
    raw = (Path(created["destination"]) / "metadata.json").read_text()
    assert '"Temperature": 2.0' in raw  # a float, not the integer 2


def test_a_list_is_found_by_its_words(client, auth):
    client.post(f"{API}/datasets", json=body([("tags", ["afm", "pzt"])]), headers=auth)
    assert client.get(f"{API}/datasets/search?q=pzt", headers=auth).json["total"] == 1


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"a": 1}, "tags: must be a single value or a list of them, not an object"),
        ([["afm"]], "tags: must be a list of text, numbers, true/false or null"),
        ([{"name": "afm"}], "not one holding lists or objects"),
    ],
    ids=["object", "list-in-list", "object-in-list"],
)
def test_nested_containers_are_refused_without_mentioning_a_form(client, auth, value, says):
    response = client.post(f"{API}/datasets", json=body([("tags", value)]), headers=auth)
    assert response.status_code == 400
    assert response.json["message"].startswith("the metadata is not valid: ")
    assert says in response.json["message"]
    assert "form" not in response.json["message"]
    assert "instrument" not in response.json["message"]
    assert list(response.json["errors"]) == ["tags"]


def test_a_name_given_twice_without_an_instrument_mentions_no_form(client, auth):
    response = client.post(f"{API}/datasets", json=body([("a", 1), ("a", 2)]), headers=auth)
    assert response.status_code == 400
    assert response.json["message"] == "the metadata is not valid: a: is given more than once"


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ([("Stage-Temperature", "hot")], "Stage-Temperature: must be a number, not 'hot'"),
        ([("Stage-Temperature", [300, 301])], "Stage-Temperature: must be a number, not a list"),
        ([("Scans", 2.5)], "Scans: must be an integer, not 2.5"),
        ([("Mode", "DC")], "Mode: must be one of AC, contact, not 'DC'"),
        ([("Mode", 1)], "Mode: must be text, not 1"),
    ],
    ids=["text-for-number", "list-for-number", "fraction-for-integer", "not-a-choice", "number"],
)
def test_a_misfit_names_the_field_the_value_and_what_fits(client, auth, cypher, values, says):
    response = client.post(f"{API}/datasets", json=body(values, instrument_id=cypher), headers=auth)
    assert response.status_code == 400
    assert response.json["message"] == (
        f"the metadata does not fit the form of instrument 'Cypher': {says}"
    )
    name, message = says.split(": ", 1)
    assert response.json["errors"] == {name: [message]}


def test_units_go_into_metadata_json_beside_the_values(client, auth, cypher):
    values = [
        ("Stage-Temperature", 2.0),
        ("Stage-Tilt", 0.25),
        ("Scans", 3),
        ("Mode", "AC"),
        ("tags", ["afm"]),
    ]
    response = client.post(f"{API}/datasets", json=body(values, instrument_id=cypher), headers=auth)
    assert response.status_code == 201, response.json
    dataset = response.json["id"]
    saved = document(response.json)["dataset"]
    assert saved["metadata"] == {
        "Stage": {"Temperature": 2.0, "Tilt": 0.25},
        "Scans": 3,
        "Mode": "AC",
        "tags": ["afm"],
    }
    assert saved["units"] == {"Stage": {"Temperature": "K"}}
    # The wire ordflow reads is unchanged: values as text, the unit on the field.
    shown = client.get(f"{API}/datasets/{dataset}", headers=auth).json["metadata_field_values"]
    assert [v.keys() for v in shown] == [{"id", "field_name", "field_value", "metadata_field"}] * 5
    assert shown[0]["field_value"] == "2.0"
    assert shown[0]["metadata_field"]["unit"] == "K"
