"""Wiring: every credential kind builds without touching the network, with explicit timeouts."""

import socket

import pytest
from azure.identity import ClientSecretCredential, DefaultAzureCredential, ManagedIdentityCredential

from shared import app_context
from shared.errors import ConfigurationError
from shared.settings import load_settings

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
    app_context.build_key_manager(settings)


def test_client_options_set_explicit_timeouts_and_let_overrides_win():
    options = app_context._client_options("ca.pem", {"read_timeout": 1})
    assert options["connection_timeout"] == app_context.CONNECTION_TIMEOUT
    assert options["read_timeout"] == 1 and options["connection_verify"] == "ca.pem"


def test_the_servers_are_built_once_and_settings_errors_are_not_cached(monkeypatch):
    monkeypatch.setattr(app_context, "_servers", None)
    monkeypatch.delenv("TRUST_DOMAIN", raising=False)
    for name, value in BASE.items():
        if name != "TRUST_DOMAIN":
            monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match="TRUST_DOMAIN"):
        app_context.servers()
    monkeypatch.setenv("TRUST_DOMAIN", "example.org")
    assert app_context.servers() is app_context.servers()
    assert app_context.default_key_manager() is app_context.servers().default_manager
