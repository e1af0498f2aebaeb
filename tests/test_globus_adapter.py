"""The Globus adapter, offline: the real globus-sdk against its own canned responses.

Globus cannot be reached from where these tests run (no network but package registries), so
every Globus answer here is one of globus-sdk's canned responses (``globus_sdk.testing``),
registered on the ``responses`` library's default mock, started for each test. ``get_task``,
``operation_ls`` and the error cases are not canned: the tests register their own
``RegisteredResponse`` in the shapes Globus documents. What they check is what the adapter
sends (the JSON bodies ``responses.calls`` recorded) and how it reads the answers; they cannot
show that a real collection accepts those requests.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, urlparse

import globus_sdk
import pytest
import requests
import responses
from dataflow_lite_globus import GlobusAdapter
from globus_sdk.testing import RegisteredResponse, get_response_set, load_response
from globus_sdk.transport import RetryConfig

from dataflow_lite import bootstrap
from dataflow_lite.adapter import (
    ACTIVATION_FAILED,
    ALREADY_ACTIVATED,
    DONE,
    FAILED,
    RUNNING,
    AdapterContext,
    AdapterError,
    DestinationExists,
    TransferJob,
    adapter_settings,
    discover_adapters,
)
from dataflow_lite.store.db import session_scope
from dataflow_lite.store.models import Dataset, Endpoint, Transfer, User

TransferClient = globus_sdk.TransferClient
COLLECTION = get_response_set(TransferClient.get_endpoint).metadata["endpoint_id"]
TASK_ID = get_response_set(TransferClient.submit_transfer).metadata["task_id"]
SUBMISSION_ID = get_response_set(TransferClient.submit_transfer).metadata["submission_id"]
SOURCE = "1b2c3d4e-0000-4000-8000-00000000beef"
BASE = "/data/dataflow"
TOKEN_URL = "https://auth.globus.org/v2/oauth2/token"
DATA_ACCESS = (
    "urn:globus:auth:scope:transfer.api.globus.org:all"
    f"[*https://auth.globus.org/scopes/{COLLECTION}/data_access]"
)


@pytest.fixture(autouse=True)
def globus() -> Iterator[None]:
    """The canned Globus: a client-credentials token, on the responses default mock."""
    responses.start()
    load_response(globus_sdk.ConfidentialAppAuthClient.oauth2_client_credentials_tokens)
    yield
    responses.stop()
    responses.reset()


@pytest.fixture
def instance(tmp_path: Path) -> Path:
    (tmp_path / "staging").mkdir()
    return tmp_path


def make_adapter(instance: Path, **settings: str) -> GlobusAdapter:
    """An adapter for the canned collection, with the SDK's retries off."""
    context = AdapterContext(
        instance,
        instance / "staging",
        {
            "client_id": "7e1f0000-0000-4000-8000-00000000c11e",
            "client_secret": "s3cret",
            "source_collection": SOURCE,
            "source_path": "/staging",
            **settings,
        },
    )
    options = GlobusAdapter.check_options({"collection": COLLECTION, "path": BASE + "/"})
    return GlobusAdapter(options, context, retry_config=RetryConfig(max_retries=0))


@pytest.fixture
def adapter(instance: Path) -> GlobusAdapter:
    return make_adapter(instance)


@pytest.fixture
def job(instance: Path) -> TransferJob:
    """A staged file, with a memo kept the way the transfer queue keeps it."""
    staged = instance / "staging" / "upload-abc.part"
    staged.write_bytes(b"spectrum\n")
    return new_job(staged, {})


def new_job(staged: Path, memo: dict) -> TransferJob:
    def remember(key: str, value: object) -> None:
        # What the catalog would hold, and which requests had gone out when it was stored.
        memo[key] = value
        memo.setdefault("_sent_before", {})[key] = [call.request.url for call in responses.calls]

    return TransferJob(
        staged=staged,
        target=PurePosixPath("2024/sample-1/spectrum.csv"),
        sha256="ab" * 32,
        size=9,
        credentials=None,
        memo=memo,
        remember=remember,
    )


def calls_to(suffix: str, method: str = "GET") -> list[requests.PreparedRequest]:
    return [
        call.request
        for call in responses.calls
        if call.request.method == method and urlparse(call.request.url).path.endswith(suffix)
    ]


def transfer_bodies() -> list[dict]:
    return [json.loads(request.body) for request in calls_to("/v0.10/transfer", "POST")]


