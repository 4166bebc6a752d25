"""Pure parts of the Key Vault adapter: JSON web keys to DER, and SDK errors to key manager errors."""

import base64
import json
import time
from urllib.parse import urlsplit

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import Pipeline
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest
from azure.core.rest._http_response_impl import HttpResponseImpl
from azure.core.settings import settings
from azure.keyvault.keys import JsonWebKey
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from shared import errors
from shared.algorithms import KeyType
from shared.key_vault import KeyVaultKeys, _version_in_kid, public_key_from_jwk
from shared.key_vault_errors import translate
from shared.key_vault_hold_off import HoldOff
from shared.key_vault_pipeline import BudgetedRetryPolicy, DeadlinePassed, HeldOff, key_client, key_vault_calls
from shared.vault_port import LATEST, SignedDigest
from tests.unit import telemetry
from tests.unit.shared.test_key_vault_hold_off import Clock


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

    def __init__(self, status: int, message: str = "", headers: dict | None = None, inner: str | None = None) -> None:
        self.status_code = status
        self.reason = "reason"
        self.headers = headers or {}
        self.request = HttpRequest("GET", "https://vault/keys/x")
        error = {"code": "Code", "message": message, **({"innererror": {"code": inner}} if inner else {})}
        self._body = json.dumps({"error": error}).encode()

    def text(self, encoding=None):
        return self._body.decode()

    def body(self):
        return self._body

    def json(self):
        return json.loads(self._body)


def _http_error(status: int, message: str = "", headers: dict | None = None, inner: str | None = None) -> HttpResponseError:
    return HttpResponseError(response=_Response(status, message, headers, inner))


KEY_NAME = "spire-key-0123456789abcdef0123456789abcdef-x509-CA-A"


@pytest.mark.parametrize(
    "status, message, inner, expected",
    [
        (404, f"A key with (name/id) {KEY_NAME} was not found in this key vault.", None, errors.NotFound),
        (
            409,
            f"Key {KEY_NAME} is currently in a deleted but recoverable state",
            "ObjectIsDeletedButRecoverable",
            errors.NameHeldByDeletedKey,
        ),
        (409, f"Key {KEY_NAME} is currently in a deleted but recoverable state", None, errors.NameHeldByDeletedKey),
        (409, "Conflict", None, errors.FailedPrecondition),
        (409, "Key is currently being deleted.", "ObjectIsBeingDeleted", errors.Unavailable),
        (409, "Key is currently being recovered.", None, errors.Unavailable),
        (403, "Operation sign is not allowed on a disabled key.", "KeyDisabled", errors.FailedPrecondition),
        (403, "Operation sign is not allowed on a disabled key.", None, errors.FailedPrecondition),
        (403, "Operation sign is not permitted on this key.", "KeyOperationForbidden", errors.FailedPrecondition),
        (403, "Operation sign is not permitted on this key.", None, errors.FailedPrecondition),
        (403, "The user, group or application 'appid=...' does not have keys sign permission", "ForbiddenByPolicy", errors.Unavailable),
        (403, "Caller is not authorized to perform action on resource.", "ForbiddenByRbac", errors.Unavailable),
        (403, "Client address is not authorized and caller is not a trusted service.", "ForbiddenByFirewall", errors.Unavailable),
        (401, "", None, errors.Unavailable),
        (400, f"Key {KEY_NAME}: bad", None, errors.InvalidArgument),
        (500, "", None, errors.Unavailable),
        (503, "", None, errors.Unavailable),
        (408, "", None, errors.Unavailable),
    ],
)
def test_http_errors_translate_by_status_and_never_echo_key_vaults_message(status, message, inner, expected):
    translated = translate(_http_error(status, message, inner=inner))
    assert type(translated) is expected
    assert KEY_NAME not in translated.message and "appid" not in translated.message


@pytest.mark.parametrize("status", [301, 304, 405, 410, 412, 413, 418, 451])
def test_statuses_without_a_meaning_here_are_unavailable_with_the_status(status):
    translated = translate(_http_error(status, "what"))
    assert isinstance(translated, errors.Unavailable) and str(status) in translated.message


def test_an_answer_that_cannot_be_read_is_unavailable():
    assert isinstance(translate(DecodeError("not JSON")), errors.Unavailable)


def test_throttling_carries_retry_after():
    translated = translate(_http_error(429, "", {"Retry-After": "12"}))
    assert isinstance(translated, errors.ResourceExhausted) and translated.retry_after == 12


