"""Dataset metadata: checked against an instrument's form, flattened, and nested again.

Clients send metadata flattened: ``{"Microscope": {"Vendor": ...}}`` as ``Microscope-Vendor``.
Values keep their JSON type in the catalog (373 stays a number); the wire shows them as strings,
as DataFlow does, and ``metadata.json`` shows them nested again with their types.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from dataflow_lite.store.models import MetadataField

SEPARATOR = "-"
FIELD_TYPES = ("string", "number", "integer", "boolean")


class InvalidMetadata(ValueError):
    """Metadata that breaks the instrument's form; ``errors`` maps field names to messages."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


def wire_value(value: Any) -> str:
    """A value as DataFlow's API shows it: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def type_error(field: MetadataField, value: Any) -> str | None:
    """What is wrong with ``value`` for ``field`` (its type, its choices), or None."""
    if field.field_type == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be a number"
    elif field.field_type == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be an integer"
    elif field.field_type == "boolean":
        if not isinstance(value, bool):
            return "must be true or false"
    elif not isinstance(value, str):
        return "must be text"
    if field.choices and value not in field.choices:
        return "must be one of " + ", ".join(wire_value(choice) for choice in field.choices)
    return None


def validate(
    values: Sequence[tuple[str, Any]], fields: Iterable[MetadataField]
) -> dict[str, MetadataField]:
    """Check flattened ``values`` against an instrument's ``fields``.

    Return the fields by name; raise InvalidMetadata naming every field that is missing, of the
    wrong type or not one of its choices, and every name given twice.
    """
    by_name = {field.name: field for field in fields}
    errors: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in values:
        if name in seen:
            errors[name] = "is given more than once"
        seen.add(name)
        field = by_name.get(name)
        if field is not None and value is None:
            if field.required:
                errors[name] = "is required"
        elif field is not None and (problem := type_error(field, value)):
            errors[name] = problem
        elif isinstance(value, dict | list):
            errors[name] = "must be a single value (nested metadata arrives flattened)"
    for field in by_name.values():
        if field.required and field.name not in seen:
            errors[field.name] = "is required"
    if errors:
        raise InvalidMetadata(errors)
    return by_name


def nest(values: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Restore nesting from flattened names: ``Microscope-Vendor`` -> ``{"Microscope": {...}}``.

    A name that would need to be both a value and a group (``A`` and ``A-B``) stays flat.
    """
    values = list(values)
    nested: dict[str, Any] = {}
    flat: dict[str, Any] = {}
    for name, value in values:
        node = nested
        *groups, leaf = name.split(SEPARATOR)
        if "" in groups or not leaf:
            flat[name] = value
            continue
        for group in groups:
            child = node.setdefault(group, {})
            if not isinstance(child, dict):
                flat[name] = value
                break
            node = child
        else:
            if leaf in node:
                flat[name] = value
            else:
                node[leaf] = value
    return {**nested, **flat} if not set(nested) & set(flat) else dict(values)