def task(status: str, **fields: object) -> RegisteredResponse:
    """A get_task answer (not canned by globus-sdk), shaped like Transfer's task document."""
    document = {
        "DATA_TYPE": "task",
        "task_id": TASK_ID,
        "type": "TRANSFER",
        "status": status,
        "bytes_transferred": 0,
        "files": 1,
        "files_skipped": 0,
        "files_transferred": 0,
        "faults": 0,
        "fatal_error": None,
        "nice_status": "OK" if status == "ACTIVE" else None,
        "nice_status_short_description": None,
        "sync_level": 3,
        "verify_checksum": True,
        **fields,
    }
    return RegisteredResponse(service="transfer", path=f"/v0.10/task/{TASK_ID}", json=document)


def ls_answer(status: int = 200, **body: object) -> RegisteredResponse:
    """An operation_ls answer (not canned in globus-sdk 4.10)."""
    document = body or {"DATA_TYPE": "file_list", "path": BASE + "/", "DATA": []}
    return RegisteredResponse(
        service="transfer",
        path=f"/v0.10/operation/endpoint/{COLLECTION}/ls",
        status=status,
        json=document,
    )


def ready_to_submit() -> None:
    load_response(TransferClient.operation_stat, case="not_found")
    load_response(TransferClient.get_submission_id)
    load_response(TransferClient.submit_transfer)


# Token --------------------------------------------------------------------------------------


def test_the_client_credentials_token_is_fetched_once_and_kept_private(instance: Path):
    ls_answer().add()
    assert make_adapter(instance).activation(None).code == ALREADY_ACTIVATED

    token_requests = calls_to("/v2/oauth2/token", "POST")
    assert len(token_requests) == 1
    assert parse_qs(token_requests[0].body)["grant_type"] == ["client_credentials"]
    token_file = instance / "globus-tokens.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert "DUMMY_TRANSFER_TOKEN_FROM_THE_INTERTUBES" in token_file.read_text()
    listing = calls_to("/ls")[0]
    assert listing.headers["Authorization"] == "Bearer DUMMY_TRANSFER_TOKEN_FROM_THE_INTERTUBES"

    # Another worker's adapter uses the stored token instead of asking for one.
    assert make_adapter(instance).activation(None).code == ALREADY_ACTIVATED
    assert len(calls_to("/v2/oauth2/token", "POST")) == 1
    assert len(calls_to("/ls")) == 2


def test_a_loosened_token_file_is_made_private_again(instance: Path):
    token_file = instance / "globus-tokens.json"
    token_file.write_text("{}")
    token_file.chmod(0o644)
    ls_answer().add()
    assert make_adapter(instance).activation(None).code == ALREADY_ACTIVATED
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert "DUMMY_TRANSFER_TOKEN_FROM_THE_INTERTUBES" in token_file.read_text()


def test_refused_client_credentials_are_a_permanent_error(adapter: GlobusAdapter, job):
    responses.replace(
        responses.POST,
        TOKEN_URL,
        status=401,
        json={"error": "invalid_client", "errors": [{"status": "401", "code": "UNAUTHORIZED"}]},
    )
    with pytest.raises(AdapterError, match="issue a token") as raised:
        adapter.submit(job)
    assert raised.value.permanent
    assert calls_to("/v0.10/transfer", "POST") == []


def test_missing_settings_are_named(instance: Path, job):
    adapter = make_adapter(instance, client_id="")
    with pytest.raises(AdapterError, match="globus_client_id") as raised:
        adapter.submit(job)
    assert raised.value.permanent


# Submit -------------------------------------------------------------------------------------


def test_submit_sends_one_checksummed_item_and_returns_the_task(adapter: GlobusAdapter, job):
    ready_to_submit()
    assert adapter.submit(job) == TASK_ID

    (body,) = transfer_bodies()
    assert body["DATA_TYPE"] == "transfer"
    assert body["source_endpoint"] == SOURCE
    assert body["destination_endpoint"] == COLLECTION
    assert body["verify_checksum"] is True
    assert body["sync_level"] == 3  # "checksum"
    assert body["submission_id"] == SUBMISSION_ID
    (item,) = body["DATA"]
    assert item["source_path"] == "/staging/upload-abc.part"
    assert item["destination_path"] == f"{BASE}/2024/sample-1/spectrum.csv"
    assert item["checksum_algorithm"] == "SHA256"
    assert item["external_checksum"] == job.sha256
    assert "/" not in body["label"]

    assert job.memo["submission_id"] == SUBMISSION_ID
    assert job.memo["task_id"] == TASK_ID
    # The submission id was stored before the task was submitted.
    sent = job.memo["_sent_before"]["submission_id"]
    assert any(url.endswith("/submission_id") for url in sent)
    assert not any(urlparse(url).path.endswith("/v0.10/transfer") for url in sent)