def test_connection_and_credential_failures_are_unavailable():
    assert isinstance(translate(ServiceRequestError("refused")), errors.Unavailable)
    auth = translate(ClientAuthenticationError("AADSTS7000215: invalid client secret abc"))
    assert isinstance(auth, errors.Unavailable) and "abc" not in auth.message


def test_other_exceptions_are_left_alone():
    assert translate(RuntimeError("bug")) is None


@pytest.mark.parametrize(
    "kid, version",
    [
        (f"https://v.vault.azure.net/keys/{KEY_NAME}/0123abcd", "0123abcd"),
        (f"https://localhost:8443/keys/{KEY_NAME.upper()}/0123abcd", "0123abcd"),
    ],
)
def test_the_version_that_signed_is_read_from_the_kid(kid, version):
    assert _version_in_kid(kid, KEY_NAME) == version


@pytest.mark.parametrize(
    "kid",
    [
        f"https://v/keys/{KEY_NAME}",
        f"https://v/keys/{KEY_NAME}/",
        "https://v/keys/another-key/0123",
        f"https://v/secrets/{KEY_NAME}/0123",
        42,
    ],
)
def test_a_kid_that_does_not_name_a_version_of_the_key_is_refused(kid):
    with pytest.raises(ValueError):
        _version_in_kid(kid, KEY_NAME)


POLICY_DENIAL = (
    f"Operation 'create' on key {KEY_NAME} was disallowed by policy. "
    "Policy assignment 'keys-must-expire': Key Vault keys should have an expiration date."
)


def test_a_policy_denial_is_a_failed_precondition_in_key_vaults_words_without_the_key_name():
    translated = translate(_http_error(403, POLICY_DENIAL, inner="ForbiddenByPolicy"), KEY_NAME)
    assert type(translated) is errors.FailedPrecondition
    assert translated.message.startswith("Key Vault's policy refused the operation: ")
    assert "'keys-must-expire': Key Vault keys should have an expiration date" in translated.message
    assert KEY_NAME not in translated.message and KEY_NAME.lower() not in translated.message.lower()


def test_a_long_policy_message_is_cut_short():
    translated = translate(_http_error(403, "disallowed by policy. " + "x" * 5000, inner="ForbiddenByPolicy"))
    assert type(translated) is errors.FailedPrecondition and len(translated.message) < 600


@pytest.mark.parametrize(
    "message, expected_words",
    [("Key is currently being deleted.", "still deleting"), ("Key is currently being recovered.", "still recovering")],
)
def test_a_deletion_or_recovery_under_way_says_so(message, expected_words):
    translated = translate(_http_error(409, message))
    assert type(translated) is errors.Unavailable and expected_words in translated.message


BEING_DELETED = (
    409,
    {"error": {"code": "Conflict", "message": "Key is currently being deleted.", "innererror": {"code": "ObjectIsBeingDeleted"}}},
)
HELD = (409, {"error": {"code": "Conflict", "message": "deleted but recoverable", "innererror": {"code": "ObjectIsDeletedButRecoverable"}}})


class _Closable:
    def close(self):
        pass


class _Scripted(HttpTransport):
    """A transport that answers with the given (status, JSON body[, headers]) tuples or raises the
    given exceptions in turn, and records the requests (method, path) and its sleeps."""

    def __init__(self, answers):
        self.answers, self.sent, self.slept, self.requests, self.bodies = list(answers), 0, [], [], []

    def send(self, request, **kwargs):
        self.sent += 1
        self.requests.append((request.method, urlsplit(request.url).path))
        self.bodies.append(request.body)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, body, headers = (*answer, {})[:3]
        response = HttpResponseImpl(
            request=request,
            internal_response=_Closable(),
            status_code=status,
            reason="reason",
            content_type="application/json",
            headers=headers,
            stream_download_generator=None,
        )
        response._content = json.dumps(body).encode()
        return response

    def sleep(self, duration):
        self.slept.append(duration)

    def open(self):
        pass

    def close(self):
        pass

    def __exit__(self, *args):
        pass


def _run(transport, timeout=20, retry_total=3, method="POST", url="https://vault/keys/k/create"):
    pipeline = Pipeline(transport, [BudgetedRetryPolicy(timeout=timeout, retry_total=retry_total)])
    return pipeline.run(HttpRequest(method, url)).http_response


