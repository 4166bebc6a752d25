"""Key types and the signing algorithm table: which Key Vault algorithm signs for which request."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeVar

from shared.errors import InvalidArgument, shortened


class KeyType(str, enum.Enum):
    """SPIRE's key types, by the names the seed plugin documents."""

    RSA_2048 = "rsa-2048"
    RSA_4096 = "rsa-4096"
    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"

    @property
    def is_rsa(self) -> bool:
        return self in (KeyType.RSA_2048, KeyType.RSA_4096)

    @classmethod
    def parse(cls, value: str) -> KeyType:
        return _parse(cls, value, "key type")


class HashAlgorithm(str, enum.Enum):
    SHA256 = "SHA256"
    SHA384 = "SHA384"
    SHA512 = "SHA512"

    @property
    def digest_size(self) -> int:
        return {"SHA256": 32, "SHA384": 48, "SHA512": 64}[self.value]

    @classmethod
    def parse(cls, value: str) -> HashAlgorithm:
        return _parse(cls, value, "hash algorithm")


E = TypeVar("E", bound=enum.Enum)


def _parse(members: type[E], value: str, what: str) -> E:
    """The member named by a request's value, or an InvalidArgument listing the accepted values."""
    try:
        return members(value)
    except ValueError:
        names = ", ".join(member.value for member in members)
        raise InvalidArgument(f'unsupported {what} "{shortened(value)}": expected one of {names}') from None


@dataclass(frozen=True)
class SignerOptions:
    """How to sign: the digest's hash, and whether RSA signs with PSS rather than PKCS#1 v1.5."""

    hash_algorithm: HashAlgorithm
    pss: bool = False


_RSA_PKCS1 = {HashAlgorithm.SHA256: "RS256", HashAlgorithm.SHA384: "RS384", HashAlgorithm.SHA512: "RS512"}
_RSA_PSS = {HashAlgorithm.SHA256: "PS256", HashAlgorithm.SHA384: "PS384", HashAlgorithm.SHA512: "PS512"}
# Key Vault's ES256 and ES384 are bound to their curves, so each EC key type signs with one hash only.
_EC = {
    (KeyType.EC_P256, HashAlgorithm.SHA256): "ES256",
    (KeyType.EC_P384, HashAlgorithm.SHA384): "ES384",
}


def signing_algorithm(key_type: KeyType, options: SignerOptions) -> str:
    """The Key Vault signature algorithm for a key type and signer options, as SPIRE's plugin maps them."""
    if key_type.is_rsa:
        return (_RSA_PSS if options.pss else _RSA_PKCS1)[options.hash_algorithm]
    algorithm = None if options.pss else _EC.get((key_type, options.hash_algorithm))
    if algorithm is None:
        hashing = f"{options.hash_algorithm.value}{' with PSS' if options.pss else ''}"
        raise InvalidArgument(f"unsupported combination of key type: {key_type.value} and hashing algorithm: {hashing}")
    return algorithm
