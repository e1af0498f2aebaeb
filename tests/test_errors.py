"""Errors: one JSON shape, a 4xx for every bad input, and nothing written by a request that fails.

Every error answers with flask-smorest's ``{"code", "status", "message", "errors"}``. Each test
sends one bad request and checks the status, the shape, that the message or ``errors`` names what
was wrong, and that the destination folder, the staging area and the catalog are as they were.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.fernet import Fernet
from itsdangerous import URLSafeSerializer
from sqlalchemy import inspect, text, update
from sqlmodel import col
from werkzeug.http import HTTP_STATUS_CODES

from dataflow_lite import create_app
from dataflow_lite.store.api_keys import SALT
from dataflow_lite.store.models import ApiKey

from .conftest import catalog, wait_for_transfers

API = "/api/v1"
UPLOAD = f"{API}/dataset-file-upload"
MULTIPART = "multipart/form-data; boundary=XYZ"
CLOSING = b"--XYZ--\r\n"
BEYOND_SQLITE_INTEGER = 2**63
UNREGISTERED_ENDPOINT = "6f1c3e0a-0000-4000-8000-000000000000"


@dataclass(frozen=True)
class Snapshot:
    """What a failed request must leave exactly as it found it."""

    destination: dict[str, str]
    staged: tuple[str, ...]
    rows: dict[str, int]


def fingerprint(path: Path) -> str:
    """A file's sha256, or ``dir`` for a folder."""
    return "dir" if path.is_dir() else sha256(path.read_bytes()).hexdigest()


def snapshot(instance: Path) -> Snapshot:
    """Every entry under the destination, the staging area's entries, and each table's row count."""
    root = instance / "dataflow"
    destination = {str(path.relative_to(root)): fingerprint(path) for path in root.rglob("*")}
    staged = tuple(sorted(path.name for path in (instance / "staging").iterdir()))
    with catalog(instance) as db:
        rows = {
            name: db.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one()
            for name in inspect(db.connection()).get_table_names()
        }
    return Snapshot(destination, staged, rows)


@contextmanager
def nothing_changes(instance: Path) -> Iterator[None]:
    """Assert that the block leaves the destination and the catalog as they were, staging empty."""
    before = snapshot(instance)
    yield
    after = snapshot(instance)
    assert after.staged == (), f"left in the staging area: {after.staged}"
    assert after.destination == before.destination
    assert after.rows == before.rows


def assert_error(response: Any, status: int, *says: str, at: tuple[str, ...] = ()) -> dict:
    """Check an error response (Flask's or requests') and return its body.

    Always ``status`` and the JSON shape; each of ``says`` must be in the message, and ``at`` is a
    path of keys into ``errors`` that must lead to a non-empty entry.
    """
    assert says or at, "an error test must check that the error names what was wrong"
    if isinstance(response, requests.Response):
        mimetype = response.headers.get("Content-Type", "").partition(";")[0]
        body = response.json()
    else:
        mimetype, body = response.mimetype, response.get_json()
    assert response.status_code == status, body
    assert mimetype == "application/json"
    assert set(body) == {"code", "status", "message", "errors"}, body
    assert body["code"] == status
    assert body["status"] == HTTP_STATUS_CODES[status]
    assert isinstance(body["message"], str) and body["message"].strip()
    assert isinstance(body["errors"], dict)
    for words in says:
        assert words in body["message"], body
    node = body["errors"]
    for key in at:
        assert isinstance(node, dict) and key in node, body
        node = node[key]
    assert node or not at, body
    return body


def bearer(key: str) -> dict[str, str]:
    """The Authorization header for ``key``."""
    return {"Authorization": f"Bearer {key}"}


def part(disposition: bytes, content: bytes) -> bytes:
    """One multipart part: ``Content-Disposition: form-data; <disposition>``, then ``content``."""
    head = b"--XYZ\r\nContent-Disposition: form-data; " + disposition
    return head + b"\r\n\r\n" + content + b"\r\n"


def field(name: str, value: object) -> bytes:
    """A form field part."""
    return part(f'name="{name}"'.encode(), str(value).encode())


def file_part(filename: bytes = b'filename="a.txt"', content: bytes = b"hello") -> bytes:
    """The ``file`` part, its filename parameter given as raw bytes."""
    return part(b'name="file"; ' + filename, content)


def multipart(*parts: bytes) -> bytes:
    """A multipart body with boundary ``XYZ``, closed."""
    return b"".join(parts) + CLOSING


def post_upload(client: Any, auth: dict, body: bytes, content_type: str = MULTIPART) -> Any:
    """POST a hand-built body to the upload route."""
    return client.post(UPLOAD, data=body, content_type=content_type, headers=auth)


def upload(
    client: Any,
    auth: dict,
    dataset_id: int,
    name: str = "a.txt",
    content: bytes = b"hello",
    relative_path: str | None = None,
) -> Any:
    """Upload one file the way ordflow does."""
    parts = [field("dataset_id", dataset_id)]
    if relative_path is not None:
        parts.append(field("relative_path", relative_path))
    parts.append(file_part(f'filename="{name}"'.encode(), content))
    return post_upload(client, auth, multipart(*parts))


