"""The suite runs on the settings its tests give: the developer's shell variables are cut before any test module loads."""

import os

from tests.hermetic import process_environment

SHELL = {
    "PATH": "/usr/bin",
    "HOME": "/home/dev",
    "STALE_KEY_AGE": "1d",
    "TRUST_DOMAIN": "dev.example.org",
    "ENTRA_TENANT_ID": "0b1c3f0e-8a5e-4c1e-9a55-7bd0c1f7f0a1",
    "KEY_VAULT_URI": "https://dev.vault.azure.net",
    "KEY_VAULT_URL": "https://dev.vault.azure.net",
    "REFRESH_KEYS_SCHEDULE": "0 * * * * *",
    "AZURE_CLIENT_ID": "a-developers-client",
}


def test_no_app_setting_from_the_shell_is_kept():
    assert process_environment(SHELL) == {"PATH": "/usr/bin", "HOME": "/home/dev"}


def test_azure_sign_in_variables_are_kept_only_for_a_vault_the_default_chain_signs_in_to():
    real_vault = {**SHELL, "TEST_KEY_VAULT_URI": "https://tests.vault.azure.net"}
    assert process_environment(real_vault)["AZURE_CLIENT_ID"] == "a-developers-client"
    assert "AZURE_CLIENT_ID" not in process_environment({**real_vault, "TEST_KEY_VAULT_TOKEN_ENDPOINT": "https://localhost:8444/token"})


def test_the_running_suite_holds_nothing_else():
    running = {name: value for name, value in os.environ.items() if name != "PYTEST_CURRENT_TEST"}  # set by pytest itself
    assert running == process_environment(os.environ)
