"""Server ids: the identity that ties a SPIRE server to its keys, one per server name.

Callers that name no server are the app's default server; every other name (``X-SPIRE-Server-Name``)
is a server of its own with an id of its own. The ids are configured (``KEY_IDENTIFIER_VALUE``:
``FixedServerDirectory``) or kept in a store, one record per server (``KEY_METADATA_BLOB``:
``StoredServerDirectory`` over the id blobs). Losing a stored id orphans every key of its server, so
the only event that mints a new id is a definite "no record" before the id is known; every other
failure is reported and retried, and ids are created create-only so that instances starting
together agree on one.

Once an instance knows an id it re-checks the record: before every maintenance run, and while
serving at least every ``RECHECK_INTERVAL`` (a conditional read that costs a 304 when nothing
changed). A record that went missing is restored with the known id; a record that holds anything
else stops this server on this instance until it holds the id again, so that two instances never
work on two ids.

Use is recorded beside the id (``last_used``), at most once per ``USE_RECORD_INTERVAL`` per
instance, so that maintenance can follow the servers that still call: the refresh covers them, and
the sweep keeps their keys (``recorded_use``).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal

from shared.errors import Unavailable
from shared.identity_port import Absent, IdStore, IdStores, NotAnId, Stored
from shared.maintenance import RecordedUse

log = logging.getLogger(__name__)

RECHECK_INTERVAL = timedelta(minutes=2)
USE_RECORD_INTERVAL = timedelta(hours=1)
# The namespace of the ids derived for named servers from KEY_IDENTIFIER_VALUE (UUID version 5).
NAMED_SERVER_NAMESPACE = uuid.UUID("6f1e0b8e-3c2a-5d4f-9b7a-2e5c8d1a4f60")
_NEVER = datetime.min.replace(tzinfo=UTC)


def derived_server_id(key_identifier_value: str, server_name: str) -> str:
    """A named server's id when ids are configured rather than stored: the same on every instance."""
    return str(uuid.uuid5(NAMED_SERVER_NAMESPACE, f"{key_identifier_value}/{server_name}"))


def _utc_now() -> datetime:
    return datetime.now(UTC)


class FixedServerIdentity:
    """A server id given by configuration (KEY_IDENTIFIER_VALUE, or derived from it); no store involved."""

    conflict: Unavailable | None = None  # a configured id cannot be replaced behind the app's back

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


class FixedServerDirectory:
    """Ids from KEY_IDENTIFIER_VALUE: the value itself for the default server, derived from it for named ones."""

    def __init__(self, key_identifier_value: str, clock: Callable[[], datetime] = _utc_now) -> None:
        self._value = key_identifier_value
        self._clock = clock

    def identity(self, server_name: str | None) -> FixedServerIdentity:
        server_id = self._value if server_name is None else derived_server_id(self._value, server_name)
        return FixedServerIdentity(server_id, self._clock)

    def names_used_since(self, cutoff: datetime) -> list[str]:
        """Nothing beyond what each instance saw itself: without a store, use is recorded nowhere."""
        return []

    def recorded_use(self) -> RecordedUse:
        """No use recorded: other servers' keys are judged by their Updated time alone, as the spec says."""
        return RecordedUse()