def landed(response: Any) -> Path:
    """Where a successful upload put its file."""
    assert response.status_code == 201, response.get_json()
    return Path(response.get_json()["destination"])


@pytest.fixture
def dataset(client, auth) -> int:
    """A dataset of suhas with no files yet."""
    response = client.post(f"{API}/datasets", json={"name": "Scan"}, headers=auth)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


@pytest.fixture
def afm(cli) -> int:
    """Instrument AFM: its form requires a number ``Temperature`` and offers ``Mode`` A or B."""
    instrument = cli.json("instrument", "add", "AFM")["id"]
    cli("instrument", "field", str(instrument), "Temperature", "--type", "number", "--required")
    cli("instrument", "field", str(instrument), "Mode", "--choice", "A", "--choice", "B")
    return instrument


@pytest.fixture
def small_client(instance: Path):
    """A client of an app that takes request bodies of at most 1000 bytes."""
    settings = {"max_upload_bytes": 1000, "queue_immediate": True}
    return create_app(settings, instance_path=instance).test_client()


@pytest.fixture
def limited_server(instance: Path, request: pytest.FixtureRequest):
    """The live server, started on this instance with ``max_upload_bytes = 1000`` in config.toml."""
    with (instance / "config.toml").open("a") as config:  # after the catalog's, if any
        config.write("max_upload_bytes = 1000\n")
    return request.getfixturevalue("live_server")


@pytest.mark.parametrize("path", [f"{API}/nope", f"{API}/datasets/1/files", "/nope"])
def test_an_unknown_url_is_a_json_404(client, auth, instance, path):
    with nothing_changes(instance):
        response = client.get(path, headers=auth)
    assert_error(response, 404, "not found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", f"{API}/datasets"),
        ("PUT", f"{API}/datasets/1"),
        ("GET", UPLOAD),
        ("POST", f"{API}/instruments"),
    ],
)
def test_a_method_not_allowed_is_a_json_405(client, auth, instance, dataset, method, path):
    with nothing_changes(instance):
        response = client.open(path, method=method, headers=auth)
    assert_error(response, 405, "not allowed")


def test_a_405_names_the_allowed_methods(client, auth):
    response = client.delete(f"{API}/datasets", headers=auth)
    assert_error(response, 405, "not allowed")
    assert "POST" in {method.strip() for method in response.headers.get("Allow", "").split(",")}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{API}/user-settings"),
        ("POST", f"{API}/user-settings?setting=transport.protocol&value=local"),
        ("GET", f"{API}/instruments"),
        ("GET", f"{API}/instruments/0"),
        ("GET", f"{API}/transports/globus/activation"),
        ("POST", f"{API}/transports/globus/activate?unencrypted_password=x"),
        ("POST", f"{API}/password-encryption"),
        ("POST", f"{API}/datasets"),
        ("GET", f"{API}/datasets/1"),
        ("GET", f"{API}/datasets/search"),
        ("GET", f"{API}/dataset-files/search"),
    ],
)
def test_every_route_requires_an_api_key(client, instance, dataset, method, path):
    with nothing_changes(instance):
        response = client.open(path, method=method, json={"name": "Scan", "password": "x"})
    assert_error(response, 401, "API key is required")


def test_an_upload_without_an_api_key_stages_nothing(client, instance, dataset):
    with nothing_changes(instance):
        response = post_upload(client, {}, multipart(field("dataset_id", dataset), file_part()))
    assert_error(response, 401, "API key is required")


def test_a_401_challenges_for_a_bearer_key(client):
    response = client.get(f"{API}/user-settings")
    assert_error(response, 401, "API key is required")
    assert response.headers.get("WWW-Authenticate", "").startswith("Bearer")


@pytest.mark.parametrize(
    ("authorization", "says"),
    [
        pytest.param("", "API key is required", id="empty"),
        pytest.param("Bearer", "must be 'Bearer <key>'", id="no-key"),
        pytest.param("Bearer    ", "must be 'Bearer <key>'", id="blank-key"),
        pytest.param("Basic dXNlcjpwYXNz", "must be 'Bearer <key>'", id="basic"),
        pytest.param("Bearer not-a-key", "malformed", id="garbage"),
        pytest.param("Bearer a.b.c", "malformed", id="dotted-garbage"),
    ],
)
def test_a_malformed_authorization_header_is_401(client, instance, key, authorization, says):
    with nothing_changes(instance):
        response = client.get(f"{API}/user-settings", headers={"Authorization": authorization})
    assert_error(response, 401, says)


def forged_signature(cli: Any, key: str, tmp_path: Path) -> str:
    """The key with its signature changed."""
    payload, _, signature = key.rpartition(".")
    return f"{payload}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"


def from_another_server(cli: Any, key: str, tmp_path: Path) -> str:
    """A real key of another instance."""
    other = type(cli)(tmp_path / "other")
    other("init")
    return other.user_key("suhas")


def unknown_key_id(cli: Any, key: str, tmp_path: Path) -> str:
    """A key correctly signed with this instance's secret, for a key id that was never issued."""
    secret = (cli.instance / "secret_key").read_bytes().strip()
    return URLSafeSerializer(secret, salt=SALT).dumps([999, "never-issued"])


