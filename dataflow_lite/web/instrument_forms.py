"""Editing an instrument's metadata form from the admin pages: the form's text, read as values.

The services judge what is read here (names, types, choices that fit the type); this module only
turns the text a person typed into the values ``add_field`` and ``change_field`` take.
"""

from __future__ import annotations

from typing import Any

from dataflow_lite.faces import runtime
from dataflow_lite.services import instruments
from dataflow_lite.services.identity import Identity
from dataflow_lite.store.metadata import value_text
from dataflow_lite.store.models import MetadataField
from dataflow_lite.web.wizard import typed_value


def choices_text(field: MetadataField) -> str:
    """A field's choices as the form shows them, one per line."""
    return "\n".join(value_text(choice) for choice in field.choices or [])


def parse_choices(field_type: str, text: str) -> list[Any]:
    """The choices typed one per line, each as ``field_type`` when it reads as one."""
    probe = MetadataField(instrument_id=0, name="", field_type=field_type)
    return [typed_value(probe, line.strip()) for line in text.splitlines() if line.strip()]


def add_field(identity: Identity, instrument_id: int, form: Any) -> MetadataField:
    """Add the field the form describes at the end of the instrument's form."""
    field_type = form.get("field_type", "string")
    return instruments.add_field(
        runtime(),
        identity,
        instrument_id,
        form.get("name", ""),
        field_type,
        required=bool(form.get("required")),
        choices=parse_choices(field_type, form.get("choices", "")),
        unit=form.get("unit", ""),
        persist=bool(form.get("persist")),
    )


def change_field(identity: Identity, field: MetadataField, change: str, form: Any) -> str:
    """Apply one change to ``field``; return what was done, in words."""
    assert field.id is not None  # a stored field
    _, done = instruments.change_field(
        runtime(),
        identity,
        field.id,
        change,
        choices=parse_choices(field.field_type, form.get("choices", "")),
        unit=form.get("unit", ""),
    )
    return done
