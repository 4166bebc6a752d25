"""Key Vault's slow deletions and recoveries, and its policy denials, met by the app.

Key Vault finishes a deletion 1-5 s after answering it and a recovery about 1 s after; meanwhile the
key is in neither collection and its name is busy (409). This module runs the app against a
localvault of its own that takes that long, with the app's real SDK client and retry policy.
"""

from __future__ import annotations

import pytest
import requests

from devtools.stack.services import start_localvault

from .conftest import make_app

DELETE_LATENCY_MS = 1500
RECOVER_LATENCY_MS = 800


@pytest.fixture(scope="module")
def vault(tmp_path_factory):
    """Overrides the session's vault for this module: every fixture built on it (app_env, vault_admin) uses this one."""
    service = start_localvault(
        0, 0, tmp_path_factory.mktemp("slow-localvault"), delete_latency_ms=DELETE_LATENCY_MS, recover_latency_ms=RECOVER_LATENCY_MS
    )
    yield service
    service.stop()


def test_generate_right_after_a_key_is_deleted_by_hand_recovers_then_rotates_it(app, vault_admin):
    _, old = app.generate("k", "ec-p256")
    name = app.manager.naming().key_name("k")
    vault_admin.begin_delete_key(name)  # answered at once; the deletion lands later
    before = len(app.vault_requests())

    status, new = app.generate("k", "ec-p384")

    sent = app.vault_requests()[before:]
    assert status == 200, new
    assert new["public_key"]["fingerprint"] != old["public_key"]["fingerprint"]
    assert app.get("k") == (200, new)
    assert len(list(vault_admin.list_properties_of_key_versions(name))) == 2
    creates = [path for method, path in sent if method == "POST" and path.endswith("/create")]
    recovers = [path for method, path in sent if method == "POST" and path.endswith("/recover")]
    reads = [path for method, path in sent if method == "GET"]
    # The creates refused while the name is being deleted (the retry policy's at most 3 retries), the
    # one refused for the soft-deleted key and the rotation; the first read, and the recovery's polls
    # every 0.25 s until it lands.
    assert 3 <= len(creates) <= 5 and len(recovers) == 1
    assert len(reads) <= 1 + RECOVER_LATENCY_MS / 250 + 2, sent
    assert len(sent) == len(creates) + len(recovers) + len(reads)


def test_generate_whose_budget_ends_before_the_deletion_lands_is_unavailable_and_says_why(app_env, monkeypatch, callers, vault_admin):
    app = make_app({**app_env, "KEY_VAULT_RETRY_SECONDS": "1"}, monkeypatch, callers)
    app.generate("k", "ec-p256")
    vault_admin.begin_delete_key(app.manager.naming().key_name("k"))

    status, body = app.generate("k", "ec-p256")

    assert status == 503 and body["error"]["code"] == "Unavailable"
    assert "still deleting" in body["error"]["message"]


def test_a_key_creation_denied_by_policy_is_a_failed_precondition_naming_the_assignment(app, vault):
    name = app.manager.naming().key_name("k")
    assignment = f"{vault.url}/management/policy/assignments/keys-must-expire"
    requests.put(assignment, json={"keyNamePrefix": name}, verify=vault.details["ca_bundle"], timeout=10).raise_for_status()
    try:
        status, body = app.generate("k", "ec-p256")
    finally:
        requests.delete(assignment, verify=vault.details["ca_bundle"], timeout=10).raise_for_status()

    assert status == 409 and body["error"]["code"] == "FailedPrecondition"
    message = body["error"]["message"]
    assert "Key Vault's policy refused the operation" in message and "'keys-must-expire'" in message
    assert name.lower() not in message.lower()
    assert app.generate("k", "ec-p256")[0] == 200  # once the assignment is gone