@pytest.mark.parametrize(
    ("make_key", "says"),
    [
        pytest.param(forged_signature, "not issued by this server", id="forged-signature"),
        pytest.param(from_another_server, "not issued by this server", id="another-server"),
        pytest.param(unknown_key_id, "not known to this server", id="unknown-id"),
    ],
)
def test_a_key_this_server_did_not_issue_is_401(
    cli, client, instance, tmp_path, key, make_key, says
):
    headers = bearer(make_key(cli, key, tmp_path))
    with nothing_changes(instance):
        response = client.get(f"{API}/user-settings", headers=headers)
    assert_error(response, 401, says)


def test_a_revoked_key_is_401(cli, client, instance, key, auth):
    cli("key", "revoke", key)
    with nothing_changes(instance):
        response = client.get(f"{API}/user-settings", headers=auth)
    assert_error(response, 401, "revoked")


def test_an_expired_key_is_401(cli, client, instance, key):
    expiring = cli("key", "create", "suhas", "--expires-days", "1").strip()
    with catalog(instance) as db:
        db.execute(
            update(ApiKey)
            .where(col(ApiKey.expires_at).is_not(None))
            .values(expires_at=datetime(2000, 1, 1, tzinfo=UTC))
        )
    with nothing_changes(instance):
        response = client.get(f"{API}/user-settings", headers=bearer(expiring))
    assert_error(response, 401, "expired on 2000-01-01")


@pytest.mark.parametrize(
    ("method", "path", "body", "says"),
    [
        pytest.param("GET", f"{API}/datasets/999", None, "dataset 999 not found", id="dataset"),
        pytest.param(
            "GET",
            f"{API}/datasets/{BEYOND_SQLITE_INTEGER}",
            None,
            "not found",
            id="dataset-beyond-sqlite-integer",
        ),
        pytest.param(
            "GET", f"{API}/instruments/999", None, "instrument 999 not found", id="instrument"
        ),
        pytest.param(
            "GET",
            f"{API}/instruments/{BEYOND_SQLITE_INTEGER}",
            None,
            "not found",
            id="instrument-beyond-sqlite-integer",
        ),
        pytest.param(
            "GET",
            f"{API}/dataset-files/search?dataset_id=999",
            None,
            "dataset 999 not found",
            id="file-search-dataset",
        ),
        pytest.param(
            "GET",
            f"{API}/dataset-files/search?dataset_id={BEYOND_SQLITE_INTEGER}",
            None,
            "not found",
            id="file-search-dataset-beyond-sqlite-integer",
        ),
        pytest.param(
            "POST",
            f"{API}/datasets",
            {"name": "Scan", "instrument_id": 999},
            "instrument 999 not found",
            id="create-with-instrument",
        ),
        pytest.param(
            "POST",
            f"{API}/datasets",
            {"name": "Scan", "instrument_id": -1},
            "instrument -1 not found",
            id="create-with-negative-instrument",
        ),
        pytest.param(
            "POST",
            f"{API}/datasets",
            {"name": "Scan", "instrument_id": BEYOND_SQLITE_INTEGER},
            "not found",
            id="create-with-instrument-beyond-sqlite-integer",
        ),
        pytest.param(
            "GET",
            f"{API}/transports/globus/activation?endpoint={UNREGISTERED_ENDPOINT}",
            None,
            f"endpoint {UNREGISTERED_ENDPOINT} is not registered",
            id="activation-endpoint",
        ),
        pytest.param(
            "POST",
            f"{API}/transports/globus/activate?endpoint={UNREGISTERED_ENDPOINT}&unencrypted_password=x",
            None,
            f"endpoint {UNREGISTERED_ENDPOINT} is not registered",
            id="activate-endpoint",
        ),
    ],
)
def test_an_unknown_id_is_404(client, auth, instance, dataset, method, path, body, says):
    with nothing_changes(instance):
        response = client.open(path, method=method, json=body, headers=auth)
    assert_error(response, 404, says)


@pytest.mark.parametrize(
    "path",
    [
        f"{API}/datasets/abc",
        f"{API}/datasets/1.5",
        f"{API}/datasets/-1",
        f"{API}/datasets/1e3",
        f"{API}/datasets/%20",
        f"{API}/instruments/abc",
        f"{API}/instruments/0x1",
    ],
)
def test_a_non_integer_id_in_the_url_is_404(client, auth, instance, dataset, path):
    with nothing_changes(instance):
        response = client.get(path, headers=auth)
    assert_error(response, 404, "not found")


@pytest.mark.parametrize(
    ("query", "argument"),
    [
        ("datasets/search?page=abc", "page"),
        ("datasets/search?page=0", "page"),
        ("datasets/search?per_page=0", "per_page"),
        ("datasets/search?per_page=many", "per_page"),
        ("dataset-files/search?dataset_id=abc", "dataset_id"),
        ("dataset-files/search?page=-1", "page"),
        ("datasets/search?page=4611686018427387904", "page"),
        ("dataset-files/search?page=4611686018427387904", "page"),
        ("transfers?dataset_id=99999999999999999999", "dataset_id"),
    ],
)
def test_a_bad_query_argument_is_400(client, auth, instance, dataset, query, argument):
    with nothing_changes(instance):
        response = client.get(f"{API}/{query}", headers=auth)
    assert_error(response, 400, at=("query", argument))