def test_a_name_being_deleted_is_tried_again_with_back_off_until_the_deletion_lands():
    transport = _Scripted([BEING_DELETED, BEING_DELETED, BEING_DELETED, HELD])
    assert _run(transport).json()["error"]["innererror"]["code"] == "ObjectIsDeletedButRecoverable"
    assert transport.sent == 4 and transport.slept == [1.6, 3.2]  # the first retry goes at once


def test_a_name_being_recovered_is_tried_again():
    recovering = (409, {"error": {"code": "Conflict", "message": "Key is currently being recovered."}})
    transport = _Scripted([recovering, (200, {"key": {}})])
    assert _run(transport).status_code == 200 and transport.sent == 2


def test_a_name_still_being_deleted_when_the_budget_would_end_goes_back_as_it_is():
    transport = _Scripted([BEING_DELETED] * 3)
    started = time.monotonic()
    response = _run(transport, timeout=1)  # the second wait (1.6 s) would end past it
    assert response.status_code == 409 and transport.sent == 2 and transport.slept == []
    assert time.monotonic() - started < 1


def test_other_conflicts_are_not_tried_again():
    transport = _Scripted([HELD])
    assert _run(transport).status_code == 409 and transport.sent == 1


SIGN_URL = "https://vault/keys/k/v/sign"
THROTTLED = (429, {"error": {"code": "Throttled", "message": "throttled"}}, {"Retry-After": "4"})


def test_a_sign_is_sent_again_after_a_connection_lost_once_sent():
    transport = _Scripted([ServiceResponseError("read timed out"), (200, {"kid": "x", "value": ""})])
    assert _run(transport, url=SIGN_URL).status_code == 200 and transport.sent == 2


@pytest.mark.parametrize("ambiguous", [ServiceResponseError("read timed out"), ServiceResponseError("connection reset")])
def test_a_create_is_not_sent_again_once_it_may_have_reached_key_vault(ambiguous):
    transport = _Scripted([ambiguous, (200, {"key": {}})])
    with pytest.raises(ServiceResponseError):
        _run(transport)
    assert transport.sent == 1


@pytest.mark.parametrize("status", [500, 503, 504])
def test_a_create_key_vault_failed_to_answer_is_not_sent_again(status):
    transport = _Scripted([(status, {"error": {"code": "InternalError", "message": "x"}}), (200, {"key": {}})])
    assert _run(transport).status_code == status and transport.sent == 1


def test_a_create_is_sent_again_when_the_connection_was_never_made_or_it_was_throttled():
    transport = _Scripted([ServiceRequestError("connection refused"), (429, {}, {"Retry-After": "0"}), (200, {"key": {}})])
    assert _run(transport).status_code == 200 and transport.sent == 3


def test_no_request_is_sent_past_the_invocations_deadline():
    transport = _Scripted([(200, {"key": {}})])
    with key_vault_calls(time.monotonic() - 0.001), pytest.raises(DeadlinePassed):
        _run(transport, method="GET", url="https://vault/keys/k/")
    assert transport.sent == 0


def test_no_retry_is_sent_past_the_invocations_deadline():
    transport = _Scripted([THROTTLED, (200, {"key": {}})])
    with key_vault_calls(time.monotonic() + 2):  # the Retry-After of 4 s ends past it, the budget of 20 s does not
        assert _run(transport).status_code == 429
    assert transport.sent == 1 and transport.slept == []
    refused = ServiceRequestError("connection refused")
    transport = _Scripted([refused, refused, (200, {"key": {}})])
    with key_vault_calls(time.monotonic() + 1), pytest.raises(ServiceRequestError):
        _run(transport, url=SIGN_URL)  # the first retry goes at once, the second after 1.6 s
    assert transport.sent == 2


def test_within_the_deadline_requests_are_retried_as_usual():
    transport = _Scripted([(429, {}, {"Retry-After": "1"}), (200, {"key": {}})])
    with key_vault_calls(time.monotonic() + 5):
        assert _run(transport).status_code == 200
    assert transport.sent == 2


class _Credential:
    """Tokens at once, each good for an hour; ``refresh_seconds`` makes every token after the first take that long."""

    def __init__(self, lifetime_seconds: int = 3600, refresh_seconds: float = 0) -> None:
        self.lifetime_seconds, self.refresh_seconds, self.tokens = lifetime_seconds, refresh_seconds, 0

    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken

        self.tokens += 1
        if self.tokens > 1:
            time.sleep(self.refresh_seconds)
        return AccessToken("token", int(time.time()) + self.lifetime_seconds)


