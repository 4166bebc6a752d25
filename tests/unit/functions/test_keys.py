"""The HTTP contract of the key functions, over a key manager whose vault is an in-process fake."""

import base64
import hashlib
import json

import azure.functions as func
import pytest

from functions import keys
from functions.health import health
from shared import app_context
from shared.app_context import SpireServers
from shared.server_ids import FixedServerDirectory
from tests.unit.fakes import InMemoryVault
from tests.unit.tokens import SERVER_CALLER, bearer

SERVER_ID = "0b1c3f0e-8a5e-4c1e-9a55-7bd0c1f7f0a1"


@pytest.fixture(autouse=True)
def vault():
    fake = InMemoryVault()
    app_context.install_servers(SpireServers("example.org", FixedServerDirectory(SERVER_ID), fake))
    return fake


def call(handler, body=None, raw: bytes | None = None, method="POST", query: str = "", **route_params):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    url = "http://localhost/api/keys" + (f"?{query}" if query else "")
    response = handler(func.HttpRequest(method, url, body=data, headers=bearer(), route_params=route_params))
    return response.status_code, json.loads(response.get_body() or b"null")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_generate_returns_the_public_key_object():
    status, body = call(keys.generate_key, {"key_id": "a", "key_type": "ec-p256"})
    assert status == 200
    public = body["public_key"]
    assert set(public) == {"id", "type", "pkix_data", "fingerprint"}
    assert public["id"] == "a" and public["type"] == "ec-p256"
    assert public["fingerprint"] == hashlib.sha256(base64.b64decode(public["pkix_data"])).hexdigest()


@pytest.mark.parametrize(
    "body, message",
    [
        ({"key_type": "ec-p256"}, "key id is required"),
        ({"key_id": "", "key_type": "ec-p256"}, "key id is required"),
        ({"key_id": "a"}, "key type is required"),
        ({"key_id": "a", "key_type": "rsa-1024"}, "unsupported key type"),
        ({"key_id": 7, "key_type": "ec-p256"}, "key_id must be a string"),
        ({"key_id": "a b", "key_type": "ec-p256"}, "letters, digits"),
        ({"key_id": "a" * 200, "key_type": "ec-p256"}, "at most 84"),
    ],
)
def test_generate_refuses_invalid_input_with_400(body, message):
    status, error = call(keys.generate_key, body)
    assert status == 400
    assert error["error"]["code"] == "InvalidArgument"
    assert message in error["error"]["message"]


@pytest.mark.parametrize(
    "raw, message", [(b"{", "not valid JSON"), (b"[1]", "JSON object"), (b"\xff\xfe", "UTF-8"), (b"", "not valid JSON")]
)
def test_malformed_bodies_are_400(raw, message):
    status, error = call(keys.generate_key, raw=raw)
    assert status == 400 and message in error["error"]["message"]


def test_oversized_bodies_are_413():
    status, error = call(keys.generate_key, raw=b" " * (64 * 1024 + 1))
    assert status == 413 and error["error"]["code"] == "InvalidArgument"


def test_get_public_key_404_names_the_key():
    status, error = call(keys.get_public_key, method="GET", key_id="nope")
    assert status == 404
    assert error == {"error": {"code": "NotFound", "message": 'key "nope" not found'}}


def test_get_public_keys_lists_generated_keys():
    call(keys.generate_key, {"key_id": "b", "key_type": "ec-p256"})
    call(keys.generate_key, {"key_id": "a", "key_type": "ec-p384"})
    status, body = call(keys.get_public_keys, method="GET")
    assert status == 200 and [k["id"] for k in body["public_keys"]] == ["a", "b"]


def test_sign_returns_signature_and_fingerprint():
    _, generated = call(keys.generate_key, {"key_id": "a", "key_type": "rsa-2048"})
    status, body = call(keys.sign_data, {"data": b64(hashlib.sha256(b"x").digest()), "hash_algorithm": "SHA256"}, key_id="a")
    assert status == 200
    assert body == {"signature": b64(b"signature"), "key_fingerprint": generated["public_key"]["fingerprint"]}