@pytest.mark.parametrize(
    ("query", "argument"),
    [
        ("datasets/search?after=nonsense", "after"),
        ("dataset-files/search?after=12x", "after"),
        ("datasets/search?page=501", "page"),  # 20 a page: past the first 10,000 results
        ("dataset-files/search?page=501", "page"),
    ],
)
def test_a_cursor_naming_no_result_or_a_page_past_the_window_is_400_on_its_argument(
    client, auth, instance, dataset, query, argument
):
    with nothing_changes(instance):
        response = client.get(f"{API}/{query}", headers=auth)
    assert set(assert_error(response, 400, at=(argument,))["errors"]) == {argument}


def with_values(*values: object) -> dict:
    """A dataset body named Scan whose metadata list is ``values``."""
    return {"name": "Scan", "metadata_field_values_attributes": list(values)}


VALUES = ("json", "metadata_field_values_attributes")


@pytest.mark.parametrize(
    ("body", "says", "at"),
    [
        pytest.param({"name": 5}, (), ("json", "name"), id="name-number"),
        pytest.param({"name": ["Scan"]}, (), ("json", "name"), id="name-list"),
        pytest.param({"name": None}, (), ("json", "name"), id="name-null"),
        pytest.param({}, (), ("json", "name"), id="name-missing"),
        pytest.param({"name": ""}, (), ("json", "name"), id="name-empty"),
        pytest.param({"name": "   "}, ("blank",), ("name",), id="name-blank"),
        pytest.param(
            {"name": "Scan", "instrument_id": "1"},
            (),
            ("json", "instrument_id"),
            id="instrument-string",
        ),
        pytest.param(
            {"name": "Scan", "instrument_id": 1.5},
            (),
            ("json", "instrument_id"),
            id="instrument-float",
        ),
        pytest.param(
            {"name": "Scan", "instrument_id": True},
            (),
            ("json", "instrument_id"),
            id="instrument-bool",
        ),
        pytest.param(
            {"name": "Scan", "metadata_field_values_attributes": {"field_name": "a"}},
            (),
            VALUES,
            id="metadata-object",
        ),
        pytest.param(
            {"name": "Scan", "metadata_field_values_attributes": "a=1"},
            (),
            VALUES,
            id="metadata-string",
        ),
        pytest.param(with_values("a"), (), (*VALUES, "0"), id="metadata-item-not-object"),
        pytest.param(
            with_values({"field_value": 1}),
            (),
            (*VALUES, "0", "field_name"),
            id="field-name-missing",
        ),
        pytest.param(
            with_values({"field_name": "", "field_value": 1}),
            (),
            (*VALUES, "0", "field_name"),
            id="field-name-empty",
        ),
        pytest.param(
            with_values({"field_name": 7, "field_value": 1}),
            (),
            (*VALUES, "0", "field_name"),
            id="field-name-number",
        ),
        pytest.param(
            with_values({"field_name": "a"}),
            (),
            (*VALUES, "0", "field_value"),
            id="field-value-missing",
        ),
        pytest.param(
            with_values({"field_name": "a", "field_value": {"b": 1}}),
            ("a: must be a single value",),
            ("a",),
            id="field-value-nested",
        ),
    ],
)
def test_dataset_create_with_a_wrong_type_is_400(client, auth, instance, body, says, at):
    with nothing_changes(instance):
        response = client.post(f"{API}/datasets", json=body, headers=auth)
    assert_error(response, 400, *says, at=at)


@pytest.mark.parametrize(
    ("data", "content_type", "at"),
    [
        pytest.param(b"not json", "application/json", ("json",), id="text"),
        pytest.param(b'{"name": "Scan"', "application/json", ("json",), id="truncated"),
        pytest.param(b'{"name": "\xff"}', "application/json", ("json",), id="not-utf8"),
        pytest.param(b"[]", "application/json", ("json", "_schema"), id="array"),
        pytest.param(b"null", "application/json", ("json", "_schema"), id="null"),
        pytest.param(b'"Scan"', "application/json", ("json", "_schema"), id="string"),
        pytest.param(b"", "application/json", ("json", "name"), id="empty"),
        pytest.param(
            b"name=Scan", "application/x-www-form-urlencoded", ("json", "name"), id="form"
        ),
        pytest.param(b"name: Scan", "text/plain", ("json", "name"), id="plain-text"),
    ],
)
def test_dataset_create_with_a_body_that_is_not_a_json_object_is_400(
    client, auth, instance, data, content_type, at
):
    with nothing_changes(instance):
        response = client.post(
            f"{API}/datasets", data=data, content_type=content_type, headers=auth
        )
    assert_error(response, 400, at=at)


