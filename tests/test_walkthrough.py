"""DataFlow's API walkthrough, step by step, with the real ordflow 0.0.2 client against gunicorn."""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from ordflow import API

from .conftest import Cli, wait_for_transfers

pytestmark = pytest.mark.server

METADATA = {
    "Sample": "PZT",
    "Microscope": {"Vendor": "Asylum Research", "Model": "MFP3D"},
    "Temperature": 373,
    # ordflow passes lists through its flattening unchanged, and keeps every value's JSON type.
    "tags": ["afm", "piezoresponse"],
    "Cleaned": True,
    "Scan": {"Rate": 2.0, "Size": 0.25},
    "Notes": None,
}
FILE_KEYS = {
    "id",
    "name",
    "file_length",
    "file_type",
    "created_at",
    "relative_path",
    "is_directory",
}
DATASET_KEYS = {"id", "name", "creator", "dataset_files", "instrument", "metadata_field_values"}


class Alternating:
    """ordflow's API on several hosts of one catalog, each call made to the next host in turn."""

    def __init__(self, key: str, urls: list[str]) -> None:
        self._clients = itertools.cycle([API(key, server_url=url) for url in urls])
        self._urls = itertools.cycle(urls)

    def next_url(self) -> str:
        """The API's URL on the next host, for a request ordflow does not make."""
        return next(self._urls)

    def __getattr__(self, name: str) -> Any:
        return getattr(next(self._clients), name)


def test_walkthrough_with_ordflow(live_server, cli, instance: Path, tmp_path: Path):
    walkthrough([live_server.api], cli, instance, tmp_path)


