"""SPIRE's signing semantics on the local stack: only a key id's current version signs, in one Key
Vault request when warm; errors name the caller's key id and say what is wrong."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import make_app
from tests.integration.verify import digest, verify

EMPTY_VERSION_SIGN = r"//sign(\?|$)"  # /keys/<name>//sign?api-version=...


def _sign(app, key_id: str = "k", **options):
    data = digest("SHA256")
    status, body = app.sign(key_id, data, hash_algorithm="SHA256", **options)
    return status, body, data


def test_a_rotation_through_another_instance_retires_the_old_key_there_at_once(app_env, monkeypatch, callers):
    first = make_app(app_env, monkeypatch, callers)
    _, old = first.generate("k", "ec-p256")
    second = make_app(app_env, monkeypatch, callers)
    assert _sign(second, key_fingerprint=old["public_key"]["fingerprint"])[0] == 200  # warm on the old key
    _, new = first.generate("k", "ec-p256")

    status, body, _ = _sign(second, key_fingerprint=old["public_key"]["fingerprint"])
    assert status == 409 and body["error"]["code"] == "FailedPrecondition" and "signature" not in body
    status, body, data = _sign(second)
    assert status == 200 and body["key_fingerprint"] == new["public_key"]["fingerprint"]
    verify(new["public_key"], body["signature"], data, "SHA256")


@pytest.mark.empty_version_sign
def test_a_rotation_to_another_type_signs_with_the_new_types_algorithm(app_env, monkeypatch, callers):
    first = make_app(app_env, monkeypatch, callers)
    first.generate("k", "ec-p256")
    second = make_app(app_env, monkeypatch, callers)
    assert _sign(second)[0] == 200
    _, rsa = first.generate("k", "rsa-2048")
    second.traffic.sent.clear()
    status, body, data = _sign(second)
    assert status == 200, body
    verify(rsa["public_key"], body["signature"], data, "SHA256")
    # ES256 refused by the RSA key, then the key is read and signed with RS256.
    assert [method for method, _ in second.vault_requests()] == ["POST", "GET", "POST"]


@pytest.mark.parametrize("salt_length", [0, -1, 32])
def test_pss_salt_length_0_signs_like_minus_1(app, salt_length):
    _, generated = app.generate("k", "rsa-2048")
    data = digest("SHA256")
    status, body = app.sign("k", data, pss_options={"hash_algorithm": "SHA256", "salt_length": salt_length})
    assert status == 200, body
    verify(generated["public_key"], body["signature"], data, "SHA256", pss=True)


def _assert_names_only_the_key_id(app, body: dict, key_id: str) -> None:
    naming = app.manager.naming()
    message = body["error"]["message"]
    assert f'key "{key_id}"' in message
    assert naming.key_name(key_id) not in message and naming.server_id not in message


def test_a_disabled_key_is_409_naming_the_key_id(app, vault_admin):
    app.generate("k", "ec-p256")
    name = app.manager.naming().key_name("k")
    vault_admin.update_key_properties(name, vault_admin.get_key(name).properties.version, enabled=False)
    status, body, _ = _sign(app)  # warm: Key Vault itself refuses the disabled key
    assert status == 409 and body["error"]["code"] == "FailedPrecondition"
    assert "disabled" in body["error"]["message"]
    _assert_names_only_the_key_id(app, body, "k")


def test_a_key_whose_operations_exclude_sign_is_409_naming_the_key_id(app, vault_admin):
    app.generate("k", "ec-p256")
    name = app.manager.naming().key_name("k")
    vault_admin.update_key_properties(name, vault_admin.get_key(name).properties.version, key_operations=["verify"])
    status, body, _ = _sign(app)
    assert status == 409 and body["error"]["code"] == "FailedPrecondition"
    assert "key operations" in body["error"]["message"]
    _assert_names_only_the_key_id(app, body, "k")


def test_a_key_deleted_by_hand_is_recovered_and_rotated_by_generate_key(app, vault_admin):
    _, old = app.generate("k", "ec-p256")
    name = app.manager.naming().key_name("k")
    vault_admin.begin_delete_key(name).wait()
    assert app.get("k")[0] == 404
    status, new = app.generate("k", "ec-p384")
    assert status == 200, new
    assert app.get("k") == (200, new)
    assert len(list(vault_admin.list_properties_of_key_versions(name))) == 2
    status, body = app.sign("k", digest("SHA384"), hash_algorithm="SHA384", key_fingerprint=new["public_key"]["fingerprint"])
    assert status == 200
    assert _sign(app, key_fingerprint=old["public_key"]["fingerprint"])[0] == 400  # ec-p384 signs SHA384 only


@pytest.fixture
def proxied_app(app_env, vault_proxy, monkeypatch, callers):
    """An app whose Key Vault traffic crosses the proxy, warm and holding the key "k"."""
    env = {**app_env, "KEY_VAULT_URI": vault_proxy.url, "KEY_VAULT_CA_BUNDLE": vault_proxy.ca, "KEY_VAULT_RETRY_SECONDS": "2"}
    app = make_app(env, monkeypatch, callers)
    _, generated = app.generate("k", "ec-p256")
    app.public_key = generated["public_key"]
    app.traffic.sent.clear()
    return app


def test_a_vault_that_cannot_sign_by_the_empty_version_is_noticed_once(proxied_app, vault_proxy):
    # Lowkey Vault answers 404 to POST /keys/<name>//sign.
    not_found = json.dumps({"error": {"code": "NotFound", "message": "No static resource keys."}}).encode()
    vault_proxy.respond(404, {"Content-Type": "application/json"}, not_found, times=None, path=EMPTY_VERSION_SIGN)
    counts = []
    for _ in range(3):
        mark = len(proxied_app.vault_requests())
        status, body, data = _sign(proxied_app, key_fingerprint=proxied_app.public_key["fingerprint"])
        assert status == 200, body
        verify(proxied_app.public_key, body["signature"], data, "SHA256")
        counts.append(len(proxied_app.vault_requests()) - mark)
    assert counts == [3, 2, 2]  # then read the current version and sign it, never the empty version again
    assert sum(1 for method, path in vault_proxy.requests if "//sign" in path) == 1


def _error(code: str, message: str, inner: str | None = None) -> bytes:
    error = {"code": code, "message": message, **({"innererror": {"code": inner}} if inner else {})}
    return json.dumps({"error": error}).encode()


@pytest.mark.parametrize(
    "status, body",
    [
        (403, _error("Forbidden", "The user, group or application does not have keys sign permission", "ForbiddenByPolicy")),
        (403, _error("Forbidden", "Caller is not authorized to perform action on resource.", "ForbiddenByRbac")),
        (418, _error("Teapot", "?")),
        (405, _error("MethodNotAllowed", "?")),
        (302, b"{}"),
        (200, b"{}"),
        (200, b"<html>not JSON</html>"),
    ],
)
def test_refusals_of_the_apps_identity_and_answers_without_a_meaning_here_are_503_with_a_message(proxied_app, vault_proxy, status, body):
    vault_proxy.respond(status, {"Content-Type": "application/json"}, body, times=None, path=EMPTY_VERSION_SIGN)
    answer, error, _ = _sign(proxied_app)
    assert answer == 503 and error["error"]["code"] == "Unavailable" and error["error"]["message"]
    _assert_no_key_vault_name(proxied_app, error)


def _assert_no_key_vault_name(app, body: dict) -> None:
    naming = app.manager.naming()
    assert naming.key_name("k") not in body["error"]["message"] and naming.server_id not in body["error"]["message"]