@pytest.mark.parametrize(
    ("values", "field_name", "says"),
    [
        pytest.param([], "Temperature", "is required", id="missing"),
        pytest.param([("Temperature", None)], "Temperature", "is required", id="null"),
        pytest.param(
            [("Temperature", "hot")], "Temperature", "must be a number", id="text-for-number"
        ),
        pytest.param(
            [("Temperature", True)], "Temperature", "must be a number", id="bool-for-number"
        ),
        pytest.param(
            [("Temperature", 300), ("Mode", "C")], "Mode", "must be one of A, B", id="not-a-choice"
        ),
        pytest.param(
            [("Temperature", 300), ("Mode", 1)], "Mode", "must be text", id="number-for-text"
        ),
        pytest.param(
            [("Temperature", 300), ("Temperature", 301)],
            "Temperature",
            "is given more than once",
            id="twice",
        ),
    ],
)
def test_metadata_that_breaks_the_instruments_form_is_400(
    client, auth, instance, afm, values, field_name, says
):
    body = {
        "name": "Scan",
        "instrument_id": afm,
        "metadata_field_values_attributes": [
            {"field_name": name, "field_value": value} for name, value in values
        ],
    }
    with nothing_changes(instance):
        response = client.post(f"{API}/datasets", json=body, headers=auth)
    assert_error(response, 400, f"{field_name}: {says}", at=(field_name,))


@pytest.mark.parametrize(
    ("relative_path", "says"),
    [
        pytest.param("../x", "'..'", id="parent"),
        pytest.param("a/../b", "'..'", id="parent-inside"),
        pytest.param("/etc", "absolute", id="absolute"),
        pytest.param("a//b", "empty component", id="double-slash"),
        pytest.param("a/", "empty component", id="trailing-slash"),
        pytest.param("a\\b", "backslash", id="backslash"),
        pytest.param("a\x00b", "NUL", id="nul"),
        pytest.param(".", "'.'", id="dot"),
        pytest.param("a/.rsync-partial", "'.rsync-partial'", id="rsync-partial-directory"),
        pytest.param("a/\x1fb", "control character", id="control-character"),
        pytest.param("a/" + "x" * 256, "longer than 255 bytes", id="component-too-long"),
    ],
)
def test_an_unsafe_relative_path_is_400(client, auth, instance, dataset, relative_path, says):
    with nothing_changes(instance):
        response = upload(client, auth, dataset, relative_path=relative_path)
    assert_error(response, 400, "relative_path", says, at=("relative_path",))


def test_a_relative_path_too_long_for_the_filesystem_is_400(client, auth, instance, dataset):
    relative_path = "/".join(["d" * 250] * 17)
    with nothing_changes(instance):
        response = upload(client, auth, dataset, relative_path=relative_path)
    assert_error(response, 400, "relative_path", "longer than", at=("relative_path",))


@pytest.mark.parametrize(
    ("filename", "says"),
    [
        pytest.param(b'filename=".."', "'..'", id="dot-dot"),
        pytest.param(b'filename="."', "'.'", id="dot"),
        pytest.param(b'filename="a\\\\b"', "backslash", id="backslash"),
        pytest.param(b"filename*=UTF-8''a%5Cb", "backslash", id="backslash-rfc2231"),
        pytest.param(b'filename="a/b"', "slash", id="slash"),
        pytest.param(b'filename="a\x00b"', "NUL", id="nul"),
        pytest.param(b"filename*=UTF-8''a%00b", "NUL", id="nul-rfc2231"),
        pytest.param(b'filename="a\x1fb"', "control character", id="control-character"),
        pytest.param(b'filename=""', "empty", id="empty"),
        pytest.param(b'filename="' + b"x" * 256 + b'"', "longer than 223 bytes", id="too-long"),
    ],
)
def test_an_unsafe_file_name_is_400(client, auth, instance, dataset, filename, says):
    body = multipart(field("dataset_id", dataset), file_part(filename))
    with nothing_changes(instance):
        response = post_upload(client, auth, body)
    assert_error(response, 400, "file name", says, at=("file",))


def good_body(dataset_id: int) -> bytes:
    """A well-formed upload of ``a.txt``."""
    return multipart(field("dataset_id", dataset_id), file_part())


def no_closing_boundary(dataset_id: int) -> bytes:
    """A good body that stops before its closing boundary."""
    return good_body(dataset_id).removesuffix(CLOSING)


def cut_in_the_file(dataset_id: int) -> bytes:
    """A good body that stops inside the file's data."""
    return multipart(field("dataset_id", dataset_id), file_part(content=b"x" * 100))[:-60]


