"""Deletions and recoveries that take effect later, and creations denied by Azure Policy, as Key Vault answers them."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from .conftest import Running, start_localvault, stop_localvault

# Long enough that each step below runs inside the window, however busy the machine.
DELETE_LATENCY_MS = 2000
RECOVER_LATENCY_MS = 1500
EC_KEY = {"kty": "EC", "crv": "P-256"}


@pytest.fixture(scope="module")
def localvault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """This module's own localvault, slow to delete and recover (the ``auth`` fixture signs in to it)."""
    base = tmp_path_factory.mktemp("slow-localvault")
    running = start_localvault(
        base / "certs", base / "stderr.log", "--delete-latency-ms", str(DELETE_LATENCY_MS), "--recover-latency-ms", str(RECOVER_LATENCY_MS)
    )
    yield running
    stop_localvault(running)


class Vault:
    """Raw REST calls to one vault, as a Key Vault client sends them."""

    def __init__(self, running: Running, auth: dict[str, str]) -> None:
        self.running, self.auth = running, auth

    def call(self, method: str, path: str, body: dict | None = None) -> requests.Response:
        return requests.request(
            method,
            f"{self.running.vault_url}{path}",
            params={"api-version": "7.5"},
            json=body,
            headers=self.auth,
            verify=self.running.ca,
            timeout=10,
        )

    def create(self, name: str, **fields) -> requests.Response:
        return self.call("POST", f"/keys/{name}/create", {**EC_KEY, **fields})

    def wait_for(self, path: str, seconds: float = 10) -> float:
        """Poll ``path`` until it answers 200, as the SDK's pollers do; the seconds it took."""
        started = time.monotonic()
        while self.call("GET", path).status_code != 200:
            assert time.monotonic() - started < seconds, f"{path} never answered 200"
            time.sleep(0.05)
        return time.monotonic() - started

    def deleted_names(self) -> set[str]:
        return {item["recoveryId"].rsplit("/", 1)[-1] for item in self.call("GET", "/deletedkeys").json()["value"]}


@pytest.fixture
def vault(localvault: Running, auth: dict[str, str]) -> Vault:
    return Vault(localvault, auth)


def _conflict(response: requests.Response) -> tuple[int, dict]:
    return response.status_code, response.json()["error"]


BEING_DELETED = (409, {"code": "Conflict", "message": "Key is currently being deleted.", "innererror": {"code": "ObjectIsBeingDeleted"}})


def test_a_deleted_key_is_in_neither_collection_and_its_name_is_busy_until_the_deletion_lands(vault: Vault, name: str) -> None:
    assert vault.create(name).status_code == 200
    deleted = vault.call("DELETE", f"/keys/{name}")
    assert deleted.status_code == 200 and deleted.json()["recoveryId"].endswith(f"/deletedkeys/{name}")

    assert vault.call("GET", f"/keys/{name}").status_code == 404
    assert vault.call("GET", f"/deletedkeys/{name}").status_code == 404
    assert name not in vault.deleted_names()
    assert _conflict(vault.create(name)) == BEING_DELETED
    assert _conflict(vault.call("POST", f"/deletedkeys/{name}/recover")) == BEING_DELETED
    assert _conflict(vault.call("DELETE", f"/deletedkeys/{name}")) == BEING_DELETED

    assert vault.wait_for(f"/deletedkeys/{name}") > 1  # most of DELETE_LATENCY_MS is still to run
    assert name in vault.deleted_names()
    held = vault.create(name)
    assert held.status_code == 409 and held.json()["error"]["innererror"]["code"] == "ObjectIsDeletedButRecoverable"


def test_a_recovered_key_is_not_found_until_the_recovery_lands(vault: Vault, name: str) -> None:
    version = vault.create(name).json()["key"]["kid"].rsplit("/", 1)[-1]
    vault.call("DELETE", f"/keys/{name}")
    vault.wait_for(f"/deletedkeys/{name}")

    recovered = vault.call("POST", f"/deletedkeys/{name}/recover")
    assert recovered.status_code == 200 and recovered.json()["key"]["kid"].endswith(f"/keys/{name}/{version}")
    assert vault.call("GET", f"/keys/{name}").status_code == 404
    assert vault.call("GET", f"/keys/{name}/{version}").status_code == 404
    assert vault.call("GET", f"/deletedkeys/{name}").status_code == 404
    assert name not in {item["kid"].rsplit("/", 1)[-1] for item in vault.call("GET", "/keys").json()["value"]}
    busy = vault.create(name)
    assert busy.status_code == 409 and busy.json()["error"]["message"] == "Key is currently being recovered."

    assert vault.wait_for(f"/keys/{name}") > 0.5
    assert vault.create(name).status_code == 200  # a new version of the recovered key


def test_a_policy_assignment_denies_creating_keys_without_an_expiry_date(vault: Vault, name: str) -> None:
    assignment = f"/management/policy/assignments/keys-expire-{name}"
    assert (
        requests.put(f"{vault.running.vault_url}{assignment}", json={"keyNamePrefix": name}, verify=vault.running.ca, timeout=5).status_code
        == 204
    )
    try:
        denied = vault.create(f"{name}-a")
        assert denied.status_code == 403
        error = denied.json()["error"]
        assert error["code"] == "Forbidden" and error["innererror"] == {"code": "ForbiddenByPolicy"}
        assert f"keys-expire-{name}" in error["message"] and "disallowed by policy" in error["message"]
        assert vault.create(f"{name}-a", attributes={"exp": int(time.time()) + 86400}).status_code == 200
        assert vault.create(f"other-{name}").status_code == 200  # outside the assignment's scope
    finally:
        requests.delete(f"{vault.running.vault_url}{assignment}", verify=vault.running.ca, timeout=5)
    assert vault.create(f"{name}-b").status_code == 200
