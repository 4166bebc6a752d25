"""The command line: certificate reuse and permissions, logging, and a clean stop on SIGTERM."""

from __future__ import annotations

import stat

import requests

from .conftest import Running, start_localvault, stop_localvault


def test_restart_reuses_ca_and_stops_cleanly(localvault: Running, tmp_path) -> None:
    ca_before = (localvault.cert_dir / "ca.pem").read_bytes()
    for private in ("ca-key.pem", "server-key.pem"):
        assert stat.S_IMODE((localvault.cert_dir / private).stat().st_mode) == 0o600

    second = start_localvault(localvault.cert_dir, tmp_path / "stderr.log")
    try:
        assert (localvault.cert_dir / "ca.pem").read_bytes() == ca_before
        token = requests.get(second.token_url, params={"resource": "https://vault.azure.net"},
                             headers={"Metadata": "true"}, timeout=5).json()["access_token"]
        response = requests.get(f"{second.vault_url}/keys", params={"api-version": "7.5"},
                                headers={"Authorization": f"Bearer {token}"}, verify=second.ca, timeout=5)
        assert response.status_code == 200
    finally:
        assert stop_localvault(second) == 0

    log = second.stderr_path.read_text()
    assert "GET /keys 200" in log
    assert "GET /metadata/identity/oauth2/token 200" in log
    assert token not in log and "api-version" not in log and "Bearer" not in log