def _vault(transport, credential=None, hsm_keys=False, hold_off=None) -> KeyVaultKeys:
    """The adapter over the Key Vault client the app builds (key_client), on ``transport``."""
    client = key_client(
        "https://vault.vault.azure.net", credential or _Credential(), transport, retry_seconds=20, retry_total=3, hold_off=hold_off
    )
    return KeyVaultKeys(client, hsm_keys)


@pytest.mark.parametrize(
    "answer, may_have_landed",
    [
        (THROTTLED, False),
        (ServiceRequestError("connection refused"), False),
        (ServiceResponseError("read timed out"), True),
        ((500, {"error": {"code": "InternalError", "message": "x"}}), True),
    ],
)
def test_a_failed_create_says_whether_it_may_have_made_a_version(answer, may_have_landed):
    transport = _Scripted([answer] * 4)
    with key_vault_calls(time.monotonic() + 0.01) as calls, pytest.raises(errors.KeyManagerError):
        _vault(transport).create_key("k", KeyType.EC_P256, {})
    assert calls.create_may_have_landed is may_have_landed


def test_a_create_refused_by_the_deadline_made_nothing():
    transport = _Scripted([])
    with key_vault_calls(time.monotonic() - 0.001) as calls, pytest.raises(DeadlinePassed):
        _vault(transport).create_key("k", KeyType.EC_P256, {})
    assert transport.sent == 0 and calls.create_may_have_landed is False


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_POINT = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
CURRENT_KEY = (
    200,
    {
        "key": {
            "kid": "https://vault.vault.azure.net/keys/k/v1",
            "kty": "EC",
            "crv": "P-256",
            "x": _b64url(_bytes(_POINT.x, 32)),
            "y": _b64url(_bytes(_POINT.y, 32)),
        },
        "attributes": {"enabled": True},
    },
)
CHALLENGE = (
    401,
    {},
    {"WWW-Authenticate": 'Bearer authorization="https://login.microsoftonline.com/tenant", resource="https://vault.azure.net"'},
)
HSM_KEY = (200, {**CURRENT_KEY[1], "key": {**CURRENT_KEY[1]["key"], "kty": "EC-HSM"}})
SIGNED_BY_V1 = (200, {"kid": "https://vault.vault.azure.net/keys/k/v1", "value": _b64url(b"signature")})
NOT_FOUND = (404, {"error": {"code": "NotFound", "message": "No static resource keys."}})
EMPTY_VERSION_SIGN, READ, SIGN_BY_V1 = ("POST", "/keys/k//sign"), ("GET", "/keys/k/"), ("POST", "/keys/k/v1/sign")


@pytest.mark.parametrize(
    "key_type, hsm_keys, sent",
    [
        (KeyType.RSA_2048, False, {"kty": "RSA", "key_size": 2048}),
        (KeyType.EC_P256, False, {"kty": "EC", "crv": "P-256"}),
        (KeyType.RSA_2048, True, {"kty": "RSA-HSM", "key_size": 2048}),
        (KeyType.RSA_4096, True, {"kty": "RSA-HSM", "key_size": 4096}),
        (KeyType.EC_P256, True, {"kty": "EC-HSM", "crv": "P-256"}),
        (KeyType.EC_P384, True, {"kty": "EC-HSM", "crv": "P-384"}),
    ],
)
def test_hsm_keys_are_created_as_key_vaults_hsm_key_types_of_the_same_size_or_curve(key_type, hsm_keys, sent):
    transport = _Scripted([CHALLENGE, HSM_KEY])  # the client sends a request's body once it has the vault's challenge
    created = _vault(transport, hsm_keys=hsm_keys).create_key("k", key_type, {})
    body = json.loads(transport.bodies[-1])
    assert {name: body.get(name) for name in ("kty", "key_size", "crv") if name in body} == sent
    assert body["key_ops"] == ["sign", "verify"]
    assert created.key_type is KeyType.EC_P256  # what the vault answered: an EC-HSM key is read as any EC key


