"""The new-dataset form: an instrument's metadata fields as inputs, and the values they send.

Inputs are text; each is turned into its field's JSON type (``373`` a number, ``true`` a
boolean) when it reads as one, and passed on as typed otherwise, so that
:func:`dataflow_lite.services.datasets.create_dataset` judges every value with the API's own
messages.
Blank inputs are left out: a blank required field is "required", as in the API.

Extra rows have no field to say their type, so they read as a script's JSON would: a JSON number
(``373``, ``2.5``), ``true``, ``false``, ``null`` or a JSON list (``["afm", "pzt"]``) becomes that
value, and anything else, quoted text and objects included, stays the text as typed. What the
page then shows is the same text, since the wire shows those values as their JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dataflow_lite.store.metadata import SEPARATOR, value_text
from dataflow_lite.store.models import MetadataField

EXTRA_NAME, EXTRA_VALUE = "extra_name", "extra_value"
BLANK_EXTRA_ROWS = 3


def input_name(metadata_field: MetadataField) -> str:
    """The name of a field's input in the form."""
    return f"field-{metadata_field.id}"


@dataclass
class FieldInput:
    """One metadata field as the form shows it: its input, current text and error."""

    field: MetadataField
    text: str = ""
    error: str | None = None
    #: The text is the user's last dataset's value on this instrument (a "persist" field).
    kept: bool = False

    @property
    def name(self) -> str:
        return input_name(self.field)

    @property
    def kind(self) -> str:
        """``select``, ``number`` or ``text``."""
        if self.field.choices or self.field.field_type == "boolean":
            return "select"
        return "number" if self.field.field_type in ("number", "integer") else "text"

    @property
    def step(self) -> str:
        return "1" if self.field.field_type == "integer" else "any"

    @property
    def options(self) -> list[tuple[str, str]]:
        """(value, label) of each choice of a select."""
        if self.field.choices:
            return [(value_text(choice), value_text(choice)) for choice in self.field.choices]
        return [("true", "Yes"), ("false", "No")]


@dataclass
class ExtraRow:
    """A free-form metadata row: a name (``-`` nests) and a text value."""

    name: str = ""
    value: str = ""
    error: str | None = None


@dataclass
class Submission:
    """What the form sent: the values for create_dataset, and the texts to show again.

    ``problems`` are rows the form cannot even pass on (a value without a name).
    """

    values: list[tuple[str, Any]] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    extras: list[ExtraRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def typed_value(metadata_field: MetadataField, text: str) -> Any:
    """``text`` as the field's JSON type when it reads as one, else ``text`` unchanged."""
    kind = metadata_field.field_type
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            try:
                return int(text)
            except ValueError:
                number = float(text)
                return number if math.isfinite(number) else text
    except ValueError:
        return text
    if kind == "boolean":
        return {"true": True, "false": False}.get(text.lower(), text)
    return text


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return all(_finite(item) for item in value) if isinstance(value, list) else True


def extra_value(text: str) -> Any:
    """An extra row's ``text`` as the JSON number, true, false, null or list it spells, else as is.

    Quoted text and objects stay as typed (a name with ``-`` nests); NaN and numbers too large for
    a float stay text, which JSON could not hold again.
    """
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError:
        return text
    if isinstance(value, str | dict) or not _finite(value):
        return text
    return value


def read_form(fields: Sequence[MetadataField], form: Any) -> Submission:
    """The metadata a submitted form gives, in the form's order, extra rows last."""
    submission = Submission()
    for metadata_field in fields:
        text = form.get(input_name(metadata_field), "").strip()
        submission.texts[metadata_field.name] = text
        if text:
            submission.values.append((metadata_field.name, typed_value(metadata_field, text)))
    names, texts = form.getlist(EXTRA_NAME), form.getlist(EXTRA_VALUE)
    for name, text in zip(names, texts, strict=False):
        row = ExtraRow(name.strip(), text.strip())
        if not row.name and not row.value:
            continue
        if not row.name:
            row.error = "give this value a name"
            submission.problems.append(f"the value {row.value!r} has no name")
        else:
            submission.values.append((row.name, extra_value(row.value)))
        submission.extras.append(row)
    return submission


def field_inputs(
    fields: Sequence[MetadataField],
    texts: Mapping[str, str],
    errors: Mapping[str, str],
    previous: Mapping[str, str],
) -> list[FieldInput]:
    """The form's inputs, with their texts and errors by field name; ``previous`` holds the
    texts of the user's last dataset, to say which inputs still show them."""
    return [
        FieldInput(
            item,
            texts.get(item.name, ""),
            errors.get(item.name),
            kept=item.persist
            and item.name in previous
            and previous[item.name] == texts.get(item.name),
        )
        for item in fields
    ]


def extra_rows(extras: Sequence[ExtraRow], errors: Mapping[str, str]) -> list[ExtraRow]:
    """The extra rows to show: those sent, with their errors, and a few blank ones.

    A name's error goes beside the first row of that name only: each error is shown once.
    """
    rows, placed = [], set()
    for row in extras:
        error = row.error or (errors.get(row.name) if row.name not in placed else None)
        placed.add(row.name)
        rows.append(ExtraRow(row.name, row.value, error))
    return rows + [ExtraRow() for _ in range(max(1, BLANK_EXTRA_ROWS - len(rows)))]


def texts_of(values: Mapping[str, Any]) -> dict[str, str]:
    """Stored values (the previous dataset's, for "persist" fields) as the form's texts."""
    return {name: value_text(value) for name, value in values.items()}


NESTING_HINT = (
    f"Use {SEPARATOR} in a name to nest it: Microscope{SEPARATOR}Vendor is Vendor in Microscope."
)
