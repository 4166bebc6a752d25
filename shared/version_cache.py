"""What an instance remembers of Key Vault key versions, so that a warm request costs fewer reads.

None of it can make a request act on stale state: which version is current is always Key Vault's
answer. Three bounded maps, keyed by lowercase key name (Key Vault names are case-insensitive):
- the facts of each version seen (type and fingerprint, which never change, and whether it was this
  server's when last read: every read renews that), so that a signature's version costs no read
  once seen;
- the facts of the version each key had when last seen current: only a hint of the algorithm to sign
  with (Key Vault refuses an algorithm that does not fit the key, and then the key is read);
- the current version read for a key whose listing showed a given Updated time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from shared.algorithms import KeyType
from shared.public_keys import fingerprint
from shared.vault_port import KeySummary, KeyVersion

K = TypeVar("K")
V = TypeVar("V")
UPDATED_SETTLE_TIME = timedelta(seconds=5)
CAPACITY = 4096


@dataclass(frozen=True)
class VersionFacts:
    """What this instance knows of a key version: its type and fingerprint never change."""

    key_type: KeyType | None
    fingerprint: str
    ours: bool  # its name and tags were this server's (``ownership``) when last read


class _BoundedMap(Generic[K, V]):
    """A thread-safe map that forgets its least recently written entry, so memory cannot grow with the keys seen."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def get(self, key: K) -> V | None:
        with self._lock:
            return self._entries.get(key)


@dataclass(frozen=True)
class _ListedKey:
    """The current version read for a key whose listing showed ``updated_on``; read at ``read_at``."""

    updated_on: datetime
    read_at: datetime
    current: KeyVersion


class VersionCache:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self._facts: _BoundedMap[tuple[str, str], VersionFacts] = _BoundedMap(capacity)
        self._last_current: _BoundedMap[str, VersionFacts] = _BoundedMap(capacity)
        self._listed: _BoundedMap[str, _ListedKey] = _BoundedMap(capacity)

    def facts(self, name: str, version: str) -> VersionFacts | None:
        return self._facts.get((name.lower(), version))

    def remember(self, version: KeyVersion, ours: bool) -> VersionFacts:
        """The facts of a version just read; ``ours`` comes from this read, since tags can be changed."""
        facts = self.facts(version.name, version.version)
        if facts is None or facts.ours != ours:
            key_fingerprint = fingerprint(version.pkix_data) if version.key_type is not None else ""
            facts = VersionFacts(version.key_type, key_fingerprint, ours)
            self._facts.put((version.name.lower(), version.version), facts)
        return facts

    def saw_current(self, name: str, facts: VersionFacts) -> None:
        self._last_current.put(name.lower(), facts)

    def last_current(self, name: str) -> VersionFacts | None:
        """The facts of the version last seen current: a hint, never trusted."""
        return self._last_current.get(name.lower())

    def read_after_listing(self, summary: KeySummary, read_at: datetime, current: KeyVersion) -> None:
        if summary.updated_on is not None:
            self._listed.put(summary.name.lower(), _ListedKey(summary.updated_on, read_at, current))

    def listed_current(self, summary: KeySummary) -> KeyVersion | None:
        """The version read when the key's listing last showed its Updated time, if that read can be trusted."""
        listed = self._listed.get(summary.name.lower())
        # Key Vault's Updated has one-second granularity: a change made in the second of the read
        # (or within a clock skew of it) could keep the same Updated, so such entries are read again.
        if listed is None or listed.updated_on != summary.updated_on or listed.updated_on >= listed.read_at - UPDATED_SETTLE_TIME:
            return None
        return listed.current
