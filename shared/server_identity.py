"""Server ids: the identity that ties a SPIRE server to its keys, one per server name.

Callers that name no server are the app's default server; every other name (``X-SPIRE-Server-Name``)
is a server of its own with an id of its own. With ``KEY_METADATA_BLOB`` each id lives in a blob:
the default server's in that blob, a named server's in ``<blob>.servers/<name>`` beside it. Losing
an id orphans every key of its server, so the only event that mints a new id is a definite "blob not
found" before the id is known; every other failure is reported and retried, and ids are created
create-only so that instances starting together agree on one.

Once an instance knows an id it re-checks the blob: before every maintenance run, and while serving
at least every ``RECHECK_INTERVAL`` (a conditional read that costs a 304 when nothing changed). A blob
that went missing is restored with the known id; a blob that holds anything else stops this
server on this instance until it holds the id again, so that two instances never work on two ids.

Use is recorded in the blob's metadata (``last_used``, beside ``server_id``, the blob's id), at most
once per ``USE_RECORD_INTERVAL`` per instance, so that maintenance can follow the servers that still
call: the refresh covers them, and the sweep keeps their keys (``recorded_use``).
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Protocol

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
from shared.maintenance import RecordedUse
from shared.naming import SERVER_NAME

log = logging.getLogger(__name__)

# A server id blob holds a UUID (36 bytes); anything much larger is not one and is never downloaded.
MAX_BLOB_BYTES = 4 * 1024
RECHECK_INTERVAL = timedelta(minutes=2)
USE_RECORD_INTERVAL = timedelta(hours=1)
LAST_USED = "last_used"
# The id again, in metadata, so that one listing of the blobs tells which server each record is of.
SERVER_ID_METADATA = "server_id"
NAMED_SERVERS_SUFFIX = ".servers/"
# The namespace of the ids derived for named servers from KEY_IDENTIFIER_VALUE (UUID version 5).
NAMED_SERVER_NAMESPACE = uuid.UUID("6f1e0b8e-3c2a-5d4f-9b7a-2e5c8d1a4f60")


def derived_server_id(key_identifier_value: str, server_name: str) -> str:
    """A named server's id when ids are configured rather than stored: the same on every instance."""
    return str(uuid.uuid5(NAMED_SERVER_NAMESPACE, f"{key_identifier_value}/{server_name}"))


def named_server_blob(default_blob: str, server_name: str) -> str:
    return f"{default_blob}{NAMED_SERVERS_SUFFIX}{server_name}"


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class ServerIdentity(Protocol):
    def server_id(self) -> str: ...


class CheckedServerIdentity(ServerIdentity, Protocol):
    # Set while the stored id is not the one this instance uses: the server then serves nothing.
    conflict: Unavailable | None
    # When the server last called this instance.
    last_used: datetime | None

    def confirm(self) -> str: ...
    def record_use(self) -> None: ...


class FixedServerIdentity:
    """A server id given by configuration (KEY_IDENTIFIER_VALUE, or derived from it); no blob involved."""

    conflict = None  # a configured id cannot be replaced behind the app's back

    def __init__(self, server_id: str, clock: Callable[[], datetime] = _utc_now) -> None:
        self._server_id = server_id
        self._clock = clock
        self.last_used: datetime | None = None

    def server_id(self) -> str:
        return self._server_id

    def confirm(self) -> str:
        return self._server_id

    def record_use(self) -> None:
        self.last_used = self._clock()


@dataclass(frozen=True)
class _Stored:
    server_id: str
    etag: str
    last_used: datetime | None


