"""Dataset metadata: checked against an instrument's form, flattened, and nested again.

Clients send metadata flattened: ``{"Microscope": {"Vendor": ...}}`` as ``Microscope-Vendor``.
A value is a JSON scalar (text, number, true/false, null) or a list of scalars, as ordflow passes
lists through its flattening unchanged. Values keep their JSON type in the catalog (373 stays a
number, 2.0 stays a float); the wire shows them as strings, as DataFlow does (lists as JSON text,
null as null), and ``metadata.json`` shows them nested again with their types.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from dataflow_lite.store.models import MetadataField

SEPARATOR = "-"
FIELD_TYPES = ("string", "number", "integer", "boolean")
SCALARS = (str, int, float, bool, type(None))
# A misfit quotes the value it refuses, cut to this many characters.
SHOWN_CHARACTERS = 40


class InvalidMetadata(ValueError):
    """Metadata that cannot be kept; ``errors`` maps field names to messages.

    ``form_fields`` names the errors that concern a field of the instrument's form.
    """

    def __init__(self, errors: dict[str, str], form_fields: Iterable[str] = ()) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors
        self.form_fields = set(form_fields) & set(errors)


def wire_value(value: Any) -> str | None:
    """A value as DataFlow's API shows it: strings as they are, null as null, others as JSON."""
    return None if value is None else value_text(value)


def value_text(value: Any) -> str:
    """A value as text for a page or a form input: strings as they are, others as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def shown(value: Any) -> str:
    """A value quoted in a message: ``'hot'`` for text, JSON for the rest, cut when long."""
    text = f"'{value}'" if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= SHOWN_CHARACTERS else text[: SHOWN_CHARACTERS - 1] + "…"


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return shown(value)


def type_error(field: MetadataField, value: Any) -> str | None:
    """What is wrong with ``value`` for ``field`` (a single value of its type), or None."""
    if field.field_type == "number":
        fits = isinstance(value, int | float) and not isinstance(value, bool)
        wanted = "a number"
    elif field.field_type == "integer":
        fits = isinstance(value, int) and not isinstance(value, bool)
        wanted = "an integer"
    elif field.field_type == "boolean":
        fits, wanted = isinstance(value, bool), "true or false"
    else:
        fits, wanted = isinstance(value, str), "text"
    if not fits:
        return f"must be {wanted}, not {_kind(value)}"
    if field.choices and value not in field.choices:
        choices = ", ".join(value_text(choice) for choice in field.choices)
        return f"must be one of {choices}, not {shown(value)}"
    return None


#: The most digits of a metadata integer: PostgreSQL's typed index holds a number's value and
#: its JSON text in one entry of at most 2,704 bytes (revision 0015).
MAX_DIGITS = 1000
_TOO_LONG = 10**MAX_DIGITS


def _shape_error(value: Any) -> str | None:
    """What is wrong with a free-form value (no form field), or None."""
    if isinstance(value, dict):
        return (
            "must be a single value or a list of them, not an object "
            f"(nested metadata arrives flattened: name{SEPARATOR}key)"
        )
    # Only scalars in a list: each catalog value stays one name with plain values, so search, the
    # wire's JSON text and a form's types read it element by element, and nothing is nested that
    # the flattened names cannot say. ordflow passes such lists through unflattened.
    if isinstance(value, list) and not all(isinstance(item, SCALARS) for item in value):
        return (
            "must be a list of text, numbers, true/false or null, not one holding lists or "
            f"objects (give nested values their own names: name{SEPARATOR}key)"
        )
    return None


def validate(
    values: Sequence[tuple[str, Any]], fields: Iterable[MetadataField]
) -> dict[str, MetadataField]:
    """Check flattened ``values`` against an instrument's ``fields``.

    Return the fields by name; raise InvalidMetadata naming every field that is missing, of the
    wrong type or not one of its choices, every name given twice, and every value that is an
    object or a list holding lists or objects.
    """
    by_name = {field.name: field for field in fields}
    errors: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in values:
        if name in seen:
            errors[name] = "is given more than once"
        seen.add(name)
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _TOO_LONG:
            errors[name] = f"is a number of more than {MAX_DIGITS} digits"
            continue
        field = by_name.get(name)
        if field is not None and value is None:
            if field.required:
                errors[name] = "is required"
        elif field is not None and (problem := type_error(field, value)):
            errors[name] = problem
        elif field is None and (problem := _shape_error(value)):
            errors[name] = problem
    for field in by_name.values():
        if field.required and field.name not in seen:
            errors[field.name] = "is required"
    if errors:
        raise InvalidMetadata(errors, form_fields=by_name)
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


def flatten(nested: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Flatten nested metadata as ordflow does: ``{"Microscope": {"Vendor": v}}`` ->
    ``[("Microscope-Vendor", v)]``.

    Keys are joined with ``-``; lists and scalars are values as they are (a list is not
    descended into); an empty object yields no value. The inverse of :func:`nest` for what
    ``nest`` builds, so ``metadata.json`` read back gives the catalog's names again.
    """
    flat: list[tuple[str, Any]] = []
    # An explicit stack, not recursion: a hostile file could nest deeper than Python's limit.
    stack: list[tuple[str, Iterator[tuple[str, Any]]]] = [("", iter(nested.items()))]
    while stack:
        prefix, items = stack[-1]
        for key, value in items:
            name = f"{prefix}{SEPARATOR}{key}" if prefix else str(key)
            if isinstance(value, Mapping):
                stack.append((name, iter(value.items())))
                break
            flat.append((name, value))
        else:
            stack.pop()
    return flat


class _NoUnit:
    """A placeholder for a value without a unit, pruned after nesting."""


def nest_units(names: Iterable[str], units: Mapping[str, str]) -> dict[str, Any]:
    """The ``units`` of the named values, nested exactly as :func:`nest` nests the values.

    ``names`` are all the flattened names (so the groups match the metadata's), ``units`` the
    unit of each name that has one; names without a unit, and groups left empty, are dropped.
    """
    no_unit = _NoUnit()
    placed = nest((name, units.get(name) or no_unit) for name in names)

    def prune(node: dict[str, Any]) -> dict[str, Any]:
        kept: dict[str, Any] = {}
        for key, item in node.items():
            if isinstance(item, dict):
                item = prune(item)
                if item:
                    kept[key] = item
            elif item is not no_unit:
                kept[key] = item
        return kept

    return prune(placed)