def test_a_retried_submit_reuses_the_remembered_submission_id(adapter: GlobusAdapter, job):
    ready_to_submit()
    first = adapter.submit(job)
    # The worker died before it saved the handle: the queue retries with the stored memo.
    retry = new_job(job.staged, dict(job.memo))
    second = make_adapter(Path(adapter.context.instance_path)).submit(retry)

    assert first == second == TASK_ID
    assert len(calls_to("/submission_id")) == 1
    assert [body["submission_id"] for body in transfer_bodies()] == [SUBMISSION_ID] * 2
    assert len(calls_to("/stat")) == 1  # the retry may find its own file at the target


def test_a_file_already_at_the_target_is_not_replaced(adapter: GlobusAdapter, job):
    load_response(TransferClient.operation_stat)  # something is there
    with pytest.raises(DestinationExists):
        adapter.submit(job)
    assert calls_to("/submission_id") == []
    assert transfer_bodies() == []


def test_without_sha256_support_globus_uses_the_collections_checksum(instance: Path, job):
    ready_to_submit()
    make_adapter(instance, checksum_algorithm="").submit(job)
    (item,) = transfer_bodies()[0]["DATA"]
    assert "external_checksum" not in item and "checksum_algorithm" not in item
    assert transfer_bodies()[0]["verify_checksum"] is True


@pytest.mark.parametrize(
    ("status", "permanent"),
    [(503, False), (500, False), (429, False), (403, True), (404, True), (400, True)],
)
def test_api_errors_on_submit_say_whether_a_retry_can_help(adapter, job, status, permanent):
    load_response(TransferClient.operation_stat, case="not_found")
    load_response(TransferClient.get_submission_id)
    RegisteredResponse(
        service="transfer",
        method="POST",
        path="/v0.10/transfer",
        status=status,
        json={"code": "SomethingWrong", "message": "It went wrong\nGridFTP transcript"},
    ).add()
    with pytest.raises(AdapterError, match="It went wrong") as raised:
        adapter.submit(job)
    assert raised.value.permanent is permanent
    assert "GridFTP" not in str(raised.value)
    assert job.memo["submission_id"] == SUBMISSION_ID  # kept for the retry


def test_a_quota_error_is_permanent(adapter: GlobusAdapter, job):
    load_response(TransferClient.operation_stat, case="not_found")
    load_response(TransferClient.get_submission_id)
    RegisteredResponse(
        service="transfer",
        method="POST",
        path="/v0.10/transfer",
        status=409,
        json={"code": "QuotaExceeded", "message": "Too many pending jobs"},
    ).add()
    with pytest.raises(AdapterError, match="QuotaExceeded") as raised:
        adapter.submit(job)
    assert raised.value.permanent


def test_a_network_error_is_transient(adapter: GlobusAdapter, job):
    load_response(TransferClient.operation_stat, case="not_found")
    load_response(TransferClient.get_submission_id)
    responses.add(
        responses.POST,
        "https://transfer.api.globus.org/v0.10/transfer",
        body=requests.ConnectionError("connection reset"),
    )
    with pytest.raises(AdapterError, match="could not be reached") as raised:
        adapter.submit(job)
    assert not raised.value.permanent


# Status, verify, cancel ---------------------------------------------------------------------


def test_an_active_task_runs_then_succeeds_and_verifies(adapter: GlobusAdapter, job):
    task("ACTIVE", bytes_transferred=4, nice_status="Queued").add()
    task("SUCCEEDED", bytes_transferred=9, files_transferred=1).add()

    running = adapter.status(job, TASK_ID)
    assert (running.state, running.bytes_moved) == (RUNNING, 4)
    assert running.details["nice_status"] == "Queued"
    done = adapter.status(job, TASK_ID)
    assert (done.state, done.bytes_moved, done.error) == (DONE, 9, None)
    assert adapter.verify(job, TASK_ID) is True


