"""The server id: the identity that ties this server to its keys, kept in a blob.

Losing it orphans every key the server has, so the only event that mints a new id is a definite
"blob not found"; every other failure is reported and retried, and the id is created create-only so
that instances starting together agree on one.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Protocol

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobClient, ContainerClient

from shared.errors import Unavailable

log = logging.getLogger(__name__)


class ServerIdentity(Protocol):
    def server_id(self) -> str: ...


class FixedServerIdentity:
    """A server id given by configuration (KEY_IDENTIFIER_VALUE); no blob involved."""

    def __init__(self, server_id: str) -> None:
        self._server_id = server_id

    def server_id(self) -> str:
        return self._server_id


class BlobServerIdentity:
    """The server id read from, or on first use created in, one blob. Cached once known."""

    def __init__(self, container: ContainerClient, blob: BlobClient) -> None:
        self._container = container
        self._blob = blob
        self._lock = threading.Lock()
        self._known: str | None = None

    def server_id(self) -> str:
        if self._known is None:
            with self._lock:
                if self._known is None:
                    self._known = self._load_or_create()
        return self._known

    def _load_or_create(self) -> str:
        existing = self._read()
        if existing is not None:
            return existing
        created = str(uuid.uuid4())
        if self._create(created):
            log.info("Created a new server id in blob %s", self._blob.blob_name)
            return created
        # Another instance created it first: its id is the one.
        winner = self._read()
        if winner is None:
            raise Unavailable("the server id blob was created and is gone again; retry")
        return winner

    def _read(self) -> str | None:
        """The stored id; None only when the blob (or its container) definitely does not exist."""
        try:
            content = self._blob.download_blob().readall()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            log.warning("Reading the server id blob failed: %s", type(exc).__name__)
            raise Unavailable("could not read the server id blob from Blob storage") from exc
        return _parse(content)

    def _create(self, server_id: str) -> bool:
        """Create the blob only if it does not exist (If-None-Match: *); False when another did first."""
        try:
            try:
                self._container.create_container()
            except ResourceExistsError:
                pass
            self._blob.upload_blob(server_id.encode("ascii"), overwrite=False)
            return True
        except ResourceExistsError:
            return False
        except AzureError as exc:
            log.warning("Creating the server id blob failed: %s", type(exc).__name__)
            raise Unavailable("could not create the server id blob in Blob storage") from exc


def _parse(content: bytes) -> str:
    try:
        return str(uuid.UUID(content.decode("ascii").strip()))
    except (UnicodeDecodeError, ValueError):
        # Never replace it: whatever it holds may be the only record of the server's keys.
        raise Unavailable("the server id blob does not hold a server id (a UUID); it was left untouched") from None
