"""The in-memory key store: versions, soft delete, recovery and the time shift.

As in Key Vault, a deletion and a recovery take effect a while after they are answered: until then
the key is in neither collection (404 under /keys and /deletedkeys), and a create, recover or purge
of a name being deleted is a 409 ``ObjectIsBeingDeleted``.

One lock guards all state.  Stored versions are frozen dataclasses and are
replaced, never mutated, so callers may read what the store returns after the
lock is released.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from .crypto import PrivateKey
from .errors import VaultError, conflict, key_not_found

RECOVERABLE_DAYS = 90
# How long Key Vault takes to finish a deletion (1-5 s) and a recovery (about 1 s), shortened so
# that tests stay fast.
DEFAULT_DELETE_LATENCY = 0.3
DEFAULT_RECOVER_LATENCY = 0.2


def _now() -> int:
    return int(time.time())


@dataclass(frozen=True)
class KeyVersion:
    """One version of a key, with the key's display name (as first created)."""

    name: str
    version: str
    kty: str
    private_key: PrivateKey
    key_ops: tuple[str, ...]
    tags: Mapping[str, str]
    enabled: bool
    created: int
    updated: int
    exp: Optional[int] = None
    nbf: Optional[int] = None

    @property
    def hsm(self) -> bool:
        """Created as RSA-HSM or EC-HSM: Key Vault's limits are lower for these."""
        return self.kty.endswith("-HSM")


@dataclass(frozen=True)
class Deletion:
    deleted_date: int
    scheduled_purge_date: int


@dataclass
class _Entry:
    name: str
    versions: list[KeyVersion]  # in creation order; the last one is the latest
    deletion: Optional[Deletion] = None
    settles_at: float = 0.0  # when its last deletion or recovery takes effect (monotonic seconds)