def test_a_vault_that_cannot_sign_by_the_empty_version_is_noticed_once():
    transport = _Scripted([NOT_FOUND, CURRENT_KEY, SIGNED_BY_V1] + [CURRENT_KEY, SIGNED_BY_V1] * 2)
    vault = _vault(transport)
    assert vault.sign("k", LATEST, "ES256", b"d" * 32) == SignedDigest("v1", b"signature")
    assert transport.requests == [EMPTY_VERSION_SIGN, READ, SIGN_BY_V1]  # a 404 for a key that exists
    for _ in range(2):
        transport.requests.clear()
        assert vault.sign("k", LATEST, "ES256", b"d" * 32) == SignedDigest("v1", b"signature")
        assert transport.requests == [READ, SIGN_BY_V1]  # read the current version and sign it


def test_a_missing_key_does_not_pass_for_a_vault_that_cannot_sign_by_the_empty_version():
    transport = _Scripted([NOT_FOUND, NOT_FOUND, SIGNED_BY_V1])
    vault = _vault(transport)
    with pytest.raises(errors.NotFound):
        vault.sign("k", LATEST, "ES256", b"d" * 32)
    assert transport.requests == [EMPTY_VERSION_SIGN, READ]
    transport.requests.clear()
    assert vault.sign("k", LATEST, "ES256", b"d" * 32).version == "v1"
    assert transport.requests == [EMPTY_VERSION_SIGN]


CREATE, DIGEST = ("POST", "/keys/k/create"), b"d" * 32


def _throttled_for(seconds: int):
    return (429, {"error": {"code": "Throttled", "message": "throttled"}}, {"Retry-After": str(seconds)})


def test_after_a_throttled_sign_no_operation_on_keys_is_sent_until_the_wait_ends_but_a_create_is():
    clock = Clock()
    transport = _Scripted([_throttled_for(3), HSM_KEY, SIGNED_BY_V1])
    vault = _vault(transport, hold_off=HoldOff(clock))
    with key_vault_calls(time.monotonic() + 1), pytest.raises(errors.ResourceExhausted):  # too close to wait out 3 s
        vault.sign("k", LATEST, "ES256", DIGEST)
    clock.now += 1.2
    with pytest.raises(HeldOff) as held:
        vault.sign("k", "v1", "ES256", DIGEST)
    assert held.value.retry_after == pytest.approx(1.8) and held.value.turn is None and "nothing was sent" in held.value.message
    with pytest.raises(HeldOff):
        vault.get_key("k")  # a read of a key counts against the same limit as a sign
    assert transport.requests == [EMPTY_VERSION_SIGN]

    vault.create_key("k", KeyType.EC_P256, {})  # creations have a limit of their own
    clock.now += 1.8
    assert vault.sign("k", LATEST, "ES256", DIGEST) == SignedDigest("v1", b"signature")
    assert transport.requests == [EMPTY_VERSION_SIGN, CREATE, EMPTY_VERSION_SIGN]


def test_after_a_throttled_create_signs_go_on_and_creates_are_refused_as_having_made_nothing():
    transport = _Scripted([_throttled_for(10), SIGNED_BY_V1])
    vault = _vault(transport, hold_off=HoldOff(Clock()))
    with key_vault_calls(time.monotonic() + 1), pytest.raises(errors.ResourceExhausted):
        vault.create_key("k", KeyType.EC_P256, {})
    with key_vault_calls(time.monotonic() + 30) as calls, pytest.raises(HeldOff) as held:
        vault.create_key("k", KeyType.EC_P256, {})  # a deadline that would let it wait is no reason to
    assert held.value.retry_after == 10 and calls.create_may_have_landed is False
    assert vault.sign("k", LATEST, "ES256", DIGEST).version == "v1"
    assert transport.requests == [CREATE, EMPTY_VERSION_SIGN]


class _OtherCallersDuringWaits(_Scripted):
    """While a throttled call waits out its Retry-After, another caller signs; the clock moves by the wait."""

    def __init__(self, answers, clock):
        super().__init__(answers)
        self.clock, self.vault, self.others_told = clock, None, []

    def sleep(self, duration):
        super().sleep(duration)
        with pytest.raises(HeldOff) as held:
            self.vault.sign("k", LATEST, "ES256", DIGEST)
        self.others_told.append(held.value.retry_after)
        self.clock.now += duration


