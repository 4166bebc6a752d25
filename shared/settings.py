"""The app settings: read once from the environment, validated, each error naming its setting."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Mapping
from urllib.parse import urlsplit

from shared.errors import ConfigurationError
from shared.maintenance import DEFAULT_MAX_DELETIONS, DEFAULT_STALE_KEY_AGE, SweepPolicy

# SPIFFE trust domain names: lowercase letters, digits, ".", "-" and "_" (SPIFFE ID spec, 2.1).
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]{1,255}")
# Azure Blob container names: 3-63 lowercase letters, digits and single dashes.
_CONTAINER = re.compile(r"(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_SERVER_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no", ""}
APP_CREDENTIAL_SETTINGS = ("TENANT_ID", "SUBSCRIPTION_ID", "APP_ID", "APP_SECRET")
_DURATION = re.compile(r"(\d+)([dhms])")
_DURATION_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
# Servers refresh their keys every few hours; an age near that would sweep keys still in use.
MIN_STALE_KEY_AGE = timedelta(days=1)
DEFAULT_KEY_VAULT_RETRY_SECONDS = 20
# Retries must end well inside the Functions host's timeout (5 minutes on the Consumption plan).
MAX_KEY_VAULT_RETRY_SECONDS = 120


@dataclass(frozen=True)
class ClientSecret:
    tenant_id: str
    subscription_id: str
    app_id: str
    app_secret: str = field(repr=False)


@dataclass(frozen=True)
class ManagedIdentity:
    client_id: str | None = None


@dataclass(frozen=True)
class DefaultChain:
    """Azure's default credential chain (environment, workload identity, managed identity, CLI...)."""


Credentials = ClientSecret | ManagedIdentity | DefaultChain


@dataclass(frozen=True)
class BlobLocation:
    """Where the server id lives: a blob, and the account reached by connection string or by URI."""

    container: str
    blob: str
    connection_string: str | None = field(default=None, repr=False)
    account_url: str | None = None


