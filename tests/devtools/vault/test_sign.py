"""Signing through the SDK's CryptographyClient, checked locally with ``cryptography``."""

from __future__ import annotations

import base64
import hashlib

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.keyvault.keys import KeyClient, KeyType, KeyVaultKey
from azure.keyvault.keys.crypto import SignatureAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from .conftest import Running

HASHES = {"256": (hashlib.sha256, hashes.SHA256), "384": (hashlib.sha384, hashes.SHA384),
          "512": (hashlib.sha512, hashes.SHA512)}
ES256 = SignatureAlgorithm.es256
CURVES = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def verify_locally(key: KeyVaultKey, alg: str, digest: bytes, signature: bytes) -> None:
    """Raise InvalidSignature unless ``signature`` is a valid ``alg`` signature of ``digest`` by ``key``."""
    jwk = key.key
    hash_algorithm = HASHES[alg[2:]][1]()
    prehashed = utils.Prehashed(hash_algorithm)
    if alg.startswith("ES"):
        curve = CURVES[jwk.crv]
        public = ec.EllipticCurvePublicNumbers(
            int.from_bytes(jwk.x, "big"), int.from_bytes(jwk.y, "big"), curve
        ).public_key()
        size = (curve.key_size + 7) // 8
        assert len(signature) == 2 * size
        r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
        public.verify(utils.encode_dss_signature(r, s), digest, ec.ECDSA(prehashed))
        return
    public_rsa = rsa.RSAPublicNumbers(int.from_bytes(jwk.e, "big"), int.from_bytes(jwk.n, "big")).public_key()
    if alg.startswith("PS"):
        pad: padding.AsymmetricPadding = padding.PSS(padding.MGF1(hash_algorithm), hash_algorithm.digest_size)
    else:
        pad = padding.PKCS1v15()
    public_rsa.verify(signature, digest, pad, prehashed)


def sign_and_check(key_client: KeyClient, key: KeyVaultKey, alg: str) -> None:
    digest = HASHES[alg[2:]][0](b"localvault " + alg.encode()).digest()
    crypto = key_client.get_cryptography_client(key.name, key_version=key.properties.version)
    result = crypto.sign(SignatureAlgorithm(alg), digest)
    assert result.key_id == key.id
    verify_locally(key, alg, digest, result.signature)


def test_rsa_key_signs_with_every_rsa_algorithm(key_client: KeyClient, name: str) -> None:
    key = key_client.create_rsa_key(name, size=2048)
    for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"):
        sign_and_check(key_client, key, alg)


@pytest.mark.parametrize("alg, curve", [("ES256", "P-256"), ("ES384", "P-384"), ("ES512", "P-521")])
def test_ec_key_signs_with_its_curve_algorithm(key_client: KeyClient, name: str, alg: str, curve: str) -> None:
    key = key_client.create_ec_key(name, curve=curve)
    sign_and_check(key_client, key, alg)


def test_hsm_keys_are_created_as_hsm_keys_and_sign(key_client: KeyClient, name: str) -> None:
    rsa_key = key_client.create_rsa_key(f"{name}-rsa", size=4096, hardware_protected=True)
    ec_key = key_client.create_ec_key(f"{name}-ec", curve="P-384", hardware_protected=True)
    assert (rsa_key.key_type, ec_key.key_type) == (KeyType.rsa_hsm, KeyType.ec_hsm)
    assert (key_client.get_key(rsa_key.name).key_type, key_client.get_key(ec_key.name).key_type) == (KeyType.rsa_hsm, KeyType.ec_hsm)
    assert len(rsa_key.key.n) == 512 and ec_key.key.crv == "P-384"
    assert "sign" in rsa_key.key_operations and sorted(ec_key.key_operations) == ["sign", "verify"]
    sign_and_check(key_client, rsa_key, "PS256")
    sign_and_check(key_client, ec_key, "ES384")


