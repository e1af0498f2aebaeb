"""The server's own Globus identity: a confidential client, its token kept in the instance folder.

The adapter acts as one confidential client (``globus_client_id``/``globus_client_secret``)
through the client-credentials grant: no user ever logs in to Globus through dataflow-lite, and
users' passwords are never sent there. The Transfer token is kept with globus-sdk's
:class:`~globus_sdk.token_storage.JSONTokenStorage` in ``globus-tokens.json``, readable by the
server's user only (0600), so that each worker does not ask Globus Auth for a token of its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import globus_sdk
from globus_sdk.token_storage import JSONTokenStorage, TokenStorageData
from globus_sdk.transport import RetryConfig

TOKEN_FILE = "globus-tokens.json"

log = logging.getLogger(__name__)


class PrivateJSONTokenStorage(JSONTokenStorage):
    """globus-sdk's JSON token file, made 0600 without changing the process's umask.

    The SDK narrows the umask while it writes; the umask is process-wide, so a directory that
    another thread of the server creates meanwhile would lose its execute bits. Creating the
    file 0600 before the SDK opens it gives the same result without that race.
    """

    @contextlib.contextmanager
    def user_only_umask(self) -> Iterator[None]:
        descriptor = os.open(self.filepath, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.fchmod(descriptor, 0o600)  # an older file may have been looser
        finally:
            os.close(descriptor)
        yield


def _stored_token(storage: JSONTokenStorage, scope: str) -> TokenStorageData | None:
    """The stored Transfer token if it was issued for ``scope``; None if absent or unreadable."""
    try:
        data = storage.get_token_data(globus_sdk.TransferClient.resource_server)
    except (OSError, ValueError, KeyError, globus_sdk.ValidationError):
        # A half-written or foreign file costs one new token, never a failed transfer.
        return None
    if data is None or set(data.scope.split()) != set(scope.split()):
        return None
    return data


def _keeper(storage: JSONTokenStorage) -> Callable[[globus_sdk.OAuthTokenResponse], None]:
    """Store each new token; a file that cannot be read back is replaced, never fatal."""

    def keep(response: globus_sdk.OAuthTokenResponse) -> None:
        try:
            storage.store_token_response(response)
        except ValueError:
            # Not a token file the SDK can update (foreign, or half-written by a worker that
            # died): it holds nothing worth more than a fresh start.
            os.unlink(storage.filepath)
            storage.store_token_response(response)
        except OSError as error:
            # Keeping the token only spares Globus Auth a request; the token still works.
            log.warning("cannot keep the Globus token in %s: %s", storage.filepath, error)

    return keep


def transfer_client(
    client_id: str,
    client_secret: str,
    instance_path: Path,
    retry_config: RetryConfig | None = None,
) -> globus_sdk.TransferClient:
    """A TransferClient acting as the confidential client, its token stored and renewed.

    Builds the authorizer, which fetches a token from Globus Auth at once when none is stored
    (so this may raise the SDK's API or network errors). ``retry_config`` replaces the SDK's
    retries (tests turn them off); None keeps the SDK's defaults.
    """
    auth_client = globus_sdk.ConfidentialAppAuthClient(
        client_id, client_secret, retry_config=retry_config
    )
    storage = PrivateJSONTokenStorage(instance_path / TOKEN_FILE, namespace=client_id)
    scope = str(globus_sdk.TransferClient.scopes.all)
    stored = _stored_token(storage, scope)
    authorizer = globus_sdk.ClientCredentialsAuthorizer(
        auth_client,
        scope,
        access_token=stored.access_token if stored else None,
        expires_at=stored.expires_at_seconds if stored else None,
        on_refresh=_keeper(storage),
    )
    return globus_sdk.TransferClient(authorizer=authorizer, retry_config=retry_config)
