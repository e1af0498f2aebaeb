"""tuspy's uploader with an upload's PATCHes sent over one kept-alive connection.

tuspy opens a new connection for each PATCH. A server with several web workers then hands one
upload's PATCHes to several of them, none of which can keep the upload's running sha256, and
the request that completes the upload reads the whole staged file back to hash it again: one
more pass over every large file, before its transfer can start. Over one connection the PATCHes
stay with the worker that took the first one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from tusclient.client import TusClient
    from tusclient.uploader import Uploader


def kept_alive_uploader(
    client: TusClient, connection: requests.Session, timeout: float, **options: Any
) -> Uploader:
    """``client.uploader(**options)``, its PATCHes sent over ``connection``."""
    from tusclient.exceptions import TusUploadFailed
    from tusclient.request import TusRequest
    from tusclient.uploader import Uploader

    class OneConnectionRequest(TusRequest):
        def perform(self) -> None:
            # tuspy's perform, with the connection's session instead of requests.patch.
            try:
                chunk = self.file.read(self._content_length)
                self.add_checksum(chunk)
                response = connection.patch(
                    self._url,
                    data=chunk,
                    headers=self._request_headers,
                    verify=self.verify_tls_cert,
                    cert=self.client_cert,
                    timeout=timeout,
                )
                self.status_code = response.status_code
                self.response_content = response.content
                self.response_headers = {k.lower(): v for k, v in response.headers.items()}
            except requests.exceptions.RequestException as error:
                raise TusUploadFailed(error) from error

    class OneConnectionUploader(Uploader):
        def _do_request(self) -> None:
            # tuspy's _do_request, with the request above; its retries come back here.
            request = OneConnectionRequest(self)
            self.request: Any = request
            try:
                request.perform()
                status = int(request.status_code or 0)
                if not 200 <= status < 300:
                    raise TusUploadFailed("", status, request.response_content)
            except TusUploadFailed as error:
                self._retry_or_cry(error)

    return OneConnectionUploader(client=client, **options)
