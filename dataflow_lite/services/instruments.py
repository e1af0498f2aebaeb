"""Instruments and their metadata forms: read by everyone, edited by administrators."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, func, select

from dataflow_lite.bootstrap import Runtime
from dataflow_lite.services import audit
from dataflow_lite.services.errors import Conflict, Invalid, NotFound, invalid
from dataflow_lite.services.identity import Identity
from dataflow_lite.services.policy import authorize, use_case
from dataflow_lite.store import catalog, metadata
from dataflow_lite.store.db import unit_of_work
from dataflow_lite.store.models import Instrument, MetadataField

MAX_NAME = 150
MAX_FIELD_NAME = 255
#: Instrument 0, the one datasets name when they name none.
UNTITLED = Instrument(id=0, name=catalog.UNTITLED_INSTRUMENT_NAME, description="")


@dataclass(frozen=True)
class InstrumentForm:
    """An instrument and its metadata form, in order."""

    instrument: Instrument
    fields: Sequence[MetadataField]


@use_case("instrument.read")
def list_instruments(rt: Runtime, identity: Identity) -> list[InstrumentForm]:
    """Every instrument with its form, by id."""
    authorize(identity, "instrument.read")
    with unit_of_work(rt.engine, write=False) as work:
        rows = work.session.exec(select(Instrument).order_by(col(Instrument.id))).all()
        return [
            InstrumentForm(row, catalog.instrument_fields(work.session, row.id)) for row in rows
        ]


@use_case("instrument.read")
def get_instrument(rt: Runtime, identity: Identity, instrument_id: int) -> InstrumentForm:
    """One instrument with its metadata form; 0 is the untitled instrument (no form)."""
    authorize(identity, "instrument.read")
    if instrument_id == 0:
        return InstrumentForm(UNTITLED, [])
    with unit_of_work(rt.engine, write=False) as work:
        return InstrumentForm(
            _instrument(work.session, instrument_id),
            catalog.instrument_fields(work.session, instrument_id),
        )


@use_case("instrument.read")
def find_instrument(rt: Runtime, identity: Identity, name_or_id: str) -> Instrument:
    """The instrument with this name, else with this id (the CLI takes either)."""
    authorize(identity, "instrument.read")
    name_or_id = name_or_id.strip()
    with unit_of_work(rt.engine, write=False) as work:
        row = work.session.exec(select(Instrument).where(Instrument.name == name_or_id)).first()
        if row is None and name_or_id.isascii() and name_or_id.isdigit():
            row = catalog.find(work.session, Instrument, int(name_or_id))
    if row is None:
        raise NotFound(f"no instrument {name_or_id!r}: see 'dataflow-lite instrument list'")
    return row


def _instrument(session: Session, instrument_id: int) -> Instrument:
    row = catalog.find(session, Instrument, instrument_id)
    if row is None:
        raise NotFound(f"instrument {instrument_id} not found")
    return row


@use_case("instrument.add")
def add_instrument(
    rt: Runtime,
    identity: Identity,
    name: str,
    description: str = "",
    instrument_type: str | None = None,
) -> Instrument:
    """Add an instrument; its name is unique."""
    authorize(identity, "instrument.add")
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise invalid("name", f"an instrument's name is 1 to {MAX_NAME} characters")
    with unit_of_work(rt.engine) as work:
        if work.session.exec(select(Instrument).where(Instrument.name == name)).first():
            raise Conflict(f"instrument {name!r} exists already")
        row = Instrument(
            name=name, description=description.strip(), instrument_type=instrument_type or None
        )
        work.session.add(row)
        work.session.flush()
        summary = {"name": name, "description": row.description, "type": instrument_type}
        audit.record(work, identity, "instrument.add", "instrument", row.id, summary)
        return row


def _checked_choices(field_type: str, choices: Sequence[Any]) -> list[Any] | None:
    probe = MetadataField(instrument_id=0, name="choice", field_type=field_type)
    for choice in choices:
        if metadata.type_error(probe, choice):
            raise invalid("choices", f"the choice {choice!r} is not a {field_type}")
    return list(choices) or None


@use_case("field.add")
def add_field(
    rt: Runtime,
    identity: Identity,
    instrument_id: int,
    name: str,
    field_type: str = "string",
    *,
    required: bool = False,
    choices: Sequence[Any] = (),
    unit: str = "",
    persist: bool = False,
) -> MetadataField:
    """Add a field at the end of an instrument's metadata form."""
    authorize(identity, "field.add")
    name = name.strip()
    if not name or len(name) > MAX_FIELD_NAME:
        raise invalid("name", f"a field's name is 1 to {MAX_FIELD_NAME} characters")
    if field_type not in metadata.FIELD_TYPES:
        raise invalid("field_type", f"the type must be one of {', '.join(metadata.FIELD_TYPES)}")
    checked = _checked_choices(field_type, choices)
    with unit_of_work(rt.engine) as work:
        session = work.session
        instrument = _instrument(session, instrument_id)
        taken = session.exec(
            select(MetadataField.id).where(
                MetadataField.instrument_id == instrument_id, MetadataField.name == name
            )
        ).first()
        if taken is not None:
            raise Conflict(f"{instrument.name} has a field {name!r} already")
        last = session.exec(
            select(func.max(MetadataField.position)).where(
                MetadataField.instrument_id == instrument_id
            )
        ).one()
        row = MetadataField(
            instrument_id=instrument_id,
            name=name,
            field_type=field_type,
            required=required,
            choices=checked,
            unit=unit.strip(),
            position=(last if last is not None else -1) + 1,
            persist=persist,
        )
        session.add(row)
        session.flush()
        summary = {**row.model_dump(exclude={"id"}), "instrument": instrument.name}
        audit.record(work, identity, "field.add", "metadata_field", row.id, summary)
        return row


