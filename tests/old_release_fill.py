"""Fill an instance with the code of an older release; run by tests/test_migrations.py.

Run as ``python old_release_fill.py INSTANCE OLD_TREE`` with OLD_TREE first on PYTHONPATH. It
checks that the old code is what runs, fills the instance through the old CLI and API, and
prints what it made as JSON. It only uses what release 7b9c32f offers.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import dataflow_lite_local
from click.testing import CliRunner

import dataflow_lite

instance, old_tree = Path(sys.argv[1]), Path(sys.argv[2]).resolve()
for module in (dataflow_lite, dataflow_lite_local):
    if not Path(module.__file__).resolve().is_relative_to(old_tree):
        sys.exit(f"not the old code: {module.__name__} from {module.__file__}")

from dataflow_lite.models import Endpoint, User  # noqa: E402
from sqlmodel import select  # noqa: E402

from dataflow_lite import create_app, credentials, db  # noqa: E402
from dataflow_lite.adapter import Credentials  # noqa: E402
from dataflow_lite.cli import main  # noqa: E402


def cli(*args: str, input: str | None = None) -> str:
    result = CliRunner().invoke(main, ["--instance", str(instance), *args], input=input)
    assert result.exit_code == 0, result.output
    return result.stdout


cli("init")
cli("user", "add", "ada", "--name", "Ada Lovelace", "--admin", "--password-stdin",
    input="correct horse battery staple\n")  # fmt: skip
cli("user", "add", "bob")
keys = {"ada": cli("key", "create", "ada", "--name", "laptop").strip()}
keys["bob"] = cli("key", "create", "bob", "--expires-days", "30").strip()
cli("key", "create", "bob", "--name", "revoked soon")
cli("key", "revoke", "3")
instrument = json.loads(cli("instrument", "add", "Cypher", "--type", "AFM"))
ident = str(instrument["id"])
cli("instrument", "field", ident, "Temperature", "--type", "number", "--required", "--unit", "K")
cli("instrument", "field", ident, "Mode", "--choice", "AC", "--choice", "contact", "--persist")

app = create_app({"queue_immediate": True}, instance_path=instance)
client = app.test_client()
made: dict = {"keys": keys, "datasets": {}, "transfers": {}}
# bob's dataset first: its id is not its owner's, nor is ada's (values name their owner, 0014).
for owner, body, files in [
    (
        "bob",
        {
            "name": "untitled run",
            "metadata_field_values_attributes": [{"field_name": "Sample", "field_value": "glass"}],
        },
        [("a.bin", "", bytes(range(256)) * 40)],
    ),
    (
        "ada",
        {
            "name": "PZT scan",
            "instrument_id": instrument["id"],
            "metadata_field_values_attributes": [
                {"field_name": "Temperature", "field_value": 373},
                {"field_name": "Mode", "field_value": "AC"},
                {"field_name": "Sample", "field_value": "PZT"},
            ],
        },
        [("scan.dat", "", b"measurement"), ("notes.txt", "raw/day 1", b"tip changed")],
    ),
]:
    auth = {"Authorization": f"Bearer {keys[owner]}"}
    response = client.post("/api/v1/datasets", json=body, headers=auth)
    assert response.status_code == 201, response.json
    dataset_id = response.json["id"]
    for name, relative_path, content in files:
        sent = client.post(
            "/api/v1/dataset-file-upload",
            data={
                "dataset_id": str(dataset_id),
                "relative_path": relative_path,
                "file": (io.BytesIO(content), name),
            },
            headers=auth,
        )
        assert sent.status_code == 201, sent.json
    transfers = client.get(f"/api/v1/transfers?dataset_id={dataset_id}", headers=auth).json
    assert transfers and all(t["state"] == "done" for t in transfers), transfers
    made["datasets"][owner] = client.get(f"/api/v1/datasets/{dataset_id}", headers=auth).json
    made["transfers"][owner] = transfers

with db.session_scope(app.extensions["dataflow_lite.engine"]) as session:
    ada = session.exec(select(User).where(User.username == "ada")).one()
    endpoint = session.exec(select(Endpoint)).first()
    credentials.store(
        session,
        app.extensions["dataflow_lite.password_cipher"],
        ada.id,
        endpoint.id,
        Credentials("ada-remote", "s3cret pa+ss"),
    )
    made["credential"] = {"user_id": ada.id, "endpoint_id": endpoint.id}
app.extensions["dataflow_lite.engine"].dispose()
print(json.dumps(made))