@pytest.mark.parametrize(
    "body, message",
    [
        ({"hash_algorithm": "SHA256"}, "data is required"),
        ({"data": "not base64!", "hash_algorithm": "SHA256"}, "base64"),
        ({"data": "YQ", "hash_algorithm": "SHA256"}, "base64"),
        ({"data": b64(bytes(32))}, "signer opts is required"),
        ({"data": b64(bytes(32)), "hash_algorithm": "MD5"}, "unsupported hash algorithm"),
        ({"data": b64(bytes(31)), "hash_algorithm": "SHA256"}, "32 bytes, not 31"),
        ({"data": b64(bytes(32)), "hash_algorithm": "SHA256", "pss_options": {"hash_algorithm": "SHA256"}}, "either"),
        ({"data": b64(bytes(32)), "pss_options": {}}, "pss_options.hash_algorithm is required"),
        ({"data": b64(bytes(32)), "pss_options": "SHA256"}, "pss_options must be a JSON object"),
        ({"data": b64(bytes(32)), "pss_options": {"hash_algorithm": "SHA256", "salt_length": 1}}, "salt_length 1 is not supported"),
        ({"data": b64(bytes(32)), "pss_options": {"hash_algorithm": "SHA256", "salt_length": 20}}, "salt_length 20"),
        ({"data": b64(bytes(32)), "pss_options": {"hash_algorithm": "SHA256", "salt_length": "32"}}, "must be an integer"),
        ({"data": b64(bytes(32)), "hash_algorithm": "SHA256", "key_fingerprint": "xyz"}, "key_fingerprint"),
        ({"data": 5, "hash_algorithm": "SHA256"}, "data must be a string"),
    ],
)
def test_sign_refuses_invalid_input_with_400(body, message):
    call(keys.generate_key, {"key_id": "a", "key_type": "rsa-2048"})
    status, error = call(keys.sign_data, body, key_id="a")
    assert status == 400, error
    assert message in error["error"]["message"]


@pytest.mark.parametrize("salt_length", [None, 0, -1, 32])
def test_pss_salt_lengths_that_key_vault_honours_are_accepted(salt_length, vault):
    call(keys.generate_key, {"key_id": "a", "key_type": "rsa-2048"})
    pss = {"hash_algorithm": "SHA256"} | ({} if salt_length is None else {"salt_length": salt_length})
    status, _ = call(keys.sign_data, {"data": b64(bytes(32)), "pss_options": pss}, key_id="a")
    assert status == 200 and vault.calls[-1][3] == "PS256"


def test_unsupported_combination_is_400_naming_key_type_and_hash():
    call(keys.generate_key, {"key_id": "a", "key_type": "ec-p384"})
    status, error = call(keys.sign_data, {"data": b64(bytes(32)), "hash_algorithm": "SHA256"}, key_id="a")
    assert status == 400
    assert error["error"]["message"] == "unsupported combination of key type: ec-p384 and hashing algorithm: SHA256"


@pytest.mark.parametrize(
    "body",
    [
        {"key_id": "a", "key_type": "x" * 10_000},
        {"key_id": "a" * 10_000, "key_type": "ec-p256"},
        {"key_id": "_" * 10_000, "key_type": "ec-p256"},
    ],
)
def test_caller_input_is_echoed_shortened(body):
    status, error = call(keys.generate_key, body)
    assert status == 400 and len(error["error"]["message"]) < 300


def test_a_huge_salt_length_is_echoed_shortened():
    pss = {"hash_algorithm": "SHA256", "salt_length": 10**1000}
    status, error = call(keys.sign_data, {"data": b64(bytes(32)), "pss_options": pss}, key_id="a")
    assert status == 400 and len(error["error"]["message"]) < 300


SIGN_BODY = {"data": b64(bytes(32)), "hash_algorithm": "SHA256"}


@pytest.mark.parametrize(
    "handler, body, message",
    [
        (keys.generate_key, {"keyId": "a", "key_type": "ec-p256"}, 'unknown field "keyId": POST /api/keys takes key_id and key_type'),
        (keys.generate_key, {"key_id": "a", "keytype": "ec-p256"}, 'unknown field "keytype": POST /api/keys takes key_id and key_type'),
        (keys.generate_key, {"key_id": "a", "key_type": "ec-p256", "b": 1, "c": 2}, 'unknown fields "b", "c": POST /api/keys takes'),
        (
            keys.sign_data,
            {**SIGN_BODY, "fingerprint": "ab" * 32},
            'unknown field "fingerprint": POST /api/keys/{key_id}/sign takes data, hash_algorithm, pss_options and key_fingerprint',
        ),
        (
            keys.sign_data,
            {"data": b64(bytes(32)), "pss_options": {"hash_algorithm": "SHA256", "saltLength": 32}},
            'unknown field "saltLength": pss_options takes hash_algorithm and salt_length',
        ),
    ],
)
def test_unknown_body_members_are_400_naming_them_and_the_expected_fields(vault, handler, body, message):
    call(keys.generate_key, {"key_id": "a", "key_type": "rsa-2048"})
    calls = len(vault.calls)
    status, error = call(handler, body, key_id="a")
    assert status == 400 and error["error"]["code"] == "InvalidArgument"
    assert error["error"]["message"].startswith(message)
    assert len(vault.calls) == calls


