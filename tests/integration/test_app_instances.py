"""Several app instances (devhost processes) on one vault and one metadata blob, over HTTP."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from tests.integration.verify import digest, verify

Send = Callable[..., requests.Response]


@pytest.fixture
def send(callers) -> Send:
    """Send a request as the tests' SPIRE server identity, or as the principal ``caller`` names."""

    def request(method: str, url: str, caller=None, **kwargs) -> requests.Response:
        return requests.request(method, url, headers=callers.headers(caller), timeout=30, **kwargs)

    return request


def _first_requests_at_once(send: Send, urls: list[str]) -> list[requests.Response]:
    responses: list = [None] * len(urls)
    barrier = threading.Barrier(len(urls))

    def call(index: int) -> None:
        barrier.wait()
        responses[index] = send("GET", f"{urls[index]}/keys")

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


def test_instances_starting_together_share_one_server_id_and_see_each_others_rotations(instances, app_env, send):
    a, b = instances
    assert [r.status_code for r in _first_requests_at_once(send, instances)] == [200, 200]
    container, blob = app_env["KEY_METADATA_BLOB"].split("/", 1)
    blobs = list(BlobServiceClient.from_connection_string(app_env["AzureWebJobsStorage"]).get_container_client(container).list_blobs())
    assert [item.name for item in blobs] == [blob]

    first = send("POST", f"{a}/keys", json={"key_id": "x509-CA-A", "key_type": "ec-p256"}).json()
    assert send("GET", f"{b}/keys/x509-CA-A").json() == first
    rotated = send("POST", f"{b}/keys", json={"key_id": "x509-CA-A", "key_type": "rsa-2048"}).json()
    assert send("GET", f"{a}/keys/x509-CA-A").json() == rotated

    data = digest("SHA256")
    signed = send("POST", f"{a}/keys/x509-CA-A/sign", json={"data": base64.b64encode(data).decode(), "hash_algorithm": "SHA256"}).json()
    assert signed["key_fingerprint"] == rotated["public_key"]["fingerprint"]
    verify(rotated["public_key"], signed["signature"], data, "SHA256")
    assert send("GET", f"{b}/keys").json() == {"public_keys": [rotated["public_key"]]}


def test_routes_methods_and_errors_over_http(instances, send):
    api = instances[0]
    assert requests.get(f"{api}/health", timeout=30).json() == {"status": "ok"}  # anonymous
    assert send("GET", f"{api}/keys/nope").status_code == 404
    assert send("DELETE", f"{api}/keys/nope").status_code == 404  # no function takes DELETE
    response = send("POST", f"{api}/keys", data=b"{not json")
    assert response.status_code == 400 and response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "InvalidArgument"
