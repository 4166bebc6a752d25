"""The function app's settings in the template cover exactly the settings the app reads."""

from __future__ import annotations

import pytest

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
}

# Settings the template sets for the Functions runtime, not for the app's code.
RUNTIME_ONLY = {
    "AzureWebJobsStorage__credential": "the host's storage connection uses a managed identity",
    "AzureWebJobsStorage__clientId": "that identity is the user-assigned one",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "where telemetry goes (an identifier, not a secret: local auth is off)",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "telemetry authenticates with Entra ID",
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
