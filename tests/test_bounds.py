"""Bounded inputs: every limit is a setting, and going past it is a 413 or a 400 that names it.

Also the small 500s of hostile numbers and names: digits that ``str.isdigit`` takes but ``int``
refuses, ids past SQLite's range, names whose temporary names no file system can hold, and a full
staging disk (a real tmpfs mounted by the test).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from dataflow_lite_local import LocalAdapter
from dataflow_lite_sftp.sftp import partial_name
from sqlalchemy import event
from werkzeug.test import EnvironBuilder

from dataflow_lite import create_app
from dataflow_lite.adapter import PERMANENT_ERRNOS, AdapterContext, AdapterError, TransferJob
from dataflow_lite.store import layout
from tests.test_errors import (
    API,
    assert_error,
    field,
    file_part,
    multipart,
    nothing_changes,
    part,
    post_upload,
    upload,
)
from tests.test_web import add_user, log_in, token

DATASETS = f"{API}/datasets"


@pytest.fixture
def dataset(client, auth) -> int:
    response = client.post(DATASETS, json={"name": "Scan"}, headers=auth)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def values(count: int, value: object = "v") -> list[dict]:
    return [{"field_name": f"k{i}", "field_value": value} for i in range(count)]


# The JSON body ---------------------------------------------------------------------------------


def test_a_json_body_over_the_limit_is_413_naming_it(client, auth, instance):
    body = json.dumps({"name": "big", "metadata_field_values_attributes": values(1, "x" * 5000)})
    small = create_app({"max_json_bytes": 1000}, instance_path=instance).test_client()
    with nothing_changes(instance):
        response = small.post(DATASETS, data=body, content_type="application/json", headers=auth)
    assert_error(response, 413, "JSON body", "1000 bytes")


def test_a_chunked_json_body_over_the_limit_is_413(client, auth, instance):
    small = create_app({"max_json_bytes": 1000}, instance_path=instance).test_client()
    body = json.dumps({"name": "big", "metadata_field_values_attributes": values(1, "x" * 5000)})
    environ = EnvironBuilder(
        path=DATASETS, method="POST", data=body, content_type="application/json", headers=auth
    ).get_environ()
    # As gunicorn hands over a chunked body: no Content-Length, the stream ends by itself.
    del environ["CONTENT_LENGTH"]
    environ["wsgi.input_terminated"] = True
    with nothing_changes(instance):
        response = small.open(environ)
    assert_error(response, 413, "1000 bytes")


def test_a_64_mib_metadata_value_is_refused(client, auth, instance):
    body = json.dumps({"name": "big", "metadata_field_values_attributes": values(1, "x" * 2**26)})
    with nothing_changes(instance):
        response = client.post(DATASETS, data=body, content_type="application/json", headers=auth)
    assert_error(response, 413, f"{4 << 20} bytes")


def test_one_metadata_value_over_the_limit_is_413_naming_it(client, auth, instance):
    body = {"name": "big", "metadata_field_values_attributes": values(1, "é" * 40_000)}
    with nothing_changes(instance):
        response = client.post(DATASETS, json=body, headers=auth)
    assert_error(response, 413, "'k0'", "65536 bytes", at=("k0",))


def test_a_value_at_the_limit_is_taken(client, auth):
    body = {"name": "fits", "metadata_field_values_attributes": values(1, "x" * (65536 - 2))}
    assert client.post(DATASETS, json=body, headers=auth).status_code == 201


def test_more_metadata_values_than_the_limit_is_413_naming_it(client, auth, instance):
    body = {"name": "many", "metadata_field_values_attributes": values(1001)}
    with nothing_changes(instance):
        response = client.post(DATASETS, json=body, headers=auth)
    assert_error(response, 413, "at most 1000 metadata values", "1001")


def test_many_metadata_values_are_stored_in_one_insert(client, auth, app):
    statements: list[str] = []
    engine = app.extensions["dataflow_lite.runtime"].engine

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO METADATAVALUE"):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        body = {"name": "many", "metadata_field_values_attributes": values(1000, 1.5)}
        response = client.post(DATASETS, json=body, headers=auth)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert response.status_code == 201, response.get_json()
    assert len(response.get_json()["metadata_field_values"]) == 1000
    assert {value["field_value"] for value in response.get_json()["metadata_field_values"]} == {
        "1.5"
    }
    assert len(statements) == 1


def test_json_nested_100000_deep_is_400_naming_the_limit(client, auth, instance):
    deep = '{"name": "deep", "metadata_field_values_attributes": ' + "[" * 100_000
    deep += "]" * 100_000 + "}"
    with nothing_changes(instance):
        response = client.post(DATASETS, data=deep, content_type="application/json", headers=auth)
    assert_error(response, 400, "nests deeper", "32 levels")


def test_brackets_inside_strings_do_not_count_as_nesting(client, auth):
    body = {"name": "[[[[" * 100, "metadata_field_values_attributes": values(1, "{" * 1000)}
    assert client.post(DATASETS, json=body, headers=auth).status_code == 201


@pytest.mark.parametrize("where", ["instrument_id", "field_value"])
def test_a_5000_digit_integer_is_400_naming_the_limit(client, auth, instance, where):
    digits = "9" * 5000
    if where == "instrument_id":
        text = '{"name": "x", "instrument_id": ' + digits + "}"
    else:
        text = '{"name": "x", "metadata_field_values_attributes": [{"field_name": "a", '
        text += '"field_value": -' + digits + "}]}"
    with nothing_changes(instance):
        response = client.post(DATASETS, data=text, content_type="application/json", headers=auth)
    assert_error(response, 400, "integer longer", "100 digits")


def test_json_that_is_not_json_is_still_400(client, auth):
    response = client.post(DATASETS, data="{nope", content_type="application/json", headers=auth)
    assert_error(response, 400, at=("json",))


# Multipart uploads -----------------------------------------------------------------------------


def test_more_multipart_parts_than_the_limit_is_413_naming_it(client, auth, instance, dataset):
    extra = [field(f"extra{i}", "x") for i in range(20)]
    body = multipart(field("dataset_id", dataset), *extra, file_part())
    with nothing_changes(instance):
        response = post_upload(client, auth, body)
    assert_error(response, 413, "16 multipart parts")


def test_a_hundred_thousand_fields_are_refused_at_the_limit(client, auth, instance, dataset):
    body = multipart(field("dataset_id", dataset), *[field(f"f{i}", "") for i in range(100_000)])
    with nothing_changes(instance):
        response = post_upload(client, auth, body)
    assert_error(response, 413, "16 multipart parts")


@pytest.mark.parametrize("size", [20_000, 2 << 20])
def test_a_long_part_header_is_413_naming_its_limit(client, auth, instance, dataset, size):
    header = b'name="file"; filename="a.txt"\r\nX-Padding: ' + b"p" * size
    body = multipart(field("dataset_id", dataset), part(header, b"hello"))
    with nothing_changes(instance):
        response = post_upload(client, auth, body)
    body = assert_error(response, 413, "headers", "8192 bytes")
    assert str(1 << 40) not in body["message"]


def test_an_upload_within_every_limit_still_lands(client, auth, instance, dataset):
    response = upload(client, auth, dataset, content=b"x" * 3_000_000, relative_path="a/b")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["transfer_state"] == "done"


# Names that must leave room for the adapters' temporary names ----------------------------------


def test_every_adapters_temporary_name_of_the_longest_name_fits():
    name = "é" * (layout.MAX_FILE_NAME_BYTES // 2)
    assert len(name.encode()) <= layout.MAX_FILE_NAME_BYTES
    local = f".{name}.XXXXXXXX.part"  # as the local adapter names its temporaries
    sftp = PurePosixPath(partial_name(f"/d/{name}", "0" * 64)).name
    rsync = f".{name}.XXXXXX"
    for temporary in (local, sftp, rsync):
        assert len(temporary.encode()) <= layout.MAX_NAME_BYTES, temporary


@pytest.mark.parametrize("length", [layout.MAX_FILE_NAME_BYTES + 1, 241, 255])
def test_a_file_name_too_long_for_a_temporary_name_is_400(client, auth, instance, dataset, length):
    with nothing_changes(instance):
        response = upload(client, auth, dataset, name="x" * length)
    assert_error(response, 400, "file name", f"longer than {layout.MAX_FILE_NAME_BYTES} bytes")


def test_a_file_name_at_the_limit_lands(client, auth, dataset, instance):
    name = "x" * layout.MAX_FILE_NAME_BYTES
    response = upload(client, auth, dataset, name=name)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["transfer_state"] == "done"


def test_a_folder_name_may_use_the_whole_file_system_limit(client, auth, dataset):
    response = upload(client, auth, dataset, relative_path="d" * 255)
    assert response.status_code == 201, response.get_json()


@pytest.mark.parametrize(
    ("length", "across_filesystems"),
    [
        pytest.param(300, False, id="name-too-long"),
        pytest.param(250, True, id="temporary-name-too-long"),
    ],
)
def test_a_name_the_file_system_refuses_is_a_permanent_error(
    tmp_path, monkeypatch, length, across_filesystems
):
    assert errno.ENAMETOOLONG in PERMANENT_ERRNOS
    staged = tmp_path / "staged"
    staged.write_bytes(b"hello")
    (tmp_path / "root").mkdir()
    adapter = LocalAdapter({"path": str(tmp_path / "root")}, AdapterContext(tmp_path, tmp_path))
    job = TransferJob(staged, PurePosixPath("d", "x" * length), "0" * 64, 5, None)
    if across_filesystems:  # the copy to a hidden temporary name beside the target
        same_filesystem = os.link

        def link(source: Any, target: Any, **at: Any) -> None:
            if not at:  # the instance's own files (its keys) stay on one filesystem
                return same_filesystem(source, target)
            raise OSError(errno.EXDEV, "Invalid cross-device link")

        monkeypatch.setattr("os.link", link)
    with pytest.raises(AdapterError, match="File name too long") as refused:
        adapter.submit(job)
    assert refused.value.permanent, refused.value
    assert list((tmp_path / "root" / "d").iterdir()) == []


# A full staging disk ----------------------------------------------------------------------------


@pytest.fixture
def small_staging(instance: Path):
    """The instance's staging folder as a real 4 MiB tmpfs, unmounted after the test."""
    staging = instance / "staging"
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(staging)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield staging
    subprocess.run(["umount", str(staging)], check=True)


