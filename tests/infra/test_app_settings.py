"""The function app's settings in the template cover exactly the settings the app reads."""

from __future__ import annotations

import json

import pytest

from shared.settings import load_caller_settings
from tests.infra import template
from tests.infra.settings_read import UnresolvedSetting, settings_read, settings_read_in_source

APP_SOURCES = [template.ROOT / "function_app.py", *sorted(template.ROOT.glob("shared/**/*.py")), *sorted(template.ROOT.glob("functions/**/*.py"))]

# Settings the app reads that the template leaves unset, each for a reason.
LEFT_UNSET = {
    "TENANT_ID": "app registration credentials: the template uses the managed identity (USE_MSI)",
    "SUBSCRIPTION_ID": "app registration credentials: the template uses the managed identity (USE_MSI)",
    "APP_ID": "app registration credentials: the template uses the managed identity (USE_MSI)",
    "APP_SECRET": "a secret: the template uses the managed identity (USE_MSI)",
    "KEY_METADATA_STORAGE": "a connection string holds a storage key: the template sets KEY_METADATA_STORAGE__blobServiceUri",
    "AzureWebJobsStorage": "a connection string holds a storage key: the template sets the identity-based AzureWebJobsStorage__*",
    "KEY_VAULT_CA_BUNDLE": "local development only (a local Key Vault's CA)",
    "KEY_VAULT_SKIP_CHALLENGE_RESOURCE_VERIFICATION": "local development only (refused unless the vault is on this machine)",
    "ENTRA_CA_BUNDLE": "local development only (a local Entra ID stand-in's CA; refused unless its authority is on this machine)",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "telemetry to an OTLP collector instead of Application Insights, which the template sets up",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "telemetry to an OTLP collector instead of Application Insights, which the template sets up",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "telemetry to an OTLP collector instead of Application Insights, which the template sets up",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "telemetry to an OTLP collector instead of Application Insights, which the template sets up",
    "OTEL_TRACES_SAMPLER": "every key call is traced unless an operator chooses a sampler",
    "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "the app configures Azure Monitor itself; set, the worker would, and the app steps aside",
}

# Settings the template sets for the Functions runtime, not for the app's code.
RUNTIME_ONLY = {
    "AzureWebJobsStorage__credential": "the host's storage connection uses a managed identity",
    "AzureWebJobsStorage__clientId": "that identity is the user-assigned one",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "telemetry authenticates with Entra ID",
    "PYTHON_THREADPOOL_THREAD_COUNT": "the Python worker's threads for synchronous functions: one per concurrent HTTP request",
}


def test_app_settings_cover_exactly_the_settings_the_app_reads():
    read = settings_read(APP_SOURCES)
    set_in_template = set(template.app_settings())
    assert set_in_template - RUNTIME_ONLY.keys() - read == set(), "the template sets settings the app does not read"
    assert read - LEFT_UNSET.keys() - set_in_template == set(), "the app reads settings the template neither sets nor leaves unset for a reason"


def test_settings_left_unset_are_read_by_the_app_and_not_set():
    read = settings_read(APP_SOURCES)
    assert LEFT_UNSET.keys() <= read, f"no longer read by the app: {sorted(LEFT_UNSET.keys() - read)}"
    assert LEFT_UNSET.keys().isdisjoint(template.app_settings())
    assert RUNTIME_ONLY.keys().isdisjoint(read)


def test_trust_domain_and_key_vault_come_from_parameters():
    settings = template.app_settings()
    assert template.references(settings["TRUST_DOMAIN"], "app.bicep") == "trustDomain"
    assert template.references(settings["KEY_VAULT_URI"], "app.bicep") == "keyVaultUri"
    main = template.parsed()["main.bicep"]
    assert main["parameters"]["trustDomain"]["default"] is None, "the trust domain must be asked for"
    assert {"keyVaultName", "keyVaultResourceGroupName"} <= main["parameters"].keys()
    app_params = main["modules"]["app"]["config"]["params"]
    assert app_params["trustDomain"] == "trustDomain"
    assert template.property_path(app_params["keyVaultUri"]) == ["keyManagerRole", "outputs", "keyVaultUri"]


CALLER_SETTINGS = ("ENTRA_TENANT_ID", "ENTRA_API_CLIENT_ID", "ENTRA_TOKEN_VERSION", "ENTRA_AUTHORITY_HOST", "SPIRE_SERVER_IDENTITIES", "MAINTENANCE_IDENTITIES")


