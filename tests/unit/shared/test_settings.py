import json
from datetime import timedelta

import pytest

from shared.errors import ConfigurationError
from shared.settings import ClientSecret, DefaultChain, ManagedIdentity, Schedules, load_caller_settings, load_schedules, load_settings

BASE = {
    "TRUST_DOMAIN": "example.org",
    "KEY_VAULT_URI": "https://my-vault.vault.azure.net/",
    "KEY_METADATA_BLOB": "spire/server-id",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
}
APP = {"TENANT_ID": "t", "SUBSCRIPTION_ID": "s", "APP_ID": "a", "APP_SECRET": "very-secret"}


def settings(**overrides):
    env = {**BASE, **overrides}
    return load_settings({k: v for k, v in env.items() if v is not None})


def error_of(**overrides) -> str:
    with pytest.raises(ConfigurationError) as raised:
        settings(**overrides)
    return raised.value.message


def test_minimal_settings_use_the_default_credential_chain_and_the_app_storage():
    loaded = settings()
    assert loaded.credentials == DefaultChain()
    assert loaded.metadata_blob.container == "spire"
    assert loaded.metadata_blob.blob == "server-id"
    assert loaded.metadata_blob.connection_string == "UseDevelopmentStorage=true"
    assert loaded.verify_challenge_resource is True


@pytest.mark.parametrize("setting", ["TRUST_DOMAIN", "KEY_VAULT_URI", "KEY_METADATA_BLOB"])
def test_required_settings_are_named_when_missing(setting):
    assert setting in error_of(**{setting: None})


@pytest.mark.parametrize("value", ["Example.org", "spiffe://example.org", "exa mple", "a/b"])
def test_trust_domain_must_be_a_spiffe_trust_domain_name(value):
    assert "TRUST_DOMAIN" in error_of(TRUST_DOMAIN=value)


@pytest.mark.parametrize("value", ["http://vault.local", "my-vault", "https://v.vault.azure.net/keys/x", "https://"])
def test_key_vault_uri_must_be_an_https_vault_uri(value):
    assert "KEY_VAULT_URI" in error_of(KEY_VAULT_URI=value)


@pytest.mark.parametrize("value", ["noblob", "Spire/x", "spire/", "a/x", "bad--name/x", "spire/" + "x" * 901])
def test_metadata_blob_must_name_container_and_blob(value):
    assert "KEY_METADATA_BLOB" in error_of(KEY_METADATA_BLOB=value)


def test_dedicated_metadata_storage_wins_over_app_storage():
    loaded = settings(KEY_METADATA_STORAGE="DefaultEndpointsProtocol=https;AccountName=x;AccountKey=eA==")
    assert loaded.metadata_blob.connection_string.startswith("DefaultEndpointsProtocol")


def test_identity_based_metadata_storage_uses_the_blob_service_uri():
    loaded = settings(AzureWebJobsStorage=None, KEY_METADATA_STORAGE__blobServiceUri="https://acct.blob.core.windows.net")
    assert loaded.metadata_blob.account_url == "https://acct.blob.core.windows.net"
    assert loaded.metadata_blob.connection_string is None


def test_blob_storage_is_required_for_the_metadata_blob():
    assert "KEY_METADATA_STORAGE" in error_of(AzureWebJobsStorage=None)


def test_key_identifier_value_replaces_the_blob():
    loaded = settings(KEY_METADATA_BLOB=None, AzureWebJobsStorage=None, KEY_IDENTIFIER_VALUE="server-a")
    assert loaded.server_id == "server-a"
    assert loaded.metadata_blob is None


def test_key_identifier_value_must_fit_key_vault_names():
    assert "KEY_IDENTIFIER_VALUE" in error_of(KEY_IDENTIFIER_VALUE="not valid!")


def test_use_msi_selects_managed_identity_with_optional_client_id():
    assert settings(USE_MSI="true").credentials == ManagedIdentity()
    assert settings(USE_MSI="True", AZURE_CLIENT_ID="cid").credentials == ManagedIdentity("cid")
    assert settings(USE_MSI="false").credentials == DefaultChain()


def test_use_msi_must_be_boolean():
    assert "USE_MSI" in error_of(USE_MSI="maybe")


def test_app_credentials_need_all_four():
    assert settings(**APP).credentials == ClientSecret("t", "s", "a", "very-secret")
    message = error_of(APP_ID="a", APP_SECRET="very-secret")
    assert "TENANT_ID" in message and "SUBSCRIPTION_ID" in message
    assert "very-secret" not in message


