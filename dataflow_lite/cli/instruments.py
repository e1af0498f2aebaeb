"""``dataflow-lite instrument``: instruments and the metadata forms their datasets fill in."""

from __future__ import annotations

import json
from typing import Any

import click

from dataflow_lite.cli.base import CLI, echo_json, main, runtime
from dataflow_lite.services.instruments import (
    add_field,
    add_instrument,
    find_instrument,
    list_instruments,
)
from dataflow_lite.store.metadata import FIELD_TYPES


@main.group()
def instrument() -> None:
    """Manage instruments and their metadata forms."""


@instrument.command("add")
@click.argument("name")
@click.option("--description", default="")
@click.option("--type", "instrument_type", default=None, help="Kind of instrument, e.g. AFM.")
def instrument_add(name: str, description: str, instrument_type: str | None) -> None:
    """Add an instrument and print it as JSON."""
    echo_json(add_instrument(runtime(), CLI, name, description, instrument_type).model_dump())


@instrument.command("list")
def instrument_list() -> None:
    """List the instruments by id, each with its metadata form, one JSON object each."""
    for form in list_instruments(runtime(), CLI):
        data = form.instrument.model_dump()
        data["fields"] = [field.model_dump(exclude={"instrument_id"}) for field in form.fields]
        echo_json(data)


def _choice(field_type: str, text: str) -> Any:
    """A --choice as the field's type: JSON for numbers and booleans, the text for strings."""
    if field_type == "string":
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        # Left as text: the service refuses it, naming the type it should have.
        return text


@instrument.command("field")
@click.argument("instrument")
@click.argument("name")
@click.option(
    "--type", "field_type", type=click.Choice(FIELD_TYPES), default="string", show_default=True
)
@click.option("--required", is_flag=True)
@click.option("--choice", "choices", multiple=True, help="An allowed value; repeat for each.")
@click.option("--unit", default="")
@click.option("--persist", is_flag=True, help="Pre-fill it from the user's previous dataset.")
def instrument_field(
    instrument: str,
    name: str,
    field_type: str,
    required: bool,
    choices: tuple[str, ...],
    unit: str,
    persist: bool,
) -> None:
    """Add a metadata field to INSTRUMENT's form (its name or id) and print it as JSON."""
    rt = runtime()
    instrument_id = find_instrument(rt, CLI, instrument).id
    assert instrument_id is not None  # a stored row
    row = add_field(
        rt,
        CLI,
        instrument_id,
        name,
        field_type,
        required=required,
        choices=[_choice(field_type, choice) for choice in choices],
        unit=unit,
        persist=persist,
    )
    echo_json(row.model_dump())
