"""Integration fixtures: real Azurite and a Key Vault, started once per session on free ports.

The Key Vault is localvault, started here, unless TEST_KEY_VAULT_URI names one that runs already
(Lowkey Vault, another localvault, a real vault): see ExternalVault. A stand-in that does not start
raises, so its tests fail; none of them skip.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import azure.functions as func
import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.keyvault.keys import KeyClient

from devtools.entra.client import Api, LocalEntra, Principal
from devtools.stack.callers import caller_settings
from devtools.stack.faultproxy import FaultProxy, make_server_certificate
from devtools.stack.services import (
    Service,
    StackError,
    app_settings,
    is_on_this_machine,
    start_azurite,
    start_entra,
    start_localvault,
)
from devtools.stack.traffic import Traffic
from functions import health, keys, maintenance
from shared import app_context
from shared.app_context import SpireServers
from shared.key_manager import KeyManager
from shared.settings import load_caller_settings, load_settings
from tests.hermetic import start_app_host

TIME_SHIFT_FIXTURE = "shift_vault_time"


@dataclass(frozen=True)
class VaultFeature:
    """Something localvault does that another vault may not: the tests that need it carry ``marker``."""

    marker: str
    setting: str
    tests: str
    lacking: str


VAULT_FEATURES = (
    VaultFeature("time_shift", "TEST_KEY_VAULT_TIME_SHIFT", "Tests that shift the vault's time", "has no time-shift API"),
    VaultFeature(
        "empty_version_sign",
        "TEST_KEY_VAULT_EMPTY_VERSION_SIGN",
        "Tests that count the requests of signs by the empty version",
        "answers 404 to a sign by the empty version, as Lowkey Vault does",
    ),
)
EXTERNAL_VAULT_SETTINGS = (
    "TEST_KEY_VAULT_URI",
    "TEST_KEY_VAULT_TOKEN_ENDPOINT",
    "TEST_KEY_VAULT_CA_BUNDLE",
    *(feature.setting for feature in VAULT_FEATURES),
)


@dataclass(frozen=True)
class ExternalVault:
    """A Key Vault that the suite uses but does not start, named by the TEST_KEY_VAULT_* variables.

    The app and the tests sign in through its managed-identity style token endpoint when one is
    named (localvault, Lowkey Vault), else through Azure's default credential chain (AZURE_CLIENT_ID
    and the like, or ``az login``). Tests that need a feature the vault says it lacks are deselected:
    time shifts (TEST_KEY_VAULT_TIME_SHIFT=false, as for a real vault) and request counts of signs by
    the empty version (TEST_KEY_VAULT_EMPTY_VERSION_SIGN=false, as for Lowkey Vault).
    """

    url: str
    token_endpoint: str | None
    ca_bundle: str | None
    lacks: tuple[VaultFeature, ...]

    @classmethod
    def from_environment(cls, environ: dict[str, str]) -> ExternalVault | None:
        """The vault the environment names, None for the embedded localvault; UsageError for bad settings."""
        given = {name: environ[name].strip() for name in EXTERNAL_VAULT_SETTINGS if environ.get(name, "").strip()}
        if "TEST_KEY_VAULT_URI" not in given:
            if given:
                raise pytest.UsageError(f"{', '.join(given)} describe an external vault: set TEST_KEY_VAULT_URI too, or unset them")
            return None
        url = given["TEST_KEY_VAULT_URI"].rstrip("/")
        if urlsplit(url).scheme != "https" or not urlsplit(url).hostname:
            raise pytest.UsageError("TEST_KEY_VAULT_URI must be a Key Vault's https URI")
        ca_bundle = given.get("TEST_KEY_VAULT_CA_BUNDLE")
        if ca_bundle is not None and not Path(ca_bundle).is_file():
            raise pytest.UsageError(f"TEST_KEY_VAULT_CA_BUNDLE is not a file: {ca_bundle}")
        lacks = []
        for feature in VAULT_FEATURES:
            has = given.get(feature.setting, "true").lower()
            if has not in ("true", "false"):
                raise pytest.UsageError(f"{feature.setting} must be true or false")
            if has == "false":
                lacks.append(feature)
        return cls(url, given.get("TEST_KEY_VAULT_TOKEN_ENDPOINT"), ca_bundle and str(Path(ca_bundle).resolve()), tuple(lacks))

    def service(self) -> Service:
        """The vault as a stand-in the fixtures did not start, once it answers over TLS."""
        ca_bundle = self.ca_bundle or requests.certs.where()  # what the SDK trusts when given none
        try:
            requests.get(f"{self.url}/keys", params={"api-version": "7.5"}, verify=ca_bundle, timeout=10)
        except requests.RequestException as error:
            raise StackError(f"the Key Vault at TEST_KEY_VAULT_URI does not answer: {type(error).__name__}") from error
        details = {"ca_bundle": ca_bundle} | ({"token_url": self.token_endpoint} if self.token_endpoint else {})
        return Service("external Key Vault", None, self.url, details)


external_vault_key = pytest.StashKey[ExternalVault | None]()
deselected_key = pytest.StashKey[dict[str, int]]()


def external_vault(config: pytest.Config) -> ExternalVault | None:
    """The session's external vault, read from the environment on first use."""
    if external_vault_key not in config.stash:
        config.stash[external_vault_key] = ExternalVault.from_environment(dict(os.environ))
    return config.stash[external_vault_key]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if TIME_SHIFT_FIXTURE in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.time_shift)
    external = external_vault(config)  # before any test runs, so that bad settings stop the session
    if external is None:
        return
    counts = {}
    for feature in external.lacks:
        deselected = [item for item in items if item.get_closest_marker(feature.marker)]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if not item.get_closest_marker(feature.marker)]
            counts[feature.marker] = len(deselected)
    config.stash[deselected_key] = counts


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    external = config.stash.get(external_vault_key, None)
    if external is None:
        return
    terminalreporter.write_line(f"Key Vault of the integration tests: {external.url} (TEST_KEY_VAULT_URI), not started by them")
    counts = config.stash.get(deselected_key, {})
    for feature in external.lacks:
        if counts.get(feature.marker):
            terminalreporter.write_line(
                f"{feature.tests}, deselected: {counts[feature.marker]} ({feature.setting}=false says this vault {feature.lacking})"
            )


