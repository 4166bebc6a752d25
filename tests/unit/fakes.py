"""In-process fakes for pure unit tests of the key manager's rules (integration tests use real stand-ins)."""

from __future__ import annotations

import itertools
from datetime import datetime, timezone

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared.algorithms import KeyType
from shared.errors import NotFound
from shared.key_vault import KeySummary, KeyVersion

_counter = itertools.count()


def public_der(key_type: KeyType) -> bytes:
    if key_type.is_rsa:
        private = rsa.generate_private_key(65537, 2048 if key_type is KeyType.RSA_2048 else 4096)
    else:
        private = ec.generate_private_key(ec.SECP256R1() if key_type is KeyType.EC_P256 else ec.SECP384R1())
    return private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class FakeVault:
    """Keeps versions in memory and records every call, so tests can count Key Vault requests."""

    def __init__(self) -> None:
        self.keys: dict[str, list[KeyVersion]] = {}
        self.updated: dict[str, datetime] = {}
        self.calls: list[tuple] = []
        self.failing: dict[str, Exception] = {}  # key name -> error its update or delete raises

    def add_version(self, name: str, key_type: KeyType | None, tags: dict[str, str], enabled: bool = True) -> KeyVersion:
        der = public_der(key_type or KeyType.EC_P256)
        version = KeyVersion(name, f"v{next(_counter)}", key_type, der, enabled, dict(tags), ("sign", "verify"))
        self.keys.setdefault(name.lower(), []).append(version)
        self.updated[name.lower()] = datetime.now(timezone.utc)
        return version

    def create_key(self, name, key_type, tags):
        self.calls.append(("create_key", name, key_type))
        return self.add_version(name, key_type, tags)

    def get_key(self, name, version=None):
        self.calls.append(("get_key", name, version))
        versions = self.keys.get(name.lower())
        if not versions:
            raise NotFound(f"Key Vault key {name} not found")
        if version is None:
            return versions[-1]
        for candidate in versions:
            if candidate.version == version:
                return candidate
        raise NotFound(f"Key Vault key {name} not found")

    def list_keys(self):
        self.calls.append(("list_keys",))
        for versions in self.keys.values():
            current = versions[-1]
            yield KeySummary(current.name, current.tags, current.enabled, self.updated[current.name.lower()])

    def list_versions(self, name):
        self.calls.append(("list_versions", name))
        if name.lower() not in self.keys:
            raise NotFound(f"Key Vault key {name} not found")
        yield from (v.version for v in self.keys[name.lower()])

    def sign(self, name, version, algorithm, digest):
        self.calls.append(("sign", name, version, algorithm))
        key = self.get_key(name, version)
        self.calls.pop()
        size = 32 if key.key_type is KeyType.EC_P256 else 48
        return b"signature" if key.key_type.is_rsa else (1).to_bytes(size, "big") + (2).to_bytes(size, "big")

    def update_key_operations(self, name, version, key_ops):
        self.calls.append(("update_key_operations", name, version, key_ops))
        if name in self.failing:
            raise self.failing[name]
        self.updated[name.lower()] = datetime.now(timezone.utc)

    def delete_key(self, name):
        self.calls.append(("delete_key", name))
        if name in self.failing:
            raise self.failing[name]
        if self.keys.pop(name.lower(), None) is None:
            raise NotFound(f"Key Vault key {name} not found")

    def probe(self):
        self.calls.append(("probe",))

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]


class FixedIdentity:
    def __init__(self, server_id: str) -> None:
        self.id = server_id

    def server_id(self) -> str:
        return self.id