@pytest.mark.parametrize(
    ("make_body", "content_type", "says", "at"),
    [
        pytest.param(good_body, "multipart/form-data", "no boundary", (), id="no-boundary"),
        pytest.param(
            good_body, "multipart/form-data; boundary=", "no boundary", (), id="empty-boundary"
        ),
        pytest.param(
            good_body,
            "multipart/form-data; boundary=ABC",
            "multipart body",
            (),
            id="wrong-boundary",
        ),
        pytest.param(
            lambda ds: b'{"dataset_id": %d}' % ds,
            "application/json",
            "must be multipart/form-data",
            (),
            id="json",
        ),
        pytest.param(
            lambda ds: b"dataset_id=%d&file=a" % ds,
            "application/x-www-form-urlencoded",
            "must be multipart/form-data",
            (),
            id="urlencoded",
        ),
        pytest.param(
            no_closing_boundary, MULTIPART, "multipart body", (), id="no-closing-boundary"
        ),
        pytest.param(cut_in_the_file, MULTIPART, "multipart body", (), id="cut-in-the-file"),
        pytest.param(lambda ds: b"garbage", MULTIPART, "multipart body", (), id="garbage"),
        pytest.param(lambda ds: b"", MULTIPART, "no file part named 'file'", (), id="empty"),
        pytest.param(
            lambda ds: multipart(b"--XYZ\r\nContent-Type: text/plain\r\n\r\nx\r\n", file_part()),
            MULTIPART,
            "Content-Disposition",
            (),
            id="part-without-disposition",
        ),
        pytest.param(
            lambda ds: multipart(field("dataset_id", ds)),
            MULTIPART,
            "no file part named 'file'",
            (),
            id="no-file-part",
        ),
        pytest.param(
            lambda ds: multipart(field("dataset_id", ds), field("file", "a.txt")),
            MULTIPART,
            "no file part named 'file'",
            (),
            id="file-as-plain-field",
        ),
        pytest.param(
            lambda ds: multipart(
                field("dataset_id", ds),
                file_part(b'filename="a.txt"'),
                file_part(b'filename="b.txt"'),
            ),
            MULTIPART,
            "exactly one file part",
            (),
            id="two-file-parts",
        ),
        pytest.param(
            lambda ds: multipart(
                field("dataset_id", ds), part(b'name="upload"; filename="a.txt"', b"x")
            ),
            MULTIPART,
            "exactly one file part",
            (),
            id="file-part-with-another-name",
        ),
        pytest.param(
            lambda ds: multipart(field("dataset_id", "abc"), file_part()),
            MULTIPART,
            "'abc' is not an integer",
            ("dataset_id",),
            id="dataset-id-not-integer",
        ),
        pytest.param(
            lambda ds: multipart(field("dataset_id", "1.5"), file_part()),
            MULTIPART,
            "'1.5' is not an integer",
            ("dataset_id",),
            id="dataset-id-float",
        ),
        pytest.param(
            lambda ds: multipart(file_part()),
            MULTIPART,
            "dataset_id is required",
            ("dataset_id",),
            id="dataset-id-missing",
        ),
        pytest.param(
            lambda ds: multipart(field("dataset_id", ""), file_part()),
            MULTIPART,
            "dataset_id is required",
            ("dataset_id",),
            id="dataset-id-empty",
        ),
        pytest.param(
            lambda ds: multipart(field("dataset_id", ds), field("dataset_id", ds), file_part()),
            MULTIPART,
            "'dataset_id' is given more than once",
            (),
            id="dataset-id-twice",
        ),
        pytest.param(
            lambda ds: multipart(
                field("dataset_id", ds), part(b'name="relative_path"', b"\xff"), file_part()
            ),
            MULTIPART,
            "'relative_path' is not UTF-8",
            (),
            id="field-not-utf8",
        ),
        pytest.param(
            lambda ds: multipart(
                field("dataset_id", ds), field("relative_path", "a" * 70_000), file_part()
            ),
            MULTIPART,
            "'relative_path' is too long",
            (),
            id="field-too-long",
        ),
    ],
)
def test_a_bad_multipart_upload_is_400(
    client, auth, instance, dataset, make_body, content_type, says, at
):
    with nothing_changes(instance):
        response = post_upload(client, auth, make_body(dataset), content_type)
    assert_error(response, 400, says, at=at)


@pytest.mark.parametrize(
    ("dataset_id", "says"),
    [
        pytest.param(999, "dataset 999 not found", id="unknown"),
        pytest.param(-1, "dataset -1 not found", id="negative"),
        pytest.param(BEYOND_SQLITE_INTEGER, "not found", id="beyond-sqlite-integer"),
    ],
)
def test_an_upload_to_an_unknown_dataset_is_404(client, auth, instance, dataset, dataset_id, says):
    with nothing_changes(instance):
        response = upload(client, auth, dataset_id)
    assert_error(response, 404, says)


def test_an_upload_cut_short_leaves_nothing_staged(client, auth, instance, dataset):
    body = multipart(field("dataset_id", dataset), file_part(content=b"x" * 5000))
    with nothing_changes(instance):
        response = client.post(
            UPLOAD,
            input_stream=io.BytesIO(body[:2000]),
            content_length=len(body) + 100_000,
            content_type=MULTIPART,
            headers=auth,
        )
    assert_error(response, 400, "multipart body")


@pytest.mark.parametrize("relative_path", ["", "foo/bar"], ids=["root", "folder"])
def test_the_same_file_twice_is_409_and_the_first_stays(
    client, auth, instance, dataset, relative_path
):
    first = landed(upload(client, auth, dataset, "a.txt", b"first", relative_path))
    files = client.get(f"{API}/datasets/{dataset}", headers=auth).get_json()["dataset_files"]
    with nothing_changes(instance):
        response = upload(client, auth, dataset, "a.txt", b"second", relative_path)
    assert_error(response, 409, "a.txt", "nothing was overwritten")
    assert first.read_bytes() == b"first"
    after = client.get(f"{API}/datasets/{dataset}", headers=auth).get_json()["dataset_files"]
    assert after == files


def test_a_file_named_like_an_existing_folder_is_409(client, auth, instance, dataset):
    landed(upload(client, auth, dataset, "x.txt", relative_path="foo/bar"))
    with nothing_changes(instance):
        response = upload(client, auth, dataset, "foo")
    assert_error(response, 409, "foo")
    with nothing_changes(instance):
        response = upload(client, auth, dataset, "bar", relative_path="foo")
    assert_error(response, 409, "foo/bar")