def test_a_full_staging_disk_is_507_and_leaves_nothing(client, auth, instance, small_staging):
    dataset_id = client.post(DATASETS, json={"name": "Scan"}, headers=auth).get_json()["id"]
    with nothing_changes(instance):
        response = upload(client, auth, dataset_id, content=b"x" * (6 << 20))
    assert_error(response, 507, "staging area has no room")
    assert list(small_staging.iterdir()) == []
    # A file that fits still lands.
    assert upload(client, auth, dataset_id, content=b"small").status_code == 201


# Hostile numbers -------------------------------------------------------------------------------


@pytest.fixture
def ada(cli, client):
    add_user(cli, "ada")
    assert log_in(client, "ada").status_code == 302
    return client


@pytest.mark.parametrize("page", ["²", "١", "99999999999999999999", "-1"])
def test_odd_page_numbers_show_the_first_page(ada, page):
    assert ada.get(f"/datasets?page={page}").status_code == 200


@pytest.mark.parametrize("choice", ["²", "99999999999999999999"])
def test_odd_instrument_choices_show_the_choice(ada, choice):
    assert ada.get(f"/datasets/new?instrument={choice}").status_code == 200


@pytest.mark.parametrize("days", ["99999999999", "²"])
def test_huge_or_odd_key_days_on_the_web_form_are_400(ada, days):
    response = ada.post(
        "/account/keys", data={"expires_days": days, "csrf_token": token(ada, "/account")}
    )
    assert response.status_code == 400
    assert "expire" in response.text


