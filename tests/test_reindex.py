"""``dataflow-lite reindex``: the catalog rebuilt from a local destination's metadata.json files."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import text

from dataflow_lite.cli import main

from .conftest import catalog

API = "/api/v1"
METADATA = {"Sample": {"Id": "PZT-7", "Temperature": 300.5}, "Runs": 3, "Tags": ["a", "b"]}


def reindex(instance: Path, *args: str):
    run = CliRunner().invoke(main, ["--instance", str(instance), "reindex", "local", *args])
    assert run.exit_code == 0, run.output
    return run.stdout, run.stderr


def upload(client, auth, dataset_id: int, folder: str, name: str, content: bytes) -> None:
    sent = client.post(f"{API}/dataset-file-upload", headers=auth, data={
        "dataset_id": str(dataset_id), "relative_path": folder,
        "file": (io.BytesIO(content), name),
    })  # fmt: skip
    assert sent.status_code == 201, sent.get_json()


def make_datasets(client, auth) -> list[dict]:
    made = []
    for name in ("PZT scan", "Second scan"):
        attributes = [
            {"field_name": key, "field_value": value}
            for key, value in (("Sample-Id", "PZT-7"), ("Sample-Temperature", 300.5),
                               ("Runs", 3), ("Tags", ["a", "b"]))
        ]  # fmt: skip
        created = client.post(
            f"{API}/datasets",
            json={"name": name, "metadata_field_values_attributes": attributes},
            headers=auth,
        )
        assert created.status_code == 201, created.get_json()
        dataset = created.get_json()
        upload(client, auth, dataset["id"], "", "topography.ibw", b"topography " + name.encode())
        upload(client, auth, dataset["id"], "raw/day1", "frame.txt", b"frame " + name.encode())
        made.append(client.get(f"{API}/datasets/{dataset['id']}", headers=auth).get_json())
    return made


def lose_the_catalog(instance: Path) -> None:
    """What a lost database leaves: users, instruments and endpoints (added again), no datasets."""
    with catalog(instance) as db:  # foreign keys on: a dataset's rows go with it
        db.execute(text("DELETE FROM dataset"))
        db.execute(text("DELETE FROM dataset_text"))


def shown(client, auth, dataset_id: int) -> dict:
    response = client.get(f"{API}/datasets/{dataset_id}", headers=auth)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def essentials(dataset: dict) -> tuple:
    files = sorted(
        (f["relative_path"], f["name"], f["is_directory"], f["file_length"], f["sha256"])
        for f in dataset["dataset_files"]
    )
    values = [(v["field_name"], v["field_value"]) for v in dataset["metadata_field_values"]]
    return (dataset["id"], dataset["name"], dataset["creator"], dataset["created_at"],
            dataset["destination"], sorted(values, key=str), files)  # fmt: skip


def test_a_lost_catalog_comes_back_with_owners_times_metadata_and_files(
    client, auth, instance, cli
):
    before = make_datasets(client, auth)
    lose_the_catalog(instance)
    assert client.get(f"{API}/datasets/{before[0]['id']}", headers=auth).status_code == 404
    out, err = reindex(instance, "--dry-run")
    assert "would restore 2 dataset(s) and 4 file(s)" in err
    assert client.get(f"{API}/datasets/{before[0]['id']}", headers=auth).status_code == 404
    out, err = reindex(instance)
    assert "restored 2 dataset(s) and 4 file(s)" in err
    for dataset in before:
        assert essentials(shown(client, auth, dataset["id"])) == essentials(dataset)
    found = client.get(f"{API}/datasets/search?q=PZT-7", headers=auth).get_json()
    assert found["total"] == 2
    found = client.get(f"{API}/datasets/search?q=frame.txt", headers=auth).get_json()
    assert found["total"] == 2
    # Nothing is restored twice.
    out, err = reindex(instance)
    assert "restored 0 dataset(s) and 0 file(s)" in err and out == ""
    events = cli("audit", "list", "--object", "dataset")
    assert events.count('"action": "dataset.reindex"') == 2


def test_missing_altered_and_extra_files_are_named(client, auth, instance):
    first, second = make_datasets(client, auth)
    folder = Path(first["destination"])
    (folder / "raw" / "day1" / "frame.txt").unlink()
    (folder / "topography.ibw").write_bytes(b"other bytes of the same length!!")
    (folder / "notes.txt").write_text("added by hand")
    lose_the_catalog(instance)
    out, err = reindex(instance)
    assert f"missing: {folder}/raw/day1/frame.txt" in out
    assert f"altered: {folder}/topography.ibw (its bytes no longer match" in out
    assert f"extra: {folder}/notes.txt (not in metadata.json" in out
    reported = [line for line in out.splitlines() if not line.startswith("restored dataset")]
    assert not any(second["destination"] in line for line in reported)
    restored = shown(client, auth, first["id"])
    names = sorted(f["name"] for f in restored["dataset_files"] if not f["is_directory"])
    assert names == ["topography.ibw"]  # what is there, with the sha256 metadata.json recorded
    original = next(f for f in first["dataset_files"] if f["name"] == "topography.ibw")
    assert restored["dataset_files"][0]["sha256"] == original["sha256"]
    # A dataset that is still in the catalog gets back only the files it lacks.
    (folder / "raw" / "day1" / "frame.txt").write_bytes(b"frame PZT scan")
    out, err = reindex(instance)
    assert "restored 0 dataset(s) and 1 file(s)" in err


def test_links_and_folders_another_account_made_are_never_followed_or_read(
    client, auth, instance, tmp_path
):
    (made,) = make_datasets(client, auth)[:1]
    root = instance / "dataflow"
    lose_the_catalog(instance)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not yours")
    # A neighbour's folder that looks like a dataset of suhas's, with no marker of this server's.
    planted = root / "untitled_instrument" / "2020-01-01" / "000000_planted"
    real = Path(made["destination"])
    shutil.copytree(real, planted)
    (planted / ".dataflow-lite").write_text("forged\n")
    document = json.loads((planted / "metadata.json").read_text())
    document["dataset"].update(id=999, name="Planted")
    (planted / "metadata.json").write_text(json.dumps(document))
    # Links: a whole date folder, a file inside a real dataset, and its metadata.json's folder.
    (root / "untitled_instrument" / "2019-01-01").symlink_to(outside)
    (real / "secret.txt").symlink_to(outside / "secret.txt")
    out, err = reindex(instance)
    assert f"{planted} was not made by this server" in out
    assert f"{root / 'untitled_instrument' / '2019-01-01'} is a symbolic link: not followed" in out
    assert f"{real / 'secret.txt'} is a symbolic link: not followed" in out
    assert "restored 2 dataset(s) and 4 file(s)" in err
    assert client.get(f"{API}/datasets/999", headers=auth).status_code == 404
    assert client.get(f"{API}/datasets/search?q=Planted", headers=auth).get_json()["total"] == 0


def test_an_unknown_creator_is_reported_and_restored_once_added(client, auth, instance, cli):
    (made,) = make_datasets(client, auth)[:1]
    folder = Path(made["destination"])
    document = json.loads((folder / "metadata.json").read_text())
    assert document["dataset"]["creator"]["username"] == "suhas"
    document["dataset"]["creator"]["username"] = "ada"
    (folder / "metadata.json").write_text(json.dumps(document))
    lose_the_catalog(instance)
    out, err = reindex(instance)
    assert f"{folder}: its creator is not a user here: not restored" in out
    cli("user", "add", "ada")
    out, err = reindex(instance)
    assert "restored 1 dataset(s) and 2 file(s)" in err  # the other came back the first time
    admin = {"Authorization": f"Bearer {cli.user_key('root', admin=True)}"}
    assert shown(client, admin, made["id"])["creator"]["name"] == "ada"


def test_reindex_of_an_unknown_endpoint_is_one_line(cli):
    said = cli.fails("reindex", "elsewhere")
    assert "no endpoint named 'elsewhere'" in said and "Traceback" not in said
