"""X-SPIRE-Plugin-Instance: two live plugin processes under one server name, told from a restart."""

import json
import logging

import azure.functions as func
import pytest
from openapi_schema_validator import OAS30Validator

from functions import keys
from functions.health import SHARED_SERVER_NAME, health
from functions.openapi import DOCUMENT_PATH
from shared import app_context
from shared.app_context import SpireServers
from shared.instances import Instances, SharedInstances
from shared.server_ids import FixedServerDirectory
from tests.unit.fakes import InMemoryVault
from tests.unit.tokens import bearer

FIRST = "1" * 32
SECOND = "2" * 32
SHARED = "two SPIRE server processes call as server spire-a: give each its own server_name (a StatefulSet), or stop one"


class Clock:
    now = 1_000_000 * 60.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    servers = SpireServers("example.org", FixedServerDirectory("app-server"), InMemoryVault(), instances=SharedInstances(Instances(clock)))
    app_context.install_servers(servers)
    return clock


def call(handler, instance, body=None, method="POST", server="spire-a", **route_params):
    headers = {**bearer(), "X-SPIRE-Server-Name": server}
    if instance is not None:
        headers["X-SPIRE-Plugin-Instance"] = instance
    data = json.dumps(body).encode() if body is not None else b""
    response = handler(func.HttpRequest(method, "http://localhost/api/keys", body=data, headers=headers, route_params=route_params))
    return response.status_code, json.loads(response.get_body())


def generate(instance, server="spire-a"):
    return call(keys.generate_key, instance, {"key_id": "x509-CA-A", "key_type": "ec-p256"}, server=server)


def sign(instance):
    body = {"data": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "hash_algorithm": "SHA256"}
    return call(keys.sign_data, instance, body, key_id="x509-CA-A")


def list_keys(instance):
    return call(keys.get_public_keys, instance, method="GET")


def test_two_processes_under_one_name_get_no_new_keys_once_both_keep_calling(clock, caplog):
    assert generate(FIRST)[0] == 200
    for _ in range(2):
        assert list_keys(FIRST)[0] == list_keys(SECOND)[0] == 200
        clock.now += 60
    assert generate(FIRST)[0] == 200, "two shared minutes are not yet an overlap"
    with caplog.at_level(logging.ERROR, logger="functions.keys"):
        assert list_keys(SECOND)[0] == 200
    assert SHARED in caplog.text
    status, body = generate(SECOND)
    assert status == 409
    assert body["error"]["code"] == "FailedPrecondition"
    assert SHARED in body["error"]["message"]
    assert generate(FIRST)[0] == 409
    assert sign(FIRST)[0] == sign(SECOND)[0] == 200, "signs go on"
    assert list_keys(FIRST)[0] == 200, "reads go on"
    assert generate(SECOND, server="a")[0] == 200, "another name is not affected"
    status, body = call(health, None, method="GET")
    assert status == 200, "the other servers go on signing on this instance"
    assert body["warnings"] == [{"code": "server_name_shared", "message": SHARED_SERVER_NAME}]
    assert "spire-a" not in json.dumps(body)
    document = json.loads(DOCUMENT_PATH.read_text())
    assert OAS30Validator({"$ref": "#/components/schemas/Health", "components": document["components"]}).is_valid(body)
    clock.now += 120  # the first process stopped
    assert generate(SECOND)[0] == 200


def test_a_restarted_process_is_never_refused(clock):
    for _ in range(10):
        assert generate(FIRST)[0] == 200
        clock.now += 20
    for _ in range(30):  # SPIRE prepares its slots again, and signs
        assert generate(SECOND)[0] == 200
        assert sign(SECOND)[0] == 200
        clock.now += 20
    assert call(health, None, method="GET")[1]["status"] == "ok"


def test_callers_without_an_instance_id_are_served(clock):
    for _ in range(5):
        assert generate(None)[0] == 200
        clock.now += 60


@pytest.mark.parametrize("instance", ["", "1" * 31, "1" * 33, "A" * 32, "x" * 32])
def test_an_instance_id_that_is_not_32_lowercase_hex_digits_is_a_400(clock, instance):
    status, body = generate(instance)
    assert status == 400
    assert "X-SPIRE-Plugin-Instance" in body["error"]["message"]


@pytest.mark.parametrize("instance", ["", "1" * 31, "1" * 32, "1" * 33, "A" * 32, "0123456789abcdef" * 2, "x" * 32])
def test_the_documented_instance_id_is_what_the_app_accepts(clock, instance):
    parameter = json.loads(DOCUMENT_PATH.read_text())["components"]["parameters"]["SpirePluginInstance"]
    assert OAS30Validator(parameter["schema"]).is_valid(instance) == (generate(instance)[0] == 200)
