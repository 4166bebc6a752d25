"""Integration fixtures: real Azurite and the local Key Vault, started once per session on free ports.

A stand-in that does not start raises, so its tests fail; none of them skip.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import azure.functions as func
import pytest
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import ManagedIdentityCredential
from azure.keyvault.keys import KeyClient

from devtools.stack.services import Service, app_settings, start_azurite, start_devhost, start_localvault
from functions import health, keys, maintenance
from shared import app_context
from shared.key_manager import KeyManager
from shared.settings import load_settings

@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> Service:
    service = start_azurite(0, tmp_path_factory.mktemp("azurite"))
    yield service
    service.stop(grace_seconds=0)  # its store is thrown away


@pytest.fixture(scope="session")
def vault(tmp_path_factory) -> Service:
    service = start_localvault(0, 0, tmp_path_factory.mktemp("localvault"))
    yield service
    service.stop()


@pytest.fixture
def app_env(azurite, vault) -> dict[str, str]:
    """Settings of a fresh server: its own metadata container (hence server id) and trust domain.

    A trust domain of its own keeps each test's sweeps away from other tests' keys, which the
    vault's time shifts age too.
    """
    return {
        **app_settings(azurite, vault),
        "TRUST_DOMAIN": f"td-{uuid.uuid4().hex[:12]}.example.org",
        "KEY_METADATA_BLOB": f"t{uuid.uuid4().hex[:20]}/key-metadata",
    }


class CountingTransport(RequestsTransport):
    """The real HTTP transport, recording each request so tests can count what an operation costs."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sent: list[tuple[str, str, str]] = []
        self.access_tokens: set[str] = set()  # to prove that none of them leaks

    def send(self, request, **kwargs):
        url = urlsplit(request.url)
        self.sent.append((request.method, url.netloc, url.path))
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            self.access_tokens.add(authorization.removeprefix("Bearer "))
        return super().send(request, **kwargs)

    def requests_to(self, base_url: str) -> list[tuple[str, str]]:
        netloc = urlsplit(base_url).netloc
        return [(method, path) for method, host, path in self.sent if host == netloc]


@dataclass
class App:
    """The app's HTTP functions, called in-process as the Functions host calls them."""

    transport: CountingTransport
    vault_url: str
    manager: KeyManager
    last_response: func.HttpResponse | None = None

    def call(self, handler, body=None, method="POST", raw: bytes | None = None, params=None, **route_params) -> tuple[int, dict]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        app_context._key_manager = self.manager  # this instance's key manager serves the call
        request = func.HttpRequest(method, "http://localhost/api", body=data, params=params or {}, route_params=route_params)
        response = handler(request)
        self.last_response = response
        return response.status_code, json.loads(response.get_body() or b"null")

    def generate(self, key_id: str, key_type: str) -> tuple[int, dict]:
        return self.call(keys.generate_key, {"key_id": key_id, "key_type": key_type})

    def get(self, key_id: str) -> tuple[int, dict]:
        return self.call(keys.get_public_key, method="GET", key_id=key_id)

    def list(self) -> tuple[int, dict]:
        return self.call(keys.get_public_keys, method="GET")

    def sign(self, key_id: str, digest: bytes, **options) -> tuple[int, dict]:
        body = {"data": base64.b64encode(digest).decode(), **options}
        return self.call(keys.sign_data, body, key_id=key_id)

    def health(self) -> tuple[int, dict]:
        return self.call(health.health, method="GET")

    def refresh(self) -> tuple[int, dict]:
        return self.call(maintenance.refresh_keys_now)

    def sweep(self, dry_run: bool = False) -> tuple[int, dict]:
        return self.call(maintenance.sweep_stale_keys_now, params={"dry_run": str(dry_run).lower()})

    def vault_requests(self) -> list[tuple[str, str]]:
        return self.transport.requests_to(self.vault_url)


def make_app(env: dict[str, str], monkeypatch, read_timeout: float = app_context.READ_TIMEOUT) -> App:
    """Point the process's app at ``env`` and wire it with a counting transport."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    transport = CountingTransport(
        connection_verify=env["KEY_VAULT_CA_BUNDLE"], connection_timeout=app_context.CONNECTION_TIMEOUT, read_timeout=read_timeout
    )
    manager = app_context.build_key_manager(load_settings(os.environ), transport=transport)
    monkeypatch.setattr(app_context, "_key_manager", manager)
    return App(transport, env["KEY_VAULT_URI"], manager)


@pytest.fixture
def app(app_env, monkeypatch) -> App:
    return make_app(app_env, monkeypatch)


@pytest.fixture
def vault_admin(vault, monkeypatch) -> KeyClient:
    """A direct Key Vault client, to set up what the app must cope with (disabled keys, deletions)."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", vault.details["token_url"])
    monkeypatch.setenv("IDENTITY_HEADER", "tests")
    credential = ManagedIdentityCredential()
    return KeyClient(vault.url, credential, verify_challenge_resource=False, connection_verify=vault.details["ca_bundle"])


def ca_bundle(vault: Service) -> Path:
    return Path(vault.details["ca_bundle"])


@pytest.fixture
def instances(app_env):
    """Two devhost processes started at the same moment on a fresh metadata container."""
    env = {**os.environ, **app_env}
    started: list = [None, None]

    def start(index: int) -> None:
        started[index] = start_devhost(0, env, no_timers=True)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert all(started), "a devhost instance did not start"
        yield [service.url + "/api" for service in started]
    finally:
        for service in started:
            if service is not None:
                service.stop()