@use_case("instrument.read")
def get_field(rt: Runtime, identity: Identity, field_id: int) -> MetadataField:
    """One metadata field of an instrument's form."""
    authorize(identity, "instrument.read")
    with unit_of_work(rt.engine, write=False) as work:
        field = catalog.find(work.session, MetadataField, field_id)
    if field is None:
        raise NotFound(f"metadata field {field_id} not found")
    return field


FIELD_CHANGES = ("up", "down", "required", "persist", "options")


@use_case("field.change")
def change_field(
    rt: Runtime,
    identity: Identity,
    field_id: int,
    change: str,
    *,
    choices: Sequence[Any] = (),
    unit: str = "",
) -> tuple[MetadataField, str]:
    """Move a field up or down, toggle required or persist, or set its choices and unit.

    Returns the field and what was done, in words.
    """
    authorize(identity, "field.change")
    if change not in FIELD_CHANGES:
        raise invalid("change", f"unknown change {change!r}: one of {', '.join(FIELD_CHANGES)}")
    with unit_of_work(rt.engine) as work:
        session = work.session
        field = catalog.find(session, MetadataField, field_id)
        if field is None:
            raise NotFound(f"metadata field {field_id} not found")
        before = field.model_dump()
        if change in ("up", "down"):
            done = _move(session, field, -1 if change == "up" else 1)
        elif change in ("required", "persist"):
            value = not getattr(field, change)
            setattr(field, change, value)
            what = "required" if change == "required" else "pre-filled from the previous dataset"
            done = f"{field.name} is {'' if value else 'no longer '}{what}."
        else:
            field.choices = _checked_choices(field.field_type, choices)
            field.unit = unit.strip()
            done = f"The choices and unit of {field.name} are saved."
        summary = {"change": change, **audit.changes(before, field.model_dump())}
        audit.record(work, identity, "field.change", "metadata_field", field.id, summary)
        return field, done


def _move(session: Session, field: MetadataField, step: int) -> str:
    fields = list(catalog.instrument_fields(session, field.instrument_id))
    index = next(i for i, other in enumerate(fields) if other.id == field.id)
    target = index + step
    if not 0 <= target < len(fields):
        raise Invalid(f"{field.name} is {'first' if step < 0 else 'last'} already")
    fields[index], fields[target] = fields[target], fields[index]
    for position, other in enumerate(fields):
        other.position = position
    return f"{field.name} is moved {'up' if step < 0 else 'down'}."
