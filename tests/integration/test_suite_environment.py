"""The app under test sees the settings its tests give, nothing from the developer's shell or local.settings.json."""

from __future__ import annotations

import uuid

import requests

from shared.naming import KeyNaming
from tests.hermetic import start_app_host

TWO_DAYS = 2 * 24 * 3600


def swept_candidates(settings: dict[str, str], callers) -> list[str]:
    host = start_app_host(settings)
    try:
        response = requests.post(f"{host.url}/api/maintenance/sweep?dry_run=true", headers=callers.headers(callers.maintainer), timeout=30)
        response.raise_for_status()
        return response.json()["candidates"]
    finally:
        host.stop()


def test_devhost_in_the_tests_reads_neither_local_settings_nor_the_shell(
    app_env, callers, vault_admin, shift_vault_time, monkeypatch, capsys
):
    peer_id = str(uuid.uuid4())  # a server of this trust domain that stopped calling
    peer = KeyNaming(app_env["TRUST_DOMAIN"], peer_id).key_name("a")
    vault_admin.create_ec_key(peer, tags={"spire-server-td": app_env["TRUST_DOMAIN"], "spire-server-id": peer_id})
    shift_vault_time(TWO_DAYS)
    monkeypatch.setenv("STALE_KEY_AGE", "1d")  # as a developer's shell or local.settings.json may hold it
    monkeypatch.setenv("DEVSTACK_ECHO", "1")
    assert swept_candidates(app_env, callers) == []  # the default age, 14 days
    assert "applied 0 setting(s) from /dev/null" in capsys.readouterr().err
    assert swept_candidates({**app_env, "STALE_KEY_AGE": "1d"}, callers) == [peer]  # given by the test, it applies
