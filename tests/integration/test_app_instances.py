"""Several app instances (devhost processes) on one vault and one metadata blob, over HTTP."""

from __future__ import annotations

import base64
import threading

import requests
from azure.storage.blob import BlobServiceClient

from tests.integration.verify import digest, verify


def _first_requests_at_once(urls: list[str]) -> list[requests.Response]:
    responses: list = [None] * len(urls)
    barrier = threading.Barrier(len(urls))

    def call(index: int) -> None:
        barrier.wait()
        responses[index] = requests.get(f"{urls[index]}/keys", timeout=30)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


def test_instances_starting_together_share_one_server_id_and_see_each_others_rotations(instances, app_env):
    a, b = instances
    assert [r.status_code for r in _first_requests_at_once(instances)] == [200, 200]
    container, blob = app_env["KEY_METADATA_BLOB"].split("/", 1)
    blobs = list(BlobServiceClient.from_connection_string(app_env["AzureWebJobsStorage"]).get_container_client(container).list_blobs())
    assert [item.name for item in blobs] == [blob]

    first = requests.post(f"{a}/keys", json={"key_id": "x509-CA-A", "key_type": "ec-p256"}, timeout=30).json()
    assert requests.get(f"{b}/keys/x509-CA-A", timeout=30).json() == first
    rotated = requests.post(f"{b}/keys", json={"key_id": "x509-CA-A", "key_type": "rsa-2048"}, timeout=30).json()
    assert requests.get(f"{a}/keys/x509-CA-A", timeout=30).json() == rotated

    data = digest("SHA256")
    signed = requests.post(
        f"{a}/keys/x509-CA-A/sign", json={"data": base64.b64encode(data).decode(), "hash_algorithm": "SHA256"}, timeout=30
    ).json()
    assert signed["key_fingerprint"] == rotated["public_key"]["fingerprint"]
    verify(rotated["public_key"], signed["signature"], data, "SHA256")
    assert requests.get(f"{b}/keys", timeout=30).json() == {"public_keys": [rotated["public_key"]]}


def test_routes_methods_and_errors_over_http(instances):
    api = instances[0]
    assert requests.get(f"{api}/health", timeout=30).json() == {"status": "ok"}
    assert requests.get(f"{api}/keys/nope", timeout=30).status_code == 404
    assert requests.delete(f"{api}/keys/nope", timeout=30).status_code == 404  # no function takes DELETE
    response = requests.post(f"{api}/keys", data=b"{not json", timeout=30)
    assert response.status_code == 400 and response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "InvalidArgument"