def test_huge_key_days_in_the_cli_is_one_line(cli):
    cli("user", "add", "ada")
    message = cli.fails("key", "create", "ada", "--expires-days", "99999999999")
    assert "from 1 to 36600" in message
    assert "Traceback" not in message and message.count("\n") <= 1


@pytest.mark.parametrize("dataset_id", ["-99999999999999999999", "99999999999999999999"])
def test_transfers_of_a_dataset_id_past_sqlite_is_400(client, auth, dataset_id):
    response = client.get(f"{API}/transfers?dataset_id={dataset_id}", headers=auth)
    assert_error(response, 400, at=("query", "dataset_id"))


@pytest.mark.parametrize("dataset_id", ["-99999999999999999999", "99999999999999999999"])
def test_file_search_of_a_dataset_id_past_sqlite_is_a_clean_404(client, auth, dataset_id):
    response = client.get(f"{API}/dataset-files/search?dataset_id={dataset_id}", headers=auth)
    assert_error(response, 404, f"dataset {dataset_id} not found")


@pytest.mark.parametrize(
    "args",
    [
        ("transfers", "retry", "99999999999999999999"),
        ("transfers", "cancel", "--", "-99999999999999999999"),
        ("instrument", "field", "99999999999999999999", "Temperature"),
    ],
)
def test_cli_ids_past_sqlite_are_one_line(cli, args):
    message = cli.fails(*args)
    number = next(arg for arg in args if arg.lstrip("-").isdigit())
    assert message.startswith("Error: ") and number in message, message
    assert "Traceback" not in message and message.strip().count("\n") == 0
