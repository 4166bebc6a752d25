"""SPIRE's KeyManager semantics on Key Vault: generate (and rotate), get, list, sign, refresh, sweep.

Plain Python over two ports, the vault and the server identity, so the rules are testable without a
network. Which version of a key is current is always Key Vault's answer, so a rotation through
another instance is seen by the next request: a warm sign asks Key Vault to sign with the key's
current version, and the answer names the version that made it. What this instance remembers of
key versions (``version_cache``) only saves reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from shared.algorithms import KeyType, SignerOptions, signing_algorithm
from shared.errors import (
    FailedPrecondition,
    InvalidArgument,
    KeyManagerError,
    NameHeldByDeletedKey,
    NotFound,
    Unavailable,
    shortened,
)
from shared.identity_port import ServerIdentity
from shared.maintenance import (
    Failure,
    RecordedUse,
    RefreshReport,
    SweepOutcome,
    SweepPolicy,
    SweepReport,
    is_aged,
    is_stale,
)
from shared.naming import KeyNaming
from shared.ownership import TAG_SERVER_ID, Owner, owner_of, owner_tags
from shared.public_keys import PublicKey, signature_for_spire
from shared.vault_port import LATEST, KeySummary, KeyVersion, SignedDigest, Vault
from shared.version_cache import VersionCache, VersionFacts

log = logging.getLogger(__name__)

R = TypeVar("R")


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
    version: str  # the Key Vault key version that signed


def _utc_now() -> datetime:
    return datetime.now(UTC)


class KeyManager:
    def __init__(
        self,
        vault: Vault,
        identity: ServerIdentity,
        trust_domain: str,
        sweep_policy: SweepPolicy = SweepPolicy(),
        clock: Callable[[], datetime] = _utc_now,
        recorded_use: Callable[[], RecordedUse] = RecordedUse,
    ) -> None:
        self._vault = vault
        self._identity = identity
        self._trust_domain = trust_domain
        self._sweep_policy = sweep_policy
        self._clock = clock
        # Reads, once per sweep, when each server last called as its id blob records it (nothing without blobs).
        self._recorded_use = recorded_use
        self._naming: KeyNaming | None = None
        self._versions = VersionCache()

    def naming(self) -> KeyNaming:
        """This server's naming scheme, for the server id its identity holds now."""
        server_id = self._identity.server_id()
        naming = self._naming
        if naming is None or naming.server_id != server_id:
            naming = self._naming = KeyNaming(self._trust_domain, server_id)
        return naming

    def generate_key(self, key_id: str, key_type: KeyType) -> PublicKey:
        """Create the key, or rotate it: a new version, possibly of another type, becomes current.

        A name held by this server's soft-deleted key is recovered, then rotated; a name that holds
        a key of another server is refused.
        """
        naming = self.naming()
        name = naming.key_name(key_id)
        tags = owner_tags(naming.trust_domain, naming.server_id)
        try:
            self._refuse_if_not_ours(naming, key_id, self._ask(key_id, self._vault.get_key, name))
        except NotFound:
            pass  # a new key id, or one whose key was deleted
        try:
            created = self._ask(key_id, self._vault.create_key, name, key_type, tags)
        except NameHeldByDeletedKey:
            self._recover(naming, key_id, name)
            created = self._ask(key_id, self._vault.create_key, name, key_type, tags)
        log.info("Generated key %s version %s (%s)", name, created.version, key_type.value)
        return self._public_key(naming, key_id, created)

    def get_public_key(self, key_id: str) -> PublicKey:
        naming = self.naming()
        return self._public_key(naming, key_id, self._current_version(naming, key_id, naming.key_name(key_id)))

    def get_public_keys(self) -> list[PublicKey]:
        """The current public key of each enabled key of this server in this trust domain."""
        naming = self.naming()
        keys = []
        for key_id, summary in self._own_keys(naming):
            if not summary.enabled:
                continue
            try:
                current = self._listed_current_version(summary)
            except NotFound:
                continue  # deleted since the listing
            if not self._remember(naming, current).ours:
                continue  # re-tagged since the listing
            if current.key_type is None or not current.enabled:
                log.warning("Skipping key %s: its current version is disabled or not a SPIRE key type", summary.name)
                continue
            keys.append(self._public_key(naming, key_id, current))
        return sorted(keys, key=lambda key: key.id)

    def sign_data(self, request: SignRequest) -> Signature:
        """Sign with the key id's current version; ``key_fingerprint``, if given, must be that version's.

        Warm, one request: Key Vault signs with the key's current version, by the algorithm of the
        version this instance last saw current. Cold (no version seen yet, or that algorithm refused:
        the key was rotated to another type), two: the current version is read, then signs.
        """
        naming = self.naming()
        name = naming.key_name(request.key_id)
        _check_digest(request)
        signed = self._sign_as_last_seen(request, name) or self._read_then_sign(naming, request, name)
        facts = self._signing_version_facts(naming, request.key_id, name, signed.version)
        if not facts.ours:
            raise NotFound(_not_found(request.key_id))  # the signature is not given out
        if facts.key_type is None:
            raise FailedPrecondition(f'key "{shortened(request.key_id)}" in Key Vault is not of a supported key type')
        if request.key_fingerprint is not None and request.key_fingerprint != facts.fingerprint:
            raise FailedPrecondition(
                f'key "{shortened(request.key_id)}" has been rotated: its current key does not have the key_fingerprint given'
            )
        return Signature(signature_for_spire(facts.key_type, signed.signature), facts.fingerprint, signed.version)

    def list_vault(self) -> list[KeySummary]:
        """One listing of the whole vault, for refreshing the servers that share it."""
        return list(self._vault.list_keys())

    def refresh(self, listing: Sequence[KeySummary] | None = None) -> RefreshReport:
        """Touch every key of this server so that its Updated time says it is in use.

        ``listing``, one taken by list_vault for several servers of this vault, saves listing it
        again. One failing key does not stop the others; the report names each failure.
        """
        naming = self.naming()
        report = RefreshReport()
        for _, summary in self._own_keys(naming, listing):
            try:
                current = self._vault.get_key(summary.name)
                if not self._owns(naming, current):
                    continue  # re-tagged since the listing
                self._vault.update_key_operations(summary.name, current.version, current.key_ops)
            except KeyManagerError as error:
                log.warning("Refreshing key %s failed: %s", summary.name, error.message)
                report.failed.append(Failure(summary.name, error.message))
            else:
                report.refreshed.append(summary.name)
        return report

    def sweep(self, dry_run: bool = False) -> SweepReport:
        """Delete the keys other servers of this trust domain abandoned, at most the policy's cap a run.

        A key is abandoned when both its Updated time and its server's recorded use are older than
        the policy's age. Each candidate is read again just before it is deleted, and kept if its owner
        rotated or refreshed it since the listing. A dry run reports the candidates and whether the cap
        would stop a real run.
        """
        naming = self.naming()
        now = self._clock()
        policy = self._sweep_policy
        recorded_use = self._recorded_use()
        aged = [key for key in self._vault.list_keys() if is_aged(key, naming.trust_domain, naming.server_id, now, policy.stale_key_age)]
        stale = [key for key in aged if self._is_stale(naming, key, now, recorded_use)]
        _log_aged_keys_kept(aged, stale, recorded_use, now - policy.stale_key_age)
        report = SweepReport(dry_run, candidates=[key.name for key in stale], kept=[key.name for key in aged if key not in stale])
        if dry_run:
            report.cap_reached = len(stale) > policy.max_deletions
            return report
        for attempt, key in enumerate(stale):
            if attempt == policy.max_deletions:
                report.cap_reached = True
                break
            try:
                outcome = self._delete_if_still_stale(naming, key.name, now, recorded_use)
            except KeyManagerError as error:
                log.warning("Deleting stale key %s failed: %s", key.name, error.message)
                report.failed.append(Failure(key.name, error.message))
                continue
            log.info(
                "Stale key %s %s, last updated %s",
                key.name,
                outcome.value,
                key.updated_on.isoformat() if key.updated_on else "unknown",
                extra={"key_name": key.name, "last_updated": str(key.updated_on), "outcome": outcome.value},
            )
            if outcome is not SweepOutcome.KEPT:
                report.deleted.append(key.name)
        return report

    def check_key_vault(self) -> None:
        """Raise if Key Vault does not answer this app's identity."""
        self._vault.probe()

    # --- ownership --------------------------------------------------------------------------------------------------

    def _owns(self, naming: KeyNaming, key: KeySummary | KeyVersion) -> bool:
        return owner_of(key.name, key.tags, naming.trust_domain, naming.server_id) is Owner.THIS_SERVER

    def _own_keys(self, naming: KeyNaming, listing: Sequence[KeySummary] | None = None) -> Iterator[tuple[str, KeySummary]]:
        """This server's keys as the listing shows them, with their key ids: what listing and refresh cover."""
        for summary in self._vault.list_keys() if listing is None else listing:
            key_id = naming.key_id(summary.name)
            if key_id is not None and self._owns(naming, summary):
                yield key_id, summary

    def _refuse_if_not_ours(self, naming: KeyNaming, key_id: str, current: KeyVersion) -> None:
        if not self._owns(naming, current):
            raise _name_of_another_server(key_id)

    def _is_stale(self, naming: KeyNaming, key: KeySummary | KeyVersion, now: datetime, recorded_use: RecordedUse) -> bool:
        return is_stale(key, naming.trust_domain, naming.server_id, now, self._sweep_policy.stale_key_age, recorded_use)

    # --- reading and signing ----------------------------------------------------------------------------------------

    def _current_version(self, naming: KeyNaming, key_id: str, name: str) -> KeyVersion:
        current = self._ask(key_id, self._vault.get_key, name)
        facts = self._remember(naming, current)
        if not facts.ours:
            raise NotFound(_not_found(key_id))
        if not current.enabled:
            raise FailedPrecondition(f'key "{shortened(key_id)}" is disabled in Key Vault')
        if current.key_type is None:
            raise FailedPrecondition(f'key "{shortened(key_id)}" in Key Vault is not of a supported key type')
        self._versions.saw_current(name, facts)
        return current

    def _listed_current_version(self, summary: KeySummary) -> KeyVersion:
        current = self._versions.listed_current(summary)
        if current is None:
            read_at = self._clock()
            current = self._vault.get_key(summary.name)
            self._versions.read_after_listing(summary, read_at, current)
        return current

    def _sign_as_last_seen(self, request: SignRequest, name: str) -> SignedDigest | None:
        """The warm path: the current version signs, by the algorithm of the version last seen current.

        None when no version was seen, or the algorithm does not fit: the key may have been rotated
        to another type (Key Vault refuses the algorithm then), so it is read.
        """
        seen = self._versions.last_current(name)
        if seen is None or seen.key_type is None:
            return None
        try:
            algorithm = signing_algorithm(seen.key_type, request.options)
            return self._ask(request.key_id, self._vault.sign, name, LATEST, algorithm, request.data)
        except InvalidArgument:
            return None

    def _read_then_sign(self, naming: KeyNaming, request: SignRequest, name: str) -> SignedDigest:
        """The cold path: read the current version, then sign with that version."""
        current = self._current_version(naming, request.key_id, name)
        assert current.key_type is not None  # _current_version refuses keys of other types
        algorithm = signing_algorithm(current.key_type, request.options)
        return self._ask(request.key_id, self._vault.sign, name, current.version, algorithm, request.data)

    def _signing_version_facts(self, naming: KeyNaming, key_id: str, name: str, version: str) -> VersionFacts:
        """The facts of the version that signed: remembered, or read the first time."""
        facts = self._versions.facts(name, version)
        if facts is None:
            facts = self._remember(naming, self._ask(key_id, self._vault.get_key, name, version))
        if facts.ours:
            self._versions.saw_current(name, facts)
        return facts

    def _remember(self, naming: KeyNaming, version: KeyVersion) -> VersionFacts:
        """The facts of a version just read; whose it is comes from this read, since tags can be changed."""
        return self._versions.remember(version, self._owns(naming, version))

    def _public_key(self, naming: KeyNaming, key_id: str, version: KeyVersion) -> PublicKey:
        if version.key_type is None:
            raise FailedPrecondition(f'key "{shortened(key_id)}" in Key Vault is not of a supported key type')
        facts = self._remember(naming, version)
        self._versions.saw_current(version.name, facts)
        return PublicKey(key_id, version.key_type, version.pkix_data, facts.fingerprint, version.version)

    # --- writing ----------------------------------------------------------------------------------------------------

    def _recover(self, naming: KeyNaming, key_id: str, name: str) -> None:
        """Recover this server's soft-deleted key so that it can be rotated; put another's back as it was."""
        try:
            recovered = self._ask(key_id, self._vault.recover_deleted_key, name)
        except NotFound:
            # Another call recovered (or purged) the key after this call's create was refused, so whose
            # it is can be read only once that recovery lands.
            raise Unavailable(f'key "{shortened(key_id)}" is being recovered by another request: retry in a few seconds') from None
        if not self._owns(naming, recovered):
            self._vault.delete_key(name)
            raise _name_of_another_server(key_id)
        log.info("Recovered soft-deleted key %s to rotate it", name)

    def _delete_if_still_stale(self, naming: KeyNaming, name: str, now: datetime, recorded_use: RecordedUse) -> SweepOutcome:
        """Read the key again and delete it only if it is still stale and still another server's."""
        try:
            if not self._is_stale(naming, self._vault.get_key(name), now, recorded_use):
                return SweepOutcome.KEPT
            self._vault.delete_key(name)
        except NotFound:
            return SweepOutcome.ALREADY_DELETED
        return SweepOutcome.DELETED

    @staticmethod
    def _ask(key_id: str, call: Callable[..., R], *args: object) -> R:
        """A vault call about one key, whose errors name the caller's key id (never a Key Vault name)."""
        try:
            return call(*args)
        except NotFound:
            raise NotFound(_not_found(key_id)) from None
        except FailedPrecondition as error:
            raise type(error)(f'key "{shortened(key_id)}" cannot be used: {error.message}') from None