class StoredServerIdentity:
    """A server id read from, or on first use created in, its record; re-checked, and restored, while known."""

    def __init__(self, store: IdStore, clock: Callable[[], datetime] = _utc_now) -> None:
        self._store = store
        self._clock = clock
        # Held while reading or writing the record; callers that find it taken go on with what is known.
        self._lock = threading.Lock()
        self._known: str | None = None
        self._etag = ""  # of the record as last read or written
        self._checked_at = _NEVER
        self._use_recorded_at = _NEVER
        self.conflict: Unavailable | None = None
        self.last_used: datetime | None = None

    def server_id(self) -> str:
        """The id, read or created on first use and re-checked once ``RECHECK_INTERVAL`` has passed.

        Raises Unavailable while the record holds another id than the one this instance has used.
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
        """Re-check the record now, as before maintenance: raises unless it holds the id (restoring a missing one)."""
        with self._lock:
            if self._known is None:
                self._load_or_create()
            else:
                self._recheck(strict=True)
        return self._serving_id()

    def record_use(self) -> None:
        """Note that the server called: the record's ``last_used``, written at most once per ``USE_RECORD_INTERVAL``."""
        now = self.last_used = self._clock()
        if now - self._use_recorded_at < USE_RECORD_INTERVAL or self._known is None or not self._lock.acquire(blocking=False):
            return
        try:
            self._use_recorded_at = now  # also after a failure: the next attempt waits out the interval
            try:
                # Only while the record is the one last read, so the write never lands on a replaced one.
                etag = self._store.record_use(self._known, now, self._etag)
            except Unavailable:
                return  # the store reported it; the record waits for the next interval
            if etag is None:
                self._use_recorded_at = _NEVER  # write after the re-check
                self._recheck(strict=False)
            else:
                self._etag = etag
        finally:
            self._lock.release()

    def _serving_id(self) -> str:
        if self.conflict is not None:
            raise Unavailable(self.conflict.message)  # a new one each time: a raised error keeps its traceback
        assert self._known is not None
        return self._known

    def _load_or_create(self) -> None:
        read = self._store.read()
        if read is Absent.MISSING:
            created = self._create(str(uuid.uuid4()))
            if created is not None:
                log.info("Created a new server id in the %s", self._store.label)
            read = created or self._written_first_by_another()  # the other's id is the one
        if isinstance(read, NotAnId):
            raise Unavailable(read.message)
        self._known = read.server_id
        self._adopt(read)

    def _recheck(self, strict: bool) -> None:
        """Compare the record with the known id; ``strict`` raises when the record cannot be read."""
        try:
            read = self._read_or_restore()
        except Unavailable:
            self._checked_at = self._clock()  # a failed read is retried after the interval, not on every call
            if strict:
                raise
            log.warning("Re-checking the %s failed; serving on with the known server id", self._store.label)
            return
        if read is Absent.UNCHANGED:
            self._checked_at = self._clock()
        elif isinstance(read, NotAnId):
            self._stop(read.message)
        elif read.server_id != self._known:
            self._stop(
                f"the {self._store.label} holds another server id than the one this instance has been using; it serves "
                "nothing and runs no maintenance for that server until the blob holds its id again (restore the "
                "blob's former content, or restart every instance to adopt the new id)"
            )
            self._etag = read.etag
        else:
            self._resume()
            self._adopt(read)

    def _read_or_restore(self) -> Stored | NotAnId | Literal[Absent.UNCHANGED]:
        """The record if it changed since last read; a missing one is recreated with the known id first."""
        read = self._store.read_if_changed(self._etag)
        if read is not Absent.MISSING:
            return read
        assert self._known is not None
        restored = self._create(self._known)
        if restored is None:
            return self._written_first_by_another()
        log.warning("The %s was missing; restored it with the known server id", self._store.label)
        return restored

    def _create(self, server_id: str) -> Stored | None:
        """Create the record only if there is none; None when another instance did first."""
        now = self._clock()
        etag = self._store.create(server_id, now)
        return None if etag is None else Stored(server_id, etag, now)

    def _written_first_by_another(self) -> Stored | NotAnId:
        """The record another instance created while this one's create-only write lost the race."""
        read = self._store.read()
        if read is Absent.MISSING:
            raise Unavailable(f"the {self._store.label} was created and is gone again; retry")
        return read

    def _resume(self) -> None:
        """The record holds the known id (again): serve, if this instance had stopped."""
        if self.conflict is not None:
            log.warning("The %s holds this instance's server id again; serving resumes", self._store.label)
        self.conflict = None

    def _stop(self, message: str) -> None:
        if self.conflict is None or self.conflict.message != message:
            log.error("Stopping: %s", message)
        self.conflict = Unavailable(message)
        self._checked_at = self._clock()

    def _adopt(self, stored: Stored) -> None:
        self._etag = stored.etag
        self._checked_at = self._clock()
        # The record is the record of use: what it says decides when this instance writes it next.
        self._use_recorded_at = stored.last_used or _NEVER


class StoredServerDirectory:
    """Ids in a store: one record per server, the default server's included."""

    def __init__(self, stores: IdStores, clock: Callable[[], datetime] = _utc_now) -> None:
        self._stores = stores
        self._clock = clock

    def identity(self, server_name: str | None) -> StoredServerIdentity:
        return StoredServerIdentity(self._stores.store(server_name), self._clock)

    def names_used_since(self, cutoff: datetime) -> list[str]:
        """Named servers whose record says they called at or after ``cutoff`` (one listing)."""
        return sorted(
            record.server_name
            for record in self._stores.records()
            # A record without a readable last_used counts as used: keys are never left to the sweep on a doubt.
            if record.server_name is not None and (record.last_used is None or record.last_used >= cutoff)
        )

    def recorded_use(self) -> RecordedUse:
        """When each server with a record here last called, the default server included, by server id.

        One listing; a record whose listing does not name its id (written before records named it) is
        read once (it names it from its server's next recorded call). A record whose id cannot be read
        leaves the record of use incomplete.
        """
        last_used: dict[str, datetime | None] = {}
        complete = True
        for record in self._stores.records():
            server_id, used = record.server_id, record.last_used
            if server_id is None:
                try:
                    read = self._stores.store(record.server_name).read()
                except Unavailable:
                    complete = False
                    continue
                if read is Absent.MISSING:
                    continue  # deleted since the listing
                if isinstance(read, NotAnId):
                    complete = False
                    continue
                server_id, used = read.server_id, read.last_used
            # A record without a readable use makes its server's use unknown, whatever another record says.
            known = last_used.get(server_id, used)
            last_used[server_id] = None if used is None or known is None else max(used, known)
        return RecordedUse(last_used, complete)
