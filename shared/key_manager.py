"""SPIRE's KeyManager semantics on Key Vault: generate (and rotate), get, list and sign.

Plain Python over two ports, the vault and the server identity, so the rules are testable without a
network. The only cache holds what never goes stale: a key version's public key and fingerprint.
Which version is current is always asked of Key Vault, so a rotation through another instance is
seen by the next request.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from datetime import timedelta
from typing import Callable, Generic, Iterator, Protocol, TypeVar

from shared.algorithms import KeyType, SignerOptions, signing_algorithm
from shared.errors import FailedPrecondition, InvalidArgument, KeyManagerError, NotFound
from shared.key_vault import KeySummary, KeyVersion
from shared.maintenance import Failure, RefreshReport, SweepPolicy, SweepReport, is_stale
from shared.naming import KeyNaming
from shared.public_keys import PublicKey, fingerprint, signature_for_spire
from shared.server_identity import ServerIdentity

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")
UPDATED_SETTLE_TIME = timedelta(seconds=5)


class Vault(Protocol):
    def create_key(self, name: str, key_type: KeyType, tags: dict[str, str]) -> KeyVersion: ...
    def get_key(self, name: str, version: str | None = None) -> KeyVersion: ...
    def list_keys(self) -> Iterator[KeySummary]: ...
    def list_versions(self, name: str) -> Iterator[str]: ...
    def sign(self, name: str, version: str, algorithm: str, digest: bytes) -> bytes: ...
    def update_key_operations(self, name: str, version: str, key_ops: tuple[str, ...]) -> None: ...
    def delete_key(self, name: str) -> None: ...
    def probe(self) -> None: ...


@dataclass(frozen=True)
class SignRequest:
    key_id: str
    data: bytes
    options: SignerOptions
    key_fingerprint: str | None = None


@dataclass(frozen=True)
class Signature:
    signature: bytes
    key_fingerprint: str


@dataclass(frozen=True)
class _KnownVersion:
    version: str
    key_type: KeyType
    fingerprint: str


class _BoundedCache(Generic[K, V]):
    """A thread-safe LRU map, bounded so that memory cannot grow with the keys ever seen."""

    def __init__(self, capacity: int = 4096) -> None:
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

    def still_current(self, listed_updated_on: datetime | None) -> bool:
        # Key Vault's Updated has one-second granularity: a change made in the second of the read
        # (or within a clock skew of it) could keep the same Updated, so such entries are read again.
        return listed_updated_on == self.updated_on and self.updated_on < self.read_at - UPDATED_SETTLE_TIME


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class KeyManager:
    def __init__(
        self,
        vault: Vault,
        identity: ServerIdentity,
        trust_domain: str,
        sweep_policy: SweepPolicy = SweepPolicy(),
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._vault = vault
        self._identity = identity
        self._trust_domain = trust_domain
        self._sweep_policy = sweep_policy
        self._clock = clock
        self._naming: KeyNaming | None = None
        # Immutable facts only: (key name, fingerprint) -> version, and per key name the version
        # read for a listed Updated time (a rotation or refresh moves Updated, forcing a new read).
        self._versions: _BoundedCache[tuple[str, str], _KnownVersion] = _BoundedCache()
        self._listed: _BoundedCache[str, _ListedKey] = _BoundedCache()

    def naming(self) -> KeyNaming:
        """This server's naming scheme; resolves the server id on first use."""
        if self._naming is None:
            self._naming = KeyNaming(self._trust_domain, self._identity.server_id())
        return self._naming

    def generate_key(self, key_id: str, key_type: KeyType) -> PublicKey:
        """Create the key, or rotate it: a new version, possibly of another type, becomes current."""
        naming = self.naming()
        name = naming.key_name(key_id)
        created = self._vault.create_key(name, key_type, naming.tags)
        log.info("Generated key %s version %s (%s)", name, created.version, key_type.value)
        return self._public_key(key_id, created)

    def get_public_key(self, key_id: str) -> PublicKey:
        return self._public_key(key_id, self._current_version(key_id, self.naming().key_name(key_id)))

    def get_public_keys(self) -> list[PublicKey]:
        """The current public key of each enabled key of this server in this trust domain."""
        naming = self.naming()
        keys = []
        for summary in self._vault.list_keys():
            key_id = naming.key_id(summary.name)
            if key_id is None or not summary.enabled or not naming.owns(summary.tags):
                continue
            try:
                current = self._listed_current_version(summary)
            except NotFound:
                continue  # deleted since the listing
            if current.key_type is None or not current.enabled:
                log.warning("Skipping key %s: its current version is disabled or not a SPIRE key type", summary.name)
                continue
            keys.append(self._public_key(key_id, current))
        return sorted(keys, key=lambda key: key.id)

    def _listed_current_version(self, summary: KeySummary) -> KeyVersion:
        cached = self._listed.get(summary.name.lower())
        if cached is not None and cached.still_current(summary.updated_on):
            return cached.current
        read_at = self._clock()
        current = self._vault.get_key(summary.name)
        if summary.updated_on is not None:
            self._listed.put(summary.name.lower(), _ListedKey(summary.updated_on, read_at, current))
        return current

    def sign_data(self, request: SignRequest) -> Signature:
        name = self.naming().key_name(request.key_id)
        _check_digest(request)
        if request.key_fingerprint is None:
            known = self._remember(name, self._current_version(request.key_id, name))
        else:
            known = self._version_with_fingerprint(request.key_id, name, request.key_fingerprint)
        algorithm = signing_algorithm(known.key_type, request.options)
        raw = self._vault.sign(name, known.version, algorithm, request.data)
        return Signature(signature_for_spire(known.key_type, raw), known.fingerprint)

    def refresh(self) -> RefreshReport:
        """Touch every key of this server so that its Updated time says it is in use.

        One failing key does not stop the others; the report names each failure.
        """
        naming = self.naming()
        report = RefreshReport()
        for summary in self._vault.list_keys():
            if not naming.owns(summary.tags):
                continue
            try:
                current = self._vault.get_key(summary.name)
                self._vault.update_key_operations(summary.name, current.version, current.key_ops)
            except KeyManagerError as error:
                log.warning("Refreshing key %s failed: %s", summary.name, error.message)
                report.failed.append(Failure(summary.name, error.message))
            else:
                report.refreshed.append(summary.name)
        return report

    def sweep(self, dry_run: bool = False) -> SweepReport:
        """Delete the keys other servers of this trust domain abandoned, at most the policy's cap a run."""
        server_id = self.naming().server_id
        now = self._clock()
        policy = self._sweep_policy
        stale = [
            key
            for key in self._vault.list_keys()
            if is_stale(key, self._trust_domain, server_id, now, policy.stale_key_age)
        ]
        report = SweepReport(dry_run, candidates=[key.name for key in stale])
        if dry_run:
            return report
        for attempt, key in enumerate(stale):
            if attempt == policy.max_deletions:
                report.cap_reached = True
                break
            try:
                self._vault.delete_key(key.name)
                outcome = "deleted"
            except NotFound:
                outcome = "already deleted by another sweep"  # done all the same
            except KeyManagerError as error:
                log.warning("Deleting stale key %s failed: %s", key.name, error.message)
                report.failed.append(Failure(key.name, error.message))
                continue
            log.info(
                "Stale key %s %s, last updated %s",
                key.name,
                outcome,
                key.updated_on.isoformat() if key.updated_on else "unknown",
                extra={"custom_dimensions": {"key_name": key.name, "last_updated": str(key.updated_on), "outcome": outcome}},
            )
            report.deleted.append(key.name)
        return report

    def check_key_vault(self) -> None:
        """Raise if Key Vault does not answer this app's identity."""
        self._vault.probe()

    def _current_version(self, key_id: str, name: str) -> KeyVersion:
        try:
            current = self._vault.get_key(name)
        except NotFound:
            raise NotFound(f'key "{key_id}" not found') from None
        if not self.naming().owns(current.tags):
            raise NotFound(f'key "{key_id}" not found')
        if not current.enabled:
            raise FailedPrecondition(f'key "{key_id}" is disabled in Key Vault')
        if current.key_type is None:
            raise FailedPrecondition(f'key "{key_id}" in Key Vault is not of a supported key type')
        return current

    def _version_with_fingerprint(self, key_id: str, name: str, key_fingerprint: str) -> _KnownVersion:
        known = self._versions.get((name.lower(), key_fingerprint))
        if known is not None:
            return known
        # Cold: learn every version of the key once; versions never change, so this is paid once.
        try:
            for version in self._vault.list_versions(name):
                candidate = self._vault.get_key(name, version)
                if candidate.key_type is not None:
                    self._remember(name, candidate)
        except NotFound:
            raise NotFound(f'key "{key_id}" not found') from None
        known = self._versions.get((name.lower(), key_fingerprint))
        if known is None:
            raise FailedPrecondition(f'key "{key_id}" has no version with fingerprint {key_fingerprint}')
        return known

    def _remember(self, name: str, version: KeyVersion) -> _KnownVersion:
        assert version.key_type is not None
        known = _KnownVersion(version.version, version.key_type, fingerprint(version.pkix_data))
        self._versions.put((name.lower(), known.fingerprint), known)
        return known

    def _public_key(self, key_id: str, version: KeyVersion) -> PublicKey:
        if version.key_type is None:
            raise FailedPrecondition(f'key "{key_id}" in Key Vault is not of a supported key type')
        known = self._remember(version.name, version)
        return PublicKey(key_id, version.key_type, version.pkix_data, known.fingerprint)


def _check_digest(request: SignRequest) -> None:
    expected = request.options.hash_algorithm.digest_size
    if len(request.data) != expected:
        raise InvalidArgument(
            f"data must be a {request.options.hash_algorithm.value} digest of {expected} bytes, not {len(request.data)} bytes"
        )
