"""Pure parts of the Key Vault adapter: JSON web keys to DER, and SDK errors to key manager errors."""

import json

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
from azure.core.rest import HttpRequest
from azure.keyvault.keys import JsonWebKey
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared import errors
from shared.algorithms import KeyType
from shared.key_vault import _translate, public_key_from_jwk


def _der(public) -> bytes:
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _bytes(value: int, size: int | None = None) -> bytes:
    return value.to_bytes(size or (value.bit_length() + 7) // 8, "big")


@pytest.mark.parametrize("curve, crv, key_type", [(ec.SECP256R1(), "P-256", KeyType.EC_P256), (ec.SECP384R1(), "P-384", KeyType.EC_P384)])
def test_ec_jwk_becomes_der_of_the_same_key(curve, crv, key_type):
    public = ec.generate_private_key(curve).public_key()
    numbers = public.public_numbers()
    size = (curve.key_size + 7) // 8
    jwk = JsonWebKey(kty="EC", crv=crv, x=_bytes(numbers.x, size), y=_bytes(numbers.y, size))
    assert public_key_from_jwk(jwk) == (key_type, _der(public))


def test_rsa_jwk_becomes_der_and_type_by_size():
    public = rsa.generate_private_key(65537, 2048).public_key()
    numbers = public.public_numbers()
    assert public_key_from_jwk(JsonWebKey(kty="RSA", n=_bytes(numbers.n), e=_bytes(numbers.e))) == (KeyType.RSA_2048, _der(public))


def test_keys_of_other_types_are_not_spire_types():
    public = rsa.generate_private_key(65537, 3072).public_key().public_numbers()
    assert public_key_from_jwk(JsonWebKey(kty="RSA", n=_bytes(public.n), e=_bytes(public.e)))[0] is None
    assert public_key_from_jwk(JsonWebKey(kty="oct", k=b"x"))[0] is None


class _Response:
    """Just enough of an HTTP response for HttpResponseError."""

    def __init__(self, status: int, message: str = "", headers: dict | None = None) -> None:
        self.status_code = status
        self.reason = "reason"
        self.headers = headers or {}
        self.request = HttpRequest("GET", "https://vault/keys/x")
        self._body = json.dumps({"error": {"code": "Code", "message": message}}).encode()

    def text(self, encoding=None):
        return self._body.decode()

    def body(self):
        return self._body

    def json(self):
        return json.loads(self._body)


def _http_error(status: int, message: str = "", headers: dict | None = None) -> HttpResponseError:
    return HttpResponseError(response=_Response(status, message, headers))


@pytest.mark.parametrize(
    "status, message, expected",
    [
        (404, "", errors.NotFound),
        (409, "Key x is currently in a deleted but recoverable state", errors.FailedPrecondition),
        (403, "Operation sign is not allowed on a disabled key.", errors.FailedPrecondition),
        (403, "Caller is not authorized", errors.Unavailable),
        (401, "", errors.Unavailable),
        (400, "bad", errors.InvalidArgument),
        (500, "", errors.Unavailable),
        (503, "", errors.Unavailable),
    ],
)
def test_http_errors_translate_by_status(status, message, expected):
    assert type(_translate(_http_error(status, message), "k")) is expected


def test_soft_deleted_name_conflict_says_why():
    translated = _translate(_http_error(409, "Key k is currently in a deleted but recoverable state"), "k")
    assert "deleted but recoverable" in translated.message


def test_throttling_carries_retry_after():
    translated = _translate(_http_error(429, "", {"Retry-After": "12"}), "k")
    assert isinstance(translated, errors.ResourceExhausted) and translated.retry_after == 12


def test_connection_and_credential_failures_are_unavailable():
    assert isinstance(_translate(ServiceRequestError("refused"), None), errors.Unavailable)
    auth = _translate(ClientAuthenticationError("AADSTS7000215: invalid client secret abc"), None)
    assert isinstance(auth, errors.Unavailable) and "abc" not in auth.message


def test_other_exceptions_are_left_alone():
    assert _translate(RuntimeError("bug"), None) is None
