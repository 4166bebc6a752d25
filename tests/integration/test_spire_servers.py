"""Several SPIRE servers on one app, over HTTP on two devhost instances: ids, isolation, maintenance.

Servers name themselves with X-SPIRE-Server-Name; each name has a server id blob of its own beside
KEY_METADATA_BLOB. The tests change those blobs behind the instances' backs, as an operator might.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from shared.id_blobs import LAST_USED
from tests.integration.conftest import Callers
from tests.integration.test_maintenance import FIFTEEN_DAYS
from tests.integration.verify import digest, verify

TIMEOUT = 30


@dataclass(frozen=True)
class Host:
    """A devhost instance's API, and the callers whose tokens its requests carry."""

    url: str
    callers: Callers

    def authorization(self, path: str) -> dict[str, str]:
        """The maintainer's token for maintenance, the tests' SPIRE server identity's for anything else."""
        return self.callers.headers(self.callers.maintainer if path.startswith("/maintenance/") else None)


@pytest.fixture
def hosts(instances, callers) -> list[Host]:
    return [Host(url, callers) for url in instances]


def call(base: Host, method: str, path: str, server: str | None = None, headers: dict | None = None, **kwargs):
    sent = {**base.authorization(path), **({"X-SPIRE-Server-Name": server} if server else {}), **(headers or {})}
    return requests.request(method, f"{base.url}{path}", headers=sent, timeout=TIMEOUT, **kwargs)


def generate(base: Host, key_id: str, server: str | None = None, key_type: str = "ec-p256") -> dict:
    response = call(base, "POST", "/keys", server, json={"key_id": key_id, "key_type": key_type})
    assert response.status_code == 200, response.text
    return response.json()["public_key"]


def listed(base: Host, server: str | None = None) -> list[dict]:
    response = call(base, "GET", "/keys", server)
    assert response.status_code == 200, response.text
    return response.json()["public_keys"]


def sign(base: Host, key_id: str, server: str | None = None, **options):
    body = {"data": base64.b64encode(digest("SHA256")).decode(), "hash_algorithm": "SHA256", **options}
    return call(base, "POST", f"/keys/{key_id}/sign", server, json=body)


def blobs(app_env):
    container, blob = app_env["KEY_METADATA_BLOB"].split("/", 1)
    client = BlobServiceClient.from_connection_string(app_env["AzureWebJobsStorage"]).get_container_client(container)
    return client, blob


def stored_id(app_env, server: str | None = None) -> str:
    client, blob = blobs(app_env)
    name = blob if server is None else f"{blob}.servers/{server}"
    return client.get_blob_client(name).download_blob().readall().decode()


def test_two_servers_on_two_instances_keep_keys_of_their_own(hosts, app_env):
    first, second = hosts
    a_key = generate(first, "x509-CA-A", "spire-a")
    b_key = generate(second, "x509-CA-A", "spire-b")
    default_key = generate(first, "x509-CA-A")
    generate(second, "only-a", "spire-a")
    assert len({a_key["fingerprint"], b_key["fingerprint"], default_key["fingerprint"]}) == 3

    # Each instance serves each server, and a server sees only its own keys.
    a_keys = listed(second, "spire-a")
    assert [k["id"] for k in a_keys] == ["only-a", "x509-CA-A"] and a_keys[1] == a_key
    assert listed(first, "spire-a") == a_keys
    assert listed(first, "spire-b") == [b_key]
    assert listed(second) == [default_key]
    assert call(first, "GET", "/keys/only-a", "spire-b").status_code == 404
    assert sign(first, "only-a", "spire-b").status_code == 404
    refused = sign(second, "x509-CA-A", "spire-b", key_fingerprint=a_key["fingerprint"])
    assert refused.status_code == 409, refused.text
    signed = sign(second, "x509-CA-A", "spire-b").json()
    assert signed["key_fingerprint"] == b_key["fingerprint"]
    verify(b_key, signed["signature"], digest("SHA256"), "SHA256")

    client, blob = blobs(app_env)
    assert sorted(item.name for item in client.list_blobs()) == [blob, f"{blob}.servers/spire-a", f"{blob}.servers/spire-b"]
    ids = {stored_id(app_env, server) for server in (None, "spire-a", "spire-b")}
    assert len(ids) == 3 and all(str(uuid.UUID(value)) == value for value in ids)


def test_another_trust_domain_or_a_bad_server_name_is_refused_and_nothing_is_done(hosts, app_env):
    base = hosts[0]
    for headers in ({"X-SPIRE-Trust-Domain": "other.example.org"}, {"X-SPIRE-Server-Name": "Not_Valid-"}):
        response = call(
            base,
            "POST",
            "/keys",
            "spire-x" if "X-SPIRE-Trust-Domain" in headers else None,
            headers=headers,
            json={"key_id": "k", "key_type": "ec-p256"},
        )
        assert response.status_code == 400 and response.json()["error"]["code"] == "InvalidArgument", response.text
    assert app_env["TRUST_DOMAIN"] in response.text or "X-SPIRE-Server-Name" in response.text
    client, _ = blobs(app_env)
    assert not client.exists()  # no server id was even created
    same = call(base, "GET", "/keys", "spire-x", headers={"X-SPIRE-Trust-Domain": app_env["TRUST_DOMAIN"]})
    assert same.status_code == 200 and same.json() == {"public_keys": []}