def test_a_folder_through_an_existing_file_is_409(client, auth, instance, dataset):
    landed(upload(client, auth, dataset, "a.txt"))
    with nothing_changes(instance):
        response = upload(client, auth, dataset, "y.txt", relative_path="a.txt/deeper")
    assert_error(response, 409, "a.txt", "not a directory")


def test_metadata_json_at_the_dataset_root_is_409(client, auth, instance, dataset):
    with nothing_changes(instance):
        response = upload(client, auth, dataset, "metadata.json", b'{"forged": true}')
    assert_error(response, 409, "metadata.json")


@pytest.mark.parametrize("relative_path", ["metadata.json", "metadata.json/deeper"])
def test_a_folder_through_metadata_json_is_409(client, auth, instance, dataset, relative_path):
    with nothing_changes(instance):
        response = upload(client, auth, dataset, "y.txt", relative_path=relative_path)
    assert_error(response, 409, "metadata.json")


def test_metadata_json_below_the_root_is_an_ordinary_file(client, auth, dataset):
    path = landed(upload(client, auth, dataset, "metadata.json", b"mine", relative_path="raw"))
    assert path.read_bytes() == b"mine"


def test_an_upload_over_the_size_limit_is_413(small_client, auth, instance, dataset):
    body = multipart(field("dataset_id", dataset), file_part(content=b"x" * 5000))
    with nothing_changes(instance):
        response = post_upload(small_client, auth, body)
    assert_error(response, 413, "limit")


def test_a_streamed_upload_over_the_size_limit_is_413(small_client, auth, instance, dataset):
    body = multipart(field("dataset_id", dataset), file_part(content=b"x" * 5000))
    with nothing_changes(instance):
        response = small_client.post(
            UPLOAD,
            input_stream=io.BytesIO(body),
            content_type=MULTIPART,
            headers=auth,
            environ_overrides={"wsgi.input_terminated": True},
        )
    assert_error(response, 413, "limit")


def test_an_upload_within_the_size_limit_lands(small_client, auth, dataset):
    body = multipart(field("dataset_id", dataset), file_part(content=b"x" * 500))
    assert landed(post_upload(small_client, auth, body)).read_bytes() == b"x" * 500


@pytest.mark.server
def test_a_chunked_upload_over_the_size_limit_is_413_on_the_server(
    limited_server, auth, key, instance
):
    created = requests.post(
        f"{limited_server.api}/datasets", json={"name": "Scan"}, headers=auth, timeout=10
    )
    assert created.status_code == 201, created.text
    # The dataset's metadata.json lands a few seconds after it was made: not inside the block.
    wait_for_transfers(limited_server.api, key, created.json()["id"])
    body = multipart(field("dataset_id", created.json()["id"]), file_part(content=b"x" * 5000))
    with nothing_changes(instance):
        response = requests.post(
            f"{limited_server.api}/dataset-file-upload",
            data=(body[start : start + 512] for start in range(0, len(body), 512)),
            headers={**auth, "Content-Type": MULTIPART},
            timeout=10,
        )
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert_error(response, 413, "limit")


@pytest.mark.parametrize(
    ("setting", "value", "says", "where", "allowed"),
    [
        pytest.param(
            "colour",
            "blue",
            "unknown setting 'colour'",
            "setting",
            ["globus.destination_endpoint", "transport.protocol"],
            id="unknown-setting",
        ),
        pytest.param(
            "globus.destination_endpoint",
            UNREGISTERED_ENDPOINT,
            f"{UNREGISTERED_ENDPOINT!r} is not a registered destination endpoint",
            "value",
            ["{endpoint}"],
            id="unregistered-endpoint",
        ),
        pytest.param(
            "globus.destination_endpoint",
            "not-a-uuid",
            "'not-a-uuid' is not a registered destination endpoint",
            "value",
            ["{endpoint}"],
            id="not-a-uuid",
        ),
        pytest.param(
            "transport.protocol",
            "ftp",
            "transport 'ftp' is not installed",
            "value",
            ["local"],
            id="uninstalled-transport",
        ),
    ],
)
def test_a_bad_user_setting_is_400_listing_what_is_allowed(
    client, auth, instance, setting, value, says, where, allowed
):
    settings = client.get(f"{API}/user-settings", headers=auth).get_json()
    endpoint = settings["globus"]["destination_endpoint"]
    with nothing_changes(instance):
        response = client.post(
            f"{API}/user-settings", query_string={"setting": setting, "value": value}, headers=auth
        )
    body = assert_error(response, 400, says, at=(where,))
    listed = " ".join(body["errors"][where])
    for name in allowed:
        assert name.format(endpoint=endpoint) in listed
    assert client.get(f"{API}/user-settings", headers=auth).get_json() == settings


