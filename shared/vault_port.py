"""What the key manager needs of a key vault, and the values that cross between them.

The domain owns these types; the Key Vault adapter (``key_vault``) implements the port and the
in-process fakes of the unit tests do too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from shared.algorithms import KeyType

LATEST = ""  # the version that names a key's current version in Key Vault's paths


@dataclass(frozen=True)
class KeyVersion:
    """One version of a Key Vault key, with its public key in DER form."""

    name: str
    version: str
    key_type: KeyType | None  # None when the key is no SPIRE key type (e.g. RSA-3072)
    pkix_data: bytes
    enabled: bool
    tags: dict[str, str] = field(default_factory=dict)
    key_ops: tuple[str, ...] = ()
    updated_on: datetime | None = None


@dataclass(frozen=True)
class KeySummary:
    """A key as the listing shows it: its name, its current version's tags, state and Updated time."""

    name: str
    tags: dict[str, str]
    enabled: bool
    updated_on: datetime | None


@dataclass(frozen=True)
class SignedDigest:
    """A signature as Key Vault returns it, and the version that made it."""

    version: str
    signature: bytes


class Vault(Protocol):
    def create_key(self, name: str, key_type: KeyType, tags: dict[str, str]) -> KeyVersion: ...
    def get_key(self, name: str, version: str = LATEST) -> KeyVersion: ...
    def list_keys(self) -> Iterator[KeySummary]: ...
    def sign(self, name: str, version: str, algorithm: str, digest: bytes) -> SignedDigest:
        """Sign with a version of the key; with ``LATEST``, with whichever version is current then."""
        ...

    def update_key_operations(self, name: str, version: str, key_ops: tuple[str, ...]) -> None: ...
    def delete_key(self, name: str) -> None: ...
    def recover_deleted_key(self, name: str) -> KeyVersion:
        """Undelete a soft-deleted key; returns its current version once it can be used again."""
        ...

    def probe(self) -> None: ...