class KeyStore:
    """Keys by case-insensitive name, as Key Vault treats names.

    ``delete_latency`` and ``recover_latency`` (seconds) are how long a deletion and a recovery take
    to take effect; they run on ``monotonic``, not on the shifted clock.
    """

    def __init__(
        self,
        clock: Callable[[], int] = _now,
        delete_latency: float = DEFAULT_DELETE_LATENCY,
        recover_latency: float = DEFAULT_RECOVER_LATENCY,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._delete_latency = delete_latency
        self._recover_latency = recover_latency
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def _settled(self, entry: _Entry) -> bool:
        return self._monotonic() >= entry.settles_at

    def _refuse_if_being_deleted(self, entry: Optional[_Entry]) -> None:
        if entry is not None and entry.deletion is not None and not self._settled(entry):
            raise conflict("Key is currently being deleted.", "ObjectIsBeingDeleted")

    def _active(self, name: str) -> _Entry:
        entry = self._entries.get(name.lower())
        if entry is None or entry.deletion is not None or not self._settled(entry):
            raise key_not_found(name)
        return entry

    def _deleted(self, name: str) -> _Entry:
        entry = self._entries.get(name.lower())
        if entry is None or entry.deletion is None or not self._settled(entry):
            raise key_not_found(name)
        return entry

    def _deleted_to_change(self, name: str) -> _Entry:
        """A deleted key to recover or purge: a 409, not a 404, while it is still being deleted."""
        self._refuse_if_being_deleted(self._entries.get(name.lower()))
        return self._deleted(name)

    @staticmethod
    def _find(entry: _Entry, name: str, version: str) -> tuple[int, KeyVersion]:
        if not version:
            return len(entry.versions) - 1, entry.versions[-1]
        for index, candidate in enumerate(entry.versions):
            if candidate.version == version:
                return index, candidate
        raise key_not_found(f"{name}/{version}")

    def create(
        self,
        name: str,
        *,
        kty: str,
        private_key: PrivateKey,
        key_ops: tuple[str, ...],
        tags: Mapping[str, str],
        enabled: bool = True,
        exp: Optional[int] = None,
        nbf: Optional[int] = None,
    ) -> KeyVersion:
        """Add a key, or a new version of an existing one (a deleted name cannot be reused)."""
        with self._lock:
            entry = self._entries.get(name.lower())
            self._refuse_if_being_deleted(entry)
            if entry is not None and not self._settled(entry):
                raise VaultError(409, "Conflict", "Key is currently being recovered.")
            if entry is not None and entry.deletion is not None:
                raise conflict(
                    f"Key {name} is currently in a deleted but recoverable state, and its name cannot be reused; "
                    "in this state, the key can only be recovered or purged.",
                    "ObjectIsDeletedButRecoverable",
                )
            if entry is None:
                entry = self._entries[name.lower()] = _Entry(name, [])
            now = self._clock()
            version = KeyVersion(
                name=entry.name, version=uuid.uuid4().hex, kty=kty, private_key=private_key, key_ops=key_ops,
                tags=tags, enabled=enabled, created=now, updated=now, exp=exp, nbf=nbf,
            )
            entry.versions.append(version)
            return version

    def get(self, name: str, version: str = "") -> KeyVersion:
        """A version of a key that is not deleted; an empty version means the latest."""
        with self._lock:
            return self._find(self._active(name), name, version)[1]

    def held(self, name: str, version: str = "") -> Optional[KeyVersion]:
        """The named version of a key the vault holds in any state (live, deleted, settling), else its latest
        version; None for a name it does not hold."""
        with self._lock:
            entry = self._entries.get(name.lower())
            if entry is None:
                return None
            return next((v for v in entry.versions if v.version == version), entry.versions[-1])

    def latest_versions(self) -> list[KeyVersion]:
        with self._lock:
            entries = [self._entries[key] for key in sorted(self._entries)]
            return [entry.versions[-1] for entry in entries if entry.deletion is None and self._settled(entry)]

    def versions(self, name: str) -> list[KeyVersion]:
        with self._lock:
            return list(self._active(name).versions)

    def update(self, name: str, version: str, changes: Mapping[str, Any]) -> KeyVersion:
        """Replace the given fields of one version and stamp ``updated``."""
        with self._lock:
            entry = self._active(name)
            index, current = self._find(entry, name, version)
            entry.versions[index] = dataclasses.replace(current, **changes, updated=self._clock())
            return entry.versions[index]

    def delete(self, name: str) -> tuple[KeyVersion, Deletion]:
        """Soft-delete every version of a key; it shows under the deleted keys once the deletion lands."""
        with self._lock:
            entry = self._active(name)
            now = self._clock()
            entry.deletion = Deletion(now, now + RECOVERABLE_DAYS * 86400)
            entry.settles_at = self._monotonic() + self._delete_latency
            return entry.versions[-1], entry.deletion

    def get_deleted(self, name: str) -> tuple[KeyVersion, Deletion]:
        with self._lock:
            entry = self._deleted(name)
            return entry.versions[-1], entry.deletion

    def deleted(self) -> list[tuple[KeyVersion, Deletion]]:
        with self._lock:
            entries = [self._entries[key] for key in sorted(self._entries)]
            return [
                (entry.versions[-1], entry.deletion)
                for entry in entries
                if entry.deletion is not None and self._settled(entry)
            ]

    def purge(self, name: str) -> None:
        with self._lock:
            self._deleted_to_change(name)
            del self._entries[name.lower()]

    def recover(self, name: str) -> KeyVersion:
        """Undelete a key; it can be used again once the recovery lands."""
        with self._lock:
            entry = self._deleted_to_change(name)
            entry.deletion = None
            entry.settles_at = self._monotonic() + self._recover_latency
            return entry.versions[-1]

    def shift_time(self, seconds: int) -> None:
        """Make every stored timestamp ``seconds`` older, as if that much time had passed.

        Deleted keys whose scheduled purge date is now in the past are purged,
        as Key Vault would have done by then.
        """
        with self._lock:
            for entry in self._entries.values():
                entry.versions = [
                    dataclasses.replace(v, created=v.created - seconds, updated=v.updated - seconds)
                    for v in entry.versions
                ]
                if entry.deletion is not None:
                    entry.deletion = Deletion(
                        entry.deletion.deleted_date - seconds, entry.deletion.scheduled_purge_date - seconds
                    )
            now = self._clock()
            for key, entry in list(self._entries.items()):
                if entry.deletion is not None and entry.deletion.scheduled_purge_date <= now:
                    del self._entries[key]
