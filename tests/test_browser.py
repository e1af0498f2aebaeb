"""The web pages in a real Chromium (Playwright) against the real server (``dataflow-lite serve``).

Each test drives the pages as a person would and checks what they see or get: text on the page,
a key that works with ordflow, bytes at the destination. Screenshots of the main pages go to
``test-output/screenshots/``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from ordflow import API
from playwright.sync_api import Page, expect

from .conftest import LiveServer, start_server, stop_server, wait_for_transfers

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output" / "screenshots"
PASSWORD = "correct horse battery"
# Refused requests that the tests cause on purpose (a rejected form, a refused upload, a
# network cut).
EXPECTED_FAILURE = re.compile(
    r"Failed to load resource: (the server responded with a status of (4|503)"
    r"|net::ERR_INTERNET_DISCONNECTED)"
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.server,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
    ),
]


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict:
    """Debian's Chromium, headless, with the flags a root container needs; never a download."""
    return {
        "executable_path": str(CHROMIUM),
        "headless": True,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
        ],
    }


@pytest.fixture(scope="session")
def browser_context_args() -> dict:
    return {"viewport": {"width": 1280, "height": 900}, "locale": "en-GB"}


@pytest.fixture
def page(page: Page) -> Page:
    """A page whose script errors and refused loads fail the test (no CSP or 404 surprises)."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if message.type == "error" and not EXPECTED_FAILURE.search(message.text)
            else None
        ),
    )
    page.set_default_timeout(15_000)
    yield page
    assert problems == []


def shot(page: Page, name: str, *, full_page: bool = True) -> None:
    """Save a screenshot of the page as test-output/screenshots/NAME.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def focus_ring(page: Page) -> str:
    """The outline of the focused element (or of the label of a hidden file input)."""
    return page.evaluate(
        """() => {
            let el = document.activeElement;
            if (el.type === 'file' && el.labels.length) el = el.labels[0];
            const style = getComputedStyle(el);
            return style.outlineStyle === 'none' ? 'none' : style.outlineWidth;
        }"""
    )