def _log_aged_keys_kept(aged: Sequence[KeySummary], stale: Sequence[KeySummary], recorded_use: RecordedUse, cutoff: datetime) -> None:
    """Say which keys the Updated time alone would have swept, and why their servers' use keeps them."""
    kept = [key for key in aged if key not in stale]
    unknown = [key.name for key in kept if recorded_use.quiet_since(key.tags[TAG_SERVER_ID], cutoff) is None]
    in_use = [key.name for key in kept if key.name not in unknown]
    if in_use:
        log.warning("Sweep kept %d keys not refreshed for the stale age whose servers still call: %s", len(in_use), ", ".join(in_use))
    if unknown:
        log.warning(
            "Sweep kept %d keys whose servers' use could not be determined (an id blob without a readable record): %s",
            len(unknown),
            ", ".join(unknown),
        )


def _name_of_another_server(key_id: str) -> FailedPrecondition:
    return FailedPrecondition(f'key id "{shortened(key_id)}" cannot be generated: its Key Vault key name belongs to another server')


def _not_found(key_id: str) -> str:
    return f'key "{shortened(key_id)}" not found'


def _check_digest(request: SignRequest) -> None:
    expected = request.options.hash_algorithm.digest_size
    if len(request.data) != expected:
        raise InvalidArgument(
            f"data must be a {request.options.hash_algorithm.value} digest of {expected} bytes, not {len(request.data)} bytes"
        )
