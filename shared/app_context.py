"""The composition root: builds the process-wide key manager from app settings, once, on first use.

Nothing here runs at import time, so the Functions host indexes the app even when settings are
wrong; a request then gets a 503 that names the bad setting.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Mapping

from azure.core.credentials import TokenCredential
from azure.identity import ClientSecretCredential, DefaultAzureCredential, ManagedIdentityCredential
from azure.keyvault.keys import KeyClient
from azure.storage.blob import BlobServiceClient

from shared.key_manager import KeyManager
from shared.key_vault import BudgetedRetryPolicy, KeyVaultKeys
from shared.server_identity import BlobServerIdentity, FixedServerIdentity, ServerIdentity
from shared.settings import BlobLocation, ClientSecret, ManagedIdentity, Settings, load_settings

# Explicit network timeouts (seconds) so that a stalled dependency fails a request, never hangs it.
CONNECTION_TIMEOUT = 5
READ_TIMEOUT = 10

# Blob storage is read once per instance, at its first request: retry briefly (0.5 s, then 2.5 s)
# rather than with the storage SDK's default 15 s back-off, so a cold start fails fast and reports.
BLOB_RETRY = {"retry_total": 2, "initial_backoff": 0.5, "increment_base": 2, "random_jitter_range": 0.5}

# The Key Vault client's retry policy already repeats a token request that cannot connect, so the
# credential retries once itself; its default of three more would multiply the time a request waits.
CREDENTIAL_RETRY = {"retry_total": 1}

_lock = threading.Lock()
_key_manager: KeyManager | None = None


def key_manager() -> KeyManager:
    """The process-wide key manager; raises ConfigurationError while settings are invalid."""
    global _key_manager
    if _key_manager is None:
        with _lock:
            if _key_manager is None:
                _key_manager = build_key_manager(load_settings(os.environ))
    return _key_manager


def build_key_manager(settings: Settings, **client_options: Any) -> KeyManager:
    """Wire a key manager; ``client_options`` reach every Azure client (tests pass a transport)."""
    credential = build_credential(settings, **_client_options(None, {**CREDENTIAL_RETRY, **client_options}))
    options = _client_options(settings.key_vault_ca_bundle, client_options)
    key_client = KeyClient(
        settings.key_vault_uri,
        credential,
        verify_challenge_resource=settings.verify_challenge_resource,
        # Total time the retries of one call may take, Retry-After waits included.
        retry_policy=BudgetedRetryPolicy(timeout=settings.key_vault_retry_seconds, retry_total=options.pop("retry_total")),
        **options,
    )
    return KeyManager(
        KeyVaultKeys(key_client),
        build_server_identity(settings, credential, **client_options),
        settings.trust_domain,
        settings.sweep_policy,
    )


def build_credential(settings: Settings, **client_options: Any) -> TokenCredential:
    credentials = settings.credentials
    if isinstance(credentials, ClientSecret):
        return ClientSecretCredential(credentials.tenant_id, credentials.app_id, credentials.app_secret, **client_options)
    if isinstance(credentials, ManagedIdentity):
        return ManagedIdentityCredential(client_id=credentials.client_id, **client_options)
    return DefaultAzureCredential(**client_options)


def build_server_identity(settings: Settings, credential: TokenCredential, **client_options: Any) -> ServerIdentity:
    if settings.server_id is not None:
        return FixedServerIdentity(settings.server_id)
    location = settings.metadata_blob
    assert location is not None  # settings require one of the two
    options = _client_options(None, {**BLOB_RETRY, **client_options})
    service = _blob_service(location, credential, options)
    return BlobServerIdentity(service.get_container_client(location.container), service.get_blob_client(location.container, location.blob))


def _blob_service(location: BlobLocation, credential: TokenCredential, options: Mapping[str, Any]) -> BlobServiceClient:
    if location.connection_string is not None:
        return BlobServiceClient.from_connection_string(location.connection_string, **options)
    return BlobServiceClient(location.account_url, credential=credential, **options)


def _client_options(ca_bundle: str | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {
        "connection_timeout": CONNECTION_TIMEOUT,
        "read_timeout": READ_TIMEOUT,
        "retry_total": 3,
    }
    if ca_bundle:
        options["connection_verify"] = ca_bundle
    options.update(overrides)
    return options
