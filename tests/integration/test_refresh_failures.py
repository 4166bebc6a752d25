"""A refresh that cannot refresh one server's keys says so, and the sweep keeps that server's keys while it calls.

Key Vault refuses the refresh's updates of one server's keys (as it refuses writes while it fails over
read-only) on a devhost instance whose Key Vault traffic crosses the fault proxy.
"""

from __future__ import annotations

import re

import pytest

from shared.ownership import TAG_SERVER_ID
from tests.hermetic import start_app_host
from tests.integration.conftest import through
from tests.integration.test_maintenance import FIFTEEN_DAYS
from tests.integration.test_spire_servers import Host, call, generate, listed, sign, stored_id


@pytest.fixture
def host_through_proxy(app_env, vault_proxy, callers):
    devhost = start_app_host({**app_env, **through(vault_proxy), "KEY_VAULT_RETRY_SECONDS": "2"})
    try:
        yield Host(devhost.url + "/api", callers), vault_proxy
    finally:
        devhost.stop()


def test_a_refresh_refused_for_one_server_is_reported_and_the_sweep_keeps_its_keys(
    host_through_proxy, app_env, vault_admin, shift_vault_time
):
    host, proxy = host_through_proxy
    refreshed_key = generate(host, "x509-CA-A", "spire-a")
    refused_key = generate(host, "x509-CA-A", "spire-b")
    refused_id = stored_id(app_env, "spire-b")
    refused_names = [key.name for key in vault_admin.list_properties_of_keys() if (key.tags or {}).get(TAG_SERVER_ID) == refused_id]
    assert len(refused_names) == 1
    proxy.respond(503, times=None, method="PATCH", path=re.escape(f"/keys/{refused_names[0]}/"))
    shift_vault_time(FIFTEEN_DAYS)  # every key is 15 days old; both servers called just now

    refreshed = call(host, "POST", "/maintenance/refresh")
    assert refreshed.status_code == 200, refreshed.text
    report = refreshed.json()
    assert report["failed_servers"] == ["spire-b"]
    assert [failure["key_name"] for failure in report["failed"]] == refused_names
    assert len(report["refreshed"]) == 1

    health = call(host, "GET", "/health")
    assert health.status_code == 200  # signing works; the keys age
    warnings = health.json()["warnings"]
    assert [warning["code"] for warning in warnings] == ["refresh_incomplete"]
    assert "1 server" in warnings[0]["message"] and "spire-b" not in health.text  # anonymous callers learn no name

    swept = call(host, "POST", "/maintenance/sweep", params={"dry_run": "false"})
    assert swept.status_code == 200, swept.text
    assert swept.json()["deleted"] == [] and swept.json()["kept"] == refused_names
    assert listed(host, "spire-b") == [refused_key]
    assert sign(host, "x509-CA-A", "spire-b", key_fingerprint=refused_key["fingerprint"]).status_code == 200
    assert listed(host, "spire-a") == [refreshed_key]

    proxy.clear()  # Key Vault takes updates again: the next refresh covers every server and health says nothing
    assert call(host, "POST", "/maintenance/refresh").json()["failed_servers"] == []
    assert "warnings" not in call(host, "GET", "/health").json()