def test_msi_and_app_credentials_together_are_a_configuration_error():
    assert "USE_MSI" in error_of(USE_MSI="true", **APP)


def test_secrets_stay_out_of_repr():
    loaded = settings(**APP, KEY_METADATA_STORAGE="AccountName=a;AccountKey=c2VjcmV0")
    assert "very-secret" not in repr(loaded)
    assert "c2VjcmV0" not in repr(loaded)


def test_challenge_resource_check_may_be_skipped_only_for_a_local_vault():
    local = settings(KEY_VAULT_URI="https://localhost:8443", KEY_VAULT_SKIP_CHALLENGE_RESOURCE_VERIFICATION="true")
    assert local.verify_challenge_resource is False
    assert settings(KEY_VAULT_URI="https://127.0.0.1:8443", KEY_VAULT_SKIP_CHALLENGE_RESOURCE_VERIFICATION="true").verify_challenge_resource is False
    assert "KEY_VAULT_SKIP_CHALLENGE_RESOURCE_VERIFICATION" in error_of(KEY_VAULT_SKIP_CHALLENGE_RESOURCE_VERIFICATION="true")


def test_sweep_policy_defaults_to_fourteen_days_and_one_hundred_deletions():
    policy = settings().sweep_policy
    assert policy.stale_key_age == timedelta(days=14) and policy.max_deletions == 100


@pytest.mark.parametrize("value, age", [("14d", timedelta(days=14)), ("36h", timedelta(hours=36)), ("1440m", timedelta(days=1)), ("90000s", timedelta(seconds=90000))])
def test_stale_key_age_takes_a_unit(value, age):
    assert settings(STALE_KEY_AGE=value).sweep_policy.stale_key_age == age


@pytest.mark.parametrize("value", ["14", "two weeks", "-1d", "1.5d", "23h"])
def test_stale_key_age_must_be_a_duration_of_at_least_a_day(value):
    assert "STALE_KEY_AGE" in error_of(STALE_KEY_AGE=value)


@pytest.mark.parametrize("value", ["0", "-5", "ten", "1.5", "100001", "٣", "²", "1" * 5000])
def test_sweep_max_deletions_must_be_a_bounded_whole_number_in_ascii_digits(value):
    assert "SWEEP_MAX_DELETIONS" in error_of(SWEEP_MAX_DELETIONS=value)


def test_key_vault_retry_time_defaults_to_twenty_seconds_and_is_bounded():
    assert settings().key_vault_retry_seconds == 20
    assert settings(KEY_VAULT_RETRY_SECONDS="5").key_vault_retry_seconds == 5
    for value in ("0", "121", "ten", "-1", "٥", "５", "9" * 5000):
        assert "KEY_VAULT_RETRY_SECONDS" in error_of(KEY_VAULT_RETRY_SECONDS=value)


def test_key_protection_defaults_to_software_keys_and_hsm_asks_for_hsm_keys():
    assert settings().hsm_keys is False
    assert settings(KEY_VAULT_KEY_PROTECTION="software").hsm_keys is False
    assert settings(KEY_VAULT_KEY_PROTECTION="hsm").hsm_keys is True
    assert settings(KEY_VAULT_KEY_PROTECTION=" HSM ").hsm_keys is True


@pytest.mark.parametrize("value", ["premium", "managed-hsm", "RSA-HSM", "true"])
def test_key_protection_must_be_software_or_hsm(value):
    assert "KEY_VAULT_KEY_PROTECTION must be software or hsm" in error_of(KEY_VAULT_KEY_PROTECTION=value)


@pytest.mark.parametrize("value", ["٣d", "99999999999d", "3651d", "1" * 5000 + "s"])
def test_stale_key_age_is_bounded_and_in_ascii_digits(value):
    assert "STALE_KEY_AGE" in error_of(STALE_KEY_AGE=value)


def test_key_identifier_value_and_metadata_blob_together_are_refused():
    message = error_of(KEY_IDENTIFIER_VALUE="server-a")
    assert "KEY_IDENTIFIER_VALUE" in message and "KEY_METADATA_BLOB" in message


def test_ca_bundle_must_name_a_file(tmp_path):
    assert "KEY_VAULT_CA_BUNDLE" in error_of(KEY_VAULT_CA_BUNDLE=str(tmp_path / "missing.pem"))
    assert "KEY_VAULT_CA_BUNDLE" in error_of(KEY_VAULT_CA_BUNDLE=str(tmp_path))
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert settings(KEY_VAULT_CA_BUNDLE=str(bundle)).key_vault_ca_bundle == str(bundle)