@dataclass(frozen=True)
class Settings:
    trust_domain: str
    key_vault_uri: str
    credentials: Credentials
    server_id: str | None = None
    metadata_blob: BlobLocation | None = None
    # Local development only: the CA that signed the local Key Vault's certificate, and whether to
    # accept a challenge resource that does not match the vault's host (localhost never does).
    key_vault_ca_bundle: str | None = None
    verify_challenge_resource: bool = True
    sweep_policy: SweepPolicy = SweepPolicy()
    key_vault_retry_seconds: int = DEFAULT_KEY_VAULT_RETRY_SECONDS


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build the settings from app settings (environment variables); raise naming the bad one."""
    env = {name: value.strip() for name, value in environ.items()}
    key_vault_uri = _key_vault_uri(env)
    server_id = env.get("KEY_IDENTIFIER_VALUE") or None
    if server_id is not None and not _SERVER_ID.fullmatch(server_id):
        raise ConfigurationError(
            "KEY_IDENTIFIER_VALUE must be 1 to 64 letters, digits or dashes: it becomes part of Key Vault key names"
        )
    skip_challenge_check = _boolean(env, "KEY_VAULT_SKIP_CHALLENGE_RESOURCE_VERIFICATION")
    if skip_challenge_check and not _is_loopback(urlsplit(key_vault_uri).hostname or ""):
        raise ConfigurationError(
            "KEY_VAULT_SKIP_CHALLENGE_RESOURCE_VERIFICATION is for a local Key Vault only: KEY_VAULT_URI is not on this machine"
        )
    return Settings(
        trust_domain=_trust_domain(env),
        key_vault_uri=key_vault_uri,
        credentials=_credentials(env),
        server_id=server_id,
        metadata_blob=None if server_id else _metadata_blob(env),
        key_vault_ca_bundle=env.get("KEY_VAULT_CA_BUNDLE") or None,
        verify_challenge_resource=not skip_challenge_check,
        sweep_policy=SweepPolicy(_stale_key_age(env), _max_deletions(env)),
        key_vault_retry_seconds=_key_vault_retry_seconds(env),
    )


def _key_vault_retry_seconds(env: Mapping[str, str]) -> int:
    value = env.get("KEY_VAULT_RETRY_SECONDS", "")
    if not value:
        return DEFAULT_KEY_VAULT_RETRY_SECONDS
    if not value.isdigit() or not 1 <= int(value) <= MAX_KEY_VAULT_RETRY_SECONDS:
        raise ConfigurationError(f"KEY_VAULT_RETRY_SECONDS must be a whole number of seconds from 1 to {MAX_KEY_VAULT_RETRY_SECONDS}")
    return int(value)


def _stale_key_age(env: Mapping[str, str]) -> timedelta:
    value = env.get("STALE_KEY_AGE", "")
    if not value:
        return DEFAULT_STALE_KEY_AGE
    match = _DURATION.fullmatch(value)
    if not match:
        raise ConfigurationError("STALE_KEY_AGE must be a whole number of days, hours, minutes or seconds, such as 14d")
    age = timedelta(**{_DURATION_UNITS[match.group(2)]: int(match.group(1))})
    if age < MIN_STALE_KEY_AGE:
        raise ConfigurationError("STALE_KEY_AGE must be at least 1d: a shorter age would sweep keys that other servers still refresh")
    return age


def _max_deletions(env: Mapping[str, str]) -> int:
    value = env.get("SWEEP_MAX_DELETIONS", "")
    if not value:
        return DEFAULT_MAX_DELETIONS
    if not value.isdigit() or int(value) < 1:
        raise ConfigurationError("SWEEP_MAX_DELETIONS must be a whole number of at least 1")
    return int(value)


def _trust_domain(env: Mapping[str, str]) -> str:
    value = env.get("TRUST_DOMAIN", "")
    if not value:
        raise ConfigurationError("TRUST_DOMAIN is required")
    if not _TRUST_DOMAIN.fullmatch(value):
        raise ConfigurationError(
            'TRUST_DOMAIN is not a SPIFFE trust domain name: use lowercase letters, digits, ".", "-" and "_"'
        )
    return value


def _key_vault_uri(env: Mapping[str, str]) -> str:
    value = env.get("KEY_VAULT_URI", "")
    if not value:
        raise ConfigurationError("KEY_VAULT_URI is required")
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ConfigurationError("KEY_VAULT_URI must be a vault's https URI, such as https://<vault-name>.vault.azure.net/")
    return value


def _credentials(env: Mapping[str, str]) -> Credentials:
    use_msi = _boolean(env, "USE_MSI")
    given = [name for name in APP_CREDENTIAL_SETTINGS if env.get(name)]
    if given and use_msi:
        raise ConfigurationError("USE_MSI cannot be combined with TENANT_ID, SUBSCRIPTION_ID, APP_ID and APP_SECRET: choose one")
    if given:
        missing = [name for name in APP_CREDENTIAL_SETTINGS if not env.get(name)]
        if missing:
            raise ConfigurationError(f"{', '.join(missing)} required: app credentials need all of {', '.join(APP_CREDENTIAL_SETTINGS)}")
        return ClientSecret(env["TENANT_ID"], env["SUBSCRIPTION_ID"], env["APP_ID"], env["APP_SECRET"])
    if use_msi:
        return ManagedIdentity(client_id=env.get("AZURE_CLIENT_ID") or None)
    return DefaultChain()


def _metadata_blob(env: Mapping[str, str]) -> BlobLocation:
    path = env.get("KEY_METADATA_BLOB", "")
    if not path:
        raise ConfigurationError("KEY_METADATA_BLOB is required unless KEY_IDENTIFIER_VALUE is set")
    container, _, blob = path.partition("/")
    if not _CONTAINER.fullmatch(container) or not blob or blob.endswith("/"):
        raise ConfigurationError(
            "KEY_METADATA_BLOB must be <container>/<blob path> with a valid container name (3-63 lowercase letters, digits, dashes)"
        )
    for connection in ("KEY_METADATA_STORAGE", "AzureWebJobsStorage"):
        if env.get(connection):
            return BlobLocation(container, blob, connection_string=env[connection])
        account_url = env.get(f"{connection}__blobServiceUri")
        if account_url:
            if urlsplit(account_url).scheme not in ("https", "http"):
                raise ConfigurationError(f"{connection}__blobServiceUri must be the storage account's blob service URL")
            return BlobLocation(container, blob, account_url=account_url)
    raise ConfigurationError(
        "KEY_METADATA_STORAGE (or KEY_METADATA_STORAGE__blobServiceUri, or the app's AzureWebJobsStorage) is required to reach KEY_METADATA_BLOB"
    )


def _boolean(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be true or false")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
