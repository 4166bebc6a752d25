"""Key Vault requests per operation, counted as they leave the pipeline (warm: the first request's challenge is paid).

The figures here are the README's and `make bench`'s budgets.
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import make_app
from tests.integration.verify import digest


@pytest.fixture
def warm_app(app):
    app.generate("warm-up", "ec-p256")  # pays the authentication challenge and the token
    app.traffic.sent.clear()
    return app


def test_generate_key_costs_two_requests(warm_app):
    warm_app.generate("a", "ec-p256")
    assert [m for m, _ in warm_app.vault_requests()] == ["GET", "POST"]  # whose the name is, then the key


def test_get_public_key_costs_one_request(warm_app):
    warm_app.generate("a", "ec-p256")
    warm_app.traffic.sent.clear()
    warm_app.get("a")
    assert len(warm_app.vault_requests()) == 1


@pytest.mark.empty_version_sign
@pytest.mark.parametrize("with_fingerprint", [False, True])
def test_a_warm_sign_costs_one_request_with_or_without_fingerprint(warm_app, with_fingerprint):
    _, generated = warm_app.generate("a", "ec-p256")
    options = {"key_fingerprint": generated["public_key"]["fingerprint"]} if with_fingerprint else {}
    warm_app.traffic.sent.clear()
    for _ in range(3):
        assert warm_app.sign("a", digest("SHA256"), hash_algorithm="SHA256", **options)[0] == 200
    requests = warm_app.vault_requests()
    assert [m for m, _ in requests] == ["POST"] * 3
    assert all(path.endswith("//sign") for _, path in requests)  # /keys/<name>//sign: the current version


def test_a_cold_sign_of_a_key_with_200_versions_costs_two_requests(app_env, monkeypatch, callers):
    first = make_app(app_env, monkeypatch, callers)
    for _ in range(200):
        status, generated = first.generate("many", "ec-p256")
    assert status == 200
    cold = make_app(app_env, monkeypatch, callers)
    cold.get("warm-up")  # pays the token and the challenge; reads nothing of "many"
    cold.traffic.sent.clear()
    status, body = cold.sign("many", digest("SHA256"), hash_algorithm="SHA256", key_fingerprint=generated["public_key"]["fingerprint"])
    assert status == 200 and body["key_fingerprint"] == generated["public_key"]["fingerprint"]
    assert [m for m, _ in cold.vault_requests()] == ["GET", "POST"]


def test_a_rotation_through_another_instance_is_seen_at_once(app_env, monkeypatch, callers):
    first = make_app(app_env, monkeypatch, callers)
    first.generate("shared", "ec-p256")
    second = make_app(app_env, monkeypatch, callers)
    _, before = second.get("shared")
    _, rotated = first.generate("shared", "ec-p384")
    _, after = second.get("shared")
    assert after == rotated != before
    status, body = second.sign("shared", digest("SHA384"), hash_algorithm="SHA384")
    assert status == 200 and body["key_fingerprint"] == rotated["public_key"]["fingerprint"]


def test_warm_listing_costs_only_pages_and_still_sees_a_rotation_through_another_instance(app_env, shift_vault_time, monkeypatch, callers):
    first = make_app(app_env, monkeypatch, callers)
    for key_id in ("a", "b", "c"):
        first.generate(key_id, "ec-p256")
    # Age the keys so their Updated times are settled and the listing cache may trust them.
    shift_vault_time(60)
    second = make_app(app_env, monkeypatch, callers)
    _, before = second.list()
    second.traffic.sent.clear()
    assert second.list() == (200, before)
    assert {request for request in second.vault_requests()} == {("GET", "/keys")}

    _, rotated = first.generate("b", "rsa-2048")
    second.traffic.sent.clear()
    _, after = second.list()
    assert [key for key in after["public_keys"] if key["id"] == "b"] == [rotated["public_key"]]
    assert len([r for r in second.vault_requests() if r != ("GET", "/keys")]) == 1
