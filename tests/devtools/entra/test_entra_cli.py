"""The process: what it keeps between runs, what it logs, how it stops (SIGINT, which Service.stop sends, or
SIGTERM)."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import jwt
import pytest

from devtools.entra.client import LocalEntra
from devtools.stack.services import start_entra

from .conftest import published_keys, verify


def test_a_restart_keeps_the_tenant_its_keys_and_its_registry(tmp_path: Path) -> None:
    first = start_entra(0, 0, tmp_path)
    try:
        entra = LocalEntra(first)
        api = entra.register_api()
        caller = entra.register_principal("kept")
        kids = [key.key_id for key in published_keys(entra).keys]
        token = entra.token(caller, api)
    finally:
        first.stop()
    assert first.process is not None and first.process.returncode == 0

    second = start_entra(0, 0, tmp_path)
    try:
        again = LocalEntra(second)
        assert again.tenant_id == entra.tenant_id
        assert [key.key_id for key in published_keys(again).keys] == kids
        assert jwt.get_unverified_header(again.token(caller, api))["kid"] == jwt.get_unverified_header(token)["kid"]
        verify(again, again.token(caller, api), audience=api.client_id, issuer=again.issuer(2))
        assert second.details["msi_header"] != first.details["msi_header"]  # a new one at each start
        assert second.process is not None
        second.process.terminate()
        assert second.process.wait(timeout=15) == 0  # SIGTERM stops it as cleanly as SIGINT
    finally:
        second.stop()
    for private in ("state.json", "identity-header", "ca-key.pem", "server-key.pem"):
        assert stat.S_IMODE((tmp_path / private).stat().st_mode) == 0o600


def test_each_request_is_logged_without_its_secrets(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVSTACK_ECHO", "1")
    service = start_entra(0, 0, tmp_path)
    try:
        entra = LocalEntra(service)
        api = entra.register_api()
        caller = entra.register_principal("logged", managed_identity=True)
        secret_token = entra.token(caller, api)
        msi_token = entra.token(caller, api, via="managed_identity")
    finally:
        service.stop()
    log = _output_until(capfd, "GET /msi/token 200")

    assert f"POST /{entra.tenant_id}/oauth2/v2.0/token 200" in log
    for secret in (caller.secret or "", service.details["msi_header"], secret_token, msi_token, "api-version", caller.client_id):
        assert secret not in log


def _output_until(capfd: pytest.CaptureFixture[str], line: str) -> str:
    """What the process wrote, once ``line`` is in it: its output reaches us through a thread of its own."""
    output = ""
    deadline = time.monotonic() + 10
    while line not in output and time.monotonic() < deadline:
        time.sleep(0.05)
        output += capfd.readouterr().err
    return output