def unlabelled_fields(page: Page) -> list[str]:
    """Form fields a screen reader would announce without a name."""
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('input, select, textarea'))
            .filter(el => el.type !== 'hidden')
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                          && !el.getAttribute('aria-labelledby'))
            .map(el => el.outerHTML)"""
    )


def no_horizontal_scroll(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def add_user(cli, username: str, *, admin: bool = False) -> None:
    cli("user", "add", username, "--name", username.title(), "--password-stdin",
        *(["--admin"] if admin else []), input=PASSWORD + "\n")  # fmt: skip


def log_in(page: Page, server: LiveServer, username: str) -> None:
    page.goto(server.url + "/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name=re.compile("^(My|All) datasets$"))).to_be_visible()


def admin_tab(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Administration").get_by_role("link", name=name).click()


def test_log_in_create_a_key_in_the_page_and_use_it_with_ordflow(page: Page, live_server, cli):
    add_user(cli, "ada")
    page.goto(live_server.url + "/")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    assert unlabelled_fields(page) == []
    shot(page, "login")
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill("not her password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="My datasets")).to_be_visible()

    page.get_by_role("link", name="My account").click()
    page.get_by_label("Name what the key is for").fill("notebook")
    page.get_by_role("button", name="Create a key").click()
    expect(page.get_by_text("Copy it now: it will not be shown again.")).to_be_visible()
    key = page.get_by_label("New API key").input_value()
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert unlabelled_fields(page) == []
    shot(page, "account")

    api = API(key, server_url=live_server.api)
    settings = api.settings_get()
    assert settings["transport"] == {"protocol": "local"}
    created = api.dataset_create("made with the new key", metadata={"Sample": "PZT"})
    assert created["creator"]["name"] == "Ada"

    page.reload()  # the key is never shown again
    expect(page.get_by_label("New API key")).to_have_count(0)
    assert key not in page.content()
    expect(page.get_by_role("row", name=re.compile("notebook"))).to_contain_text("active")


def test_the_wizard_rejects_then_creates_and_prefills_the_next_dataset(
    page: Page, live_server, cli
):
    add_user(cli, "ada")
    ident = str(cli.json("instrument", "add", "Asylum Cypher", "--type", "AFM")["id"])
    cli("instrument", "field", ident, "Temperature", "--type", "number", "--required",
        "--unit", "K", "--persist")  # fmt: skip
    cli("instrument", "field", ident, "Mode", "--choice", "AC", "--choice", "contact", "--required")
    cli("instrument", "field", ident, "Scans", "--type", "integer")
    cli("instrument", "field", ident, "Operator", "--persist")
    log_in(page, live_server, "ada")

    page.get_by_role("link", name="New dataset").first.click()
    page.get_by_label("Instrument").select_option(label="Asylum Cypher (AFM)")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="New dataset on Asylum Cypher")).to_be_visible()
    expect(page.get_by_label("Temperature (K) (required)")).to_have_attribute("type", "number")
    expect(page.get_by_label("Scans")).to_have_attribute("step", "1")
    page.get_by_label("Title").fill("PZT film, first scan")
    page.get_by_label("Mode (required)").select_option("contact")
    page.get_by_label("Operator").fill("Ada Lovelace")
    page.get_by_label("Name of extra field 1").fill("Microscope-Vendor")
    page.get_by_label("Value of extra field 1").fill("Asylum Research")
    page.get_by_role("button", name="Create the dataset and add files").click()

    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("The dataset was not created")
    expect(alert).to_contain_text("Correct the marked field: Temperature.")
    expect(page.get_by_text("Temperature: is required")).to_have_count(1)  # beside its field
    expect(page.get_by_text("kept from your last dataset")).to_have_count(0)  # nothing kept yet
    expect(page.get_by_label("Temperature (K) (required)")).to_have_attribute(
        "aria-invalid", "true"
    )
    expect(page.get_by_label("Operator")).to_have_value("Ada Lovelace")  # kept
    expect(page.get_by_label("Mode (required)")).to_have_value("contact")
    assert unlabelled_fields(page) == []
    shot(page, "wizard-rejected")

    page.get_by_label("Temperature (K) (required)").fill("373.5")
    page.get_by_role("button", name="Create the dataset and add files").click()
    expect(page.get_by_role("heading", name="Add files to PZT film, first scan")).to_be_visible()
    expect(page.get_by_role("status").first).to_contain_text("is created: add its files")

    page.get_by_role("link", name="New dataset").first.click()
    page.get_by_label("Instrument").select_option(label="Asylum Cypher (AFM)")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_label(re.compile(r"^Temperature"))).to_have_value("373.5")
    expect(page.get_by_text("kept from your last dataset")).to_have_count(
        2
    )  # Temperature, Operator
    expect(page.get_by_label("Operator")).to_have_value("Ada Lovelace")
    expect(page.get_by_label("Mode (required)")).to_have_value("")  # not a persisting field
    shot(page, "wizard-prefilled")

    key = cli("key", "create", "ada").strip()
    found = API(key, server_url=live_server.api).dataset_search("PZT")
    values = {
        v["field_name"]: v["field_value"] for v in found["results"][0]["metadata_field_values"]
    }
    assert values == {
        "Temperature": "373.5",
        "Mode": "contact",
        "Operator": "Ada Lovelace",
        "Microscope-Vendor": "Asylum Research",
    }


def make_folder(root: Path) -> dict[str, bytes]:
    files = {
        "run42/notes.txt": b"first pass, tip 3\n",
        "run42/raw/scan_001.ibw": os.urandom(300_000),
        "run42/raw/deeper/scan_002.ibw": os.urandom(120_000),
    }
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)
    return files


def test_a_folder_upload_reaches_100_percent_and_lands_at_the_destination(
    page: Page, live_server, cli, tmp_path: Path
):
    add_user(cli, "ada")
    key = cli("key", "create", "ada").strip()
    api = API(key, server_url=live_server.api)
    dataset = api.dataset_create("Folder upload", metadata={"Sample": "BTO"})
    files = make_folder(tmp_path / "picked")
    log_in(page, live_server, "ada")

    page.goto(f"{live_server.url}/datasets/{dataset['id']}/upload")
    assert unlabelled_fields(page) == []
    page.locator("#folder-input").set_input_files(tmp_path / "picked" / "run42")
    expect(page.locator("#overall-percent")).to_have_text("100 %")
    expect(page.get_by_role("status").last).to_have_text(
        "3 of 3 files uploaded: all files are uploaded."
    )
    transfers = wait_for_transfers(live_server.api, key, dataset["id"])
    assert {t["state"] for t in transfers} == {"done"}
    for row in page.locator("#upload-list tr").all():
        expect(row.locator(".transfer-cell")).to_have_text("done")
    shot(page, "upload-done")

    page.get_by_role("link", name="See the dataset").click()
    expect(page.get_by_role("heading", name="Files (3 files, 410.2 KiB)")).to_be_visible()
    for relative, content in files.items():
        row = page.locator(f'tr[data-path="{relative}"]')
        expect(row).to_contain_text(hashlib.sha256(content).hexdigest())
        expect(row).to_contain_text("done")
    destination = Path(page.locator("#destination").inner_text())
    for relative, content in files.items():
        assert (destination / relative).read_bytes() == content
    shot(page, "dataset")


def test_a_throttled_upload_shows_its_progress_move_and_warns_before_leaving(
    page: Page, live_server, cli, tmp_path: Path
):
    add_user(cli, "ada")
    key = cli("key", "create", "ada").strip()
    dataset = API(key, server_url=live_server.api).dataset_create("Slow link")
    big = tmp_path / "spectrum.dat"
    big.write_bytes(os.urandom(800_000))
    log_in(page, live_server, "ada")
    page.goto(f"{live_server.url}/datasets/{dataset['id']}/upload")

    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        # 10 s for the 800 kB: the checks, the screenshot and the close below all happen while
        # it is under way, on a busy machine too.
        {"offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": 80_000},
    )
    page.locator("#file-input").set_input_files(big)
    expect(page.locator("#overall-percent")).to_have_text(re.compile(r"^([1-9]|[1-9][0-9]) %$"))
    expect(page.locator("#overall-speed")).to_have_text(re.compile(r"(KiB|MiB)/s$"))
    expect(page.locator("#overall-eta")).to_have_text(re.compile(r"^about .* left$"))
    shot(page, "upload-progress")

    page.locator("h1").click()  # a user gesture: browsers ask before leaving only after one
    dialogs: list[str] = []

    def dismiss(dialog) -> None:
        dialogs.append(dialog.type)
        dialog.dismiss()

    page.on("dialog", dismiss)
    page.close(run_before_unload=True)
    expect(page.locator("#overall-percent")).to_have_text("100 %", timeout=120_000)
    assert dialogs == ["beforeunload"]
    transfers = wait_for_transfers(live_server.api, key, dataset["id"])
    assert [t["state"] for t in transfers if t["kind"] == "file"] == ["done"]


def tus_filename(upload_metadata: str) -> str:
    """The ``filename`` of a tus ``Upload-Metadata`` header."""
    pairs = dict(item.strip().partition(" ")[::2] for item in upload_metadata.split(","))
    return base64.b64decode(pairs["filename"]).decode()


def server_offset(server: LiveServer, key: str, location: str) -> int:
    """Where the server says a tus upload stands (HEAD with the user's API key)."""
    answer = requests.head(
        server.url + location,
        headers={"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.status_code
    return int(answer.headers["Upload-Offset"])


def wait_for_offset(server: LiveServer, key: str, location: str, seconds: float = 60) -> int:
    """The server's offset once it is past 0 (a cut connection is noticed a moment later)."""
    deadline = time.monotonic() + seconds
    while (offset := server_offset(server, key, location)) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    return offset


class TusTraffic:
    """The page's tus requests as the browser sent them, and each upload's address by file."""

    def __init__(self, page: Page) -> None:
        self.requests: list[tuple[str, str, str | None]] = []  # method, url, Upload-Offset
        self.locations: dict[str, str] = {}
        page.on("request", self._request)
        page.on("response", self._response)

    def _request(self, request) -> None:
        if "/api/v1/uploads/" in request.url:
            self.requests.append(
                (request.method, request.url, request.headers.get("upload-offset"))
            )

    def _response(self, response) -> None:
        request = response.request
        if request.method == "POST" and "/api/v1/uploads/" in request.url:
            filename = tus_filename(request.headers["upload-metadata"])
            self.locations[filename] = response.headers["location"]

    def count(self, method: str) -> int:
        return sum(1 for sent, _, _ in self.requests if sent == method)

    def patch_offsets(self) -> list[int]:
        return [int(offset or 0) for sent, _, offset in self.requests if sent == "PATCH"]


class Network:
    """The page's network as DevTools emulates it: upload speed, and cut off or back.

    One DevTools session for both: Chromium fails the requests in flight when it goes offline
    (net::ERR_INTERNET_DISCONNECTED) and tells the page (``navigator.onLine``, ``online``).
    """

    def __init__(self, page: Page) -> None:
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Network.enable")

    def set(self, *, upload_bytes_per_second: int = -1, offline: bool = False) -> None:
        self.cdp.send(
            "Network.emulateNetworkConditions",
            {"offline": offline, "latency": 0, "downloadThroughput": -1,
             "uploadThroughput": upload_bytes_per_second},
        )  # fmt: skip


SENT_A_FIFTH = re.compile(r"^([2-9][0-9]) %$")


def send_and_drop(request, body: bytes, length: int) -> None:
    """Send the server the first bytes (``body``) of the browser's PATCH ``request`` of
    ``length`` bytes, then drop the line.

    DevTools' emulated slow uploads hand the whole body over at once when the network goes, so
    the server would never see a cut; a socket of our own, closed after ``body``, is one.
    """
    headers = request.all_headers()
    url = urlsplit(request.url)
    lines = [f"PATCH {url.path} HTTP/1.1", f"Host: {url.netloc}"]
    for name in ("cookie", "x-csrftoken", "tus-resumable", "upload-offset", "content-type"):
        lines.append(f"{name}: {headers[name]}")
    lines.append(f"content-length: {length}")
    with socket.create_connection((url.hostname, url.port), timeout=10) as line:
        line.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)


def test_a_network_cut_mid_file_resumes_where_the_server_stopped(
    page: Page, live_server, cli, tmp_path: Path
):
    add_user(cli, "ada")
    key = cli("key", "create", "ada").strip()
    dataset = API(key, server_url=live_server.api).dataset_create("Flaky link")
    content = os.urandom(3_000_000)
    (tmp_path / "frames.raw").write_bytes(content)
    log_in(page, live_server, "ada")
    page.goto(f"{live_server.url}/datasets/{dataset['id']}/upload")
    traffic = TusTraffic(page)
    cuts: list[int] = []

    def cut_the_first_patch(route) -> None:
        if route.request.method != "PATCH" or cuts:
            route.continue_()
            return
        cuts.append(len(content) // 3)
        send_and_drop(route.request, content[: cuts[0]], len(content))
        page.context.set_offline(True)  # the network goes down as the request is cut
        route.abort("internetdisconnected")

    page.route(re.compile(r"/api/v1/uploads/"), cut_the_first_patch)
    page.locator("#file-input").set_input_files(tmp_path / "frames.raw")
    row = page.locator('tr[data-path="frames.raw"]')
    expect(row).to_contain_text("the network is down", timeout=60_000)
    expect(page.get_by_role("button", name="Retry frames.raw")).to_be_visible()
    before = wait_for_offset(live_server, key, traffic.locations["frames.raw"])
    assert before == cuts[0]  # the server kept what arrived

    page.context.set_offline(False)  # back: the page goes on by itself
    expect(page.get_by_role("status").last).to_have_text(
        "1 of 1 file uploaded: all files are uploaded.", timeout=60_000
    )
    assert traffic.count("POST") == 1  # the same upload went on: not created again
    assert traffic.patch_offsets() == [0, before]  # resumed at the server's offset, once
    transfers = wait_for_transfers(live_server.api, key, dataset["id"])
    assert [t["state"] for t in transfers if t["kind"] == "file"] == ["done"]
    found = API(key, server_url=live_server.api).dataset_info(dataset["id"])
    assert (Path(found["destination"]) / "frames.raw").read_bytes() == content


def test_a_reload_mid_file_resumes_once_the_file_is_picked_again(
    page: Page, live_server, cli, tmp_path: Path
):
    add_user(cli, "ada")
    key = cli("key", "create", "ada").strip()
    dataset = API(key, server_url=live_server.api).dataset_create("Reloaded")
    content = os.urandom(3_000_000)
    picked = tmp_path / "run7" / "spectra.h5"
    picked.parent.mkdir()
    picked.write_bytes(content)
    log_in(page, live_server, "ada")
    page.goto(f"{live_server.url}/datasets/{dataset['id']}/upload")
    page.on("dialog", lambda dialog: dialog.accept())  # "leave the page?": yes
    traffic = TusTraffic(page)
    network = Network(page)
    network.set(upload_bytes_per_second=250_000)
    page.locator("#folder-input").set_input_files(tmp_path / "run7")
    row = page.locator('tr[data-path="run7/spectra.h5"]')
    expect(row.locator(".percent")).to_have_text(SENT_A_FIFTH, timeout=60_000)

    page.reload()
    before = wait_for_offset(live_server, key, traffic.locations["spectra.h5"])
    assert 0 < before < len(content)
    network.set()
    page.locator("#folder-input").set_input_files(tmp_path / "run7")
    expect(page.get_by_role("status").last).to_have_text(
        "1 of 1 file uploaded: all files are uploaded.", timeout=60_000
    )
    assert traffic.count("POST") == 1
    assert traffic.patch_offsets()[-1] == before
    wait_for_transfers(live_server.api, key, dataset["id"])
    destination = Path(
        API(key, server_url=live_server.api).dataset_info(dataset["id"])["destination"]
    )
    assert (destination / "run7" / "spectra.h5").read_bytes() == content


def test_a_failed_file_is_retried_alone_and_resumes(page: Page, live_server, cli, tmp_path: Path):
    add_user(cli, "ada")
    key = cli("key", "create", "ada").strip()
    dataset = API(key, server_url=live_server.api).dataset_create("Retry")
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(f"content of {name}\n")
    log_in(page, live_server, "ada")
    page.goto(f"{live_server.url}/datasets/{dataset['id']}/upload")
    traffic = TusTraffic(page)
    busy = {"on": True}

    def b_is_busy(route) -> None:
        location = traffic.locations.get("b.txt")
        request = route.request
        if busy["on"] and location and request.method == "PATCH" and request.url.endswith(location):
            route.fulfill(status=503, json={"message": "the server is busy"})
        else:
            route.continue_()

    page.route(re.compile(r"/api/v1/uploads/"), b_is_busy)
    page.locator("#file-input").set_input_files([tmp_path / "a.txt", tmp_path / "b.txt"])
    row_b = page.locator('tr[data-path="b.txt"]')
    # tus-js-client tries again by itself a few times (10 s in all) before the page says so.
    expect(row_b).to_contain_text("failed: the server is busy", timeout=60_000)
    expect(page.locator('tr[data-path="a.txt"]')).to_contain_text("uploaded")
    expect(page.get_by_role("status").last).to_have_text("1 of 2 files uploaded, 1 failed")
    busy["on"] = False
    page.get_by_role("button", name="Retry b.txt").click()
    expect(page.get_by_role("status").last).to_have_text(
        "2 of 2 files uploaded: all files are uploaded."
    )
    assert traffic.count("POST") == 2  # b's retry went on with its upload, not a new one
    found = API(key, server_url=live_server.api).dataset_info(dataset["id"])
    assert sorted(f["name"] for f in found["dataset_files"]) == ["a.txt", "b.txt"]


def test_a_file_already_there_offers_no_retry_and_the_page_leads_on(
    page: Page, live_server, cli, tmp_path: Path
):
    add_user(cli, "ada")
    key = cli("key", "create", "ada").strip()
    api = API(key, server_url=live_server.api)
    dataset = api.dataset_create("Twice")
    for name in ("a.txt", "c.txt"):
        (tmp_path / name).write_text(f"content of {name}\n")
    api.file_upload(str(tmp_path / "a.txt"), dataset["id"])
    log_in(page, live_server, "ada")
    page.goto(f"{live_server.url}/datasets/{dataset['id']}/upload")
    expect(page.locator("#file-count")).to_have_text("1 file")
    expect(page.get_by_role("link", name="Go to the dataset")).to_be_hidden()
    page.locator("#file-input").set_input_files([tmp_path / "a.txt", tmp_path / "c.txt"])

    row_a = page.locator('tr[data-path="a.txt"]')
    expect(row_a).to_contain_text(
        f"not uploaded: dataset {dataset['id']} already has a.txt: nothing was overwritten"
    )
    expect(page.get_by_role("button", name="Retry a.txt")).to_be_hidden()
    expect(page.get_by_role("status").last).to_have_text("1 of 2 files uploaded, 1 failed")
    expect(page.locator("#file-count")).to_have_text("2 files")  # c.txt counted as it landed
    expect(page.locator('tr[data-path="c.txt"] .transfer-cell')).to_have_text("done")
    shot(page, "upload-conflict")
    page.get_by_role("link", name="Go to the dataset").click()
    expect(page.get_by_role("heading", name="Files (2 files, 34 bytes)")).to_be_visible()


def test_search_and_the_dataset_page(page: Page, live_server, cli, tmp_path: Path):
    add_user(cli, "ada")
    key = cli("key", "create", "ada").strip()
    api = API(key, server_url=live_server.api)
    pzt = api.dataset_create(
        "Atomic force microscopy scan of PZT",
        metadata={"Sample": "PZT", "Microscope": {"Vendor": "Asylum Research", "Model": "MFP3D"}},
    )
    api.dataset_create("Raman map of BTO", metadata={"Sample": "BTO"})
    api.dataset_create("Dark frame", metadata={})
    (tmp_path / "AFM_Topography.PNG").write_bytes(b"\x89PNG fake image")
    api.file_upload(str(tmp_path / "AFM_Topography.PNG"), pzt["id"])
    wait_for_transfers(live_server.api, key, pzt["id"])
    log_in(page, live_server, "ada")

    expect(page.locator("#result-count")).to_have_text("3 datasets.")
    expect(page.locator("table.datasets tbody tr").first).to_contain_text("Dark frame")  # newest
    shot(page, "datasets")
    page.get_by_label("Search datasets").fill("asylum")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#result-count")).to_have_text("1 dataset matches “asylum”.")
    page.get_by_label("Search datasets").fill(pzt["created_at"][:10])
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#result-count")).to_contain_text("3 datasets match")
    page.get_by_label("Search datasets").fill("AFM_Topography")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="Atomic force microscopy scan of PZT").click()

    metadata = page.locator("dl.metadata").first
    expect(metadata).to_contain_text("Sample")
    vendor = page.locator("dl.metadata .group dl.metadata")
    expect(vendor).to_contain_text("Vendor")
    expect(vendor).to_contain_text("Asylum Research")
    expect(page.locator('tr[data-path="AFM_Topography.PNG"]')).to_contain_text("15 bytes")
    destination = Path(page.locator("#destination").inner_text())
    assert (destination / "AFM_Topography.PNG").read_bytes() == b"\x89PNG fake image"

    page.set_viewport_size({"width": 390, "height": 844})
    assert no_horizontal_scroll(page)
    shot(page, "dataset-narrow")
    page.goto(live_server.url + "/datasets")
    assert no_horizontal_scroll(page)


def test_the_dataset_page_follows_its_transfers_without_a_reload(
    page: Page, instance: Path, cli, tmp_path: Path
):
    server = start_server(instance, tmp_path / "server.log", "--no-transfer-worker")
    worker = None
    try:
        add_user(cli, "ada")
        key = cli("key", "create", "ada").strip()
        api = API(key, server_url=server.api)
        dataset = api.dataset_create("Waiting scan", metadata={})
        (tmp_path / "frame.tif").write_bytes(b"frame bytes")
        api.file_upload(str(tmp_path / "frame.tif"), dataset["id"])
        log_in(page, server, "ada")
        page.goto(f"{server.url}/datasets/{dataset['id']}")
        row = page.locator('tr[data-path="frame.tif"]')
        expect(row.locator(".badge")).to_have_text("queued")  # no worker runs yet
        page.evaluate("window.notReloaded = true")

        worker = subprocess.Popen(
            [sys.executable, "-m", "dataflow_lite", "--instance", str(instance), "worker"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        ended = re.compile(r"^\s*(done|failed|cancelled)\s*$")
        expect(row.locator(".badge")).to_have_text(ended, timeout=60_000)
        assert row.locator(".transfer-cell").inner_text().strip() == "done"  # else: its error
        expect(row.get_by_role("link", name="frame.tif")).to_be_visible()  # now downloadable
        assert page.evaluate("window.notReloaded") is True  # redrawn in place
        expect(page.locator("section#files")).not_to_have_attribute("data-moving", "")
    finally:
        if worker is not None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(10)
        stop_server(server)


def test_an_admin_adds_an_instrument_and_a_field_that_users_then_fill(
    page: Page, live_server, cli, browser
):
    add_user(cli, "root", admin=True)
    add_user(cli, "ada")
    log_in(page, live_server, "root")
    page.get_by_role("link", name="Admin").click()
    expect(page.get_by_role("heading", name="Users")).to_be_visible()
    expect(page.locator("#user-ada")).to_contain_text("password set")
    assert unlabelled_fields(page) == []
    shot(page, "admin-users")

    admin_tab(page, "Instruments")
    page.get_by_label("Name", exact=True).fill("Renishaw inVia")
    page.get_by_label("Type e.g. AFM").fill("Raman")
    page.get_by_role("button", name="Add the instrument").click()
    expect(page.get_by_role("heading", name="Renishaw inVia metadata form")).to_be_visible()

    page.get_by_label("Name - nests: Stage-Temperature").fill("Laser-Wavelength")
    page.get_by_label("Type", exact=True).select_option("number")
    page.get_by_label("Unit", exact=True).fill("nm")
    page.get_by_label("Choices one per line; blank: any value").fill("532\n633\n785")
    page.get_by_label("Required").check()
    page.get_by_role("button", name="Add the field").click()
    expect(page.get_by_role("status")).to_have_text("Field Laser-Wavelength is added.")
    page.get_by_label("Name - nests: Stage-Temperature").fill("Objective")
    page.get_by_label("Pre-fill from the previous dataset").check()
    page.get_by_role("button", name="Add the field").click()
    page.get_by_role("button", name="Move Objective up").click()
    expect(page.get_by_role("status")).to_have_text("Objective is moved up.")
    rows = page.locator("table.fields tbody tr")
    expect(rows.nth(0)).to_contain_text("Objective")
    expect(rows.nth(1)).to_contain_text("Laser-Wavelength")
    expect(
        page.get_by_role("button", name="Objective pre-filled from the previous dataset")
    ).to_have_attribute("aria-pressed", "true")
    assert unlabelled_fields(page) == []
    shot(page, "admin-instrument")

    admin_tab(page, "Endpoints")
    expect(page.locator(".checks").first).to_contain_text("ok reachable")
    shot(page, "admin-endpoints")
    admin_tab(page, "Transfers")
    expect(page.get_by_role("heading", name="Transfers")).to_be_visible()

    user = browser.new_page()
    try:
        log_in(user, live_server, "ada")
        user.get_by_role("link", name="Admin").wait_for(state="detached")
        user.goto(live_server.url + "/admin/users")
        expect(user.get_by_role("heading", name="Forbidden")).to_be_visible()
        user.goto(live_server.url + "/datasets/new")
        user.get_by_label("Instrument").select_option(label="Renishaw inVia (Raman)")
        user.get_by_role("button", name="Next").click()
        wavelength = user.get_by_label("Laser-Wavelength (nm) (required)")
        expect(wavelength.locator("option")).to_have_text(["— choose —", "532", "633", "785"])
        user.get_by_label("Title").fill("Raman of graphene")
        wavelength.select_option("633")
        user.get_by_role("button", name="Create the dataset and add files").click()
        expect(user.get_by_role("heading", name="Add files to Raman of graphene")).to_be_visible()
    finally:
        user.close()
    key = cli("key", "create", "ada").strip()
    found = API(key, server_url=live_server.api).dataset_search("graphene")
    assert found["results"][0]["metadata_field_values"][0]["field_value"] == "633"


def test_the_api_docs_page_shows_the_openapi_document(page: Page, live_server, cli):
    add_user(cli, "ada")
    log_in(page, live_server, "ada")
    page.get_by_role("link", name="API documentation").click()
    expect(page.locator("footer")).to_contain_text("dataflow-lite 0.1.0")
    expect(page.get_by_text("/api/v1/dataset-file-upload").first).to_be_visible()
    page.get_by_text("/api/v1/user-settings").first.click()
    page.get_by_role("button", name="Try it out").first.click()
    page.get_by_role("button", name="Execute").first.click()
    status = page.locator(".live-responses-table .response .response-col_status").first
    expect(status).to_have_text("200")  # the session answered, without a key
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "api-docs", full_page=False)
    outside = [
        url
        for url in page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
        if not url.startswith(live_server.url)
    ]
    assert outside == []  # nothing from a CDN
    assert requests.get(live_server.url + "/docs/api", timeout=10).status_code == 200


def test_the_pages_work_from_the_keyboard_with_a_visible_focus(page: Page, live_server, cli):
    add_user(cli, "ada")
    key = cli("key", "create", "ada").strip()
    dataset = API(key, server_url=live_server.api).dataset_create("Keyboard only")
    page.goto(live_server.url + "/login")
    expect(page.get_by_label("Username")).to_be_focused()  # the login form is ready to type
    assert focus_ring(page) == "3px"
    page.keyboard.type("ada")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="My datasets")).to_be_visible()

    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_text("Skip to content")
    assert focus_ring(page) == "3px"
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_text("dataflow-lite")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Datasets", exact=True)).to_be_focused()
    assert focus_ring(page) == "3px"

    page.goto(f"{live_server.url}/datasets/{dataset['id']}/upload")
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "file-input":
            break
    expect(page.locator("#file-input")).to_be_focused()  # the "Choose files" button, by Tab
    assert focus_ring(page) == "3px"
    page.keyboard.press("Tab")
    expect(page.locator("#folder-input")).to_be_focused()
    assert focus_ring(page) == "3px"