@pytest.mark.parametrize(
    ("query", "argument"),
    [("setting=transport.protocol", "value"), ("value=local", "setting")],
    ids=["no-value", "no-setting"],
)
def test_a_user_setting_without_its_arguments_is_400(client, auth, instance, query, argument):
    with nothing_changes(instance):
        response = client.post(f"{API}/user-settings?{query}", headers=auth)
    assert_error(response, 400, at=("query", argument))


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("not-a-token", id="garbage"),
        pytest.param(Fernet(Fernet.generate_key()).encrypt(b"secret").decode(), id="another-key"),
        pytest.param("", id="empty"),
    ],
)
def test_activate_with_a_password_this_server_did_not_encrypt_is_400(client, auth, instance, token):
    with nothing_changes(instance):
        response = client.post(
            f"{API}/transports/globus/activate?encrypted_password={token}", headers=auth
        )
    assert_error(response, 400, "not encrypted by this server", at=("encrypted_password",))


def test_activate_with_a_password_this_server_encrypted_is_accepted(client, auth):
    encrypted = client.post(f"{API}/password-encryption", json={"password": "secret"}, headers=auth)
    token = encrypted.get_json()["encrypted_password"]
    response = client.post(
        f"{API}/transports/globus/activate?encrypted_password={token}", headers=auth
    )
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("query", ["", "?username=suhas", "?endpoint=destination"])
def test_activate_without_a_password_is_400(client, auth, instance, query):
    with nothing_changes(instance):
        response = client.post(f"{API}/transports/globus/activate{query}", headers=auth)
    assert_error(response, 400, "password is required", at=("encrypted_password",))


@pytest.mark.parametrize(
    "body", [None, {"password": ""}, {"password": 5}], ids=["missing", "empty", "number"]
)
def test_password_encryption_without_a_password_is_400(client, auth, instance, body):
    with nothing_changes(instance):
        response = client.post(f"{API}/password-encryption", json=body, headers=auth)
    assert_error(response, 400, at=("json", "password"))


@pytest.mark.parametrize(
    "send",
    [
        pytest.param(
            lambda client, headers, ds: client.get(f"{API}/datasets/{ds}", headers=headers),
            id="view",
        ),
        pytest.param(
            lambda client, headers, ds: client.get(
                f"{API}/dataset-files/search?dataset_id={ds}", headers=headers
            ),
            id="file-search",
        ),
        pytest.param(
            lambda client, headers, ds: upload(client, headers, ds, "intruder.txt"), id="upload"
        ),
    ],
)
def test_another_users_dataset_is_404(cli, client, instance, dataset, send):
    eve = bearer(cli.user_key("eve"))
    with nothing_changes(instance):
        response = send(client, eve, dataset)
    assert_error(response, 404, f"dataset {dataset} not found")


def test_only_the_owner_and_an_admin_find_a_dataset(cli, client, auth, dataset):
    eve = bearer(cli.user_key("eve"))
    boss = bearer(cli.user_key("boss", admin=True))
    assert client.get(f"{API}/datasets/search?q=Scan", headers=eve).get_json()["total"] == 0
    assert client.get(f"{API}/datasets/search?q=Scan", headers=auth).get_json()["total"] == 1
    seen_by_admin = client.get(f"{API}/datasets/{dataset}", headers=boss)
    assert seen_by_admin.status_code == 200
    assert seen_by_admin.get_json()["creator"]["name"] == "Suhas Somnath"


def test_a_search_with_a_nul_is_an_ordinary_search(client, auth, instance, dataset):
    with nothing_changes(instance):
        response = client.get(f"{API}/datasets/search", query_string={"q": "a\x00b"}, headers=auth)
    assert response.status_code == 200
    assert response.get_json()["total"] == 0


def test_a_boundary_that_is_not_ascii_is_400(client, auth, instance, dataset):
    with nothing_changes(instance):
        response = client.post(
            UPLOAD,
            data=b"--x--\r\n",
            content_type="multipart/form-data; boundary*=UTF-8''%E2%82%AC",
            headers=auth,
        )
    assert_error(response, 400, "boundary is not ASCII")


@pytest.mark.parametrize(
    ("path", "body", "at"),
    [
        pytest.param("datasets", '{"name": "\\ud800"}', ("json", "name"), id="surrogate-name"),
        pytest.param(
            "datasets",
            '{"name": "x", "metadata_field_values_attributes": '
            '[{"field_name": "\\ud800", "field_value": 1}]}',
            ("json", "metadata_field_values_attributes", "0", "field_name"),
            id="surrogate-field-name",
        ),
        pytest.param(
            "datasets",
            '{"name": "x", "metadata_field_values_attributes": '
            '[{"field_name": "t", "field_value": NaN}]}',
            ("json", "metadata_field_values_attributes", "0", "field_value"),
            id="nan-value",
        ),
        pytest.param(
            "datasets",
            '{"name": "x", "metadata_field_values_attributes": '
            '[{"field_name": "t", "field_value": 1e999}]}',
            ("json", "metadata_field_values_attributes", "0", "field_value"),
            id="infinite-value",
        ),
        pytest.param(
            "password-encryption", '{"password": "\\ud800"}', ("json", "password"), id="pw"
        ),
    ],
)
def test_json_that_cannot_be_stored_again_is_400(client, auth, instance, path, body, at):
    with nothing_changes(instance):
        response = client.post(
            f"{API}/{path}", data=body, content_type="application/json", headers=auth
        )
    assert_error(response, 400, at=at)
