"""Two SPIRE server processes under one server name, told from a restart, over HTTP on devhost.

Each plugin process sends X-SPIRE-Plugin-Instance. The app reads the minutes in which each id
called, so these tests call across three clock minutes (one to two minutes of waiting), on two app
instances that share what they saw through Blob storage.
"""

from __future__ import annotations

import base64
import time
import uuid

import pytest
import requests

from tests.hermetic import start_app_host
from tests.integration.conftest import Callers
from tests.integration.verify import digest

TIMEOUT = 30
SHARED = "two SPIRE server processes call as server spire-a: give each its own server_name (a StatefulSet), or stop one"


@pytest.fixture
def api(app_env):
    host = start_app_host(app_env)
    yield host.url + "/api"
    host.stop()


class Process:
    """A SPIRE server process's plugin: one instance id on every call, as one server name."""

    def __init__(self, api: str, callers: Callers, server: str) -> None:
        self.api = api
        self.headers = {**callers.headers(), "X-SPIRE-Server-Name": server, "X-SPIRE-Plugin-Instance": uuid.uuid4().hex}

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.api}{path}", headers=self.headers, timeout=TIMEOUT, **kwargs)

    def generate(self, key_id: str = "x509-CA-A") -> requests.Response:
        return self.call("POST", "/keys", json={"key_id": key_id, "key_type": "ec-p256"})

    def sign(self) -> requests.Response:
        return self.call(
            "POST", "/keys/x509-CA-A/sign", json={"data": base64.b64encode(digest("SHA256")).decode(), "hash_algorithm": "SHA256"}
        )

    def serves(self) -> None:
        """Lists, reads and signs, as a running server does; every one succeeds."""
        for response in (self.call("GET", "/keys"), self.call("GET", "/keys/x509-CA-A"), self.sign()):
            assert response.status_code == 200, response.text


def next_minute() -> None:
    time.sleep(60 - time.time() % 60 + 0.5)


def health(api: str) -> requests.Response:
    return requests.get(f"{api}/health", timeout=TIMEOUT)


def refused_within(process: Process, seconds: float = 10.0) -> requests.Response:
    """The process's GenerateKey once the app's instances have shared what they saw (off their requests, so a moment later)."""
    deadline = time.monotonic() + seconds
    while (response := process.generate()).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    return response


def test_two_processes_under_one_name_on_two_app_instances_get_no_new_keys_while_a_restarted_one_always_does(instances, callers):
    one, other = instances  # each process calls its own app instance: only what they share tells them apart
    first, second = Process(one, callers, "spire-a"), Process(other, callers, "spire-a")
    old = Process(one, callers, "spire-b")
    assert first.generate().status_code == 200
    assert old.generate().status_code == 200
    second.serves()
    old.serves()
    next_minute()
    first.serves()
    second.serves()
    old.serves()
    new = Process(other, callers, "spire-b")  # spire-b restarts on the other app instance: its old process stops calling
    assert new.generate().status_code == new.generate("JWT-Signer-A").status_code == 200
    new.serves()
    next_minute()
    first.serves()
    assert first.generate().status_code == 200, "two minutes in common are no overlap yet"
    second.serves()  # the third minute both call in
    refused = refused_within(second)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "FailedPrecondition"
    assert SHARED in refused.json()["error"]["message"]
    assert refused_within(first).status_code == 409
    first.serves()  # reads and signs go on
    second.serves()
    assert new.generate().status_code == new.generate("JWT-Signer-A").status_code == 200, "a restart is never refused"
    new.serves()
    for api in instances:
        answer = health(api)
        assert answer.status_code == 200, "the app's other servers go on signing"
        assert [warning["code"] for warning in answer.json()["warnings"]] == ["server_name_shared"]
        assert "spire-a" not in answer.text


def test_an_instance_id_that_is_not_32_hex_digits_is_refused(api, callers):
    process = Process(api, callers, "spire-a")
    process.headers["X-SPIRE-Plugin-Instance"] = "not-an-id"
    refused = process.generate()
    assert refused.status_code == 400
    assert "X-SPIRE-Plugin-Instance" in refused.json()["error"]["message"]