def test_a_task_that_did_not_verify_checksums_is_not_verified(adapter: GlobusAdapter, job):
    task("SUCCEEDED", verify_checksum=False).add()
    assert adapter.status(job, TASK_ID).state == DONE
    assert adapter.verify(job, TASK_ID) is False


@pytest.mark.parametrize(
    ("code", "description", "permanent"),
    [
        ("PERMISSION_DENIED", "Permission denied writing /data/dataflow/2024", True),
        ("QUOTA_EXCEEDED", "Disk quota exceeded", True),
        ("FILE_NOT_FOUND", "No such file: /staging/upload-abc.part", True),
        ("ENDPOINT_ERROR", "The destination endpoint went away", False),
    ],
)
def test_a_failed_task_says_why_in_plain_words(adapter, job, code, description, permanent):
    job.memo.update(submission_id=SUBMISSION_ID, task_id=TASK_ID)
    task("FAILED", fatal_error={"code": code, "description": description}).add()

    status = adapter.status(job, TASK_ID)
    assert status.state == FAILED
    assert description in status.error and code in status.error
    assert status.permanent is permanent
    # A resubmit must start a new task, not get this failed one back.
    assert job.memo["submission_id"] is None and job.memo["task_id"] is None
    assert adapter.verify(job, TASK_ID) is False


def test_an_inactive_task_fails_and_is_cancelled(adapter: GlobusAdapter, job):
    task(
        "INACTIVE",
        nice_status="AUTH",
        nice_status_short_description="Credentials for the destination expired",
    ).add()
    cancel = get_response_set(TransferClient.cancel_task).lookup("default")
    RegisteredResponse(
        service="transfer", method="POST", path=f"/v0.10/task/{TASK_ID}/cancel", json=cancel.json
    ).add()

    status = adapter.status(job, TASK_ID)
    assert (status.state, status.permanent) == (FAILED, True)
    assert "Credentials for the destination expired" in status.error
    assert len(calls_to(f"/task/{TASK_ID}/cancel", "POST")) == 1


def test_a_globus_outage_while_following_a_task_is_transient(adapter: GlobusAdapter, job):
    RegisteredResponse(
        service="transfer",
        path=f"/v0.10/task/{TASK_ID}",
        status=502,
        json={"code": "ServiceUnavailable", "message": "Try again later"},
    ).add()
    with pytest.raises(AdapterError, match="Try again later") as raised:
        adapter.status(job, TASK_ID)
    assert not raised.value.permanent


def test_cancel_calls_cancel_task(adapter: GlobusAdapter, job):
    canned = load_response(TransferClient.cancel_task)
    task_id = canned.metadata["task_id"]
    adapter.cancel(job, task_id)
    assert len(calls_to(f"/v0.10/task/{task_id}/cancel", "POST")) == 1


# Activation and preflight -------------------------------------------------------------------


def test_activation_succeeds_when_the_collection_lists_the_path(adapter: GlobusAdapter):
    ls_answer().add()
    assert adapter.activation(None).code == ALREADY_ACTIVATED
    (listing,) = calls_to(f"/operation/endpoint/{COLLECTION}/ls")
    assert parse_qs(urlparse(listing.url).query)["path"] == [BASE]


def test_activation_names_a_missing_consent_and_its_scope(adapter: GlobusAdapter):
    ls_answer(
        403,
        code="ConsentRequired",
        message="Missing required data_access consent",
        request_id="abc",
        required_scopes=[DATA_ACCESS],
        authorization_parameters={"session_message": "Missing required data_access consent"},
    ).add()
    activation = adapter.activation(None)
    assert activation.code == ACTIVATION_FAILED
    assert "consent_required" in activation.message
    assert DATA_ACCESS in activation.message


def test_activation_reports_any_other_refusal(adapter: GlobusAdapter):
    ls_answer(
        403,
        code="EndpointPermissionDenied",
        message="Denied by endpoint, Error (list)\nEndpoint: x\nDetails: 500 Path not allowed.",
    ).add()
    activation = adapter.activation(None)
    assert activation.code == ACTIVATION_FAILED
    assert "Denied by endpoint" in activation.message
    assert "EndpointPermissionDenied" in activation.message


def test_activate_keeps_and_sends_no_password(adapter: GlobusAdapter):
    ls_answer().add()
    assert adapter.activate("alice", "hunter2-secret") is None
    for call in responses.calls:
        request = call.request
        assert "hunter2-secret" not in f"{request.url} {request.body} {dict(request.headers)}"


