"""Two SPIRE server processes under one server name, told from a restart, over HTTP on devhost.

Each plugin process sends X-SPIRE-Plugin-Instance. The app reads the minutes in which each id
called, so these tests call across three clock minutes (one to two minutes of waiting).
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
        return self.call("POST", "/keys/x509-CA-A/sign", json={"data": base64.b64encode(digest("SHA256")).decode(), "hash_algorithm": "SHA256"})

    def serves(self) -> None:
        """Lists, reads and signs, as a running server does; every one succeeds."""
        for response in (self.call("GET", "/keys"), self.call("GET", "/keys/x509-CA-A"), self.sign()):
            assert response.status_code == 200, response.text


def next_minute() -> None:
    time.sleep(60 - time.time() % 60 + 0.5)


def health(api: str) -> requests.Response:
    return requests.get(f"{api}/health", timeout=TIMEOUT)


def test_two_processes_under_one_name_get_no_new_keys_while_a_restarted_one_always_does(api, callers):
    first, second = Process(api, callers, "spire-a"), Process(api, callers, "spire-a")
    old = Process(api, callers, "spire-b")
    assert first.generate().status_code == 200
    assert old.generate().status_code == 200
    second.serves()
    old.serves()
    next_minute()
    first.serves()
    second.serves()
    old.serves()
    new = Process(api, callers, "spire-b")  # spire-b restarts: its old process stops calling
    assert new.generate().status_code == new.generate("JWT-Signer-A").status_code == 200
    new.serves()
    next_minute()
    first.serves()
    assert first.generate().status_code == 200, "two minutes in common are no overlap yet"
    second.serves()  # the third minute both call in
    refused = second.generate()
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "FailedPrecondition"
    assert SHARED in refused.json()["error"]["message"]
    assert first.generate().status_code == 409
    first.serves()  # reads and signs go on
    second.serves()
    assert new.generate().status_code == new.generate("JWT-Signer-A").status_code == 200, "a restart is never refused"
    new.serves()
    answer = health(api)
    assert answer.status_code == 503
    assert answer.json()["dependency"] == "spire_servers"
    assert answer.json()["error"]["message"] == "two SPIRE server processes share one server name; the log names it"
    assert "spire-a" not in answer.text


def test_an_instance_id_that_is_not_32_hex_digits_is_refused(api, callers):
    process = Process(api, callers, "spire-a")
    process.headers["X-SPIRE-Plugin-Instance"] = "not-an-id"
    refused = process.generate()
    assert refused.status_code == 400
    assert "X-SPIRE-Plugin-Instance" in refused.json()["error"]["message"]
