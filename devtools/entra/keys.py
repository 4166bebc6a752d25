"""RSA keys, the JWKs that publish them, and RS256 JWTs signed and read with them.

Entra publishes each token-signing key with a self-signed certificate and names it by the
certificate's SHA-1 thumbprint (``kid`` equals ``x5t``); a Kubernetes API server names its
service-account key by the SHA-256 of the public key. Both conventions are followed here.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

KEY_SIZE = 2048
CERTIFICATE_DAYS = 5 * 365  # Entra's signing certificates run for five years
SIGNING_CERTIFICATE_NAME = "localentra token signing"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)


def self_signed_certificate(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SIGNING_CERTIFICATE_NAME)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=CERTIFICATE_DAYS))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def thumbprint(certificate: x509.Certificate) -> str:
    """``x5t``: the base64url SHA-1 of the certificate's DER encoding."""
    return b64url(certificate.fingerprint(hashes.SHA1()))


def public_key_id(key: rsa.RSAPrivateKey) -> str:
    """A Kubernetes service-account key id: the base64url SHA-256 of the DER public key."""
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return b64url(hashlib.sha256(der).digest())


def rsa_jwk(key: rsa.RSAPrivateKey) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    return {
        "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
        "e": b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
    }


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def load_private_pem(text: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(text.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


def sign_jwt(header: dict, claims: dict, key: rsa.RSAPrivateKey) -> str:
    """A compact JWS: the header and claims exactly as given, signed RS256."""
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def _segment(value: dict) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


@dataclass(frozen=True)
class Jwt:
    """A JWT taken apart, its signature not yet checked."""

    header: dict
    claims: dict
    signing_input: bytes
    signature: bytes

    @classmethod
    def parse(cls, token: str) -> Jwt:
        """Raises ValueError for anything but three base64url segments with JSON objects in the first two."""
        parts = token.split(".")
        if len(parts) != 3:
            raise ValueError("a JWT has three segments")
        header, claims = (json.loads(b64url_decode(part)) for part in parts[:2])
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise ValueError("a JWT's header and claims are JSON objects")
        return cls(header, claims, f"{parts[0]}.{parts[1]}".encode(), b64url_decode(parts[2]))

    def signed_by(self, key: rsa.RSAPrivateKey) -> bool:
        if self.header.get("alg") != "RS256":
            return False
        try:
            key.public_key().verify(self.signature, self.signing_input, padding.PKCS1v15(), hashes.SHA256())
            return True
        except InvalidSignature:
            return False