def walkthrough(urls: list[str], cli: Cli, instance: Path, tmp_path: Path) -> None:
    """The walkthrough, with each request made to the next of the hosts at ``urls`` (one or
    several on one catalog); ``cli`` and ``instance`` are the first host's."""
    key = cli.user_key("suhas", name="Suhas Somnath")
    instrument = cli.json(
        "instrument", "add", "Asylum Research Cypher West", "--description", "AR Cypher in JG 55"
    )
    other = cli.json(
        "endpoint", "add", "archive", "--type", "local", "--path", str(tmp_path / "archive")
    )
    api = Alternating("Bearer " + key, urls)

    # 2-3. Settings: read, switch the destination, switch back.
    settings = api.settings_get()
    default = settings["globus"]["destination_endpoint"]
    assert settings == {
        "globus": {"destination_endpoint": default},
        "transport": {"protocol": "local"},
    }
    switched = api.settings_set("globus.destination_endpoint", other["id"])
    assert switched["globus"]["destination_endpoint"] == other["id"]
    assert (
        api.settings_set("globus.destination_endpoint", default)["globus"]["destination_endpoint"]
        == default
    )
    assert api.settings_set("transport.protocol", "local")["transport"] == {"protocol": "local"}

    # 4. Instruments.
    listed = api.instrument_list()
    assert listed == [
        {
            "id": instrument["id"],
            "name": "Asylum Research Cypher West",
            "description": "AR Cypher in JG 55",
            "instrument_type": None,
        }
    ]
    assert api.instrument_info(instrument["id"]).items() >= listed[0].items()

    # 5-6. Activation: a local destination is always active; activate with an encrypted password.
    status = api.globus_endpoints_active(default)
    assert status["source_activation"]["code"] == "AlreadyActivated"
    assert status["destination_activation"]["code"] == "AlreadyActivated"
    encrypted = requests.post(
        api.next_url() + "/password-encryption",
        json={"password": "s3cret+/="},
        headers={"Authorization": "Bearer " + key},
    ).json()["encrypted_password"]
    assert api.globus_endpoints_activate(
        "syz", encrypted, encrypted=True, endpoint="destination"
    ) == {"status": "ok"}
    assert api.globus_endpoints_activate(
        "syz", "pa+ss/wo=rd", encrypted=False, endpoint=default
    ) == {"status": "ok"}
    assert api.globus_endpoints_active()["destination_activation"]["code"] == "AlreadyActivated"

    # 7. A dataset with nested metadata.
    dataset = api.dataset_create("My new dataset with nested metadata", metadata=METADATA)
    assert DATASET_KEYS <= dataset.keys()
    assert dataset["creator"]["name"] == "Suhas Somnath"
    assert dataset["dataset_files"] == [] and dataset["instrument"] is None
    assert [
        (v["field_name"], v["field_value"], v["metadata_field"])
        for v in dataset["metadata_field_values"]
    ] == [
        ("Sample", "PZT", None),
        ("Microscope-Vendor", "Asylum Research", None),
        ("Microscope-Model", "MFP3D", None),
        ("Temperature", "373", None),
        ("tags", '["afm", "piezoresponse"]', None),
        ("Cleaned", "true", None),
        ("Scan-Rate", "2.0", None),
        ("Scan-Size", "0.25", None),
        ("Notes", None, None),
    ]

    # 8. Two uploads, one into foo/bar.
    png = tmp_path / "AFM_Topography.PNG"
    png.write_bytes(bytes(range(256)) * 40)
    config = tmp_path / "measurement_configuration.txt"
    config.write_text("scan rate: 1 Hz\n")
    first = api.file_upload(str(png), dataset["id"])
    second = api.file_upload(str(config), dataset["id"], relative_path="foo/bar")
    assert FILE_KEYS <= first.keys()
    assert (first["name"], first["file_length"], first["relative_path"], first["is_directory"]) == (
        "AFM_Topography.PNG",
        png.stat().st_size,
        "",
        False,
    )
    assert (second["relative_path"], second["transport"]) == ("foo/bar", "local")
    assert second["transfer_state"] in ("queued", "running", "verifying", "done")

    # The transfer queue moves the files; each transfer ends done.
    transfers = wait_for_transfers(api.next_url(), key, dataset["id"])
    moved = {t["file_id"]: t for t in transfers if t["kind"] == "file"}
    assert {moved[f["id"]]["state"] for f in (first, second)} == {"done"}
    assert moved[second["id"]]["id"] == second["transfer_id"]
    assert first["created_at"].endswith(" UTC")

    # 9. Search by word and by date.
    found = api.dataset_search("nested")
    assert (found["total"], found["has_more"]) == (1, False)
    result = found["results"][0]
    assert result["id"] == dataset["id"]
    assert datetime.strptime(result["created_at"], "%Y-%m-%dT%H:%M:%SZ")
    files = {(f["relative_path"], f["name"]): f for f in result["dataset_files"]}
    assert files[("", "foo")]["is_directory"] and files[("", "foo")]["file_length"] is None
    assert files[("foo", "bar")]["is_directory"] and files[("foo", "bar")]["file_type"] is None
    assert set(files) == {
        ("", "AFM_Topography.PNG"),
        ("foo/bar", "measurement_configuration.txt"),
        ("", "foo"),
        ("foo", "bar"),
    }
    today = result["created_at"][:10]  # its UTC date, also when the run goes past midnight
    assert [d["id"] for d in api.dataset_search(today)["results"]] == [dataset["id"]]
    assert api.dataset_search("2001-01-01")["total"] == 0
    assert api.dataset_search("Vendor")["total"] == 1  # metadata names
    assert api.dataset_search("MFP3D")["total"] == 1  # metadata values
    assert api.dataset_search("piezoresponse")["total"] == 1  # words in a list
    assert api.dataset_search("AFM_Topography.PNG")["total"] == 1  # file names
    assert api.dataset_search("absent")["total"] == 0

    # 10. The dataset's view.
    info = api.dataset_info(dataset["id"])
    assert info["dataset_files"] == result["dataset_files"]
    assert info["metadata_field_values"] == dataset["metadata_field_values"]

    # 11. File search, across datasets and in one.
    assert [f["name"] for f in api.files_search("measurement")["results"]] == [
        "measurement_configuration.txt"
    ]
    assert api.files_search("AFM", dataset_id=dataset["id"])["total"] == 1
    assert api.files_search("AFM", dataset_id=dataset["id"])["results"][0]["id"] == first["id"]

    # The files at their final paths, and metadata.json beside them.
    created = datetime.strptime(result["created_at"], "%Y-%m-%dT%H:%M:%SZ")
    folder = (
        instance
        / "dataflow"
        / "untitled_instrument"
        / created.strftime("%Y-%m-%d")
        / f"{created:%H%M%S}_my_new_dataset_with_nested_metadata"
    )
    assert info["destination"] == str(folder)
    assert (folder / "AFM_Topography.PNG").read_bytes() == png.read_bytes()
    assert (
        folder / "foo" / "bar" / "measurement_configuration.txt"
    ).read_bytes() == config.read_bytes()
    document = json.loads((folder / "metadata.json").read_text())
    assert document["dataset"] == {
        "id": dataset["id"],
        "name": "My new dataset with nested metadata",
        "creator": {"id": dataset["creator"]["id"], "name": "Suhas Somnath", "username": "suhas"},
        "instrument": None,
        "created_at": result["created_at"],
        "metadata": METADATA,
        "units": {},
    }
    raw = (folder / "metadata.json").read_text()
    assert '"Rate": 2.0' in raw and '"Notes": null' in raw  # a float stays a float
    assert [(f["path"], f["size"], f["sha256"]) for f in document["files"]] == [
        ("AFM_Topography.PNG", png.stat().st_size, hashlib.sha256(png.read_bytes()).hexdigest()),
        (
            "foo/bar/measurement_configuration.txt",
            config.stat().st_size,
            hashlib.sha256(config.read_bytes()).hexdigest(),
        ),
    ]
    assert sorted(p.name for p in folder.rglob("*")) == sorted(
        [".dataflow-lite", "AFM_Topography.PNG", "foo", "bar", "measurement_configuration.txt"]
        + ["metadata.json"]
    )
    assert list((instance / "staging").iterdir()) == []


