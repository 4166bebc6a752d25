"""The server ids' store in Blob storage: one blob per server, written only by conditional requests.

Beside them, ``<blob>.instances/<name>`` records which plugin processes called as each server in the
last minutes (``InstanceBlobs``), so that the app's instances see each other's callers.

With ``KEY_METADATA_BLOB`` the default server's id lives in that blob and a named server's in
``<blob>.servers/<name>`` beside it; use is recorded in each blob's metadata (``last_used``, and
``server_id``, the blob's id, so that one listing tells which server each blob is of). The rules
over these blobs are the id policy's (``server_ids``); this module makes the blob requests and
translates the storage SDK's errors, once, into what the store port returns or raises.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime
from typing import Any, Literal

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobClient, ContainerClient

from shared.errors import Unavailable
from shared.identity_port import Absent, NotAnId, Stored, UseRecord
from shared.instances import Seen, is_instance_id
from shared.naming import SERVER_NAME

log = logging.getLogger(__name__)

# A server id blob holds a UUID (36 bytes); anything much larger is not one and is never downloaded.
MAX_BLOB_BYTES = 4 * 1024
LAST_USED = "last_used"
SERVER_ID_METADATA = "server_id"
NAMED_SERVERS_SUFFIX = ".servers/"
INSTANCES_SUFFIX = ".instances/"
# The default server's record: no server name starts with "_".
DEFAULT_SERVER_RECORD = "_default"
# A record holds at most a few dozen ids of a few minutes each: a larger blob is not read.
MAX_INSTANCE_RECORD_BYTES = 16 * 1024


def named_server_blob(default_blob: str, server_name: str) -> str:
    return f"{default_blob}{NAMED_SERVERS_SUFFIX}{server_name}"


class BlobIdStore:
    """One server's id blob."""

    def __init__(self, container: ContainerClient, blob: BlobClient) -> None:
        self._container = container
        self._blob = blob

    @property
    def label(self) -> str:
        return f"server id blob {self._blob.container_name}/{self._blob.blob_name}"

    def read(self) -> Stored | NotAnId | Literal[Absent.MISSING]:
        read = self._download({})
        assert read is not Absent.UNCHANGED  # only a conditional read finds the blob unchanged
        return read

    def read_if_changed(self, etag: str) -> Stored | NotAnId | Literal[Absent.MISSING, Absent.UNCHANGED]:
        return self._download({"etag": etag, "match_condition": MatchConditions.IfModified})

    def create(self, server_id: str, now: datetime) -> str | None:
        """Create the blob only if it does not exist (If-None-Match: *); None when another did first."""
        try:
            try:
                self._container.create_container()
            except ResourceExistsError:
                pass
            written = self._blob.upload_blob(server_id.encode("ascii"), overwrite=False, metadata=_use_record(server_id, now))
        except ResourceExistsError:
            return None
        except AzureError as exc:
            log.warning("Creating the %s failed: %s", self.label, type(exc).__name__)
            raise Unavailable(f"could not create the {self.label} in Blob storage") from exc
        return str(written["etag"])

    def record_use(self, server_id: str, now: datetime, etag: str) -> str | None:
        """Write ``last_used`` with If-Match: ``etag``; None when the blob changed or is gone."""
        try:
            written = self._blob.set_blob_metadata(_use_record(server_id, now), etag=etag, match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        except AzureError as exc:
            log.warning("Recording use in the %s failed: %s", self.label, type(exc).__name__)
            raise Unavailable(f"could not record use in the {self.label}") from exc
        return str(written["etag"])

    def _download(self, conditions: dict[str, Any]) -> Stored | NotAnId | Absent:
        try:
            # At most one byte past the cap is transferred, whatever the blob's size.
            download = self._blob.download_blob(offset=0, length=MAX_BLOB_BYTES + 1, **conditions)
            content = download.readall()
            properties = download.properties
        except ResourceNotFoundError:
            return Absent.MISSING
        except HttpResponseError as exc:
            if exc.status_code == 304:  # the storage SDK reports it as a failed condition
                return Absent.UNCHANGED
            if exc.status_code == 416:  # a range of an empty blob
                return NotAnId(f"the {self.label} is empty: it does not hold a server id (a UUID); it was left untouched")
            raise self._unreadable(exc) from exc
        except AzureError as exc:
            raise self._unreadable(exc) from exc
        if len(content) > MAX_BLOB_BYTES:
            return NotAnId(
                f"the {self.label} is larger than {MAX_BLOB_BYTES} bytes: a server id is a UUID, and a larger blob is "
                "not read; it was left untouched"
            )
        try:
            server_id = str(uuid.UUID(content.decode("ascii").strip()))
        except (UnicodeDecodeError, ValueError):
            # Never replace it: whatever it holds may be the only record of the server's keys.
            return NotAnId(f"the {self.label} does not hold a server id (a UUID); it was left untouched")
        return Stored(server_id, properties.etag, _timestamp(properties.metadata.get(LAST_USED)))

    def _unreadable(self, exc: AzureError) -> Unavailable:
        log.warning("Reading the %s failed: %s", self.label, type(exc).__name__)
        return Unavailable(f"could not read the {self.label} from Blob storage")


class BlobIdStores:
    """Id blobs: the default server's in ``default_blob``, each named server's beside it."""

    def __init__(self, container: ContainerClient, default_blob: str) -> None:
        self._container = container
        self._default_blob = default_blob

    def store(self, server_name: str | None) -> BlobIdStore:
        blob = self._default_blob if server_name is None else named_server_blob(self._default_blob, server_name)
        return BlobIdStore(self._container, self._container.get_blob_client(blob))

    def records(self) -> list[UseRecord]:
        """Each id blob's server name and what its metadata says, from one listing (metadata included)."""
        prefix = named_server_blob(self._default_blob, "")
        try:
            blobs = list(self._container.list_blobs(name_starts_with=self._default_blob, include=["metadata"]))
        except ResourceNotFoundError:
            return []  # no container yet: no server has called
        except AzureError as exc:
            log.warning("Listing the servers' id blobs failed: %s", type(exc).__name__)
            raise Unavailable("could not list the servers' id blobs in Blob storage") from exc
        records = []
        for blob in blobs:
            metadata = blob.metadata or {}
            if blob.name == self._default_blob:
                server_name = None
            elif blob.name.startswith(prefix) and SERVER_NAME.fullmatch(blob.name[len(prefix) :]):
                server_name = blob.name[len(prefix) :]
            else:
                continue
            records.append(UseRecord(server_name, metadata.get(SERVER_ID_METADATA), _timestamp(metadata.get(LAST_USED))))
        return records


def _use_record(server_id: str, now: datetime) -> dict[str, str]:
    return {LAST_USED: now.isoformat(), SERVER_ID_METADATA: server_id}


def _timestamp(text: str | None) -> datetime | None:
    """A ``last_used`` value as written here (ISO 8601 with its offset); None for anything else."""
    try:
        moment = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None


class InstanceBlobs:
    """Per server name, the minutes in which each plugin instance called, as JSON ``{"<id>": [<minute>, ...]}``."""

    def __init__(self, container: ContainerClient, default_blob: str) -> None:
        self._container = container
        self._default_blob = default_blob

    def read(self, server_name: str | None, within_seconds: float | None = None) -> tuple[dict[str, frozenset[int]], str | None]:
        blob = self._blob(server_name)
        # One attempt, its connecting and its reading each given half of the time.
        quick: dict[str, Any] = (
            {}
            if within_seconds is None
            else {"retry_total": 0, "connection_timeout": within_seconds / 2, "read_timeout": within_seconds / 2}
        )
        try:
            download = blob.download_blob(offset=0, length=MAX_INSTANCE_RECORD_BYTES + 1, **quick)
            content = download.readall()
        except ResourceNotFoundError:
            return {}, None
        except HttpResponseError as exc:
            if exc.status_code == 416:  # a range of an empty blob
                return {}, self._etag(blob)
            raise self._failed("Reading", exc) from exc
        except AzureError as exc:
            raise self._failed("Reading", exc) from exc
        return _parse_instances(content, blob.blob_name), download.properties.etag

    def write(self, server_name: str | None, seen: Seen, version: str | None) -> bool:
        content = json.dumps({instance_id: sorted(minutes) for instance_id, minutes in seen.items()}).encode()
        conditions = (
            {"overwrite": False}
            if version is None
            else {
                "overwrite": True,
                "etag": version,
                "match_condition": MatchConditions.IfNotModified,
            }
        )
        try:
            self._blob(server_name).upload_blob(content, **conditions)
        except (ResourceExistsError, ResourceModifiedError):
            return False
        except ResourceNotFoundError:
            if version is not None:
                return False  # deleted since it was read
            try:
                self._container.create_container()
            except ResourceExistsError:
                pass
            except AzureError as exc:
                raise self._failed("Writing", exc) from exc
            return False  # no container yet: the caller reads again and writes
        except AzureError as exc:
            raise self._failed("Writing", exc) from exc
        return True

    def _blob(self, server_name: str | None) -> BlobClient:
        return self._container.get_blob_client(f"{self._default_blob}{INSTANCES_SUFFIX}{server_name or DEFAULT_SERVER_RECORD}")

    def _etag(self, blob: BlobClient) -> str | None:
        try:
            return str(blob.get_blob_properties().etag)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise self._failed("Reading", exc) from exc

    @staticmethod
    def _failed(action: str, exc: AzureError) -> Unavailable:
        log.warning("%s the record of plugin instances failed: %s", action, type(exc).__name__)
        return Unavailable("could not share the record of plugin instances through Blob storage")


def _parse_instances(content: bytes, blob_name: str) -> dict[str, frozenset[int]]:
    """The record's minutes by instance id; an unreadable record counts as empty, and the next share replaces it."""
    try:
        if len(content) > MAX_INSTANCE_RECORD_BYTES:
            raise ValueError("too large")
        record = json.loads(content)
        seen = {
            instance_id: frozenset(minute for minute in minutes if type(minute) is int)  # not bool, not float
            for instance_id, minutes in record.items()
            if is_instance_id(instance_id) and isinstance(minutes, list)
        }
        return {instance_id: minutes for instance_id, minutes in seen.items() if minutes}
    except (ValueError, AttributeError, RecursionError):
        log.warning("The record of plugin instances %s is not one this app wrote; the next share replaces it", blob_name)
        return {}