def test_servers_in_use_survive_a_sweep_and_a_silent_one_is_swept(hosts, app_env, shift_vault_time):
    first, second = hosts
    kept = {server: generate(first, "x509-CA-A", server) for server in ("spire-a", "spire-b")}
    silent = generate(second, "x509-CA-A", "spire-c")
    # spire-c last called 20 days ago, as far as its blob says (the first instance never saw it).
    client, blob = blobs(app_env)
    long_ago = datetime.now(UTC) - timedelta(days=20)
    client.get_blob_client(f"{blob}.servers/spire-c").set_blob_metadata({LAST_USED: long_ago.isoformat()})
    shift_vault_time(FIFTEEN_DAYS)  # every key is 15 days old now

    refreshed = call(first, "POST", "/maintenance/refresh")
    assert refreshed.status_code == 200 and refreshed.json()["failed"] == [], refreshed.text
    assert len(refreshed.json()["refreshed"]) == 2  # spire-a's and spire-b's keys; the default server has none
    swept = call(first, "POST", "/maintenance/sweep", params={"dry_run": "false"})
    assert swept.status_code == 200 and len(swept.json()["deleted"]) == 1, swept.text

    for server, key in kept.items():
        assert listed(second, server) == [key]
        assert sign(first, "x509-CA-A", server, key_fingerprint=key["fingerprint"]).status_code == 200
    assert listed(first, "spire-c") == []
    assert call(second, "GET", "/keys/x509-CA-A", "spire-c").status_code == 404
    # Back again, it gets new keys.
    returned = generate(second, "x509-CA-B", "spire-c")
    assert returned["fingerprint"] != silent["fingerprint"]
    assert listed(first, "spire-c") == [returned]


def test_the_sweep_keeps_keys_of_servers_that_called_within_the_age_though_no_refresh_ran(hosts, app_env, shift_vault_time):
    first, second = hosts
    called = generate(first, "x509-CA-A", "spire-a")
    recorded_before_ids_in_metadata = generate(first, "x509-CA-A", "spire-c")
    generate(second, "x509-CA-A", "spire-b")
    client, blob = blobs(app_env)
    now, long_ago = datetime.now(UTC), datetime.now(UTC) - timedelta(days=20)
    client.get_blob_client(f"{blob}.servers/spire-b").set_blob_metadata({LAST_USED: long_ago.isoformat()})
    # A blob as written before its metadata named its id: the sweep reads the id from its content.
    client.get_blob_client(f"{blob}.servers/spire-c").set_blob_metadata({LAST_USED: now.isoformat()})
    shift_vault_time(FIFTEEN_DAYS)  # no refresh ran: every key is 15 days old

    swept = call(second, "POST", "/maintenance/sweep", params={"dry_run": "false"})
    assert swept.status_code == 200 and len(swept.json()["deleted"]) == 1, swept.text
    assert listed(first, "spire-a") == [called]
    assert listed(second, "spire-c") == [recorded_before_ids_in_metadata]
    assert listed(first, "spire-b") == []


def test_a_replaced_id_blob_stops_its_server_on_every_instance_until_restored(hosts, app_env):
    first, second = hosts
    generate(first, "k")
    generate(second, "k", "spire-a")
    assert listed(second) == listed(first)  # both instances know the default server's id
    client, blob = blobs(app_env)
    default_id, a_id = stored_id(app_env), stored_id(app_env, "spire-a")
    client.get_blob_client(blob).upload_blob(str(uuid.uuid4()).encode(), overwrite=True)
    client.get_blob_client(f"{blob}.servers/spire-a").upload_blob(str(uuid.uuid4()).encode(), overwrite=True)

    # Maintenance re-checks the blob first, and the default server's conflict stops it.
    assert call(first, "POST", "/maintenance/refresh").status_code == 503
    assert call(second, "POST", "/maintenance/sweep", params={"dry_run": "true"}).status_code == 503
    for base in hosts:
        for response in (call(base, "GET", "/keys"), call(base, "GET", "/health"), sign(base, "k")):
            assert response.status_code == 503, response.text
            assert "holds another server id" in response.text and default_id not in response.text

    client.get_blob_client(blob).upload_blob(default_id.encode(), overwrite=True)
    refreshed = call(second, "POST", "/maintenance/refresh").json()
    assert refreshed["failed"] == [{"key_name": "(server spire-a)", "error": refreshed["failed"][0]["error"]}]
    assert "holds another server id" in refreshed["failed"][0]["error"]
    assert call(second, "GET", "/keys", "spire-a").status_code == 503
    assert call(second, "GET", "/keys").status_code == 200  # the default server serves again
    assert call(second, "GET", "/health").status_code == 503  # spire-a is still stopped here

    client.get_blob_client(f"{blob}.servers/spire-a").upload_blob(a_id.encode(), overwrite=True)
    assert call(second, "POST", "/maintenance/refresh").json()["failed"] == []
    assert [k["id"] for k in listed(second, "spire-a")] == ["k"]
    assert call(second, "GET", "/health").status_code == 200


def test_deleted_id_blobs_are_restored_with_the_known_ids(hosts, app_env):
    first, _ = hosts
    generate(first, "k")
    generate(first, "k", "spire-a")
    ids = {server: stored_id(app_env, server) for server in (None, "spire-a")}
    client, _ = blobs(app_env)
    client.delete_container()  # everything gone: the container and both blobs

    refreshed = call(first, "POST", "/maintenance/refresh")
    assert refreshed.status_code == 200 and len(refreshed.json()["refreshed"]) == 2, refreshed.text
    assert {server: stored_id(app_env, server) for server in ids} == ids


def test_a_huge_id_blob_is_a_503_not_a_download(hosts, app_env):
    base = hosts[0]
    client, blob = blobs(app_env)
    client.create_container()
    client.get_blob_client(f"{blob}.servers/spire-a").upload_blob(b"0" * (8 * 1024 * 1024))
    response = call(base, "GET", "/keys", "spire-a")
    assert response.status_code == 503 and "larger than 4096 bytes" in response.json()["error"]["message"]
    assert call(base, "GET", "/keys").status_code == 200  # other servers are not affected
