"""Response schemas dump by a plan exactly as marshmallow's own dump does."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import marshmallow as ma
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflow_lite.api.dump_plan import Schema


def marshmallows(dump: Any) -> Any:
    """What ``dump()`` gives with every plan schema (nested ones too) dumping the plain way."""
    planned = Schema.dump
    Schema.dump = ma.Schema.dump  # type: ignore[method-assign]
    try:
        return dump()
    finally:
        Schema.dump = planned  # type: ignore[method-assign]


def same_answer(dump: Any) -> Any:
    """``dump()``'s value or error, which marshmallow's own way must give too."""
    try:
        mine: Any = dump()
    except Exception as error:  # noqa: BLE001 - the kind of error is compared
        mine = type(error)
    try:
        theirs: Any = marshmallows(dump)
    except Exception as error:  # noqa: BLE001
        theirs = type(error)
    assert mine == theirs
    return mine


class Inner(Schema):
    id = ma.fields.Integer()
    label = ma.fields.String(data_key="title")


class Hooked(Schema):
    name = ma.fields.String()

    @ma.post_dump
    def shout(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {**data, "name": str(data.get("name")).upper()}


class Zoo(Schema):
    """A field of every kind the plan reads itself, and some it hands to marshmallow."""

    number = ma.fields.Integer()
    text = ma.fields.String()
    flag = ma.fields.Boolean()
    raw = ma.fields.Raw(allow_none=True)
    when = ma.fields.DateTime(format="%Y-%m-%dT%H:%M:%SZ")
    iso = ma.fields.DateTime()
    quoted = ma.fields.Integer(as_string=True)
    renamed = ma.fields.String(attribute="other", data_key="shown")
    dotted = ma.fields.String(attribute="nest.x")
    defaulted = ma.fields.String(dump_default=lambda: "fallback")
    inner = ma.fields.Nested(Inner, allow_none=True)
    inners = ma.fields.List(ma.fields.Nested(Inner))
    many_inner = ma.fields.Nested(Inner, many=True)
    texts = ma.fields.List(ma.fields.String())
    times = ma.fields.List(ma.fields.DateTime(format="%Y"))
    plucked = ma.fields.Pluck(Inner, "id")
    mapping = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    method = ma.fields.Method("twice")
    hooked = ma.fields.Nested(Hooked)

    def twice(self, obj: Any) -> Any:
        return 2 * (obj.get("number") or 0) if isinstance(obj, dict) else None


moment = datetime(2026, 12, 7, 3, 4, 5, tzinfo=UTC)
anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5),
    st.just(moment), st.just("1"), st.just("true"),
)  # fmt: skip
inner = st.one_of(
    st.none(),
    st.fixed_dictionaries({}, optional={"id": anything, "label": anything}),
    st.builds(SimpleNamespace, id=st.integers(), label=st.text(max_size=3)),
)


@settings(max_examples=300, deadline=None)
@given(
    record=st.fixed_dictionaries(
        {},
        optional={
            "number": anything,
            "text": anything,
            "flag": anything,
            "raw": anything,
            "when": anything,
            "iso": anything,
            "quoted": anything,
            "other": anything,
            "renamed": anything,
            "defaulted": anything,
            "inner": inner,
            "inners": st.lists(inner, max_size=2),
            "many_inner": st.lists(inner, max_size=2),
            "texts": st.lists(anything, max_size=2),
            "times": st.lists(anything, max_size=2),
            "plucked": inner,
            "mapping": st.dictionaries(st.text(max_size=2), anything),
            "hooked": st.fixed_dictionaries({"name": anything}),
            "nest.x": anything,
            "nest": st.fixed_dictionaries({}, optional={"x": anything}),
        },
    ),  # fmt: skip
    as_object=st.booleans(),
)
def test_the_plan_dumps_any_value_as_marshmallow_does(record: dict[str, Any], as_object: bool):
    subject: Any = SimpleNamespace(**record) if as_object else record
    same_answer(lambda: Zoo().dump(subject))
    same_answer(lambda: Zoo(many=True).dump([subject, subject]))
    same_answer(lambda: Zoo(only=("text", "inner")).dump(subject))


def test_the_plan_is_used_and_hooks_still_run():
    dumped = same_answer(lambda: Zoo().dump({"number": 3, "hooked": {"name": "x"}, "other": "o"}))
    assert dumped["method"] == 6 and dumped["hooked"] == {"name": "X"}
    assert dumped["shown"] == "o" and dumped["defaulted"] == "fallback"
    assert Inner()._plan is not None and Zoo()._plan is not None  # a plan answers these
    assert Hooked()._plan is None  # and marshmallow's own dump a schema with hooks


class Later(Schema):
    """Fields marshmallow resolves or maps its own way: a nested schema named by a string, a
    Boolean's own truthy and falsy values, an ordered answer."""

    class Meta:
        ordered = True

    later = ma.fields.Nested("LaterInner")
    flag = ma.fields.Boolean(truthy={"y"}, falsy={"n", True})


class LaterInner(Schema):
    id = ma.fields.Integer()


@pytest.mark.parametrize("record", [{"flag": True}, {"flag": False}, {"later": {"id": 1}}, {}])
def test_names_booleans_and_order_are_dumped_as_marshmallow_does(record: dict[str, Any]):
    dumped = same_answer(lambda: Later().dump(record))
    assert type(dumped) is type(marshmallows(lambda: Later().dump(record)))


@pytest.mark.parametrize("path", ["/api/v1/datasets/search?q=", "/api/v1/datasets/{id}"])
def test_api_answers_are_what_marshmallow_would_dump(cli, client, auth, path: str):
    instrument = cli.json("instrument", "add", "Cypher")
    cli("instrument", "field", str(instrument["id"]), "Temperature", "--type", "number")
    values = [
        {"field_name": "Temperature", "field_value": 373.5},
        {"field_name": "Tags", "field_value": ["afm", 2]},
        {"field_name": "Note", "field_value": None},
        {"field_name": "Sample", "field_value": "PZT"},
    ]
    created = client.post(
        "/api/v1/datasets",
        json={"name": "scan", "instrument_id": instrument["id"],
              "metadata_field_values_attributes": values},
        headers=auth,
    ).json  # fmt: skip
    upload = client.post(
        "/api/v1/dataset-file-upload",
        data={"dataset_id": created["id"], "file": (io.BytesIO(b"data"), "a.txt")},
        headers=auth,
    )
    assert upload.status_code == 201, upload.json
    url = path.format(id=created["id"])
    planned = client.get(url, headers=auth).json
    assert planned == marshmallows(lambda: client.get(url, headers=auth).json)
    shown = planned["results"][0] if "results" in planned else planned
    assert shown["instrument"]["name"] == "Cypher" and shown["dataset_files"][0]["name"] == "a.txt"
    assert {v["field_name"]: v["field_value"] for v in shown["metadata_field_values"]} == {
        "Temperature": "373.5", "Tags": '["afm", 2]', "Note": None, "Sample": "PZT"
    }  # fmt: skip
