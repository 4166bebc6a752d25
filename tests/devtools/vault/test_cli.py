"""The command line: certificate reuse and permissions, logging, a clean stop on SIGTERM, sign latency."""

from __future__ import annotations

import stat
import subprocess
import sys

import requests

from .conftest import REPO_ROOT, Running, start_localvault, stop_localvault


def test_restart_reuses_ca_and_stops_cleanly(localvault: Running, tmp_path) -> None:
    ca_before = (localvault.cert_dir / "ca.pem").read_bytes()
    for private in ("ca-key.pem", "server-key.pem"):
        assert stat.S_IMODE((localvault.cert_dir / private).stat().st_mode) == 0o600

    second = start_localvault(localvault.cert_dir, tmp_path / "stderr.log")
    try:
        assert (localvault.cert_dir / "ca.pem").read_bytes() == ca_before
        headers = second.bearer()
        assert second.request("GET", "/keys", headers).status_code == 200
    finally:
        assert stop_localvault(second) == 0

    log = second.stderr_path.read_text()
    assert "GET /keys 200" in log
    assert "GET /metadata/identity/oauth2/token 200" in log
    token = headers["Authorization"].removeprefix("Bearer ")
    assert token not in log and "api-version" not in log and "Bearer" not in log


def test_sign_latency_holds_each_signature_back_and_nothing_else(localvault: Running, tmp_path) -> None:
    slow = start_localvault(localvault.cert_dir, tmp_path / "stderr.log", "--sign-latency-ms", "40")
    try:
        headers = slow.bearer()
        created = slow.request("POST", "/keys/slow/create", headers, {"kty": "EC", "crv": "P-256"})
        signed = slow.request("POST", "/keys/slow//sign", headers, {"alg": "ES256", "value": "A" * 43})
        assert created.status_code == signed.status_code == 200
        vault_time = {
            name: float(response.headers["Server-Timing"].partition(";dur=")[2])
            for name, response in (("create", created), ("sign", signed))
        }
        assert vault_time["sign"] >= 40 > vault_time["create"]
    finally:
        stop_localvault(slow)


def test_a_standard_vault_refuses_hsm_keys_as_key_vault_does(localvault: Running, tmp_path) -> None:
    standard = start_localvault(localvault.cert_dir, tmp_path / "stderr.log", "--sku", "standard")
    try:
        headers = standard.bearer()

        def create(body: dict) -> requests.Response:
            return standard.request("POST", "/keys/k/create", headers, body)

        for kty in ("RSA-HSM", "EC-HSM"):
            refused = create({"kty": kty})
            assert refused.status_code == 400 and refused.json()["error"]["code"] == "BadParameter"
            assert refused.json()["error"]["message"] == "Hardware key operation not allowed on standard vault"
        created = create({"kty": "EC", "crv": "P-256"})
        assert created.status_code == 200 and created.json()["key"]["kty"] == "EC"
    finally:
        stop_localvault(standard)


def test_sign_latency_must_be_a_sane_number_of_milliseconds() -> None:
    for value in ("-1", "nan", "60001", "soon"):
        result = subprocess.run(
            [sys.executable, "-m", "devtools.vault", "--sign-latency-ms", value], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 2 and "--sign-latency-ms" in result.stderr


def test_no_empty_version_sign_answers_an_empty_version_sign_404_as_lowkey_vault_does(localvault: Running, tmp_path) -> None:
    lowkey_like = start_localvault(localvault.cert_dir, tmp_path / "stderr.log", "--no-empty-version-sign")
    try:
        headers = lowkey_like.bearer()

        def post(path: str, body: dict) -> requests.Response:
            return lowkey_like.request("POST", path, headers, body)

        version = post("/keys/lowkey/create", {"kty": "EC", "crv": "P-256"}).json()["key"]["kid"].rsplit("/", 1)[1]
        by_empty_version = post("/keys/lowkey//sign", {"alg": "ES256", "value": "A" * 43})
        by_version = post(f"/keys/lowkey/{version}/sign", {"alg": "ES256", "value": "A" * 43})
    finally:
        stop_localvault(lowkey_like)
    assert by_empty_version.status_code == 404 and by_empty_version.json()["error"]["code"] == "KeyNotFound"
    assert by_version.status_code == 200 and by_version.json()["kid"].endswith(f"/keys/lowkey/{version}")