class BlobServerIdentity:
    """A server id read from, or on first use created in, one blob; re-checked, and restored, while known."""

    def __init__(self, container: ContainerClient, blob: BlobClient, clock: Callable[[], datetime] = _utc_now) -> None:
        self._container = container
        self._blob = blob
        self._clock = clock
        # Held while reading or writing the blob; callers that find it taken go on with what is known.
        self._lock = threading.Lock()
        self._known: str | None = None
        self._etag: str | None = None
        self._checked_at = datetime.min.replace(tzinfo=timezone.utc)
        self._use_recorded_at = datetime.min.replace(tzinfo=timezone.utc)
        self.conflict: Unavailable | None = None
        self.last_used: datetime | None = None

    @property
    def label(self) -> str:
        return f"server id blob {self._blob.container_name}/{self._blob.blob_name}"

    def server_id(self) -> str:
        """The id, read or created on first use and re-checked once ``RECHECK_INTERVAL`` has passed.

        Raises Unavailable while the blob holds another id than the one this instance has used.
        """
        if self._known is None:
            with self._lock:
                if self._known is None:
                    self._load_or_create()
        elif self._clock() - self._checked_at >= RECHECK_INTERVAL and self._lock.acquire(blocking=False):
            try:
                self._recheck(strict=False)
            finally:
                self._lock.release()
        return self._serving_id()

    def confirm(self) -> str:
        """Re-check the blob now, as before maintenance: raises unless it holds the id (restoring a missing one)."""
        with self._lock:
            if self._known is None:
                self._load_or_create()
            else:
                self._recheck(strict=True)
        return self._serving_id()

    def record_use(self) -> None:
        """Note that the server called: the blob's ``last_used``, written at most once per ``USE_RECORD_INTERVAL``."""
        now = self.last_used = self._clock()
        if now - self._use_recorded_at < USE_RECORD_INTERVAL or self._known is None or not self._lock.acquire(blocking=False):
            return
        try:
            self._use_recorded_at = now  # also after a failure: the next attempt waits out the interval
            # Only while the blob is the one last read, so the write never lands on a replaced blob.
            written = self._blob.set_blob_metadata(
                _use_record(self._known, now), etag=self._etag, match_condition=MatchConditions.IfNotModified
            )
            self._etag = written["etag"]
        except (ResourceModifiedError, ResourceNotFoundError):
            self._use_recorded_at = datetime.min.replace(tzinfo=timezone.utc)  # write after the re-check
            self._recheck(strict=False)
        except AzureError as exc:
            log.warning("Recording use in the %s failed: %s", self.label, type(exc).__name__)
        finally:
            self._lock.release()

    def stored(self) -> _Stored | None:
        """What the blob holds now, its id and recorded use, without adopting it; None when it does not exist."""
        return self._read()

    def _serving_id(self) -> str:
        if self.conflict is not None:
            raise Unavailable(self.conflict.message)  # a new one each time: a raised error keeps its traceback
        assert self._known is not None
        return self._known

    def _load_or_create(self) -> None:
        stored = self._read()
        if stored is None:
            created = str(uuid.uuid4())
            if self._create(created):
                log.info("Created a new server id in the %s", self.label)
                self._known, self._checked_at = created, self._clock()
                return
            stored = self._written_first_by_another()  # its id is the one
        self._adopt(stored)
        self._known = stored.server_id

    def _recheck(self, strict: bool) -> None:
        """Compare the blob with the known id; ``strict`` raises when the blob cannot be read."""
        try:
            stored = self._read(unless_etag=self._etag)
            if stored is None:
                stored = self._restore()
        except _Unchanged:
            self._checked_at = self._clock()
            return
        except _NotAServerId as error:
            self._stop(error.message)
            return
        except Unavailable:
            self._checked_at = self._clock()  # a failed read is retried after the interval, not on every call
            if strict:
                raise
            log.warning("Re-checking the %s failed; serving on with the known server id", self.label)
            return
        if stored is not None:
            self._compare(stored)

    def _restore(self) -> _Stored | None:
        """Recreate a missing blob with the known id; what another instance wrote first, if it did."""
        assert self._known is not None
        if self._create(self._known):
            log.warning("The %s was missing; restored it with the known server id", self.label)
            self._resume()
            self._checked_at = self._clock()
            return None
        return self._written_first_by_another()

    def _written_first_by_another(self) -> _Stored:
        """The blob another instance created while this one's create-only write lost the race."""
        stored = self._read()
        if stored is None:
            raise Unavailable(f"the {self.label} was created and is gone again; retry")
        return stored

    def _compare(self, stored: _Stored) -> None:
        if stored.server_id != self._known:
            self._stop(
                f"the {self.label} holds another server id than the one this instance has been using; it serves "
                "nothing and runs no maintenance for that server until the blob holds its id again (restore the "
                "blob's former content, or restart every instance to adopt the new id)"
            )
            self._etag = stored.etag
            return
        self._resume()
        self._adopt(stored)

    def _resume(self) -> None:
        """The blob holds the known id (again): serve, if this instance had stopped."""
        if self.conflict is not None:
            log.warning("The %s holds this instance's server id again; serving resumes", self.label)
        self.conflict = None

    def _stop(self, message: str) -> None:
        if self.conflict is None or self.conflict.message != message:
            log.error("Stopping: %s", message)
        self.conflict = Unavailable(message)
        self._checked_at = self._clock()

    def _adopt(self, stored: _Stored) -> None:
        self._etag = stored.etag
        self._checked_at = self._clock()
        # The blob is the record of use: what it says decides when this instance writes it next.
        self._use_recorded_at = stored.last_used or datetime.min.replace(tzinfo=timezone.utc)

    def _read(self, unless_etag: str | None = None) -> _Stored | None:
        """The stored id; None only when the blob (or its container) definitely does not exist.

        With ``unless_etag``, a blob that still has that ETag raises _Unchanged (a 304).
        """
        conditions = {"etag": unless_etag, "match_condition": MatchConditions.IfModified} if unless_etag else {}
        try:
            # At most one byte past the cap is transferred, whatever the blob's size.
            download = self._blob.download_blob(offset=0, length=MAX_BLOB_BYTES + 1, **conditions)
            content = download.readall()
            properties = download.properties
        except ResourceNotFoundError:
            return None
        except HttpResponseError as exc:
            if exc.status_code == 304:  # the storage SDK reports it as a failed condition
                raise _Unchanged() from None
            if exc.status_code == 416:  # a range of an empty blob
                raise _NotAServerId(f"the {self.label} is empty: it does not hold a server id (a UUID); it was left untouched") from None
            log.warning("Reading the %s failed: %s", self.label, type(exc).__name__)
            raise Unavailable(f"could not read the {self.label} from Blob storage") from exc
        except AzureError as exc:
            log.warning("Reading the %s failed: %s", self.label, type(exc).__name__)
            raise Unavailable(f"could not read the {self.label} from Blob storage") from exc
        if len(content) > MAX_BLOB_BYTES:
            raise _NotAServerId(
                f"the {self.label} is larger than {MAX_BLOB_BYTES} bytes: a server id is a UUID, and a larger blob is "
                "not read; it was left untouched"
            )
        return _Stored(self._parse(content), properties.etag, _timestamp(properties.metadata.get(LAST_USED)))

    def _parse(self, content: bytes) -> str:
        try:
            return str(uuid.UUID(content.decode("ascii").strip()))
        except (UnicodeDecodeError, ValueError):
            # Never replace it: whatever it holds may be the only record of the server's keys.
            raise _NotAServerId(f"the {self.label} does not hold a server id (a UUID); it was left untouched") from None

    def _create(self, server_id: str) -> bool:
        """Create the blob only if it does not exist (If-None-Match: *); False when another did first."""
        try:
            try:
                self._container.create_container()
            except ResourceExistsError:
                pass
            now = self._clock()
            written = self._blob.upload_blob(server_id.encode("ascii"), overwrite=False, metadata=_use_record(server_id, now))
            self._etag, self._use_recorded_at = written["etag"], now
            return True
        except ResourceExistsError:
            return False
        except AzureError as exc:
            log.warning("Creating the %s failed: %s", self.label, type(exc).__name__)
            raise Unavailable(f"could not create the {self.label} in Blob storage") from exc


