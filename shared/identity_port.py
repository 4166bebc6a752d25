"""What the app needs of server ids, and of the store that keeps them; the values that cross between them.

The domain owns these types: the id policy (``server_ids``) implements the server side over the
store side, which the id-blob adapter (``id_blobs``) implements and the unit tests fake in memory.
A store's reads return what they found; only a store that cannot be reached raises (Unavailable).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from shared.errors import Unavailable
from shared.maintenance import RecordedUse


class ServerIdentity(Protocol):
    def server_id(self) -> str: ...


class CheckedServerIdentity(ServerIdentity, Protocol):
    # Set while the stored id is not the one this instance uses: the server then serves nothing.
    conflict: Unavailable | None
    # When the server last called this instance.
    last_used: datetime | None

    def confirm(self) -> str: ...
    def record_use(self) -> None: ...


class ServerDirectory(Protocol):
    """Where the servers' ids come from, and which servers called lately."""

    def identity(self, server_name: str | None) -> CheckedServerIdentity: ...
    def names_used_since(self, cutoff: datetime) -> list[str]: ...
    def recorded_use(self) -> RecordedUse: ...


@dataclass(frozen=True)
class Stored:
    """A record that holds a server id; ``etag`` names this content, ``last_used`` the use it records."""

    server_id: str
    etag: str
    last_used: datetime | None


@dataclass(frozen=True)
class NotAnId:
    """A record that exists and holds something else than a server id; ``message`` says what, and that it is left untouched."""

    message: str


class Absent(enum.Enum):
    MISSING = "there is no record"
    UNCHANGED = "the record still has the ETag given"


@dataclass(frozen=True)
class UseRecord:
    """One server's record as a listing shows it: None for what the listing does not tell."""

    server_name: str | None  # None: the default server
    server_id: str | None
    last_used: datetime | None


class IdStore(Protocol):
    """One server's id record. Writes are conditional, so that no instance overwrites what another wrote."""

    @property
    def label(self) -> str:
        """What the record is, for log lines and the messages of errors."""
        ...

    def read(self) -> Stored | NotAnId | Literal[Absent.MISSING]: ...

    def read_if_changed(self, etag: str) -> Stored | NotAnId | Literal[Absent.MISSING, Absent.UNCHANGED]: ...

    def create(self, server_id: str, now: datetime) -> str | None:
        """Create the record, its use recorded at ``now``, only if there is none: its ETag, or None when there is one."""
        ...

    def record_use(self, server_id: str, now: datetime, etag: str) -> str | None:
        """Record use at ``now`` only while the record has ``etag``: the new ETag, or None when it changed or is gone."""
        ...


class IdStores(Protocol):
    """The id records of every server of the app."""

    def store(self, server_name: str | None) -> IdStore: ...

    def records(self) -> list[UseRecord]:
        """Every server's record, as one listing shows it; none before any server has called."""
        ...
