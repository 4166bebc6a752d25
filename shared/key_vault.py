"""Adapter over Azure Key Vault keys: the Vault port on a KeyClient (built by ``key_vault_pipeline``).

It turns Key Vault's JSON web keys into DER public keys, and Azure SDK errors into the key
manager's errors (``key_vault_errors``). Signing goes through the KeyClient's own pipeline, so
one client, one token cache and one retry policy serve every call.
"""

from __future__ import annotations

import base64
import functools
import logging
from collections.abc import Iterator
from typing import Any

from azure.core import PipelineClient
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest, HttpResponse
from azure.keyvault.keys import JsonWebKey, KeyClient, KeyVaultKey
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared.algorithms import KeyType
from shared.errors import KeyManagerError, NotFound, Unavailable
from shared.key_vault_errors import translated_errors
from shared.key_vault_pipeline import created_nothing, current_calls
from shared.key_vault_telemetry import traced
from shared.vault_port import LATEST, KeySummary, KeyVersion, SignedDigest

log = logging.getLogger(__name__)

KEY_OPERATIONS = ["sign", "verify"]
_CREATE_PARAMETERS: dict[KeyType, dict[str, Any]] = {
    KeyType.RSA_2048: {"key_type": "RSA", "size": 2048},
    KeyType.RSA_4096: {"key_type": "RSA", "size": 4096},
    KeyType.EC_P256: {"key_type": "EC", "curve": "P-256"},
    KeyType.EC_P384: {"key_type": "EC", "curve": "P-384"},
}
# A Premium vault's HSM-protected keys: Key Vault's key types "RSA-HSM" and "EC-HSM".
_HSM_CREATE_PARAMETERS = {
    key_type: {**parameters, "key_type": parameters["key_type"] + "-HSM"} for key_type, parameters in _CREATE_PARAMETERS.items()
}
_CURVES = {"P-256": (ec.SECP256R1(), KeyType.EC_P256), "P-384": (ec.SECP384R1(), KeyType.EC_P384)}
_RSA_SIZES = {2048: KeyType.RSA_2048, 4096: KeyType.RSA_4096}
# How long generate_key waits for Key Vault to recover a deleted key (it takes about a second), and
# how often it looks (the SDK looks every 2 s).
RECOVERY_WAIT_SECONDS = 30
RECOVERY_POLL_SECONDS = 0.25