@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> Service:
    service = start_azurite(0, tmp_path_factory.mktemp("azurite"))
    yield service
    service.stop(grace_seconds=0)  # its store is thrown away


@pytest.fixture(scope="session")
def vault(request, tmp_path_factory) -> Service:
    external = external_vault(request.config)
    service = external.service() if external else start_localvault(0, 0, tmp_path_factory.mktemp("localvault"))
    yield service
    service.stop()  # leaves an external vault running


@pytest.fixture(scope="session")
def entra_service(tmp_path_factory) -> Service:
    service = start_entra(0, 0, tmp_path_factory.mktemp("entra"))
    yield service
    service.stop()


@pytest.fixture(scope="session")
def entra(entra_service) -> LocalEntra:
    return LocalEntra(entra_service)


# The names the tests' SPIRE server identity holds: "" is the default server.
SERVER_NAMES = ("", "spire-a", "spire-b", "spire-c", "spire-x", "this-server", "other-server", "server-1", "server-2", "abandoned-server")


@dataclass(frozen=True)
class Callers:
    """The app's API in the local Entra ID, a SPIRE server identity holding SERVER_NAMES, and a maintainer."""

    entra: LocalEntra
    api: Api
    server: Principal
    maintainer: Principal

    def settings(self, server_names=SERVER_NAMES) -> dict[str, str]:
        return caller_settings(self.entra, self.api, {self.server.object_id: server_names}, [self.maintainer.object_id])

    def headers(self, principal: Principal | None = None) -> dict[str, str]:
        """The Authorization header of a token the principal (the server identity by default) got from Entra ID."""
        return {"Authorization": f"Bearer {self.token(principal or self.server)}"}

    def token(self, principal: Principal) -> str:
        return _tokens(self.entra, self.api, principal)


_token_cache: dict[tuple[str, str], str] = {}


def _tokens(entra: LocalEntra, api: Api, principal: Principal) -> str:
    # One token per identity for the session, as an SDK caches it; the suite runs well within its hour.
    key = (api.client_id, principal.client_id)
    if key not in _token_cache:
        _token_cache[key] = entra.token(principal, api)
    return _token_cache[key]


@pytest.fixture(scope="session")
def callers(entra) -> Callers:
    return Callers(
        entra, entra.register_api(), entra.register_principal("tests-spire-servers"), entra.register_principal("tests-maintainer")
    )


@pytest.fixture
def shift_vault_time(vault):
    """Age every key in the vault by ``seconds``, through the time-shift API of localvault and Lowkey Vault."""

    def shift(seconds: int) -> None:
        response = requests.put(
            f"{vault.url}/management/vault/time/all",
            params={"seconds": seconds},
            headers={"Content-Type": "application/json"},  # Lowkey Vault refuses the call without it (415)
            verify=vault.details["ca_bundle"],
            timeout=10,
        )
        response.raise_for_status()

    return shift


@pytest.fixture
def app_env(azurite, vault, callers) -> dict[str, str]:
    """Settings of a fresh server: its own metadata container (hence server id) and trust domain.

    A trust domain of its own keeps each test's sweeps away from other tests' keys, which the
    vault's time shifts age too. Its callers are the session's: the tests' SPIRE server identity,
    holding SERVER_NAMES, and the maintainer.
    """
    return {
        **app_settings(azurite, vault),
        **callers.settings(),
        "TRUST_DOMAIN": f"td-{uuid.uuid4().hex[:12]}.example.org",
        "KEY_METADATA_BLOB": f"t{uuid.uuid4().hex[:20]}/key-metadata",
    }