def test_activate_refuses_without_consent(adapter: GlobusAdapter):
    ls_answer(403, code="ConsentRequired", message="consent", required_scopes=[DATA_ACCESS]).add()
    with pytest.raises(AdapterError, match="consent_required") as raised:
        adapter.activate("alice", "pw")
    assert raised.value.permanent


def test_check_reports_each_step(adapter: GlobusAdapter):
    load_response(TransferClient.get_endpoint)
    RegisteredResponse(
        service="transfer",
        method="POST",
        path=f"/v0.10/operation/endpoint/{COLLECTION}/mkdir",
        status=502,
        json={"code": "ExternalError.MkdirFailed.Exists", "message": "Path already exists"},
    ).add()
    load_response(TransferClient.operation_mkdir)  # the probe directory is new

    checks = {check.name: check for check in adapter.check(None)}
    assert list(checks) == [
        "reachable",
        "authenticated",
        "collection found",
        "writable",
        "free space",
    ]
    assert all(check.ok for check in checks.values())
    assert checks["collection found"].detail == "myserver"
    assert "created" in checks["writable"].detail
    assert "unknown" in checks["free space"].detail
    made = [json.loads(request.body)["path"] for request in calls_to("/mkdir", "POST")]
    assert made == [BASE, f"{BASE}/.dataflow-lite-probe"]


def test_check_says_when_globus_cannot_be_reached(adapter: GlobusAdapter):
    responses.replace(responses.POST, TOKEN_URL, body=requests.ConnectionError("no route"))
    checks = adapter.check(None)
    assert [(check.name, check.ok) for check in checks] == [("reachable", False)]
    assert "could not be reached" in checks[0].detail


def test_check_stops_at_the_first_failing_step(instance: Path):
    responses.replace(responses.POST, TOKEN_URL, status=401, json={"error": "invalid_client"})
    assert [(c.name, c.ok) for c in make_adapter(instance).check(None)] == [
        ("reachable", True),
        ("authenticated", False),
    ]
    unconfigured = make_adapter(instance, client_secret="").check(None)
    assert [(c.name, c.ok) for c in unconfigured] == [("configured", False)]
    assert "globus_client_secret" in unconfigured[0].detail


def test_check_reports_a_missing_collection(adapter: GlobusAdapter):
    RegisteredResponse(
        service="transfer",
        path=f"/v0.10/endpoint/{COLLECTION}",
        status=404,
        json={"code": "EndpointNotFound", "message": f"No such endpoint: {COLLECTION}"},
    ).add()
    checks = adapter.check(None)
    assert [(c.name, c.ok) for c in checks] == [
        ("reachable", True),
        ("authenticated", True),
        ("collection found", False),
    ]
    assert "No such endpoint" in checks[-1].detail


# metadata.json, locate, options, registration -----------------------------------------------


def test_write_file_stages_the_content_and_submits_a_task(adapter: GlobusAdapter, instance):
    load_response(TransferClient.get_submission_id)
    load_response(TransferClient.submit_transfer)
    target = PurePosixPath("2024/sample-1/metadata.json")
    adapter.write_file(target, b'{"v": 1}', None)
    adapter.write_file(target, b'{"v": 2}', None)

    (staged,) = (instance / "staging" / "globus-metadata").iterdir()  # one file per target
    assert staged.read_bytes() == b'{"v": 2}'
    assert stat.S_IMODE(staged.stat().st_mode) == 0o644
    bodies = transfer_bodies()
    assert len(bodies) == 2
    for body in bodies:
        assert (body["sync_level"], body["verify_checksum"]) == (3, True)
        (item,) = body["DATA"]
        assert item["source_path"] == f"/staging/globus-metadata/{staged.name}"
        assert item["destination_path"] == f"{BASE}/2024/sample-1/metadata.json"
        assert "external_checksum" not in item  # a newer rewrite may replace the staged copy


def test_locate_gives_a_globus_url(adapter: GlobusAdapter):
    assert adapter.locate(PurePosixPath("2024/a.csv")) == f"globus://{COLLECTION}{BASE}/2024/a.csv"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"collection": "not-a-uuid", "path": "/data"}, "is not a Globus collection UUID"),
        ({"collection": COLLECTION, "path": "data"}, "must be absolute"),
        ({"collection": COLLECTION, "path": "/data/../etc"}, "without '..'"),
        ({"collection": COLLECTION}, "needs --path"),
    ],
)
def test_bad_endpoint_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        GlobusAdapter.check_options(options)


