"""The rules of key maintenance: which keys are stale, and what a refresh or sweep run reports.

Every server refreshes its own keys (their Key Vault ``Updated`` time becomes now) and sweeps the keys
that other servers of its trust domain stopped refreshing and stopped using. These rules decide what a sweep may
delete, so they are kept small and apart, with a test beside them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Protocol

from shared.ownership import TAG_SERVER_ID, Owner, owner_of

DEFAULT_STALE_KEY_AGE = timedelta(days=14)
DEFAULT_MAX_DELETIONS = 100


@dataclass(frozen=True)
class SweepPolicy:
    stale_key_age: timedelta = DEFAULT_STALE_KEY_AGE
    max_deletions: int = DEFAULT_MAX_DELETIONS


class DatedKey(Protocol):
    """A key as a listing or a read shows it (``KeySummary`` and ``KeyVersion`` both are)."""

    @property
    def name(self) -> str: ...
    @property
    def tags(self) -> Mapping[str, str]: ...
    @property
    def updated_on(self) -> datetime | None: ...


@dataclass(frozen=True)
class RecordedUse:
    """When the servers with an id blob last called, by server id, as their blobs record it.

    ``last_used`` holds None for a blob without a readable record. ``complete`` is False when some
    blob's id could not be read: any server without an entry may then be that blob's.
    """

    last_used: Mapping[str, datetime | None] = field(default_factory=dict)
    complete: bool = True

    def quiet_since(self, server_id: str, cutoff: datetime) -> bool | None:
        """Whether the server has not called since ``cutoff``; None when that cannot be told.

        A server with no blob here (another deployment's, or one whose blob is gone) has no recorded
        use: only its keys' Updated time speaks for it.
        """
        if server_id not in self.last_used:
            return True if self.complete else None
        last_used = self.last_used[server_id]
        return None if last_used is None else last_used < cutoff


def is_aged(key: DatedKey, trust_domain: str, server_id: str, now: datetime, stale_key_age: timedelta) -> bool:
    """A key of another server of this trust domain, not refreshed for longer than ``stale_key_age``.

    Keys that are no server's of this trust domain (see ``ownership``), this server's own, or without
    an Updated time never are: the sweep must not touch what it cannot prove abandoned.
    """
    return (
        owner_of(key.name, key.tags, trust_domain, server_id) is Owner.PEER
        and key.updated_on is not None
        and key.updated_on < now - stale_key_age
    )


def is_stale(key: DatedKey, trust_domain: str, server_id: str, now: datetime, stale_key_age: timedelta, recorded_use: RecordedUse) -> bool:
    """An aged key whose server's recorded use is older than ``stale_key_age`` too.

    A refresh can miss a server that still calls (a failed run, Key Vault read-only during a
    failover, more servers than an instance keeps): its recorded use keeps its keys all the same.
    """
    return (
        is_aged(key, trust_domain, server_id, now, stale_key_age)
        and recorded_use.quiet_since(key.tags[TAG_SERVER_ID], now - stale_key_age) is True
    )


@dataclass(frozen=True)
class Failure:
    key_name: str
    error: str


@dataclass
class RefreshReport:
    refreshed: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    # Servers (by label) with a key, or their id, that the run could not refresh.
    failed_servers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LastRefresh:
    """Which servers this instance's last refresh run failed, for health to report until a run covers them."""

    def __init__(self) -> None:
        self._failed_servers: tuple[str, ...] = ()

    def record(self, report: RefreshReport) -> None:
        self._failed_servers = tuple(report.failed_servers)

    @property
    def failed_servers(self) -> tuple[str, ...]:
        return self._failed_servers


class SweepOutcome(Enum):
    """What became of a stale key the sweep read again just before deleting it."""

    DELETED = "deleted"
    ALREADY_DELETED = "already deleted by another sweep"  # reported as deleted all the same
    KEPT = "kept: its owner used it since the listing"


@dataclass
class SweepReport:
    dry_run: bool
    candidates: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    cap_reached: bool = False
    # Keys their Updated time alone would have swept, kept because their servers still call (or may).
    kept: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