def test_dataset_on_an_instrument_lands_in_its_folder(
    live_server, cli, instance: Path, tmp_path: Path
):
    key = cli.user_key("suhas")
    instrument = cli.json("instrument", "add", "Asylum Research Cypher West")
    ident = str(instrument["id"])
    cli("instrument", "field", ident, "Stage-Temperature", "--type", "number", "--unit", "K")
    cli("instrument", "field", ident, "Scans", "--type", "integer")
    api = API(key, server_url=live_server.api)
    with pytest.raises(ValueError, match="Stage-Temperature: must be a number, not 'hot'"):
        api.dataset_create(
            "Refused", instrument_id=instrument["id"], metadata={"Stage": {"Temperature": "hot"}}
        )
    metadata = {"Stage": {"Temperature": 2.0}, "Scans": 4, "tags": ["afm"]}
    dataset = api.dataset_create(
        "Atomic force microscopy scan of PZT", instrument_id=instrument["id"], metadata=metadata
    )
    assert dataset["instrument"]["name"] == "Asylum Research Cypher West"
    values = {v["field_name"]: v for v in dataset["metadata_field_values"]}
    assert values["Stage-Temperature"]["field_value"] == "2.0"
    assert values["Stage-Temperature"]["metadata_field"]["unit"] == "K"
    assert values["tags"]["field_value"] == '["afm"]' and values["tags"]["metadata_field"] is None
    data = tmp_path / "scan.ibw"
    data.write_bytes(b"\x00\x01" * 1000)
    api.file_upload(str(data), dataset["id"])
    transfers = wait_for_transfers(live_server.api, key, dataset["id"])
    assert {(t["kind"], t["state"]) for t in transfers} == {("file", "done"), ("metadata", "done")}
    landed = list(
        (instance / "dataflow" / "asylum_research_cypher_west").glob(
            "*/*_atomic_force_microscopy_scan_of_pzt/scan.ibw"
        )
    )
    assert [p.read_bytes() for p in landed] == [data.read_bytes()]
    document = json.loads((landed[0].parent / "metadata.json").read_text())["dataset"]
    assert (document["metadata"], document["units"]) == (
        metadata,
        {"Stage": {"Temperature": "K"}},
    )