def test_the_adapter_is_installed_with_its_settings():
    assert discover_adapters()["globus"] is GlobusAdapter
    settings = {s.name: s for s in adapter_settings({"globus": GlobusAdapter})}
    assert {name: (s.type, s.default) for name, s in settings.items()} == {
        "globus_client_id": (str, ""),
        "globus_client_secret": (str, ""),
        "globus_source_collection": (str, ""),
        "globus_source_path": (str, "/"),
        "globus_checksum_algorithm": (str, "SHA256"),
    }
    assert all(s.help for s in settings.values())


def test_cancelling_a_transfer_through_the_queue_cancels_its_task(tmp_path: Path):
    rt = bootstrap.build(
        tmp_path / "queue-instance",
        {
            "globus_client_id": "7e1f0000-0000-4000-8000-00000000c11e",
            "globus_client_secret": "s3cret",
            "globus_source_collection": SOURCE,
        },
    )
    task_id = load_response(TransferClient.cancel_task).metadata["task_id"]
    with session_scope(rt.engine) as session:
        user = User(username="globus")
        session.add(user)
        options = GlobusAdapter.check_options({"collection": COLLECTION, "path": BASE})
        session.add(Endpoint(id=COLLECTION, name="hpc", adapter="globus", options=options))
        session.flush()
        dataset = Dataset(name="d", creator_id=user.id or 0, endpoint_id=COLLECTION, folder="a/b/c")
        session.add(dataset)
        session.flush()
        running = Transfer(
            dataset_id=dataset.id or 0,
            endpoint_id=COLLECTION,
            user_id=user.id or 0,
            adapter="globus",
            state="running",
            handle=task_id,
            memo={"submission_id": SUBMISSION_ID, "task_id": task_id},
        )
        session.add(running)
        session.flush()
        transfer_id = running.id or 0

    assert rt.queue.cancel(transfer_id)

    assert len(calls_to(f"/v0.10/task/{task_id}/cancel", "POST")) == 1
    with session_scope(rt.engine, write=False) as session:
        cancelled = session.get(Transfer, transfer_id)
        assert cancelled is not None
        assert (cancelled.state, cancelled.last_error) == ("failed", "cancelled")
        # A retry submits a new task: the cancelled one's submission id would only return it.
        assert (cancelled.handle, cancelled.memo) == (None, {})


def test_a_batch_is_one_task_and_a_file_already_there_fails_alone(adapter: GlobusAdapter, job):
    staged = Path(adapter.context.staging_dir)
    jobs = []
    for n in range(3):
        (staged / f"upload-{n}.part").write_bytes(b"frame\n")
        each = new_job(staged / f"upload-{n}.part", {})
        each.target = PurePosixPath(f"2024/sample-1/frame{n}.tif")
        jobs.append(each)
    # The second file's target is taken: its lookup finds something there.
    stat_path = f"/v0.10/operation/endpoint/{COLLECTION}/stat"
    missing = get_response_set(TransferClient.operation_stat).lookup("not_found")
    found = get_response_set(TransferClient.operation_stat).lookup("default")
    for answer in (missing, found, missing):
        responses.add(responses.GET, missing.full_url, status=answer.status, json=answer.json)
    load_response(TransferClient.get_submission_id)
    load_response(TransferClient.submit_transfer)

    outcomes = adapter.submit_batch(jobs)

    assert outcomes[0] == outcomes[2] == TASK_ID
    assert isinstance(outcomes[1], DestinationExists)
    assert len(calls_to(stat_path.removeprefix("/v0.10"))) == 3
    (body,) = transfer_bodies()
    assert [item["destination_path"] for item in body["DATA"]] == [
        f"{BASE}/2024/sample-1/frame0.tif",
        f"{BASE}/2024/sample-1/frame2.tif",
    ]
    assert jobs[0].memo["submission_id"] == jobs[2].memo["submission_id"] == SUBMISSION_ID

    load_response(task("SUCCEEDED"))
    kept = [jobs[0], jobs[2]]
    assert [s.state for s in adapter.status_batch(kept, [TASK_ID] * 2)] == [DONE, DONE]
    assert adapter.verify_batch(kept, [TASK_ID] * 2) == [True, True]
    assert len(calls_to(f"/task/{TASK_ID}")) == 2, "one look per task, not per file"