def test_a_throttled_call_waits_out_a_short_retry_after_while_other_callers_are_told_to_wait():
    clock = Clock()
    transport = _OtherCallersDuringWaits([_throttled_for(2), SIGNED_BY_V1], clock)
    transport.vault = _vault(transport, hold_off=HoldOff(clock))
    assert transport.vault.sign("k", LATEST, "ES256", DIGEST) == SignedDigest("v1", b"signature")
    assert transport.slept == [2] and transport.others_told == [2]
    assert transport.requests == [EMPTY_VERSION_SIGN, EMPTY_VERSION_SIGN]  # the other caller sent nothing


@pytest.fixture
def recorded():
    telemetry.reset()
    return telemetry


def test_a_sign_is_a_key_vault_span_under_the_callers_with_its_key_algorithm_status_and_retries(recorded):
    transport = _Scripted([THROTTLED, SIGNED_BY_V1])
    with trace.get_tracer("test").start_as_current_span("sign_data"):
        _vault(transport).sign("k", "v1", "ES256", b"\x01" * 32)
    caller, call = recorded.span("sign_data"), recorded.span("Key Vault sign")
    assert call.parent.span_id == caller.context.span_id
    assert dict(call.attributes) == {
        "keyvault.operation": "sign",
        "keyvault.key_name": "k",
        "keyvault.key_version": "v1",
        "keyvault.algorithm": "ES256",
        "http.response.status_code": 200,
        "keyvault.retries": 1,
    }
    measured = recorded.recorded_metrics()
    assert measured["keyvault.throttled"] == [({"keyvault.operation": "sign"}, 1)]
    durations = {attributes["http.response.status_code"]: count for attributes, count in measured["keyvault.request.duration"]}
    assert durations == {429: 1, 200: 1}


def test_a_failed_key_vault_call_is_an_error_span_with_the_error_code(recorded):
    with pytest.raises(errors.NotFound):
        _vault(_Scripted([NOT_FOUND])).get_key("k", "v1")
    call = recorded.span("Key Vault get_key")
    assert call.status.status_code is StatusCode.ERROR and call.attributes["error.type"] == "NotFound"
    assert call.attributes["http.response.status_code"] == 404 and call.attributes["keyvault.retries"] == 0


def test_with_azure_sdk_tracing_on_each_request_is_a_span_within_the_key_vault_call(recorded):
    settings.tracing_enabled = True
    try:
        _vault(_Scripted([THROTTLED, SIGNED_BY_V1])).sign("k", "v1", "ES256", b"\x01" * 32)
    finally:
        settings.tracing_enabled.unset_value()
    call = recorded.span("Key Vault sign")
    requests = [span for span in recorded.descendants(call) if span.kind is SpanKind.CLIENT]
    assert [span.attributes["http.response.status_code"] for span in requests] == [429, 200]
    assert requests[1].attributes["http.request.resend_count"] == 1


def test_after_a_throttled_sign_the_callers_held_back_get_turns_that_no_newcomer_takes():
    clock = Clock()
    transport = _Scripted([SIGNED_BY_V1] * 10 + [_throttled_for(1), SIGNED_BY_V1])
    vault = _vault(transport, hold_off=HoldOff(clock))
    for second in range(91, 101):  # Key Vault counts one sign a second: their rooms free from 101 on
        clock.now = second
        vault.sign("k", LATEST, "ES256", DIGEST)
    clock.now = 100.5
    with key_vault_calls(None), pytest.raises(HeldOff) as throttled:
        vault.sign("k", LATEST, "ES256", DIGEST)  # held until 101.5, and queued rather than sent again then
    assert throttled.value.turn and throttled.value.retry_after == pytest.approx(1.0) and "refused" in throttled.value.message
    clock.now = 100.6
    with pytest.raises(HeldOff) as newcomer:
        vault.sign("k", LATEST, "ES256", DIGEST)
    assert newcomer.value.turn is None  # the next room, at 102, is past the queue
    clock.now = 101.5
    with key_vault_calls(None, turn=throttled.value.turn):
        assert vault.sign("k", LATEST, "ES256", DIGEST) == SignedDigest("v1", b"signature")
    assert transport.requests == [EMPTY_VERSION_SIGN] * 12


