"""Key generation, JSON Web Key export, and sign/verify over precomputed digests.

Key Vault never hashes for the caller: ``sign`` and ``verify`` receive a digest,
so every operation here uses ``Prehashed`` and checks the digest length itself.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Optional, Union

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from .errors import bad_parameter

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]

RSA_SIZES = (2048, 3072, 4096)
CURVES: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
_CURVE_NAMES = {curve.name: name for name, curve in CURVES.items()}

# What Key Vault grants when a create request names no key_ops.
DEFAULT_KEY_OPS = {
    "RSA": ("encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"),
    "EC": ("sign", "verify"),
}
DEFAULT_KEY_OPS.update({f"{family}-HSM": ops for family, ops in DEFAULT_KEY_OPS.items()})
HSM_KEY_TYPES = ("RSA-HSM", "EC-HSM")
KNOWN_KEY_OPS = frozenset({"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey", "import", "export"})

_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


@dataclass(frozen=True)
class Algorithm:
    """A JWS signature algorithm: its hash, and the key it needs ("RSA" or a curve name)."""

    hash: type[hashes.HashAlgorithm]
    key: str
    pss: bool = False


ALGORITHMS = {
    "RS256": Algorithm(hashes.SHA256, "RSA"),
    "RS384": Algorithm(hashes.SHA384, "RSA"),
    "RS512": Algorithm(hashes.SHA512, "RSA"),
    "PS256": Algorithm(hashes.SHA256, "RSA", pss=True),
    "PS384": Algorithm(hashes.SHA384, "RSA", pss=True),
    "PS512": Algorithm(hashes.SHA512, "RSA", pss=True),
    "ES256": Algorithm(hashes.SHA256, "P-256"),
    "ES384": Algorithm(hashes.SHA384, "P-384"),
    "ES512": Algorithm(hashes.SHA512, "P-521"),
}


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(value: object, field: str) -> bytes:
    """Decode base64url with optional padding; anything else is the caller's mistake (400)."""
    if not isinstance(value, str) or not _B64URL.fullmatch(value):
        raise bad_parameter(f"Property '{field}' must be a base64url encoded string.")
    unpadded = value.rstrip("=")
    try:
        return base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
    except ValueError:
        raise bad_parameter(f"Property '{field}' must be a base64url encoded string.") from None


def generate_key(kty: object, key_size: object = None, crv: object = None) -> tuple[str, PrivateKey]:
    """Create a key for a create request; returns its key type (the request's "kty") and the key."""
    family = kty.removesuffix("-HSM") if isinstance(kty, str) else None
    if family == "RSA":
        size = 2048 if key_size is None else key_size
        if type(size) is not int or size not in RSA_SIZES:
            raise bad_parameter(f"Invalid key_size {key_size!r}; supported sizes are {list(RSA_SIZES)}.")
        return str(kty), rsa.generate_private_key(public_exponent=65537, key_size=size)
    if family == "EC":
        name = "P-256" if crv is None else crv
        if name not in CURVES:
            raise bad_parameter(f"Invalid crv {crv!r}; supported curves are {list(CURVES)}.")
        return str(kty), ec.generate_private_key(CURVES[name])
    raise bad_parameter(f"Invalid kty {kty!r}; supported types are RSA, RSA-HSM, EC, EC-HSM.")


def _uint_bytes(value: int, length: Optional[int] = None) -> bytes:
    return value.to_bytes(length or max(1, (value.bit_length() + 7) // 8), "big")


def _key_name(key: PrivateKey) -> str:
    """"RSA" for RSA keys, else the JWK curve name, matching ``Algorithm.key``."""
    return "RSA" if isinstance(key, rsa.RSAPrivateKey) else _CURVE_NAMES[key.curve.name]


def public_jwk(key: PrivateKey) -> dict:
    """The public members of a JWK; EC coordinates are padded to the curve size as JWK requires."""
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.public_key().public_numbers()
        return {"n": b64url_encode(_uint_bytes(numbers.n)), "e": b64url_encode(_uint_bytes(numbers.e))}
    point = key.public_key().public_numbers()
    size = (key.curve.key_size + 7) // 8
    return {
        "crv": _key_name(key),
        "x": b64url_encode(_uint_bytes(point.x, size)),
        "y": b64url_encode(_uint_bytes(point.y, size)),
    }


def _algorithm_for(key: PrivateKey, alg: object, digest: bytes) -> Algorithm:
    algorithm = ALGORITHMS.get(alg) if isinstance(alg, str) else None
    if algorithm is None:
        raise bad_parameter(f"Invalid algorithm {alg!r}; supported algorithms are {list(ALGORITHMS)}.")
    if algorithm.key != _key_name(key):
        raise bad_parameter(f"Algorithm {alg} cannot be used with this key ({_key_name(key)}).")
    if len(digest) != algorithm.hash.digest_size:
        raise bad_parameter(f"Algorithm {alg} needs a {algorithm.hash.digest_size}-byte digest, got {len(digest)}.")
    return algorithm


def _rsa_padding(algorithm: Algorithm) -> padding.AsymmetricPadding:
    if algorithm.pss:
        return padding.PSS(mgf=padding.MGF1(algorithm.hash()), salt_length=algorithm.hash.digest_size)
    return padding.PKCS1v15()


def sign(key: PrivateKey, alg: object, digest: bytes) -> bytes:
    """Sign a digest; ECDSA signatures are returned as JWS raw r||s, not DER."""
    algorithm = _algorithm_for(key, alg, digest)
    prehashed = utils.Prehashed(algorithm.hash())
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(digest, _rsa_padding(algorithm), prehashed)
    r, s = utils.decode_dss_signature(key.sign(digest, ec.ECDSA(prehashed)))
    size = (key.curve.key_size + 7) // 8
    return _uint_bytes(r, size) + _uint_bytes(s, size)


def verify(key: PrivateKey, alg: object, digest: bytes, signature: bytes) -> bool:
    """Check a signature made by ``sign`` (or by anyone holding the key)."""
    algorithm = _algorithm_for(key, alg, digest)
    prehashed = utils.Prehashed(algorithm.hash())
    try:
        if isinstance(key, rsa.RSAPrivateKey):
            key.public_key().verify(signature, digest, _rsa_padding(algorithm), prehashed)
            return True
        size = (key.curve.key_size + 7) // 8
        if len(signature) != 2 * size:
            return False
        r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
        key.public_key().verify(utils.encode_dss_signature(r, s), digest, ec.ECDSA(prehashed))
        return True
    except (InvalidSignature, ValueError):
        return False
