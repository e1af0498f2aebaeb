"""A command line that cannot mislead: no instance made by accident, lists, names for ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dataflow_lite.cli import main


def run(instance: Path, *args: str):
    return CliRunner().invoke(main, ["--instance", str(instance), *args])


@pytest.mark.parametrize(
    "args",
    [
        ("user", "add", "ada"),
        ("user", "list"),
        ("key", "list", "ada"),
        ("instrument", "list"),
        ("endpoint", "list"),
        ("transfers", "list"),
        ("audit", "verify"),
        ("worker",),
        ("serve",),
    ],
)
def test_a_folder_that_is_not_an_instance_is_refused_in_one_line(tmp_path: Path, args):
    elsewhere = tmp_path / "not-an-instance"
    result = run(elsewhere, *args)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: no dataflow-lite instance at {elsewhere}: run `dataflow-lite init` or pass "
        "--instance"
    ]
    assert result.stdout == ""
    assert not elsewhere.exists()  # nothing made there


def test_an_empty_existing_folder_is_not_an_instance_either(tmp_path: Path):
    result = run(tmp_path, "user", "add", "ada")
    assert result.exit_code == 1 and "no dataflow-lite instance at" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_init_makes_an_instance_the_other_commands_then_use(tmp_path: Path):
    instance = tmp_path / "new"
    assert run(instance, "init").exit_code == 0
    assert run(instance, "user", "add", "ada").exit_code == 0


def test_user_list(cli):
    cli("user", "add", "grace", "--name", "Grace Hopper", "--admin")
    cli("user", "add", "ada", "--password-stdin", input="correct horse battery\n")
    listed = json_objects(cli("user", "list"))
    assert [(user["username"], user["is_admin"]) for user in listed] == [
        ("ada", False),
        ("grace", True),
    ]
    assert all("password_hash" not in user for user in listed)


def json_objects(text: str) -> list[dict]:
    """The JSON objects a command printed one after another."""
    decoder, objects, at = json.JSONDecoder(), [], 0
    while at < len(text):
        if text[at].isspace():
            at += 1
            continue
        value, at = decoder.raw_decode(text, at)
        objects.append(value)
    return objects


def test_instrument_list_and_fields_by_name(cli):
    cypher = cli.json("instrument", "add", "Cypher")
    cli("instrument", "add", "Titan")
    cli("instrument", "field", "Cypher", "Temperature", "--type", "number", "--unit", "K")
    cli("instrument", "field", str(cypher["id"]), "Mode")  # an id still works
    listed = json_objects(cli("instrument", "list"))
    assert [row["name"] for row in listed] == ["Cypher", "Titan"]
    assert [field["name"] for field in listed[0]["fields"]] == ["Temperature", "Mode"]
    assert listed[0]["fields"][0]["unit"] == "K" and listed[1]["fields"] == []


def test_an_unknown_instrument_is_one_line(cli):
    for name in ("Nope", "99", "99999999999999999999999"):
        out = cli.fails("instrument", "field", name, "Temperature")
        assert out.strip().splitlines() == [
            f"Error: no instrument {name!r}: see 'dataflow-lite instrument list'"
        ]


def test_a_local_endpoint_on_a_missing_path_is_added_with_a_warning(cli, tmp_path: Path):
    missing = tmp_path / "nonexistent"
    result = run(cli.instance, "endpoint", "add", "nas", "--type", "local", "--path", str(missing))
    assert result.exit_code == 0
    assert json.loads(result.stdout)["options"] == {"path": str(missing)}
    assert result.stderr.splitlines() == [
        f"warning: {missing} does not exist or is not a directory: transfers to this endpoint "
        "fail until it does (it is never created)"
    ]
    assert not missing.exists()
    here = tmp_path / "present"  # beside the others: endpoints that overlap are refused
    here.mkdir()
    present = run(cli.instance, "endpoint", "add", "here", "--type", "local", "--path", str(here))
    assert present.exit_code == 0 and present.stderr == ""