@dataclass
class App:
    """The app's HTTP functions, called in-process as the Functions host calls them, with the callers' tokens."""

    traffic: Traffic
    vault_url: str
    servers: SpireServers
    callers: Callers
    last_response: func.HttpResponse | None = None

    @property
    def manager(self) -> KeyManager:
        """The default server's key manager."""
        return self.servers.default_manager

    def call(
        self, handler, body=None, method="POST", raw: bytes | None = None, params=None, caller: Principal | None = None, **route_params
    ) -> tuple[int, dict]:
        response = self.respond(handler, body, method, raw, params, caller, **route_params)
        self.last_response = response
        return response.status_code, json.loads(response.get_body() or b"null")

    def respond(
        self,
        handler,
        body=None,
        method="POST",
        raw: bytes | None = None,
        params=None,
        caller: Principal | None = None,
        headers: dict[str, str] | None = None,
        **route_params,
    ) -> func.HttpResponse:
        """The handler's whole response (``call`` keeps it as ``last_response``, which calls from several threads cannot share)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        app_context.install_servers(self.servers)  # this instance's servers serve the call
        # As the host hands it over: the query in the URL (which the app reads) and in params.
        url = "http://localhost/api" + (f"?{urlencode(params)}" if params else "")
        request = func.HttpRequest(
            method,
            url,
            body=data,
            params=params or {},
            headers={**self.callers.headers(caller), **(headers or {})},
            route_params=route_params,
        )
        return handler(request)

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
        return self.call(maintenance.refresh_keys_now, caller=self.callers.maintainer)

    def sweep(self, dry_run: bool = False) -> tuple[int, dict]:
        return self.call(maintenance.sweep_stale_keys_now, params={"dry_run": str(dry_run).lower()}, caller=self.callers.maintainer)

    def vault_requests(self) -> list[tuple[str, str]]:
        return self.traffic.requests_to(self.vault_url)


def make_app(env: dict[str, str], monkeypatch, callers: Callers, read_timeout: float = app_context.READ_TIMEOUT) -> App:
    """Point the process's app at ``env`` and wire it as the app does, its requests recorded."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    traffic = Traffic()
    servers = app_context.build_servers(load_settings(os.environ), raw_request_hook=traffic, read_timeout=read_timeout)
    app_context.install_servers(servers)
    monkeypatch.setattr(app_context, "_callers", app_context.build_caller_gate(load_caller_settings(os.environ)))
    return App(traffic, env["KEY_VAULT_URI"], servers, callers)


@pytest.fixture
def app(app_env, monkeypatch, callers) -> App:
    return make_app(app_env, monkeypatch, callers)


@pytest.fixture
def vault_admin(vault, monkeypatch) -> KeyClient:
    """A direct Key Vault client, to set up what the app must cope with (disabled keys, deletions)."""
    if "token_url" in vault.details:
        monkeypatch.setenv("IDENTITY_ENDPOINT", vault.details["token_url"])
        monkeypatch.setenv("IDENTITY_HEADER", "tests")
        credential = ManagedIdentityCredential()
    else:
        credential = DefaultAzureCredential()
    return KeyClient(
        vault.url, credential, verify_challenge_resource=not is_on_this_machine(vault.url), connection_verify=vault.details["ca_bundle"]
    )


def is_soft_deleted_soon(vault_admin, name: str, within_seconds: float = 15.0) -> bool:
    """Whether the key shows among the deleted keys within the time Key Vault takes to settle a deletion (1-5 s)."""
    deadline = time.monotonic() + within_seconds
    while True:
        try:
            return vault_admin.get_deleted_key(name) is not None
        except ResourceNotFoundError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)


@pytest.fixture
def vault_proxy(vault, tmp_path):
    """The tests' vault behind a fault proxy of its own, with ``ca``: the CA of the proxy's certificate."""
    cert, key, ca = make_server_certificate(tmp_path / "proxy-cert")
    proxy = FaultProxy(vault.url, ca_bundle=vault.details["ca_bundle"], tls=(cert, key), rewrite_body_urls=True)
    proxy.ca = ca
    with proxy:
        yield proxy


def through(proxy: FaultProxy) -> dict[str, str]:
    """App settings that send the app's Key Vault traffic through ``proxy`` (a ``vault_proxy``)."""
    return {
        "KEY_VAULT_URI": proxy.url,
        "KEY_VAULT_CA_BUNDLE": proxy.ca,
        "KEY_VAULT_SKIP_CHALLENGE_RESOURCE_VERIFICATION": "true",  # the vault's challenge never names the proxy
    }


@pytest.fixture
def instances(app_env):
    """Two devhost processes started at the same moment on a fresh metadata container."""
    started: list = [None, None]

    def start(index: int) -> None:
        started[index] = start_app_host(app_env)

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
