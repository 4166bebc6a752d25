"""Fixtures that run localvault as a real process and point the real Azure SDK at it."""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from azure.identity import ManagedIdentityCredential
from azure.keyvault.keys import KeyClient

REPO_ROOT = Path(__file__).resolve().parents[3]
READY = re.compile(r"localvault ready vault=(https://localhost:\d+) token=(http://127\.0\.0\.1:\d+/\S+)")
READY_TIMEOUT = 20


@dataclass(frozen=True)
class Running:
    """A started localvault process and where to reach it."""

    process: subprocess.Popen
    vault_url: str
    token_url: str
    cert_dir: Path
    stderr_path: Path

    @property
    def ca(self) -> str:
        return str(self.cert_dir / "ca.pem")

    def bearer(self) -> dict[str, str]:
        """Headers for raw REST calls, with a token from this localvault's token endpoint."""
        response = requests.get(self.token_url, params={"resource": "https://vault.azure.net"}, headers={"Metadata": "true"}, timeout=5)
        response.raise_for_status()
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def request(self, method: str, path: str, headers: dict[str, str], body: dict | None = None) -> requests.Response:
        """A raw REST call to the vault, as Key Vault's API takes it (api-version 7.5)."""
        return requests.request(
            method, f"{self.vault_url}{path}", params={"api-version": "7.5"}, headers=headers, json=body, verify=self.ca, timeout=5
        )


def start_localvault(cert_dir: Path, stderr_path: Path, *flags: str) -> Running:
    """Start ``python -m devtools.vault`` on free ports; fail (never skip) if it is not ready in time."""
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "devtools.vault", "--port", "0", "--token-port", "0", "--cert-dir", str(cert_dir), *flags],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=READY_TIMEOUT)
    except queue.Empty:
        line = ""
    match = READY.fullmatch(line.strip())
    if not match:
        process.kill()
        process.wait()
        pytest.fail(f"localvault did not report ready: {line!r}\nstderr:\n{stderr_path.read_text()}")
    return Running(process, match.group(1), match.group(2), cert_dir, stderr_path)


def stop_localvault(running: Running) -> int:
    running.process.terminate()
    try:
        return running.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        running.process.kill()
        return running.process.wait()


@pytest.fixture(scope="session")
def localvault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    base = tmp_path_factory.mktemp("localvault")
    running = start_localvault(base / "certs", base / "stderr.log")
    yield running
    stop_localvault(running)


@pytest.fixture
def credential(localvault: Running, monkeypatch: pytest.MonkeyPatch) -> ManagedIdentityCredential:
    """App Service style managed identity aimed at localvault's token endpoint (env kept for the test)."""
    for name in (
        "IDENTITY_SERVER_THUMBPRINT",
        "IMDS_ENDPOINT",
        "MSI_ENDPOINT",
        "MSI_SECRET",
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_CLIENT_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", localvault.token_url)
    monkeypatch.setenv("IDENTITY_HEADER", "localvault-tests")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "localhost,127.0.0.1")
    return ManagedIdentityCredential()


@pytest.fixture
def key_client(localvault: Running, credential: ManagedIdentityCredential) -> Iterator[KeyClient]:
    client = KeyClient(localvault.vault_url, credential, verify_challenge_resource=False, connection_verify=localvault.ca)
    yield client
    client.close()


@pytest.fixture
def auth(localvault: Running) -> dict[str, str]:
    """Headers for raw REST calls, with a token from localvault's token endpoint."""
    return localvault.bearer()


@pytest.fixture
def name() -> str:
    """A key name no other test uses (the server is shared by the whole session)."""
    return f"k-{uuid.uuid4().hex[:12]}"
