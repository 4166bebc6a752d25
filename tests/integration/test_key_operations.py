"""SPIRE's KeyManager contract, through the app's functions, against the Key Vault and Azurite."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization

from tests.integration.verify import digest, verify

KEY_TYPES = ["rsa-2048", "rsa-4096", "ec-p256", "ec-p384"]


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_generate_key_returns_a_public_key_of_the_type(app, key_type):
    status, body = app.generate("x509-CA-A", key_type)
    assert status == 200
    public = body["public_key"]
    assert public["id"] == "x509-CA-A" and public["type"] == key_type
    der = base64.b64decode(public["pkix_data"])
    serialization.load_der_public_key(der)
    assert public["fingerprint"] == hashlib.sha256(der).hexdigest()


@pytest.mark.parametrize(
    "key_type, hash_name, pss",
    [
        ("rsa-2048", "SHA256", False),
        ("rsa-2048", "SHA384", False),
        ("rsa-2048", "SHA512", False),
        ("rsa-2048", "SHA256", True),
        ("rsa-2048", "SHA384", True),
        ("rsa-2048", "SHA512", True),
        ("rsa-4096", "SHA256", False),
        ("rsa-4096", "SHA512", True),
        ("ec-p256", "SHA256", False),
        ("ec-p384", "SHA384", False),
    ],
)
def test_signatures_verify_with_the_public_key(app, key_type, hash_name, pss):
    _, generated = app.generate("signer", key_type)
    data = digest(hash_name)
    options = {"pss_options": {"hash_algorithm": hash_name, "salt_length": -1}} if pss else {"hash_algorithm": hash_name}
    status, body = app.sign("signer", data, **options)
    assert status == 200, body
    assert body["key_fingerprint"] == generated["public_key"]["fingerprint"]
    verify(generated["public_key"], body["signature"], data, hash_name, pss)


@pytest.mark.parametrize(
    "key_type, hash_name", [("ec-p256", "SHA384"), ("ec-p256", "SHA512"), ("ec-p384", "SHA256"), ("ec-p384", "SHA512")]
)
def test_unsupported_combinations_are_400(app, key_type, hash_name):
    app.generate("ec", key_type)
    status, body = app.sign("ec", digest(hash_name), hash_algorithm=hash_name)
    assert status == 400
    assert body["error"]["message"] == f"unsupported combination of key type: {key_type} and hashing algorithm: {hash_name}"


def test_pss_on_ec_keys_is_400(app):
    app.generate("ec", "ec-p256")
    status, body = app.sign("ec", digest("SHA256"), pss_options={"hash_algorithm": "SHA256"})
    assert status == 400 and "ec-p256" in body["error"]["message"]


def test_rotation_adds_a_version_and_changes_the_fingerprint(app, vault_admin):
    _, first = app.generate("rotating", "ec-p256")
    _, second = app.generate("rotating", "ec-p256")
    assert second["public_key"]["fingerprint"] != first["public_key"]["fingerprint"]
    _, current = app.get("rotating")
    assert current == second
    name = _key_name(app, "rotating")
    assert len(list(vault_admin.list_properties_of_key_versions(name))) == 2


def test_an_overwritten_key_never_signs_again(app):
    # SPIRE's KeyManager contract: once GenerateKey overwrites a key id, its old key must not sign.
    _, old = app.generate("rotating", "ec-p256")
    _, new = app.generate("rotating", "ec-p256")
    data = digest("SHA256")
    status, body = app.sign("rotating", data, hash_algorithm="SHA256", key_fingerprint=old["public_key"]["fingerprint"])
    assert status == 409 and body["error"]["code"] == "FailedPrecondition" and "signature" not in body
    assert body["error"]["message"] == 'key "rotating" has been rotated: its current key does not have the key_fingerprint given'
    status, body = app.sign("rotating", data, hash_algorithm="SHA256", key_fingerprint=new["public_key"]["fingerprint"])
    assert status == 200 and body["key_fingerprint"] == new["public_key"]["fingerprint"]
    verify(new["public_key"], body["signature"], data, "SHA256")


def test_regenerating_with_another_type_replaces_the_key(app):
    app.generate("changing", "ec-p256")
    _, rsa = app.generate("changing", "rsa-2048")
    _, current = app.get("changing")
    assert current["public_key"]["type"] == "rsa-2048" and current == rsa
    data = digest("SHA256")
    status, body = app.sign("changing", data, hash_algorithm="SHA256")
    assert status == 200
    verify(rsa["public_key"], body["signature"], data, "SHA256")


def test_get_public_keys_returns_each_key_once_at_its_current_version(app):
    assert app.list() == (200, {"public_keys": []})
    app.generate("a", "ec-p256")
    _, a2 = app.generate("a", "ec-p384")
    _, b = app.generate("b", "rsa-2048")
    status, body = app.list()
    assert status == 200
    assert body["public_keys"] == [a2["public_key"], b["public_key"]]


def test_missing_key_is_404(app):
    assert app.get("missing") == (404, {"error": {"code": "NotFound", "message": 'key "missing" not found'}})
    status, body = app.sign("missing", digest("SHA256"), hash_algorithm="SHA256")
    assert status == 404 and body["error"]["message"] == 'key "missing" not found'


def test_unknown_fingerprint_is_409(app):
    app.generate("a", "ec-p256")
    status, body = app.sign("a", digest("SHA256"), hash_algorithm="SHA256", key_fingerprint="0" * 64)
    assert status == 409 and body["error"]["code"] == "FailedPrecondition"


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "key id is required"),
        ({"key_id": "a"}, "key type is required"),
        ({"key_id": "a", "key_type": "dsa"}, "unsupported key type"),
        ({"key_id": "no_underscores", "key_type": "ec-p256"}, "letters, digits"),
        ({"key_id": "k" * 85, "key_type": "ec-p256"}, "at most 84"),
        ({"keyId": "a", "key_type": "ec-p256"}, 'unknown field "keyId": POST /api/keys takes key_id and key_type'),
    ],
)
def test_invalid_generate_requests_are_400_and_create_nothing(app, body, message):
    from functions import keys

    status, error = app.call(keys.generate_key, body)
    assert status == 400 and message in error["error"]["message"]
    assert app.vault_requests() == []


def test_disabled_key_is_409(app, vault_admin):
    app.generate("a", "ec-p256")
    name = _key_name(app, "a")
    version = vault_admin.get_key(name).properties.version
    vault_admin.update_key_properties(name, version, enabled=False)
    assert app.get("a")[0] == 409
    assert app.sign("a", digest("SHA256"), hash_algorithm="SHA256")[0] == 409


def test_health_is_ok_against_the_stand_ins(app):
    assert app.health() == (200, {"status": "ok"})


def _key_name(app, key_id: str) -> str:
    from shared import app_context

    return app_context.key_manager().naming().key_name(key_id)
