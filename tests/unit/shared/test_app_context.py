"""Wiring: every credential kind builds without touching the network, with explicit timeouts."""

import socket
from datetime import UTC, datetime, timedelta

import pytest
from azure.identity import ClientSecretCredential, DefaultAzureCredential, ManagedIdentityCredential
from requests.utils import DEFAULT_CA_BUNDLE_PATH

from shared import app_context, key_vault_client
from shared.errors import ConfigurationError
from shared.maintenance import SweepPolicy
from shared.server_ids import FixedServerDirectory
from shared.settings import load_settings
from shared.vault_http import PooledTransport
from tests.unit.fakes import InMemoryVault

BASE = {
    "TRUST_DOMAIN": "example.org",
    "KEY_VAULT_URI": "https://my-vault.vault.azure.net/",
    "KEY_METADATA_BLOB": "spire/server-id",
    "AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net",
}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("building the app must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize(
    "extra, credential_type",
    [
        ({}, DefaultAzureCredential),
        ({"USE_MSI": "true"}, ManagedIdentityCredential),
        ({"TENANT_ID": "t", "SUBSCRIPTION_ID": "s", "APP_ID": "a", "APP_SECRET": "x"}, ClientSecretCredential),
    ],
)
def test_each_credential_kind_builds_offline(extra, credential_type):
    settings = load_settings({**BASE, **extra})
    assert isinstance(app_context.build_credential(settings), credential_type)
    app_context.build_servers(settings)


def test_client_options_set_explicit_timeouts_and_let_overrides_win():
    options = app_context._client_options({"read_timeout": 1})
    assert options["connection_timeout"] == app_context.CONNECTION_TIMEOUT
    assert options["read_timeout"] == 1


def test_the_servers_are_built_once_and_settings_errors_are_not_cached(monkeypatch):
    monkeypatch.delenv("TRUST_DOMAIN", raising=False)
    for name, value in BASE.items():
        if name != "TRUST_DOMAIN":
            monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match="TRUST_DOMAIN"):
        app_context.servers()
    monkeypatch.setenv("TRUST_DOMAIN", "example.org")
    assert app_context.servers() is app_context.servers()
    assert app_context.default_key_manager() is app_context.servers().default_manager


def _vault_transport(settings, monkeypatch, **environment):
    """The Key Vault client's transport, built while ``environment`` is the proxy and CA environment."""
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    built = []

    def vault_transport(*args):
        built.append(build(*args))
        return built[-1]

    build = key_vault_client.vault_transport
    monkeypatch.setattr(key_vault_client, "vault_transport", vault_transport)
    app_context.build_servers(settings)
    return built[0]


def test_the_vault_transport_takes_the_proxy_and_ca_bundle_requests_would_use(monkeypatch):
    settings = load_settings(BASE)
    transport = _vault_transport(settings, monkeypatch, HTTPS_PROXY="http://proxy.example:3128", REQUESTS_CA_BUNDLE="corporate-ca.pem")
    assert isinstance(transport, PooledTransport)
    assert transport.proxy is not None and (transport.proxy.host, transport.proxy.port) == ("proxy.example", 3128)
    assert transport.ca == "corporate-ca.pem"
    assert transport.connection_timeout == app_context.CONNECTION_TIMEOUT
    assert transport.read_timeout == app_context.READ_TIMEOUT

    bypassed = _vault_transport(settings, monkeypatch, HTTPS_PROXY="http://proxy.example:3128", NO_PROXY=".vault.azure.net")
    assert bypassed.proxy is None
    assert bypassed.ca == DEFAULT_CA_BUNDLE_PATH


def test_a_proxy_that_is_not_http_is_a_configuration_error_naming_it(monkeypatch):
    with pytest.raises(ConfigurationError, match="HTTPS_PROXY"):
        _vault_transport(load_settings(BASE), monkeypatch, HTTPS_PROXY="https://proxy.example:3128")


def test_the_ca_bundle_setting_wins_over_the_environments(monkeypatch, tmp_path):
    ca_bundle = tmp_path / "vault-ca.pem"
    ca_bundle.write_text("")
    settings = load_settings({**BASE, "KEY_VAULT_CA_BUNDLE": str(ca_bundle)})
    transport = _vault_transport(settings, monkeypatch, REQUESTS_CA_BUNDLE="corporate-ca.pem")
    assert transport.ca == str(ca_bundle)


@pytest.mark.parametrize("days_since_use, maintained", [(14, [None, "spire-a"]), (15, [None])])
def test_maintenance_covers_the_servers_used_within_the_stale_key_age_by_their_clock(days_since_use, maintained):
    used_at = datetime(2040, 1, 1, tzinfo=UTC)  # never the wall clock's time
    servers = app_context.SpireServers(
        "example.org",
        FixedServerDirectory("app-server", lambda: used_at),
        InMemoryVault(),
        SweepPolicy(stale_key_age=timedelta(days=14)),
        clock=lambda: used_at + timedelta(days=days_since_use),
    )
    servers.serve("spire-a")
    assert servers.maintained() == maintained
