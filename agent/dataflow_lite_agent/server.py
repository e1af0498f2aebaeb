"""The dataflow-lite server as the agent sees it: API v1 for datasets, tus for the bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import requests

from .bundles import Body

if TYPE_CHECKING:  # tuspy (and the aiohttp it imports) loads only once a large file needs it
    from tusclient.exceptions import TusCommunicationError
    from tusclient.uploader import Uploader

#: Bytes per PATCH: what one upload holds in memory at a time.
CHUNK = 8 << 20
TIMEOUT = 60


class AgentError(Exception):
    """Something a person must read; the agent says it in one line."""


class Unreachable(AgentError):
    """The server did not answer (down, or the network is): try again later."""


class Taken(AgentError):
    """The dataset has a file at that path, or an upload of it that is not this user's."""


@dataclass(frozen=True)
class FileOnServer:
    target: str
    sha256: str | None
    transfer_state: str | None


def _error(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} {response.text[:200]}"
    return f"{response.status_code} {body.get('message') or body}"


class Server:
    """One server, reached with one API key."""

    def __init__(self, url: str, key: str) -> None:
        # The address as ordflow takes it (ending in /api/v1) is the same server.
        self.url = url.rstrip("/").removesuffix("/api/v1")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AgentError(f"--server {url!r} is no server address: write it as http://host:8000")
        self.api = self.url + "/api/v1"
        self._headers = {"Authorization": f"Bearer {key}"}
        self._session = requests.Session()
        self._session.headers.update(self._headers)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._session.request(method, self.api + path, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as error:
            raise Unreachable(f"{self.url} did not answer: {error}") from error
        if response.status_code >= 500:
            raise Unreachable(f"{self.url} answered {_error(response)}")
        if not response.ok:
            raise AgentError(f"{method} {path}: {_error(response)}")
        return response.json()

    def create_dataset(self, name: str, instrument_id: int | None, metadata: dict[str, Any]) -> int:
        values = [{"field_name": k, "field_value": v} for k, v in flatten(metadata).items()]
        body = {
            "name": name,
            "instrument_id": instrument_id or 0,
            "metadata_field_values_attributes": values,
        }
        return int(self._call("POST", "/datasets", json=body)["id"])

    def dataset(self, dataset_id: int) -> dict[str, Any]:
        return dict(self._call("GET", f"/datasets/{dataset_id}"))

    def files(self, dataset_id: int) -> tuple[str, dict[str, FileOnServer]]:
        """The dataset's destination folder and its files by path inside the dataset."""
        dataset = self.dataset(dataset_id)
        found = {}
        for file in dataset["dataset_files"]:
            if file.get("is_directory"):
                continue
            target = "/".join(part for part in (file["relative_path"], file["name"]) if part)
            found[target] = FileOnServer(target, file.get("sha256"), file.get("transfer_state"))
        return dataset.get("destination") or "", found

    def uploader(
        self, source: str, dataset_id: int, target: str, url: str | None, stream: Any = None
    ) -> Uploader:
        """A tus upload of ``source`` as ``target``: resumed at ``url`` if given and alive;
        read from ``stream`` (a file-like object of ``source``) if given."""
        from tusclient.client import TusClient
        from tusclient.exceptions import TusCommunicationError

        folder, _, name = target.rpartition("/")
        client = TusClient(self.api + "/uploads/", headers=dict(self._headers))
        metadata = {"dataset_id": str(dataset_id), "relative_path": folder, "filename": name}
        reading = {"file_stream": stream} if stream is not None else {"file_path": source}
        try:
            return client.uploader(url=url, chunk_size=CHUNK, metadata=metadata, **reading)
        except TusCommunicationError as error:
            if url is not None and error.status_code in (403, 404, 410):
                # Expired or ended on the server: its bytes are gone, start again.
                return client.uploader(chunk_size=CHUNK, metadata=metadata, **reading)
            raise tus_error(self.url, error) from error

    def send_bundle(self, body: Body) -> tuple[int, dict[str, Any]]:
        """POST a bundle of small files; the status and the answer's JSON (a 409 names the
        paths that are taken in ``errors``)."""
        try:
            response = self._session.post(
                self.api + "/dataset-file-bundle",
                data=body,
                headers={"Content-Type": body.content_type},
                timeout=TIMEOUT,
            )
        except requests.RequestException as error:
            raise Unreachable(f"{self.url} did not answer: {error}") from error
        if response.status_code >= 500:
            raise Unreachable(f"{self.url} answered {_error(response)}")
        if response.status_code not in (201, 409):
            raise AgentError(f"POST /dataset-file-bundle: {_error(response)}")
        return response.status_code, dict(response.json())

    def create_upload(self, uploader: Uploader) -> str:
        """A new upload's URL, or that of this user's unfinished upload of the same path and
        length, which a 409 names (made by a run cut off before it could keep the URL)."""
        try:
            response = self._session.post(
                self.api + "/uploads/", headers=uploader.get_url_creation_headers(), timeout=TIMEOUT
            )
        except requests.RequestException as error:
            raise Unreachable(f"{self.url} did not answer: {error}") from error
        location = response.headers.get("Location")
        if response.status_code in (201, 409) and location:
            return urljoin(self.api + "/uploads/", location)
        if response.status_code == 409:
            raise Taken(_error(response))
        if response.status_code >= 500:
            raise Unreachable(f"{self.url} answered {_error(response)}")
        raise AgentError(_error(response))


def tus_error(server: str, error: TusCommunicationError) -> AgentError:
    """A tus client error in one line; a server that did not answer is Unreachable."""
    status = error.status_code
    if status is None or status >= 500:
        return Unreachable(f"{server} did not take the upload: {error}")
    content = error.response_content
    text = content.decode(errors="replace") if isinstance(content, bytes) else str(content)
    return AgentError(f"{status} {text[:300]}")


def flatten(metadata: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metadata as ordflow sends it: keys joined with '-', values keep their JSON type."""
    flat: dict[str, Any] = {}
    for key, value in metadata.items():
        name = f"{prefix}-{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def read_metadata(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise AgentError(f"cannot read metadata from {path}: {error}") from None
    if not isinstance(metadata, dict):
        raise AgentError(f"{path} must hold a JSON object of metadata values")
    return metadata
