"""Secrets never leave: failure paths are driven and neither logs nor responses may carry a secret."""

from __future__ import annotations

import json
import logging

import azure.functions as func

from devtools.stack.services import AZURITE_KEY
from functions import keys
from shared import app_context
from tests.integration.conftest import make_app

APP_SECRET = "app-secret-value-Zq8~t5"
CLOSED = "127.0.0.1:9"


def _calls(app) -> list[tuple[int, dict]]:
    return [app.generate("a", "ec-p256"), app.get("a"), app.list(), app.refresh(), app.sweep(), app.health()]


def _failing_calls(app) -> list[tuple[int, dict]]:
    """One key operation and the health check: each waits out the SDK's retries."""
    return [app.generate("a", "ec-p256"), app.health()]


def _caller_secrets(callers) -> list[str]:
    """The callers' tokens, which every call carries, and the secrets their principals got them with."""
    principals = (callers.server, callers.maintainer)
    return [callers.token(principal) for principal in principals] + [principal.secret for principal in principals]


def _assert_clean(secrets: list[str], texts: list[str]) -> None:
    assert all(secrets)
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_invalid_credential_settings_never_echo_the_secret(app_env, monkeypatch, callers, caplog):
    caplog.set_level(logging.DEBUG)
    for name, value in {**app_env, "APP_SECRET": APP_SECRET, "APP_ID": "app"}.items():
        monkeypatch.setenv(name, value)
    app_context.install_servers(None)
    response = keys.get_public_keys(func.HttpRequest("GET", "http://localhost/api/keys", body=b"", headers=callers.headers()))
    body = response.get_body().decode()
    assert response.status_code == 503 and "TENANT_ID" in body
    _assert_clean([APP_SECRET, AZURITE_KEY, *_caller_secrets(callers)], [body, caplog.text])


def test_failing_dependencies_answer_503_without_secrets(app_env, monkeypatch, callers, caplog):
    caplog.set_level(logging.DEBUG)
    azurite_endpoint = app_env["AzureWebJobsStorage"].split("BlobEndpoint=http://")[1].split("/")[0]
    failing = (
        {"AzureWebJobsStorage": app_env["AzureWebJobsStorage"].replace(azurite_endpoint, CLOSED)},
        {"KEY_VAULT_URI": f"https://{CLOSED}", "KEY_METADATA_BLOB": "", "KEY_IDENTIFIER_VALUE": "secrets-test"},
        {
            "USE_MSI": "true",  # also when the vault is reached through Azure's default credential chain
            "IDENTITY_ENDPOINT": f"http://{CLOSED}/metadata/identity/oauth2/token",
            "IDENTITY_HEADER": "secrets-test",
            "KEY_METADATA_BLOB": "",
            "KEY_IDENTIFIER_VALUE": "secrets-test",
        },
    )
    texts = []
    for overrides in failing:
        # A configured server id serves the default server alone: its callers may name no other.
        only_default = callers.settings(server_names=("",)) if "KEY_IDENTIFIER_VALUE" in overrides else {}
        app = make_app({**app_env, **only_default, **overrides}, monkeypatch, callers)
        results = _failing_calls(app)
        assert all(status == 503 for status, _ in results), results
        texts.extend(json.dumps(body) for _, body in results)
    _assert_clean([AZURITE_KEY, *_caller_secrets(callers)], texts + [caplog.text])


def test_working_paths_log_no_secrets_either(app, callers, caplog):
    caplog.set_level(logging.DEBUG)
    results = _calls(app)
    assert [status for status, _ in results] == [200] * 6
    assert app.traffic.access_tokens
    secrets = [AZURITE_KEY, *app.traffic.access_tokens, *_caller_secrets(callers)]
    _assert_clean(secrets, [json.dumps(body) for _, body in results] + [caplog.text])