class KeyVaultKeys:
    """The Key Vault operations the key manager needs (the ``Vault`` port), on one vault."""

    def __init__(self, client: KeyClient, hsm_keys: bool = False) -> None:
        """``hsm_keys``: create HSM-protected keys (RSA-HSM, EC-HSM), of the same sizes and curves."""
        self._client = client
        # Requests of our own go straight to the pipeline under the KeyClient, with the vault's URL and
        # the client's api-version already in place: KeyClient.send_request deep-copies each request
        # and parses its URL again to add them, about 0.2 ms of a sign's 7 ms measured in place.
        self._pipeline: PipelineClient[HttpRequest, HttpResponse] = client._client._client
        self._api_version = f"api-version={client.api_version}"
        self._create_parameters = _HSM_CREATE_PARAMETERS if hsm_keys else _CREATE_PARAMETERS
        # False once a sign by the empty version was answered 404 for a key that exists (Lowkey Vault).
        self._signs_by_empty_version = True

    def create_key(self, name: str, key_type: KeyType, tags: dict[str, str]) -> KeyVersion:
        """Create the key, or add a new version to it (Key Vault's create on an existing name).

        Within ``key_vault_calls``, a create that fails in a way that may still make a version
        current (a read timeout, a connection lost once sent, a 5xx) says so there.
        """
        try:
            with traced("create_key", key_name=name, key_type=self._create_parameters[key_type]["key_type"]), translated_errors(name):
                key = self._client.create_key(name, key_operations=KEY_OPERATIONS, tags=tags, **self._create_parameters[key_type])
        except KeyManagerError as error:
            calls = current_calls()
            if calls is not None and not created_nothing(error):
                calls.create_may_have_landed = True
            raise
        return _key_version(key)

    def get_key(self, name: str, version: str = LATEST) -> KeyVersion:
        """A version of the key, or its current version when ``version`` is ``LATEST``."""
        with traced("get_key", key_name=name, key_version=version), translated_errors():
            return _key_version(self._client.get_key(name, version or None))

    def list_keys(self) -> Iterator[KeySummary]:
        """Every key of the vault, every page read within the operation's span."""
        with traced("list_keys"), translated_errors():
            keys = [
                KeySummary(item.name, dict(item.tags or {}), bool(item.enabled), item.updated_on)
                for item in self._client.list_properties_of_keys()
            ]
        return iter(keys)

    def sign(self, name: str, version: str, algorithm: str, digest: bytes) -> SignedDigest:
        """Sign a digest with a version of a key, or (``LATEST``) with its current version.

        The answer's ``kid`` names the version that signed; Key Vault encodes the signature as JWS does.
        On a vault that cannot sign by the empty version, the current version is read, then signs.
        """
        if version != LATEST:
            return self._sign(name, version, algorithm, digest)
        if not self._signs_by_empty_version:
            return self._sign(name, self.get_key(name).version, algorithm, digest)
        try:
            return self._sign(name, LATEST, algorithm, digest)
        except NotFound:
            current = self.get_key(name).version  # NotFound again: the key is gone
        signed = self._sign(name, current, algorithm, digest)
        if self._signs_by_empty_version:
            self._signs_by_empty_version = False
            log.warning("Key Vault answers 404 to signing by the empty version: this instance reads each key before signing")
        return signed

    def _sign(self, name: str, version: str, algorithm: str, digest: bytes) -> SignedDigest:
        body = {"alg": algorithm, "value": _b64url_encode(digest)}
        with traced("sign", key_name=name, key_version=version, algorithm=algorithm):
            result = self._send(HttpRequest("POST", self._url(f"/keys/{name}/{version}/sign"), json=body))
        try:
            signed_by = _version_in_kid(result["kid"], name)
            return SignedDigest(signed_by, _b64url_decode(result["value"]))
        except (KeyError, TypeError, ValueError):
            raise Unavailable("Key Vault's answer to a sign request could not be read") from None

    def update_key_operations(self, name: str, version: str, key_ops: tuple[str, ...]) -> None:
        """Write a version's key operations back unchanged: Key Vault then sets its Updated time to now."""
        with traced("update_key", key_name=name, key_version=version), translated_errors():
            self._client.update_key_properties(name, version, key_operations=list(key_ops))

    def delete_key(self, name: str) -> None:
        """Delete the whole key (Key Vault keeps it soft-deleted); one request, no polling."""
        with traced("delete_key", key_name=name):
            self._send(HttpRequest("DELETE", self._url(f"/keys/{name}")))

    def recover_deleted_key(self, name: str) -> KeyVersion:
        """Undelete a soft-deleted key (the "recover" permission) and wait until it can be used again."""
        with traced("recover_key", key_name=name), translated_errors(name):
            poller = self._client.begin_recover_deleted_key(name, _polling_interval=RECOVERY_POLL_SECONDS)
            poller.wait(RECOVERY_WAIT_SECONDS)
            if not poller.done():
                raise Unavailable("Key Vault is still recovering the key: retry shortly")
            return _key_version(poller.result())

    def _url(self, path: str) -> str:
        return f"{self._client.vault_url}{path}?{self._api_version}"

    def _send(self, request: HttpRequest) -> dict[str, Any]:
        """Send a request through the client's pipeline (auth, retries) and return its JSON body."""
        with translated_errors():
            response = self._pipeline.send_request(request)
            if response.status_code == 404:
                raise ResourceNotFoundError(response=response)
            if response.status_code >= 400:
                raise HttpResponseError(response=response)
            try:
                answer: dict[str, Any] = response.json()
                return answer
            except ValueError:
                raise Unavailable("Key Vault's answer could not be read") from None

    def probe(self) -> None:
        """One cheap authenticated request: proves the vault answers and lets this identity list keys."""
        with traced("probe"), translated_errors():
            next(iter(self._client.list_properties_of_keys().by_page()), None)


def _version_in_kid(kid: object, name: str) -> str:
    """The version part of a key id URL ``https://<vault>/keys/<name>/<version>``."""
    if not isinstance(kid, str):
        raise ValueError("a key id is a URL")
    rest, _, version = kid.partition("?")[0].rpartition("/")
    collection, _, kid_name = rest.rpartition("/")
    if not collection.endswith("/keys") or kid_name.lower() != name.lower() or not version:
        raise ValueError("not a versioned key id of this key")
    return version


def public_key_from_jwk(jwk: JsonWebKey) -> tuple[KeyType | None, bytes]:
    """The SPIRE key type (None if it is none of them) and DER SubjectPublicKeyInfo of a JSON web key."""
    # JsonWebKey sets its fields from its keyword arguments, so its type declares none of them.
    fields: dict[str, Any] = vars(jwk)
    return _public_key(fields.get("kty"), fields.get("crv"), fields.get("n"), fields.get("e"), fields.get("x"), fields.get("y"))


@functools.lru_cache(maxsize=4096)
def _public_key(
    kty: str | None, crv: str | None, n: bytes | None, e: bytes | None, x: bytes | None, y: bytes | None
) -> tuple[KeyType | None, bytes]:
    # Cached: a key version's public key never changes, and decoding it is most of a read's own cost.
    public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    if kty in ("RSA", "RSA-HSM") and n is not None and e is not None:
        public = rsa.RSAPublicNumbers(_int(e), _int(n)).public_key()
        key_type = _RSA_SIZES.get(public.key_size)
    elif kty in ("EC", "EC-HSM") and crv in _CURVES and x is not None and y is not None:
        curve, key_type = _CURVES[crv]
        public = ec.EllipticCurvePublicNumbers(_int(x), _int(y), curve).public_key()
    else:
        return None, b""
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key_type, der


def _key_version(key: KeyVaultKey) -> KeyVersion:
    key_type, der = public_key_from_jwk(key.key)
    props = key.properties
    return KeyVersion(
        key.name,
        props.version or "",
        key_type,
        der,
        bool(props.enabled),
        dict(props.tags or {}),
        tuple(key.key_operations or ()),
        props.updated_on,
    )


def _int(value: bytes) -> int:
    return int.from_bytes(value, "big")


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
