"""Public keys as SPIRE sees them, and the signature encoding SPIRE expects."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from shared.algorithms import KeyType


@dataclass(frozen=True)
class PublicKey:
    """A SPIRE public key: the key id, its type, DER SubjectPublicKeyInfo, its fingerprint, and its Key Vault version."""

    id: str
    type: KeyType
    pkix_data: bytes
    fingerprint: str
    version: str


def fingerprint(pkix_data: bytes) -> str:
    """Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo, as SPIRE's plugins compute it."""
    return hashlib.sha256(pkix_data).hexdigest()


def ecdsa_signature_to_der(raw: bytes) -> bytes:
    """Key Vault returns ECDSA signatures as r||s (IEEE P1363); SPIRE verifies ASN.1 DER."""
    if not raw or len(raw) % 2:
        raise ValueError(f"an r||s signature has an even, non-zero length, not {len(raw)}")
    half = len(raw) // 2
    return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))


def signature_for_spire(key_type: KeyType, raw: bytes) -> bytes:
    """The signature in the encoding SPIRE expects for the key type (RSA signatures pass as they are)."""
    return raw if key_type.is_rsa else ecdsa_signature_to_der(raw)
