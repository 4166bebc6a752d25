"""Refresh and sweep against the Key Vault, with time passing through its time-shift API."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError

from tests.hermetic import start_app_host
from devtools.stack.traffic import Traffic
from functions import maintenance
from shared import app_context
from shared.algorithms import KeyType
from shared.naming import KeyNaming
from shared.settings import load_settings
from tests.integration.conftest import is_soft_deleted_soon
from tests.integration.test_servers_sharing_a_vault import make_server_app
from tests.integration.verify import digest, verify

FIFTEEN_DAYS = 15 * 24 * 3600


@pytest.fixture
def trust_domain(app_env) -> str:
    return app_env["TRUST_DOMAIN"]  # each test's own: time shifts age every key in the shared vault


@pytest.fixture
def server(app_env, monkeypatch, callers, trust_domain):
    """An app instance with a server id of its own: key names never repeat across tests."""
    suffix = uuid.uuid4().hex[:8]

    def start(server_id: str, trust_domain: str = trust_domain, **settings: str):
        return make_server_app(app_env, monkeypatch, callers, f"{server_id}-{suffix}", trust_domain, **settings)

    return start


def key_exists(vault_admin, name: str) -> bool:
    try:
        vault_admin.get_key(name)
        return True
    except ResourceNotFoundError:
        return False

def test_keys_of_another_server_are_deleted_once_stale_and_kept_while_young(server, shift_vault_time, vault_admin):
    other = server("other-server")
    other.generate("a", "ec-p256")
    other.generate("b", "rsa-2048")
    names = [other.manager.naming().key_name(k) for k in ("a", "b")]
    me = server("this-server")
    assert me.sweep() == (200, {"dry_run": False, "candidates": [], "deleted": [], "failed": [], "cap_reached": False, "kept": []})
    shift_vault_time(FIFTEEN_DAYS)
    status, report = me.sweep()
    assert status == 200
    assert sorted(report["candidates"]) == sorted(names) and sorted(report["deleted"]) == sorted(names)
    assert not any(key_exists(vault_admin, name) for name in names)
    assert all(is_soft_deleted_soon(vault_admin, name) for name in names)  # recoverable



def test_own_keys_aged_past_the_limit_are_refreshed_kept_and_still_sign(server, shift_vault_time, vault_admin):
    me = server("this-server")
    _, generated = me.generate("mine", "ec-p256")
    name = me.manager.naming().key_name("mine")
    shift_vault_time(FIFTEEN_DAYS)
    status, report = me.refresh()
    assert status == 200 and report == {"refreshed": [name], "failed": [], "failed_servers": []}
    updated = vault_admin.get_key(name).properties.updated_on
    assert datetime.now(timezone.utc) - updated < timedelta(minutes=1)
    assert vault_admin.get_key(name).key_operations == ["sign", "verify"]

    _, report = server("other-server").sweep()
    assert name not in report["candidates"]
    data = digest("SHA256")
    status, signed = me.sign("mine", data, hash_algorithm="SHA256")
    assert status == 200
    verify(generated["public_key"], signed["signature"], data, "SHA256")


def test_own_keys_are_never_swept_even_when_stale(server, shift_vault_time, vault_admin):
    me = server("this-server")
    me.generate("mine", "ec-p256")
    shift_vault_time(FIFTEEN_DAYS)
    _, report = me.sweep()
    assert report["candidates"] == []
    assert key_exists(vault_admin, me.manager.naming().key_name("mine"))


def test_other_trust_domains_and_untagged_keys_are_kept(server, shift_vault_time, vault_admin):
    foreign = server("other-server", trust_domain=f"other-{uuid.uuid4().hex[:8]}.org")
    foreign.generate("a", "ec-p256")
    foreign_name = foreign.manager.naming().key_name("a")
    untagged = f"untagged-{uuid.uuid4().hex[:8]}"
    vault_admin.create_ec_key(untagged, curve="P-256")
    half_tagged = f"half-tagged-{uuid.uuid4().hex[:8]}"
    vault_admin.create_ec_key(half_tagged, curve="P-256", tags={"spire-server-td": "x"})
    shift_vault_time(FIFTEEN_DAYS)
    _, report = server("this-server").sweep()
    assert report["candidates"] == []
    assert all(key_exists(vault_admin, name) for name in (foreign_name, untagged, half_tagged))


def test_the_cap_stops_a_run_at_its_count(server, shift_vault_time):
    other = server("other-server")
    for key_id in ("a", "b", "c"):
        other.generate(key_id, "ec-p256")
    shift_vault_time(FIFTEEN_DAYS)
    me = server("this-server", SWEEP_MAX_DELETIONS="2")
    _, first = me.sweep()
    assert len(first["candidates"]) == 3 and len(first["deleted"]) == 2 and first["cap_reached"] is True
    _, second = me.sweep()
    assert len(second["deleted"]) == 1 and second["cap_reached"] is False


def test_two_servers_sweeping_at_once_both_end_well(server, shift_vault_time, vault_admin):
    other = server("abandoned-server")
    for key_id in ("a", "b", "c", "d"):
        other.generate(key_id, "ec-p256")
    names = sorted(other.manager.naming().key_name(k) for k in ("a", "b", "c", "d"))
    shift_vault_time(FIFTEEN_DAYS)
    sweepers = [server("server-1").manager, server("server-2").manager]
    reports: list = [None, None]
    barrier = threading.Barrier(2)

    def sweep(index: int) -> None:
        barrier.wait()
        reports[index] = sweepers[index].sweep()

    threads = [threading.Thread(target=sweep, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Whichever sweep deletes a key first, the other finds it gone (404) or no longer listed:
    # both end without failures, each counts all its candidates as done, and together they got all.
    assert all(report is not None and report.failed == [] for report in reports)
    assert all(sorted(report.deleted) == sorted(report.candidates) for report in reports)
    assert sorted(set(reports[0].deleted) | set(reports[1].deleted)) == names
    assert not any(key_exists(vault_admin, name) for name in names)


def test_refresh_and_sweep_cost_two_requests_per_key_plus_listing_pages(server, shift_vault_time):
    me = server("this-server")
    other = server("other-server")
    for key_id in ("a", "b", "c"):
        me.generate(key_id, "ec-p256")
        other.generate(key_id, "ec-p256")
    shift_vault_time(FIFTEEN_DAYS)
    me.traffic.sent.clear()
    me.refresh()
    refresh_requests = me.vault_requests()
    listing = [r for r in refresh_requests if r == ("GET", "/keys")]
    assert len(refresh_requests) - len(listing) == 2 * 3
    me.traffic.sent.clear()
    me.sweep()
    sweep_requests = me.vault_requests()
    paths = [f"/keys/{other.manager.naming().key_name(k)}" for k in ("a", "b", "c")]
    # Each candidate is read again just before it is deleted.
    assert [(m, p.rstrip("/")) for m, p in sweep_requests if (m, p) != ("GET", "/keys")] == [
        (method, path) for path in paths for method in ("GET", "DELETE")
    ]


def test_devhost_runs_the_refresh_timer_on_demand(app_env, callers, trust_domain, shift_vault_time, vault_admin):
    server_id = f"timer-{uuid.uuid4().hex[:8]}"
    env = {**app_env, **callers.settings(server_names=("",)), "TRUST_DOMAIN": trust_domain, "KEY_IDENTIFIER_VALUE": server_id}
    env["KEY_METADATA_BLOB"] = ""  # a configured server id needs no metadata blob
    host = start_app_host(env)
    try:
        api = host.url + "/api"
        requests.post(f"{api}/keys", json={"key_id": "timed", "key_type": "ec-p256"}, headers=callers.headers(), timeout=30).raise_for_status()
        name = KeyNaming(trust_domain, server_id).key_name("timed")
        shift_vault_time(FIFTEEN_DAYS)
        assert datetime.now(timezone.utc) - vault_admin.get_key(name).properties.updated_on > timedelta(days=14)
        assert requests.post(f"{host.url}/admin/functions/refresh_keys", json={}, timeout=30).status_code == 202
        deadline = time.monotonic() + 20
        while datetime.now(timezone.utc) - vault_admin.get_key(name).properties.updated_on > timedelta(minutes=1):
            assert time.monotonic() < deadline, "the refresh timer did not run"
            time.sleep(0.2)
    finally:
        host.stop()


def test_a_refresh_of_several_servers_lists_the_vault_once(app_env, monkeypatch):
    """Every server of an app shares its vault: one listing serves all their refreshes."""
    for name, value in app_env.items():
        monkeypatch.setenv(name, value)
    traffic = Traffic()
    servers = app_context.build_servers(load_settings(app_env), raw_request_hook=traffic)
    app_context.install_servers(servers)
    named = ("spire-a", "spire-b", "spire-c")
    for server_name in named:
        servers.serve(server_name).generate_key("x509-CA-A", KeyType.EC_P256)
    listing = ("GET", "/keys")
    traffic.sent.clear()
    servers.serve(None).get_public_keys()  # no keys of its own: its requests are one listing
    pages = traffic.requests_to(app_env["KEY_VAULT_URI"]).count(listing)
    traffic.sent.clear()
    report = maintenance.refresh_used_servers()
    assert len(report.refreshed) == len(named) and report.failed == []
    assert traffic.requests_to(app_env["KEY_VAULT_URI"]).count(listing) == pages


@pytest.mark.parametrize("setting", ["REFRESH_KEYS_SCHEDULE", "SWEEP_KEYS_SCHEDULE"])
def test_no_sweep_runs_while_a_schedule_is_invalid(server, shift_vault_time, vault_admin, monkeypatch, setting):
    other = server("other-server")
    other.generate("a", "ec-p256")
    name = other.manager.naming().key_name("a")
    me = server("this-server")
    shift_vault_time(FIFTEEN_DAYS)
    monkeypatch.setenv(setting, "0 */6 * * *")  # five fields: the Functions host reads six
    status, body = me.sweep()
    assert status == 503 and setting in body["error"]["message"], body
    assert key_exists(vault_admin, name)
    monkeypatch.delenv(setting)
    assert me.sweep()[1]["deleted"] == [name]
