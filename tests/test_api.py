"""API v1 behaviour beyond the walkthrough: keys, forms, typed metadata, paging, visibility."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import select

from dataflow_lite.adapter import discover_adapters
from dataflow_lite.store.models import ApiKey, MetadataValue

from .conftest import catalog


def create(client, auth, name="scan", **extra):
    response = client.post("/api/v1/datasets", json={"name": name, **extra}, headers=auth)
    assert response.status_code == 201, response.json
    return response.json


def test_an_expired_key_is_refused_with_its_date(cli, client, instance: Path):
    cli("user", "add", "ada")
    key = cli("key", "create", "ada", "--expires-days", "1").strip()
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/v1/instruments", headers=headers).status_code == 200
    with catalog(instance) as db:
        db.execute(update(ApiKey).values(expires_at=datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)))
    response = client.get("/api/v1/instruments", headers=headers)
    assert response.status_code == 401
    assert response.json["message"] == "the API key expired on 2020-01-02 03:04 UTC"


def test_metadata_is_checked_against_the_instrument_form_and_keeps_its_types(
    cli, client, auth, instance
):
    instrument = cli.json("instrument", "add", "Cypher")
    ident = str(instrument["id"])
    cli(
        "instrument", "field", ident, "Temperature", "--type", "number", "--required", "--unit", "K"
    )
    cli("instrument", "field", ident, "Mode", "--choice", "AC", "--choice", "contact")
    values = [
        {"field_name": "Temperature", "field_value": 373},
        {"field_name": "Mode", "field_value": "AC"},
        {"field_name": "Sample-Name", "field_value": "PZT"},
    ]
    dataset = create(
        client, auth, instrument_id=instrument["id"], metadata_field_values_attributes=values
    )
    shown = {v["field_name"]: v for v in dataset["metadata_field_values"]}
    assert shown["Temperature"]["field_value"] == "373"
    assert shown["Temperature"]["metadata_field"]["unit"] == "K"
    assert shown["Mode"]["metadata_field"]["choices"] == ["AC", "contact"]
    assert shown["Sample-Name"]["metadata_field"] is None
    with catalog(instance) as db:
        stored = dict(db.exec(select(MetadataValue.field_name, MetadataValue.value)).all())
    assert stored == {"Temperature": 373, "Mode": "AC", "Sample-Name": "PZT"}  # typed, as sent
    hot = client.get("/api/v1/datasets/search?q=Temperature>300", headers=auth).json
    assert [found["id"] for found in hot["results"]] == [dataset["id"]]  # range queries work

    detail = client.get(f"/api/v1/instruments/{ident}", headers=auth).json
    assert [f["name"] for f in detail["metadata_fields"]] == ["Temperature", "Mode"]
    assert client.get("/api/v1/instruments/0", headers=auth).json["metadata_fields"] == []


def test_search_pages_newest_first(client, auth):
    ids = [create(client, auth, name=f"run {i}")["id"] for i in range(25)]
    first = client.get("/api/v1/datasets/search?q=run&per_page=10", headers=auth).json
    assert (first["total"], first["has_more"]) == (25, True)
    assert [d["id"] for d in first["results"]] == ids[::-1][:10]
    last = client.get("/api/v1/datasets/search?q=run&per_page=10&page=3", headers=auth).json
    assert (last["has_more"], [d["id"] for d in last["results"]]) == (False, ids[::-1][20:])
    everything = client.get("/api/v1/datasets/search", headers=auth).json
    assert (everything["total"], len(everything["results"])) == (25, 20)  # per_page defaults to 20
    capped = client.get("/api/v1/datasets/search?per_page=1000", headers=auth).json
    assert len(capped["results"]) == 25  # max_per_page is 100


def test_each_uploaded_file_and_its_folders_find_their_dataset(client, auth):
    dataset = create(client, auth, name="scan")
    other = create(client, auth, name="other")
    for folder, name in (("", "first.tif"), ("raw/frames", "frame_0001.tif")):
        sent = client.post("/api/v1/dataset-file-upload", headers=auth, data={
            "dataset_id": str(dataset["id"]), "relative_path": folder,
            "file": (io.BytesIO(b"bytes"), name),
        })  # fmt: skip
        assert sent.status_code == 201, sent.json
    for query in ("scan", "first.tif", "frame_0001.tif", "frames", "raw"):
        found = client.get("/api/v1/datasets/search", query_string={"q": query}, headers=auth)
        assert [d["id"] for d in found.json["results"]] == [dataset["id"]], query
    found = client.get("/api/v1/datasets/search?q=other", headers=auth).json["results"]
    assert [d["id"] for d in found] == [other["id"]]


# An unclosed quote is a malformed search since the query language (a 400: test_search.py).
@pytest.mark.parametrize("query", ["run*", "a OR b", "NEAR(", "-", "x AND", 'a"b', "col:*"])
def test_search_words_are_never_fts_syntax(client, auth, query):
    create(client, auth, name="run a")
    response = client.get("/api/v1/datasets/search", query_string={"q": query}, headers=auth)
    assert response.status_code == 200, response.json


def test_users_see_only_their_datasets_and_admins_all(cli, client, auth):
    mine = create(client, auth, name="mine")
    other = {"Authorization": "Bearer " + cli.user_key("eve")}
    assert client.get(f"/api/v1/datasets/{mine['id']}", headers=other).status_code == 404
    assert client.get("/api/v1/datasets/search?q=mine", headers=other).json["total"] == 0
    assert client.get("/api/v1/dataset-files/search?q=", headers=other).json["total"] == 0
    admin = {"Authorization": "Bearer " + cli.user_key("boss", admin=True)}
    assert client.get(f"/api/v1/datasets/{mine['id']}", headers=admin).json["name"] == "mine"


def test_password_encryption_round_trip_and_activation(client, auth):
    encrypted = client.post(
        "/api/v1/password-encryption", json={"password": "pa+ss&"}, headers=auth
    ).json
    token = encrypted["encrypted_password"]
    assert "pa+ss" not in token and set(token) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="
    )
    response = client.post(
        f"/api/v1/transports/globus/activate?endpoint=destination&username=u&encrypted_password={token}",
        headers=auth,
    )
    assert response.json == {"status": "ok"}


def test_activation_of_an_endpoint_whose_directory_is_gone(cli, client, auth, tmp_path: Path):
    gone = cli.json(
        "endpoint", "add", "gone", "--type", "local", "--path", str(tmp_path / "missing")
    )
    status = client.get(
        f"/api/v1/transports/globus/activation?endpoint={gone['id']}", headers=auth
    ).json
    assert status["destination_activation"]["code"] == "AutoActivationFailed"
    assert "does not exist" in status["destination_activation"]["message"]
    response = client.post(
        f"/api/v1/transports/globus/activate?endpoint={gone['id']}&username=u&unencrypted_password=p",
        headers=auth,
    )
    assert response.status_code == 400 and "does not exist" in response.json["message"]


def test_transport_protocol_must_match_the_destination(client, auth):
    installed = ", ".join(sorted(discover_adapters()))
    response = client.post(
        "/api/v1/user-settings/?setting=transport.protocol&value=ftp", headers=auth
    )
    assert response.status_code == 400
    assert response.json["message"] == "transport 'ftp' is not installed on this server"
    assert response.json["errors"] == {"value": [f"installed transports: {installed}"]}

    settings = client.get("/api/v1/user-settings", headers=auth).json
    endpoint = settings["globus"]["destination_endpoint"]
    response = client.post(
        "/api/v1/user-settings/?setting=transport.protocol&value=local", headers=auth
    )
    assert response.status_code == 200  # what the destination uses already
    if "sftp" in installed:
        response = client.post(
            "/api/v1/user-settings/?setting=transport.protocol&value=sftp", headers=auth
        )
        assert response.status_code == 400
        assert response.json["message"].startswith(f"the destination endpoint {endpoint} uses")
        assert response.json["errors"] == {"value": ["sftp endpoints: none"]}


def test_datasets_follow_the_chosen_destination(cli, client, auth, tmp_path: Path):
    (tmp_path / "archive").mkdir()
    archive = cli.json(
        "endpoint", "add", "archive", "--type", "local", "--path", str(tmp_path / "archive")
    )
    client.post(
        f"/api/v1/user-settings/?setting=globus.destination_endpoint&value={archive['id']}",
        headers=auth,
    )
    dataset = create(client, auth, name="to the archive")
    assert dataset["destination"].startswith(str(tmp_path / "archive"))
    assert (Path(dataset["destination"]) / "metadata.json").is_file()


def test_the_openapi_document_lists_every_route_without_a_key(client):
    spec = client.get("/api/v1/openapi.json").json
    assert {
        "/api/v1/user-settings",
        "/api/v1/instruments",
        "/api/v1/instruments/{instrument_id}",
        "/api/v1/transports/globus/activation",
        "/api/v1/transports/globus/activate",
        "/api/v1/password-encryption",
        "/api/v1/datasets",
        "/api/v1/datasets/{dataset_id}",
        "/api/v1/datasets/search",
        "/api/v1/dataset-files/search",
        "/api/v1/dataset-file-upload",
    } <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_datasets_never_share_a_folder(client, auth):
    # "run" twice then "run 3" in one second: a suffix _3 would collide with "run 3"'s folder.
    names = ["run 3", "run", "run", "run"]
    folders = [create(client, auth, name=name)["destination"] for name in names]
    assert len(set(folders)) == len(folders)
    assert all(Path(folder, "metadata.json").is_file() for folder in folders)