def test_a_turn_reserved_for_a_create_is_left_by_the_read_before_it():
    clock = Clock()
    transport = _Scripted([HSM_KEY, HSM_KEY, _throttled_for(1), HSM_KEY, HSM_KEY])
    vault = _vault(transport, hold_off=HoldOff(clock))
    for moment in (91, 92):  # their rooms free at 101 and 102
        clock.now = moment
        vault.create_key("k", KeyType.EC_P256, {})
    clock.now = 100.2
    with key_vault_calls(None), pytest.raises(HeldOff) as held:
        vault.create_key("k", KeyType.EC_P256, {})  # held until 101.2
    assert held.value.turn and held.value.retry_after == pytest.approx(1.0)
    clock.now = 101.2
    with key_vault_calls(None, turn=held.value.turn):
        vault.get_key("k")  # an operation on a key: creations' turns are not its own
        vault.create_key("k", KeyType.EC_P256, {})
    assert transport.requests == [CREATE] * 3 + [("GET", "/keys/k/"), CREATE]


def test_a_turn_whose_sign_went_unanswered_frees_its_room_a_window_later_as_an_answered_one_does():
    clock = Clock()
    unanswered = [ServiceResponseError("read timed out")] * 2  # sent again at once, then the deadline is too close
    transport = _Scripted([SIGNED_BY_V1, SIGNED_BY_V1, _throttled_for(1), *unanswered, SIGNED_BY_V1, SIGNED_BY_V1])
    vault = _vault(transport, hold_off=HoldOff(clock))
    for second in (91, 92):  # their rooms free at 101 and 102
        clock.now = second
        vault.sign("k", LATEST, "ES256", DIGEST)
    clock.now = 100.5
    with pytest.raises(HeldOff) as throttled:
        vault.sign("k", LATEST, "ES256", DIGEST)  # held until 101.5: its turn is the room freed at 101
    clock.now = 101.5
    with key_vault_calls(time.monotonic() + 0.01, turn=throttled.value.turn), pytest.raises(errors.Unavailable):
        vault.sign("k", LATEST, "ES256", DIGEST)  # Key Vault may well have counted them
    clock.now = 102.0
    vault.sign("k", LATEST, "ES256", DIGEST)  # the room freed at 102: counted, it frees again at 112
    clock.now = 111.6
    assert vault.sign("k", LATEST, "ES256", DIGEST) == SignedDigest("v1", b"signature")


def test_a_request_outside_an_invocation_is_told_to_wait_without_taking_a_turn_from_the_callers():
    clock = Clock()
    transport = _Scripted([SIGNED_BY_V1, SIGNED_BY_V1, _throttled_for(1), SIGNED_BY_V1])
    vault = _vault(transport, hold_off=HoldOff(clock))
    for second in (91, 91.1):  # their rooms free at 101 and 101.1
        clock.now = second
        with key_vault_calls(None):
            vault.sign("k", LATEST, "ES256", DIGEST)
    clock.now = 100.5
    with key_vault_calls(None), pytest.raises(HeldOff):
        vault.sign("k", LATEST, "ES256", DIGEST)  # held until 101.5, with the room freed at 101 as its turn
    clock.now = 100.6
    with pytest.raises(HeldOff) as maintenance:
        vault.get_key("k")  # e.g. the refresh timer's: it has no caller to come back with a ticket
    assert maintenance.value.turn is None and maintenance.value.retry_after == pytest.approx(0.9)
    clock.now = 100.7
    with key_vault_calls(None), pytest.raises(HeldOff) as caller:
        vault.sign("k", LATEST, "ES256", DIGEST)
    assert caller.value.turn and caller.value.retry_after == pytest.approx(0.8)  # the room freed at 101.1


def test_an_invocation_in_its_turn_sends_its_second_request_of_the_limit_too():
    # E.g. a sign right after another instance rotated the key: the new version's facts are read after it. Queued anew,
    # the read gets a ticket of its own, which the next attempt's sign takes again: each attempt spends a sign, none ends.
    clock = Clock()
    transport = _Scripted([SIGNED_BY_V1] * 3 + [_throttled_for(1), SIGNED_BY_V1, HSM_KEY])
    vault = _vault(transport, hold_off=HoldOff(clock))
    for second in (91, 91.6, 91.7):  # their rooms free at 101, 101.6 and 101.7
        clock.now = second
        with key_vault_calls(None):
            vault.sign("k", LATEST, "ES256", DIGEST)
    clock.now = 100.5
    with key_vault_calls(None), pytest.raises(HeldOff) as throttled:
        vault.sign("k", LATEST, "ES256", DIGEST)  # its turn: 101.5, the hold's end
    clock.now = 101.5
    with key_vault_calls(None, turn=throttled.value.turn):
        vault.sign("k", LATEST, "ES256", DIGEST)
        vault.get_key("k", "v1")