class _Unchanged(Exception):
    """The blob still has the ETag last read."""


class _NotAServerId(Unavailable):
    """The blob exists and holds something that is not a server id."""


def _use_record(server_id: str, now: datetime) -> dict[str, str]:
    return {LAST_USED: now.isoformat(), SERVER_ID_METADATA: server_id}


def _timestamp(text: str | None) -> datetime | None:
    """A ``last_used`` value as written here (ISO 8601 with its offset); None for anything else."""
    try:
        moment = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None


class ServerDirectory(Protocol):
    """Where the servers' ids come from, and which servers called lately."""

    def identity(self, server_name: str | None) -> CheckedServerIdentity: ...
    def names_used_since(self, cutoff: datetime) -> list[str]: ...
    def recorded_use(self) -> RecordedUse: ...


class BlobServerDirectory:
    """Ids in blobs: the default server's in ``default_blob``, each named server's beside it."""

    def __init__(self, container: ContainerClient, default_blob: str, clock: Callable[[], datetime] = _utc_now) -> None:
        self._container = container
        self._default_blob = default_blob
        self._clock = clock

    def identity(self, server_name: str | None) -> BlobServerIdentity:
        blob = self._default_blob if server_name is None else named_server_blob(self._default_blob, server_name)
        return BlobServerIdentity(self._container, self._container.get_blob_client(blob), self._clock)

    def names_used_since(self, cutoff: datetime) -> list[str]:
        """Named servers whose blob says they called at or after ``cutoff`` (one listing, metadata included)."""
        names = []
        for server_name, metadata in self._id_blobs():
            last_used = _timestamp(metadata.get(LAST_USED))
            # A blob without a readable last_used counts as used: keys are never left to the sweep on a doubt.
            if server_name is not None and (last_used is None or last_used >= cutoff):
                names.append(server_name)
        return sorted(names)

    def recorded_use(self) -> RecordedUse:
        """When each server with an id blob here last called, the default server included, by server id.

        One listing; a blob written before its metadata named its id is read once (it gains that
        metadata at its server's next recorded call). A blob whose id cannot be read leaves the
        record incomplete.
        """
        last_used: dict[str, datetime | None] = {}
        complete = True
        for server_name, metadata in self._id_blobs():
            server_id, used = metadata.get(SERVER_ID_METADATA), _timestamp(metadata.get(LAST_USED))
            if server_id is None:
                try:
                    stored = self.identity(server_name).stored()
                except Unavailable:
                    complete = False
                    continue
                if stored is None:
                    continue  # deleted since the listing
                server_id, used = stored.server_id, stored.last_used
            # A blob without a readable record makes its server's use unknown, whatever another blob says.
            known = last_used.get(server_id, used)
            last_used[server_id] = None if used is None or known is None else max(used, known)
        return RecordedUse(last_used, complete)

    def _id_blobs(self) -> list[tuple[str | None, dict[str, str]]]:
        """Each id blob's server name (None: the default server) and metadata, from one listing."""
        prefix = named_server_blob(self._default_blob, "")
        try:
            blobs = list(self._container.list_blobs(name_starts_with=self._default_blob, include=["metadata"]))
        except ResourceNotFoundError:
            return []  # no container yet: no server has called
        except AzureError as exc:
            log.warning("Listing the servers' id blobs failed: %s", type(exc).__name__)
            raise Unavailable("could not list the servers' id blobs in Blob storage") from exc
        found: list[tuple[str | None, dict[str, str]]] = []
        for blob in blobs:
            if blob.name == self._default_blob:
                found.append((None, blob.metadata or {}))
            elif blob.name.startswith(prefix) and SERVER_NAME.fullmatch(blob.name[len(prefix):]):
                found.append((blob.name[len(prefix):], blob.metadata or {}))
        return found


class FixedServerDirectory:
    """Ids from KEY_IDENTIFIER_VALUE: the value itself for the default server, derived from it for named ones."""

    def __init__(self, key_identifier_value: str, clock: Callable[[], datetime] = _utc_now) -> None:
        self._value = key_identifier_value
        self._clock = clock

    def identity(self, server_name: str | None) -> FixedServerIdentity:
        server_id = self._value if server_name is None else derived_server_id(self._value, server_name)
        return FixedServerIdentity(server_id, self._clock)

    def names_used_since(self, cutoff: datetime) -> list[str]:
        """Nothing beyond what each instance saw itself: without a blob, use is recorded nowhere."""
        return []

    def recorded_use(self) -> RecordedUse:
        """No use recorded: other servers' keys are judged by their Updated time alone, as the spec says."""
        return RecordedUse()
