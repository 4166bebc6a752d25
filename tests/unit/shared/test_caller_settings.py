"""The Entra ID and authorization settings: each error names its setting, and nothing is open by default."""

import json

import pytest

from shared.callers import DEFAULT_SERVER
from shared.errors import ConfigurationError
from shared.settings import DEFAULT_ENTRA_AUTHORITY_HOST, load_caller_settings

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
API = "6e5b1c1a-2f4d-4a8e-9b1e-3c7d9f0a1b2c"
SERVER_A = "0f6a4c3e-9d2b-4e1a-8c7f-5b3a2d1e0c9f"
MAINTAINER = "5c1e2d3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
BASE = {
    "ENTRA_TENANT_ID": TENANT,
    "ENTRA_API_CLIENT_ID": API,
    "SPIRE_SERVER_IDENTITIES": json.dumps({SERVER_A: ["spire-a", DEFAULT_SERVER]}),
}


def settings(**overrides):
    env = {**BASE, **overrides}
    return load_caller_settings({k: v for k, v in env.items() if v is not None})


def error_of(**overrides) -> str:
    with pytest.raises(ConfigurationError) as raised:
        settings(**overrides)
    return raised.value.message


def test_minimal_settings_accept_v2_tokens_of_the_public_cloud_and_no_maintainer():
    loaded = settings()
    assert (loaded.tenant_id, loaded.api_client_id, loaded.token_version) == (TENANT, API, 2)
    assert loaded.authority_host == DEFAULT_ENTRA_AUTHORITY_HOST and loaded.ca_bundle is None
    assert loaded.permissions.server_names == {SERVER_A: frozenset({"spire-a", DEFAULT_SERVER})}
    assert loaded.permissions.maintainers == frozenset()


@pytest.mark.parametrize("setting", ["ENTRA_TENANT_ID", "ENTRA_API_CLIENT_ID", "SPIRE_SERVER_IDENTITIES"])
def test_required_settings_are_named_when_missing(setting):
    assert f"{setting} is required" in error_of(**{setting: None})


@pytest.mark.parametrize("setting", ["ENTRA_TENANT_ID", "ENTRA_API_CLIENT_ID"])
def test_ids_must_be_guids(setting):
    assert f"{setting} must be a GUID" in error_of(**{setting: "contoso.onmicrosoft.com"})


def test_guids_and_object_ids_are_taken_in_lowercase():
    loaded = settings(
        ENTRA_TENANT_ID=TENANT.upper(),
        SPIRE_SERVER_IDENTITIES=json.dumps({SERVER_A.upper(): ["a"]}),
        MAINTENANCE_IDENTITIES=f" {MAINTAINER.upper()} ",
    )
    assert loaded.tenant_id == TENANT and SERVER_A in loaded.permissions.server_names
    assert loaded.permissions.maintainers == {MAINTAINER}


@pytest.mark.parametrize(
    "value, message",
    [
        ("not json", "must be a JSON object"),
        ("[]", "must be a JSON object"),
        ("{}", "must be a JSON object"),
        (json.dumps({"spire-a": [SERVER_A]}), "each key must be an object id"),
        (json.dumps({SERVER_A: "spire-a"}), "non-empty list of server names"),
        (json.dumps({SERVER_A: []}), "non-empty list of server names"),
        (json.dumps({SERVER_A: [1]}), "non-empty list of server names"),
        (json.dumps({SERVER_A: ["Spire_A"]}), "each server name must be"),
        (f'{{"{SERVER_A}": ["a"], "{SERVER_A}": ["b"]}}', "names an object id more than once"),
        (json.dumps({SERVER_A: ["a"], MAINTAINER: ["b", "a"]}), 'gives "a" to two identities'),
        (json.dumps({SERVER_A: [""], MAINTAINER: [""]}), 'gives the default server ("") to two identities'),
    ],
)
def test_the_identities_list_is_strict(value, message):
    assert message in error_of(SPIRE_SERVER_IDENTITIES=value)


def test_maintenance_identities_are_object_ids():
    assert settings(MAINTENANCE_IDENTITIES=f"{MAINTAINER}, {SERVER_A}").permissions.maintainers == {MAINTAINER, SERVER_A}
    assert "MAINTENANCE_IDENTITIES must be object ids" in error_of(MAINTENANCE_IDENTITIES="spire-admins")


def test_token_version_and_authority():
    assert settings(ENTRA_TOKEN_VERSION="1").token_version == 1
    assert "ENTRA_TOKEN_VERSION must be 2" in error_of(ENTRA_TOKEN_VERSION="3")
    assert settings(ENTRA_AUTHORITY_HOST="https://login.microsoftonline.us/").authority_host == "https://login.microsoftonline.us"
    for bad in (
        "http://login.microsoftonline.com",
        "https://login.microsoftonline.com/tenant",
        "login.microsoftonline.com",
        "https://user@login.microsoftonline.com",
        "https://login.microsoftonline.com#fragment",
    ):
        assert "ENTRA_AUTHORITY_HOST must be" in error_of(ENTRA_AUTHORITY_HOST=bad)


def test_a_ca_bundle_is_for_a_local_stand_in_only(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert "not on this machine" in error_of(ENTRA_CA_BUNDLE=str(bundle))
    local = settings(ENTRA_AUTHORITY_HOST="https://127.0.0.1:9443", ENTRA_CA_BUNDLE=str(bundle))
    assert local.ca_bundle == str(bundle)
    assert "names no file" in error_of(ENTRA_AUTHORITY_HOST="https://127.0.0.1:9443", ENTRA_CA_BUNDLE=str(tmp_path / "none"))