@pytest.mark.parametrize(
    "value",
    [
        "not a connection string",
        "AccountName=acct;AccountKey",
        "=x;AccountName=acct",
        "AccountName=acct;AccountKey=not*base64",
        "AccountKey=a2V5",
        "AccountName=acct",
        "AccountName=acct;AccountKey=a2V5;BlobEndpoint=ftp://x",
        "AccountName=acct;AccountKey=a2V5;BlobEndpoint=https://[::1",
        "BlobEndpoint=https://acct.blob.core.windows.net",
    ],
)
def test_a_malformed_storage_connection_string_is_named_and_not_echoed(value):
    for setting in ("KEY_METADATA_STORAGE", "AzureWebJobsStorage"):
        message = error_of(**{setting: value})
        assert setting in message and value not in message


@pytest.mark.parametrize(
    "value",
    [
        "UseDevelopmentStorage=true",
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net",
        "BlobEndpoint=https://acct.blob.core.windows.net;SharedAccessSignature=sv=2022&sig=x",
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
    ],
)
def test_storage_connection_strings_of_each_kind_are_accepted(value):
    assert settings(KEY_METADATA_STORAGE=value).metadata_blob.connection_setting == "KEY_METADATA_STORAGE"


@pytest.mark.parametrize("value", ["https://[::1", "https://vault:port/", "https://vault:99999/"])
def test_unparsable_uris_are_configuration_errors(value):
    assert "KEY_VAULT_URI" in error_of(KEY_VAULT_URI=value)
    assert "KEY_METADATA_STORAGE__blobServiceUri" in error_of(AzureWebJobsStorage=None, KEY_METADATA_STORAGE__blobServiceUri=value)


def test_a_count_out_of_range_reads_plainly():
    with pytest.raises(ConfigurationError, match=r"^SWEEP_MAX_DELETIONS must be a whole number from 1 to "):
        load_settings({**BASE, "SWEEP_MAX_DELETIONS": "0"})


def test_schedules_default_to_every_six_hours_and_every_two_days():
    assert load_schedules({}) == Schedules("0 0 */6 * * *", "0 0 0 */2 * *")
    assert load_schedules({"REFRESH_KEYS_SCHEDULE": "0 30 */4 * * *"}).refresh == "0 30 */4 * * *"


@pytest.mark.parametrize("setting", ["REFRESH_KEYS_SCHEDULE", "SWEEP_KEYS_SCHEDULE"])
@pytest.mark.parametrize("value", ["0 */6 * * *", "0 0 */6 * * * *", "0 0 25 * * *", "0 0 0 30 2 *", "every day", "0 0 */0 * * *"])
def test_a_schedule_must_be_six_ncrontab_fields_that_fire(setting, value):
    with pytest.raises(ConfigurationError) as raised:
        load_schedules({setting: value})
    assert raised.value.message.startswith(f"{setting} must be an NCRONTAB schedule of six fields")


_CALLERS = {"ENTRA_TENANT_ID": "72f988bf-86f1-41af-91ab-2d7cd011db47", "ENTRA_API_CLIENT_ID": "6e5b1c1a-2f4d-4a8e-9b1e-3c7d9f0a1b2c"}
_IDENTITY = "0f6a4c3e-9d2b-4e1a-8c7f-5b3a2d1e0c9f"


def test_key_identifier_value_serves_the_default_server_alone():
    only_default = {**_CALLERS, "SPIRE_SERVER_IDENTITIES": json.dumps({_IDENTITY: [""]}), "KEY_IDENTIFIER_VALUE": "server-a"}
    assert load_caller_settings(only_default).permissions.server_names == {_IDENTITY: frozenset({""})}
    named = {**only_default, "SPIRE_SERVER_IDENTITIES": json.dumps({_IDENTITY: ["", "spire-a"]})}
    with pytest.raises(ConfigurationError) as raised:
        load_caller_settings(named)
    assert "KEY_IDENTIFIER_VALUE" in raised.value.message and "SPIRE_SERVER_IDENTITIES" in raised.value.message
    assert load_caller_settings({**named, "KEY_IDENTIFIER_VALUE": ""}).permissions.server_names == {_IDENTITY: frozenset({"", "spire-a"})}
