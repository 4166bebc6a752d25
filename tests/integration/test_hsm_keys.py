"""KEY_VAULT_KEY_PROTECTION=hsm: the app creates HSM-protected keys (a Premium vault's), which serve as any other."""

from __future__ import annotations

import pytest

from tests.integration.conftest import make_app
from tests.integration.verify import digest, verify


@pytest.fixture
def hsm_env(app_env) -> dict[str, str]:
    return {**app_env, "KEY_VAULT_KEY_PROTECTION": "hsm"}


@pytest.mark.parametrize(
    "key_type, kty, hash_name",
    [("rsa-2048", "RSA-HSM", "SHA256"), ("rsa-4096", "RSA-HSM", "SHA512"), ("ec-p256", "EC-HSM", "SHA256"), ("ec-p384", "EC-HSM", "SHA384")],
)
def test_hsm_protection_creates_hsm_keys_that_sign_and_verify(hsm_env, monkeypatch, callers, vault_admin, key_type, kty, hash_name):
    app = make_app(hsm_env, monkeypatch, callers)
    status, generated = app.generate("x509-CA-A", key_type)
    assert status == 200 and generated["public_key"]["type"] == key_type
    assert vault_admin.get_key(app.manager.naming().key_name("x509-CA-A")).key_type == kty
    data = digest(hash_name)
    status, body = app.sign("x509-CA-A", data, hash_algorithm=hash_name)
    assert status == 200 and body["key_fingerprint"] == generated["public_key"]["fingerprint"]
    verify(generated["public_key"], body["signature"], data, hash_name)
    assert app.get("x509-CA-A") == (200, generated)
    assert app.list() == (200, {"public_keys": [generated["public_key"]]})


def test_after_a_switch_to_hsm_software_keys_still_serve_until_they_rotate(app_env, hsm_env, monkeypatch, callers, vault_admin):
    _, software = make_app(app_env, monkeypatch, callers).generate("jwt-signer", "ec-p256")
    app = make_app(hsm_env, monkeypatch, callers)
    name = app.manager.naming().key_name("jwt-signer")
    assert vault_admin.get_key(name).key_type == "EC"
    data = digest("SHA256")
    status, body = app.sign("jwt-signer", data, hash_algorithm="SHA256", key_fingerprint=software["public_key"]["fingerprint"])
    assert status == 200
    verify(software["public_key"], body["signature"], data, "SHA256")
    _, rotated = app.generate("jwt-signer", "ec-p256")
    assert vault_admin.get_key(name).key_type == "EC-HSM"
    assert rotated["public_key"]["fingerprint"] != software["public_key"]["fingerprint"]
    assert app.get("jwt-signer") == (200, rotated)
