"""Editing an instrument's metadata form from the admin pages: fields, their order and options."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlmodel import Session

from dataflow_lite.store import catalog
from dataflow_lite.store.metadata import FIELD_TYPES, value_text
from dataflow_lite.store.models import Instrument, MetadataField
from dataflow_lite.web.wizard import typed_value

MAX_FIELD_NAME = 255
EXPECTED = {
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "string": (str,),
}


def choices_text(field: MetadataField) -> str:
    """A field's choices as the form shows them, one per line."""
    return "\n".join(value_text(choice) for choice in field.choices or [])


def parse_choices(field_type: str, text: str) -> list[Any] | None:
    """The choices typed one per line, each of ``field_type``; None when there are none."""
    probe = MetadataField(instrument_id=0, name="", field_type=field_type)
    choices = []
    for line in text.splitlines():
        if not line.strip():
            continue
        choice = typed_value(probe, line.strip())
        wrong_bool = isinstance(choice, bool) and field_type != "boolean"
        if wrong_bool or not isinstance(choice, EXPECTED[field_type]):
            raise ValueError(f"the choice {line.strip()!r} is not a {field_type}")
        choices.append(choice)
    return choices or None


def new_field(instrument: Instrument, fields: Sequence[MetadataField], form: Any) -> MetadataField:
    """The field the form describes, placed last; ValueError says what is wrong."""
    name = form.get("name", "").strip()
    field_type = form.get("field_type", "string")
    if not name or len(name) > MAX_FIELD_NAME:
        raise ValueError(f"a field's name is 1 to {MAX_FIELD_NAME} characters")
    if any(field.name == name for field in fields):
        raise ValueError(f"{instrument.name} has a field {name!r} already")
    if field_type not in FIELD_TYPES:
        raise ValueError(f"the type must be one of {', '.join(FIELD_TYPES)}")
    return MetadataField(
        instrument_id=instrument.id,  # type: ignore[arg-type]
        name=name,
        field_type=field_type,
        required=bool(form.get("required")),
        persist=bool(form.get("persist")),
        choices=parse_choices(field_type, form.get("choices", "")),
        unit=form.get("unit", "").strip(),
        position=max((field.position for field in fields), default=-1) + 1,
    )


def _move(session: Session, field: MetadataField, step: int) -> str:
    fields = list(catalog.instrument_fields(session, field.instrument_id))
    index = next(i for i, other in enumerate(fields) if other.id == field.id)
    target = index + step
    if not 0 <= target < len(fields):
        raise ValueError(f"{field.name} is {'first' if step < 0 else 'last'} already")
    fields[index], fields[target] = fields[target], fields[index]
    for position, other in enumerate(fields):
        other.position = position
    return f"{field.name} is moved {'up' if step < 0 else 'down'}."


def change_field(session: Session, field: MetadataField, change: str, form: Any) -> str:
    """Apply one change to ``field``; return what was done, or raise ValueError."""
    if change in ("up", "down"):
        return _move(session, field, -1 if change == "up" else 1)
    if change in ("required", "persist"):
        value = not getattr(field, change)
        setattr(field, change, value)
        what = "required" if change == "required" else "pre-filled from the previous dataset"
        return f"{field.name} is {'' if value else 'no longer '}{what}."
    if change == "options":
        field.choices = parse_choices(field.field_type, form.get("choices", ""))
        field.unit = form.get("unit", "").strip()
        return f"The choices and unit of {field.name} are saved."
    raise ValueError(f"unknown change {change!r}")
