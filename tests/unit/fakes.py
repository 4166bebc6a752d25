"""In-process fakes for pure unit tests of the key manager's rules (integration tests use real stand-ins)."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared.algorithms import KeyType
from shared.errors import FailedPrecondition, InvalidArgument, NameHeldByDeletedKey, NotFound
from shared.vault_port import LATEST, KeySummary, KeyVersion, SignedDigest, Vault

_counter = itertools.count()


def public_der(key_type: KeyType) -> bytes:
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if key_type.is_rsa:
        private = rsa.generate_private_key(65537, 2048 if key_type is KeyType.RSA_2048 else 4096)
    else:
        private = ec.generate_private_key(ec.SECP256R1() if key_type is KeyType.EC_P256 else ec.SECP384R1())
    return private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# The algorithms each key type signs with, as Key Vault refuses the others.
_ALGORITHMS = {
    KeyType.RSA_2048: {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"},
    KeyType.RSA_4096: {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"},
    KeyType.EC_P256: {"ES256"},
    KeyType.EC_P384: {"ES384"},
}


class InMemoryVault:
    """The vault port in memory: keeps versions and records every call, so tests can count Key Vault requests.

    ``clock`` gives the Updated time of what is written (tests that judge ages fix it).
    """

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.clock = clock
        self.keys: dict[str, list[KeyVersion]] = {}
        self.deleted: dict[str, list[KeyVersion]] = {}
        self.updated: dict[str, datetime] = {}
        self.calls: list[tuple[object, ...]] = []
        self.failing: dict[str, Exception] = {}  # key name -> error its update or delete raises

    def add_version(
        self,
        name: str,
        key_type: KeyType | None,
        tags: dict[str, str],
        enabled: bool = True,
        key_ops: tuple[str, ...] = ("sign", "verify"),
    ) -> KeyVersion:
        der = public_der(key_type or KeyType.EC_P256)
        now = self.clock()
        version = KeyVersion(name, f"v{next(_counter)}", key_type, der, enabled, dict(tags), tuple(key_ops), now)
        self.keys.setdefault(name.lower(), []).append(version)
        self.updated[name.lower()] = now
        return version

    def create_key(self, name: str, key_type: KeyType, tags: dict[str, str]) -> KeyVersion:
        self.calls.append(("create_key", name, key_type))
        if name.lower() in self.deleted:
            raise NameHeldByDeletedKey("its name is held by a soft-deleted Key Vault key")
        return self.add_version(name, key_type, tags)

    def get_key(self, name: str, version: str = LATEST) -> KeyVersion:
        self.calls.append(("get_key", name, version))
        return self._version(name, version)

    def _version(self, name: str, version: str) -> KeyVersion:
        versions = self.keys.get(name.lower())
        if not versions:
            raise NotFound("not found in Key Vault")
        if version in (LATEST, versions[-1].version):  # the current version's Updated time is the key's
            return dataclasses.replace(versions[-1], updated_on=self.updated[name.lower()])
        for candidate in versions:
            if candidate.version == version:
                return candidate
        raise NotFound("not found in Key Vault")

    def list_keys(self) -> Iterator[KeySummary]:
        self.calls.append(("list_keys",))
        for versions in self.keys.values():
            current = versions[-1]
            yield KeySummary(current.name, current.tags, current.enabled, self.updated[current.name.lower()])

    def sign(self, name: str, version: str, algorithm: str, digest: bytes) -> SignedDigest:
        self.calls.append(("sign", name, version, algorithm))
        key = self._version(name, version)
        if not key.enabled:
            raise FailedPrecondition("it is disabled in Key Vault")
        if "sign" not in key.key_ops:
            raise FailedPrecondition("its key operations in Key Vault do not allow this operation")
        if algorithm not in (_ALGORITHMS[key.key_type] if key.key_type is not None else {"RS256"}):
            raise InvalidArgument("Key Vault refused the request as invalid")
        size = 32 if key.key_type is KeyType.EC_P256 else 48
        signature = b"signature" if key.key_type is None or key.key_type.is_rsa else (1).to_bytes(size, "big") + (2).to_bytes(size, "big")
        return SignedDigest(key.version, signature)

    def update_key_operations(self, name: str, version: str, key_ops: tuple[str, ...]) -> None:
        self.calls.append(("update_key_operations", name, version, key_ops))
        if name in self.failing:
            raise self.failing[name]
        self.updated[name.lower()] = self.clock()

    def delete_key(self, name: str) -> None:
        self.calls.append(("delete_key", name))
        if name in self.failing:
            raise self.failing[name]
        versions = self.keys.pop(name.lower(), None)
        if versions is None:
            raise NotFound("not found in Key Vault")
        self.deleted[name.lower()] = versions

    def recover_deleted_key(self, name: str) -> KeyVersion:
        self.calls.append(("recover_deleted_key", name))
        versions = self.deleted.pop(name.lower(), None)
        if versions is None:
            raise NotFound("not found in Key Vault")
        self.keys[name.lower()] = versions
        return versions[-1]

    def probe(self) -> None:
        self.calls.append(("probe",))

    def names(self) -> list[str]:
        return [str(call[0]) for call in self.calls]


class FixedIdentity:
    def __init__(self, server_id: str) -> None:
        self.id = server_id

    def server_id(self) -> str:
        return self.id


# mypy checks the fake against the port it stands for, so that the two cannot drift apart.
_IN_MEMORY_VAULT_IS_A_VAULT: type[Vault] = InMemoryVault