def test_the_caller_settings_the_template_writes_are_what_the_app_reads():
    settings = template.app_settings()
    server_a, maintainer = "0c1b6f4e-8d2a-4c1e-9f3b-5a7d2e8c4b10", "7e3a9d21-4b6c-4f8e-a1d5-2c9b8e7f6a43"
    deployment = {
        "tenant()": {"tenantId": "5f0e7c1a-9b2d-4e6f-8a3c-1d4b7e9f2a60"},
        # Sovereign clouds have other authorities; the environment gives them with a trailing slash.
        "environment()": {"authentication": {"loginEndpoint": "https://login.microsoftonline.us/"}},
        "apiClientId": "b8d4e2f6-3a1c-4d7e-9f05-6c2a8e4b1d93",
        "spireServerIdentities": {server_a: ["spire-a", "spire-b"], maintainer: [""]},
        "maintenanceIdentities": [maintainer, server_a],
    }
    environ = {name: template.evaluate(settings[name], "app.bicep", deployment) for name in CALLER_SETTINGS}
    assert environ["ENTRA_TOKEN_VERSION"] == "2", "the API application asks for v2 tokens"
    assert environ["ENTRA_AUTHORITY_HOST"] == "https://login.microsoftonline.us"
    callers = load_caller_settings(environ)
    assert (callers.tenant_id, callers.api_client_id) == ("5f0e7c1a-9b2d-4e6f-8a3c-1d4b7e9f2a60", "b8d4e2f6-3a1c-4d7e-9f05-6c2a8e4b1d93")
    assert (callers.token_version, callers.authority_host) == (2, "https://login.microsoftonline.us")
    assert callers.permissions.server_names == {server_a: {"spire-a", "spire-b"}, maintainer: {""}}
    assert callers.permissions.maintainers == {maintainer, server_a}


def test_the_caller_settings_come_from_parameters_azd_maps():
    app_params = template.parsed()["main.bicep"]["modules"]["app"]["config"]["params"]
    for name in ("spireServerIdentities", "maintenanceIdentities"):
        assert app_params[name] == name
    main = template.parameters("main.bicep")
    assert main["spireServerIdentities"]["type"] == "object" and main["spireServerIdentities"]["default"] is None, "who may call must be asked for"
    assert main["maintenanceIdentities"]["type"] == "array" and main["maintenanceIdentities"]["default"] == []
    mapped = json.loads((template.INFRA / "main.parameters.json").read_text())["parameters"]
    assert mapped["spireServerIdentities"] == {"value": "${SPIRE_SERVER_IDENTITIES}"}
    assert mapped["maintenanceIdentities"] == {"value": "${SPIRE_MAINTENANCE_IDENTITIES=}"}


def test_the_api_client_id_is_given_or_created_and_never_left_empty():
    main = template.parsed()["main.bicep"]
    parameters = main["parameters"]
    assert parameters["createApiApplication"]["type"] == "bool" and parameters["createApiApplication"]["default"] is False
    assert parameters["apiClientId"]["default"] == ""
    chosen = main["variables"]["entraApiClientId"]["value"]
    assert template.evaluate(chosen, "main.bicep", {"createApiApplication": False, "apiClientId": "given"}) == "given"
    created = {"createApiApplication": True, "apiApplication": {"outputs": {"appId": "created"}}}
    assert template.evaluate(chosen, "main.bicep", created) == "created"
    assert main["modules"]["apiApplication"]["config"]["condition"] == "createApiApplication"
    assert main["modules"]["app"]["config"]["params"]["apiClientId"] == "entraApiClientId"
    # An empty client id fails the deployment rather than giving an app that refuses every token.
    decorators = {d["type"]: d["argument"] for d in template.parameters("app.bicep")["apiClientId"]["decorators"]}
    assert decorators["min_length"] == decorators["max_length"] == 36


def test_settings_read_resolves_constants_loops_parameters_and_f_strings():
    source = '''
import os
PAIR = ("A", "B")
def load(env):
    env.get("PLAIN")
    flag(env, "FLAG")
    [env[name] for name in PAIR]
    for prefix in ("CONN", "OTHER"):
        env.get(f"{prefix}__uri")
    os.environ.get("SCHEDULE")
def flag(env, name):
    return env.get(name, "")
'''
    assert settings_read_in_source(source) == {"PLAIN", "FLAG", "A", "B", "CONN__uri", "OTHER__uri", "SCHEDULE"}


def test_settings_read_refuses_a_setting_name_it_cannot_resolve():
    with pytest.raises(UnresolvedSetting, match=r"<source>:2: cannot tell statically"):
        settings_read_in_source("def load(env):\n    name = compute()\n    return env.get(name)\n")