def test_verify_endpoint(localvault: Running, auth: dict[str, str], key_client: KeyClient, name: str) -> None:
    key = key_client.create_ec_key(name, curve="P-256")
    digest = hashlib.sha256(b"payload").digest()
    signature = key_client.get_cryptography_client(name, key_version=key.properties.version).sign(
        SignatureAlgorithm.es256, digest
    ).signature

    def verify(value: bytes) -> bool:
        response = requests.post(
            f"{key.id}/verify", json={"alg": "ES256", "digest": b64url(digest), "value": b64url(value)},
            headers=auth, verify=localvault.ca, timeout=5,
        )
        assert response.status_code == 200
        return response.json()["value"]

    assert verify(signature) is True
    assert verify(bytes([signature[0] ^ 1]) + signature[1:]) is False


def test_sign_is_refused_for_disabled_keys_and_missing_key_ops(key_client: KeyClient, name: str) -> None:
    digest = hashlib.sha256(b"x").digest()
    key = key_client.create_ec_key(name, curve="P-256")
    key_client.update_key_properties(name, key.properties.version, enabled=False)
    with pytest.raises(HttpResponseError) as disabled:
        key_client.get_cryptography_client(name, key_version=key.properties.version).sign(ES256, digest)
    assert disabled.value.status_code == 403
    assert "disabled" in disabled.value.message

    verify_only = key_client.create_ec_key(name, curve="P-256", key_operations=["verify"])
    with pytest.raises(HttpResponseError) as not_permitted:
        key_client.get_cryptography_client(name, key_version=verify_only.properties.version).sign(ES256, digest)
    assert not_permitted.value.status_code == 403
    assert "not permitted" in not_permitted.value.message
    # Key Vault's inner error codes tell these apart from a refusal of the caller's identity.
    assert disabled.value.response.json()["error"]["innererror"]["code"] == "KeyDisabled"
    assert not_permitted.value.response.json()["error"]["innererror"]["code"] == "KeyOperationForbidden"


def test_an_empty_version_signs_and_verifies_with_the_current_version(
    localvault: Running, auth: dict[str, str], key_client: KeyClient, name: str
) -> None:
    digest = hashlib.sha256(b"latest").digest()
    current = f"{localvault.vault_url}/keys/{name}/"  # + "/sign": the path Key Vault reads as "the current version"

    def sign() -> dict:
        response = requests.post(f"{current}/sign", json={"alg": "ES256", "value": b64url(digest)}, headers=auth,
                                 verify=localvault.ca, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    def verify(signature: str) -> bool:
        response = requests.post(f"{current}/verify", json={"alg": "ES256", "digest": b64url(digest), "value": signature},
                                 headers=auth, verify=localvault.ca, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()["value"]

    first = key_client.create_ec_key(name, curve="P-256")
    signed = sign()
    assert signed["kid"] == first.id  # names the version that signed
    verify_locally(first, "ES256", digest, base64.urlsafe_b64decode(signed["value"] + "=="))
    second = key_client.create_ec_key(name, curve="P-256")
    rotated = sign()
    assert rotated["kid"] == second.id
    assert verify(rotated["value"]) is True and verify(signed["value"]) is False  # the current version verifies


def test_sign_rejects_bad_requests(
    localvault: Running, auth: dict[str, str], key_client: KeyClient, name: str
) -> None:
    key = key_client.create_ec_key(name, curve="P-256")

    def sign(url: str, alg: str, digest: bytes) -> requests.Response:
        return requests.post(f"{url}/sign", json={"alg": alg, "value": b64url(digest)}, headers=auth,
                             verify=localvault.ca, timeout=5)

    assert sign(key.id, "ES256", b"short").status_code == 400  # digest length does not fit ES256
    assert sign(key.id, "ES384", bytes(48)).status_code == 400  # algorithm does not fit the curve
    assert sign(key.id, "RS256", bytes(32)).status_code == 400  # algorithm does not fit the key type
    assert sign(key.id, "HS256", bytes(32)).status_code == 400  # unknown algorithm
    assert sign(f"{localvault.vault_url}/keys/{name}", "ES256", bytes(32)).status_code == 405  # no version segment
    padded_digest = base64.urlsafe_b64encode(bytes(32)).decode()  # padding is optional on input
    padded = requests.post(f"{key.id}/sign", json={"alg": "ES256", "value": padded_digest},
                           headers=auth, verify=localvault.ca, timeout=5)
    assert padded.status_code == 200
    assert "=" not in padded.json()["value"]
