"""Instances racing on one vault: rotations, signatures, refreshes and sweeps at the same time."""

from __future__ import annotations

import base64
import threading

import requests

from tests.integration.test_app_instances import send  # noqa: F401  (a fixture: requests with a caller's token)
from tests.integration.verify import digest, verify

ROUNDS = 12


def _run_together(*workers) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(workers))

    def run(worker) -> None:
        barrier.wait()
        try:
            worker()
        except BaseException as error:  # surfaced in the test thread below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def test_concurrent_rotations_and_signatures_always_verify(instances, send):
    a, b = instances
    generated = [send("POST", f"{a}/keys", json={"key_id": "hot", "key_type": "ec-p256"}).json()["public_key"]]
    signatures: list[tuple[bytes, dict]] = []

    def rotate(api: str, key_type: str) -> None:
        for _ in range(ROUNDS // 2):
            response = send("POST", f"{api}/keys", json={"key_id": "hot", "key_type": key_type})
            assert response.status_code == 200, response.text
            generated.append(response.json()["public_key"])

    def sign(api: str) -> None:
        for round_ in range(ROUNDS):
            data = digest("SHA256", f"{api}-{round_}".encode())
            body = {"data": base64.b64encode(data).decode(), "hash_algorithm": "SHA256"}
            response = send("POST", f"{api}/keys/hot/sign", json=body)
            assert response.status_code == 200, response.text  # SHA256 suits both key types
            signatures.append((data, response.json()))

    _run_together(lambda: rotate(a, "ec-p256"), lambda: rotate(b, "rsa-2048"), lambda: sign(a), lambda: sign(b))
    by_fingerprint = {key["fingerprint"]: key for key in generated}
    assert len(by_fingerprint) == 1 + ROUNDS // 2 * 2
    assert len(signatures) == 2 * ROUNDS
    for data, signed in signatures:
        verify(by_fingerprint[signed["key_fingerprint"]], signed["signature"], data, "SHA256")


FIFTEEN_DAYS = 15 * 24 * 3600


def test_refresh_and_sweep_racing_with_use_never_delete_or_disable_a_live_servers_keys(instances, callers, send, shift_vault_time):
    """Instance a serves server spire-a; instance b, the default server, refreshes and sweeps the vault.

    spire-a's keys are aged past STALE_KEY_AGE: "idle" is only signed with, so that the sweep's
    candidates include it and only spire-a's recorded use keeps it until b's refresh.
    """
    a, b = instances
    as_spire_a = {**callers.headers(), "X-SPIRE-Server-Name": "spire-a"}
    key_ids = ("k1", "k2", "k3", "idle")
    for key_id in key_ids:
        requests.post(f"{a}/keys", json={"key_id": key_id, "key_type": "ec-p256"}, headers=as_spire_a, timeout=30).raise_for_status()
    shift_vault_time(FIFTEEN_DAYS)
    body = {"data": base64.b64encode(digest("SHA256")).decode(), "hash_algorithm": "SHA256"}

    def use() -> None:
        for round_ in range(ROUNDS):
            key_id = f"k{round_ % 3 + 1}"
            requests.post(f"{a}/keys", json={"key_id": key_id, "key_type": "ec-p256"}, headers=as_spire_a, timeout=30).raise_for_status()
            for signed in (key_id, "idle"):
                requests.post(f"{a}/keys/{signed}/sign", json=body, headers=as_spire_a, timeout=30).raise_for_status()

    def maintain() -> None:
        for _ in range(ROUNDS // 2):
            swept = send("POST", f"{b}/maintenance/sweep?dry_run=false", callers.maintainer).json()
            assert swept["deleted"] == [] and swept["failed"] == [], swept
            refreshed = send("POST", f"{b}/maintenance/refresh", callers.maintainer).json()
            assert refreshed["failed"] == [], refreshed

    _run_together(use, maintain)
    listed = requests.get(f"{b}/keys", headers=as_spire_a, timeout=30).json()["public_keys"]
    assert sorted(key["id"] for key in listed) == sorted(key_ids)
    for key_id in key_ids:
        assert requests.get(f"{a}/keys/{key_id}", headers=as_spire_a, timeout=30).status_code == 200
