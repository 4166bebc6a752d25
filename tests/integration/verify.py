"""Verify the app's signatures locally with `cryptography`, as a relying party would."""

from __future__ import annotations

import base64
import hashlib

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

HASHES = {"SHA256": hashes.SHA256(), "SHA384": hashes.SHA384(), "SHA512": hashes.SHA512()}


def digest(hash_name: str, message: bytes = b"to be signed") -> bytes:
    return hashlib.new(hash_name.lower(), message).digest()


def verify(public_key: dict, signature_b64: str, data: bytes, hash_name: str, pss: bool = False) -> None:
    """Raise InvalidSignature unless the signature verifies with the public key object's key."""
    key = serialization.load_der_public_key(base64.b64decode(public_key["pkix_data"]))
    signature = base64.b64decode(signature_b64)
    algorithm = Prehashed(HASHES[hash_name])
    if isinstance(key, rsa.RSAPublicKey):
        scheme = padding.PSS(mgf=padding.MGF1(HASHES[hash_name]), salt_length=HASHES[hash_name].digest_size) if pss else padding.PKCS1v15()
        key.verify(signature, data, scheme, algorithm)
    else:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(signature, data, ec.ECDSA(algorithm))
