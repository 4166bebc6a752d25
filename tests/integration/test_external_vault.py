"""The suite against a Key Vault it did not start (TEST_KEY_VAULT_*), proven by running part of it in a child pytest."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from devtools.stack.services import ROOT

ROTATION = "tests/integration/test_key_operations.py::test_rotation_adds_a_version_and_changes_the_fingerprint"
# Through two devhost instances, which make the key x509-CA-A.
INSTANCES = "tests/integration/test_app_instances.py::test_instances_starting_together_share_one_server_id_and_see_each_others_rotations"
TIME_SHIFTING = "tests/integration/test_maintenance.py::test_own_keys_are_never_swept_even_when_stale"
EMPTY_VERSION_SIGNING = "tests/integration/test_signing_semantics.py::test_a_rotation_to_another_type_signs_with_the_new_types_algorithm"


def run_pytest(test_ids: list[str], settings: dict[str, str]) -> tuple[int, str]:
    """Run the tests in a child pytest whose only TEST_KEY_VAULT_* settings are ``settings``; its exit code and output."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("TEST_KEY_VAULT_")}
    env |= {**settings, "DEVSTACK_ECHO": "1"}
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-s", *test_ids]
    run = subprocess.run(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    return run.returncode, run.stdout + run.stderr


def external_settings(vault) -> dict[str, str]:
    """TEST_KEY_VAULT_* settings naming this session's vault, as a maintainer would name theirs."""
    settings = {"TEST_KEY_VAULT_URI": vault.url, "TEST_KEY_VAULT_CA_BUNDLE": vault.details["ca_bundle"]}
    if "token_url" in vault.details:
        settings["TEST_KEY_VAULT_TOKEN_ENDPOINT"] = vault.details["token_url"]
    return settings


def test_the_suite_uses_the_named_vault_and_deselects_what_it_lacks(vault, vault_admin):
    before = {key.name for key in vault_admin.list_properties_of_keys()}
    lacks = {"TEST_KEY_VAULT_TIME_SHIFT": "false", "TEST_KEY_VAULT_EMPTY_VERSION_SIGN": "false"}
    code, output = run_pytest([ROTATION, INSTANCES, TIME_SHIFTING, EMPTY_VERSION_SIGNING], {**external_settings(vault), **lacks})
    assert code == 0, output[-4000:]
    assert re.search(r"\b2 passed, 2 deselected\b", output)
    assert "Tests that shift the vault's time, deselected: 1 (TEST_KEY_VAULT_TIME_SHIFT=false" in output
    assert "Tests that count the requests of signs by the empty version, deselected: 1 (TEST_KEY_VAULT_EMPTY_VERSION_SIGN=false" in output
    assert "localvault ready" not in output  # the child started no vault of its own...
    created = {key.name for key in vault_admin.list_properties_of_keys()} - before
    made_here = {key_id for key_id in ("rotating", "x509-CA-A") for name in created if name.endswith(f"-{key_id}")}
    assert made_here == {"rotating", "x509-CA-A"}, created  # ...and made its keys in this one, in-process and through devhost


@pytest.mark.parametrize(
    "settings, exit_code, reason",
    [
        ({"TEST_KEY_VAULT_TIME_SHIFT": "false"}, pytest.ExitCode.USAGE_ERROR, "set TEST_KEY_VAULT_URI too"),
        (
            {"TEST_KEY_VAULT_URI": "https://127.0.0.1:9", "TEST_KEY_VAULT_EMPTY_VERSION_SIGN": "no"},
            pytest.ExitCode.USAGE_ERROR,
            "TEST_KEY_VAULT_EMPTY_VERSION_SIGN must be true or false",
        ),
        (
            {"TEST_KEY_VAULT_URI": "https://127.0.0.1:9"},
            pytest.ExitCode.TESTS_FAILED,
            "the Key Vault at TEST_KEY_VAULT_URI does not answer",
        ),
    ],
    ids=["settings-without-a-uri", "a-feature-neither-true-nor-false", "a-vault-that-does-not-answer"],
)
def test_an_unusable_external_vault_fails_the_run_and_never_falls_back(settings, exit_code, reason):
    code, output = run_pytest([ROTATION], settings)
    assert code == exit_code, output[-4000:]
    assert reason in output
    assert "localvault ready" not in output and " skipped" not in output