def test_unknown_members_are_named_escaped_shortened_and_few():
    body = {"key_id": "a", "key_type": "ec-p256", "\u00e9\n" + "x" * 1000: 1, **{f"m{n}": n for n in range(1000)}}
    status, error = call(keys.generate_key, body)
    message = error["error"]["message"]
    assert status == 400 and message.isascii() and message.isprintable() and len(message) < 300
    assert message.startswith('unknown fields "\\u00e9\\nxxx') and '"m0", "m1", ...' in message


@pytest.mark.parametrize(
    "handler, method, route",
    [
        (keys.generate_key, "POST", {}),
        (keys.get_public_keys, "GET", {}),
        (keys.get_public_key, "GET", {"key_id": "a"}),
        (keys.sign_data, "POST", {"key_id": "a"}),
    ],
)
def test_a_query_parameter_on_a_key_route_is_400_naming_it_and_nothing_is_done(vault, handler, method, route):
    call(keys.generate_key, {"key_id": "a", "key_type": "ec-p256"})
    calls = len(vault.calls)
    body = {"key_id": "a", "key_type": "ec-p256"} if handler is keys.generate_key else SIGN_BODY
    status, error = call(handler, body, method=method, query="key_type=ec-p384", **route)
    assert status == 400 and error["error"]["code"] == "InvalidArgument"
    assert error["error"]["message"] == 'unknown query parameter "key_type": this endpoint accepts no query parameters'
    assert len(vault.calls) == calls


def test_unknown_fingerprint_is_409():
    call(keys.generate_key, {"key_id": "a", "key_type": "ec-p256"})
    status, error = call(keys.sign_data, {"data": b64(bytes(32)), "hash_algorithm": "SHA256", "key_fingerprint": "ab" * 32}, key_id="a")
    assert status == 409 and error["error"]["code"] == "FailedPrecondition"


def test_a_bug_is_a_500_that_reveals_nothing(monkeypatch, vault):
    def broken(*args):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(vault, "create_key", broken)
    status, error = call(keys.generate_key, {"key_id": "a", "key_type": "ec-p256"})
    assert status == 500
    assert error == {"error": {"code": "Internal", "message": "internal error"}}


def test_invalid_settings_fail_requests_with_503_naming_the_setting(monkeypatch):
    app_context.install_servers(None)
    monkeypatch.delenv("TRUST_DOMAIN", raising=False)
    monkeypatch.setenv("KEY_VAULT_URI", "https://localhost:1")
    status, error = call(keys.get_public_keys, method="GET")
    assert status == 503
    assert error["error"]["code"] == "Unavailable" and "TRUST_DOMAIN" in error["error"]["message"]
    response = health(func.HttpRequest("GET", "http://localhost/api/health", body=b""))
    assert response.status_code == 503
    assert json.loads(response.get_body())["dependency"] == "settings"


def test_health_is_ok_when_dependencies_answer():
    response = health(func.HttpRequest("GET", "http://localhost/api/health", body=b""))
    assert response.status_code == 200 and json.loads(response.get_body()) == {"status": "ok"}


def test_generate_and_sign_are_audited_with_caller_server_key_and_version(caplog):
    caplog.set_level("INFO", logger="azure_kv_keymanager.audit")
    generated = call(keys.generate_key, {"key_id": "x509-CA-A", "key_type": "ec-p256"})[1]["public_key"]
    call(keys.sign_data, {"data": b64(hashlib.sha256(b"x").digest()), "hash_algorithm": "SHA256"}, key_id="x509-CA-A")
    audited = [record for record in caplog.records if record.name == "azure_kv_keymanager.audit"]
    assert [record.levelname for record in audited] == ["INFO", "INFO"]
    generate_line, sign_line = (record.getMessage() for record in audited)
    assert generate_line.startswith(f"generate_key by caller {SERVER_CALLER} as server (default): key x509-CA-A version ")
    assert sign_line.startswith(f"sign_data by caller {SERVER_CALLER} as server (default): key x509-CA-A version ")
    assert generate_line.split()[-1] == sign_line.split()[-1] != ""  # the version that was made signed
    assert generated["fingerprint"] not in generate_line
