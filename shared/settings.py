"""The app settings: read once from the environment, validated, each error naming its setting."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import SplitResult, urlsplit

from shared.callers import DEFAULT_SERVER, CallerPermissions
from shared.errors import ConfigurationError
from shared.maintenance import DEFAULT_MAX_DELETIONS, DEFAULT_STALE_KEY_AGE, SweepPolicy
from shared.naming import SERVER_NAME, SERVER_NAME_RULE
from shared.ncrontab import CronError, Schedule

# SPIFFE trust domain names: lowercase letters, digits, ".", "-" and "_" (SPIFFE ID spec, 2.1).
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]{1,255}")
# Azure Blob container names: 3-63 lowercase letters, digits and single dashes.
_CONTAINER = re.compile(r"(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_SERVER_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DEFAULT_ENTRA_AUTHORITY_HOST = "https://login.microsoftonline.com"
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no", ""}
APP_CREDENTIAL_SETTINGS = ("TENANT_ID", "SUBSCRIPTION_ID", "APP_ID", "APP_SECRET")
# ASCII digits only, and few enough that no setting overflows what it sets.
_DURATION = re.compile(r"([0-9]{1,9})([dhms])")
_WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")
_DURATION_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
# Servers refresh their keys every few hours; an age near that would sweep keys still in use.
MIN_STALE_KEY_AGE = timedelta(days=1)
# Ten years: past that, a key's Updated time no longer says anything about its server.
MAX_STALE_KEY_AGE = timedelta(days=3650)
MAX_SWEEP_DELETIONS = 100_000
# Blob names hold at most 1024 characters; named servers' blobs add ".servers/<server name>" to the path.
MAX_METADATA_BLOB_PATH = 900
DEFAULT_KEY_VAULT_RETRY_SECONDS = 20
# Retries must end well inside the Functions host's timeout (5 minutes on the Consumption plan).
MAX_KEY_VAULT_RETRY_SECONDS = 120
DEFAULT_REFRESH_KEYS_SCHEDULE = "0 0 */6 * * *"
DEFAULT_SWEEP_KEYS_SCHEDULE = "0 0 0 */2 * *"
KEY_PROTECTIONS = ("software", "hsm")


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
    # The app setting that names the account, for messages about it.
    connection_setting: str = "KEY_METADATA_STORAGE"


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
    # Create HSM-protected keys (RSA-HSM, EC-HSM), which only a Premium vault holds.
    hsm_keys: bool = False


@dataclass(frozen=True)
class Schedules:
    """The maintenance timers' NCRONTAB schedules, as the Functions host reads them."""

    refresh: str
    sweep: str


@dataclass(frozen=True)
class CallerSettings:
    """How callers are proven (Entra ID tokens) and what each may do."""

    tenant_id: str
    api_client_id: str
    token_version: int
    authority_host: str
    permissions: CallerPermissions
    # Local development only: the CA that signed the local Entra ID stand-in's certificate.
    ca_bundle: str | None = None


def load_caller_settings(environ: Mapping[str, str]) -> CallerSettings:
    """The Entra ID and authorization settings; raise naming the bad one."""
    env = {name: value.strip() for name, value in environ.items()}
    authority_host = env.get("ENTRA_AUTHORITY_HOST") or DEFAULT_ENTRA_AUTHORITY_HOST
    parts = _url_parts(authority_host)
    if (
        parts is None
        or parts.scheme != "https"
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
        or parts.password is not None
    ):
        raise ConfigurationError("ENTRA_AUTHORITY_HOST must be Entra ID's https authority, such as https://login.microsoftonline.com")
    ca_bundle = env.get("ENTRA_CA_BUNDLE") or None
    if ca_bundle is not None:
        if not _is_loopback(parts.hostname):
            raise ConfigurationError("ENTRA_CA_BUNDLE is for a local Entra ID stand-in only: ENTRA_AUTHORITY_HOST is not on this machine")
        if not os.path.isfile(ca_bundle):
            raise ConfigurationError("ENTRA_CA_BUNDLE names no file: give the path of the local Entra ID stand-in's CA certificate (PEM)")
    version = env.get("ENTRA_TOKEN_VERSION") or "2"
    if version not in ("1", "2"):
        raise ConfigurationError("ENTRA_TOKEN_VERSION must be 2 (the API application accepts v2 tokens) or 1")
    server_identities = _server_identities(env)
    if env.get("KEY_IDENTIFIER_VALUE") and any(name != DEFAULT_SERVER for names in server_identities.values() for name in names):
        # A configured id records no use: the refresh would miss named servers and the sweep delete their keys.
        raise ConfigurationError(
            'KEY_IDENTIFIER_VALUE is for the default server ("") alone, and SPIRE_SERVER_IDENTITIES names other servers: '
            "use KEY_METADATA_BLOB for several servers, or name only the default server"
        )
    return CallerSettings(
        tenant_id=_guid(env, "ENTRA_TENANT_ID", "the tenant (directory) id whose tokens the app accepts"),
        api_client_id=_guid(env, "ENTRA_API_CLIENT_ID", "the client id of the app's API application in Entra ID"),
        token_version=int(version),
        authority_host=authority_host.rstrip("/"),
        permissions=CallerPermissions(server_identities, frozenset(_maintenance_identities(env))),
        ca_bundle=ca_bundle,
    )


def load_schedules(environ: Mapping[str, str]) -> Schedules:
    """The maintenance schedules, with their defaults; raise naming the one that is not valid."""
    env = {name: value.strip() for name, value in environ.items()}
    return Schedules(
        refresh=_schedule(env, "REFRESH_KEYS_SCHEDULE", DEFAULT_REFRESH_KEYS_SCHEDULE),
        sweep=_schedule(env, "SWEEP_KEYS_SCHEDULE", DEFAULT_SWEEP_KEYS_SCHEDULE),
    )


def _schedule(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name) or default
    shape = (
        f"{name} must be an NCRONTAB schedule of six fields ({{second}} {{minute}} {{hour}} {{day}} {{month}} {{day of week}}), "
        f"such as {default}"
    )
    if len(value.split()) != 6:
        raise ConfigurationError(shape)
    try:
        Schedule.parse(value)
    except CronError as error:
        raise ConfigurationError(f"{shape}: {error}") from None
    return value


def _guid(env: Mapping[str, str], name: str, meaning: str) -> str:
    value = env.get(name, "").lower()
    if not value:
        raise ConfigurationError(f"{name} is required: {meaning}")
    if not _GUID.fullmatch(value):
        raise ConfigurationError(f"{name} must be a GUID: {meaning}")
    return value


def _server_identities(env: Mapping[str, str]) -> dict[str, frozenset[str]]:
    name = "SPIRE_SERVER_IDENTITIES"
    shape = (
        f"{name} must be a JSON object from each caller's object id to the SPIRE server names it may act as, "
        'such as {"<object id>": ["spire-a"]}'
    )
    value = env.get(name, "")
    if not value:
        raise ConfigurationError(f"{name} is required: without it no caller may act as any SPIRE server")
    try:
        identities = json.loads(value, object_pairs_hook=_Members)
    except ValueError:
        raise ConfigurationError(shape) from None
    if not isinstance(identities, _Members) or not identities:
        raise ConfigurationError(shape)
    permissions: dict[str, frozenset[str]] = {}
    holders: dict[str, str] = {}
    for object_id, names in identities:
        object_id = object_id.lower()
        if object_id in permissions:
            raise ConfigurationError(f"{name} names an object id more than once: give each identity one list")
        if not _GUID.fullmatch(object_id):
            raise ConfigurationError(f"{name}: each key must be an object id (a lowercase GUID)")
        if not isinstance(names, list) or not names or not all(isinstance(server, str) for server in names):
            raise ConfigurationError(f"{name}: each object id needs a non-empty list of server names")
        for server in names:
            if server != DEFAULT_SERVER and not SERVER_NAME.fullmatch(server):
                raise ConfigurationError(f'{name}: each server name must be {SERVER_NAME_RULE}, or "" for the default server')
            # Two identities acting as one server could each sign with its CA key and rotate it under the other.
            if holders.setdefault(server, object_id) != object_id:
                shown = f'"{server}"' if server else 'the default server ("")'
                raise ConfigurationError(f"{name} gives {shown} to two identities: a server name belongs to one identity only")
        permissions[object_id] = frozenset(names)
    return permissions


class _Members(list[tuple[str, Any]]):
    """A JSON object's members in order, duplicates kept, so that a name given twice is seen."""


def _maintenance_identities(env: Mapping[str, str]) -> list[str]:
    ids = [part.strip().lower() for part in env.get("MAINTENANCE_IDENTITIES", "").split(",") if part.strip()]
    if not all(_GUID.fullmatch(object_id) for object_id in ids):
        raise ConfigurationError("MAINTENANCE_IDENTITIES must be object ids (GUIDs) separated by commas")
    return ids


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build the settings from app settings (environment variables); raise naming the bad one."""
    env = {name: value.strip() for name, value in environ.items()}
    key_vault_uri = _key_vault_uri(env)
    server_id = env.get("KEY_IDENTIFIER_VALUE") or None
    if server_id is not None and not _SERVER_ID.fullmatch(server_id):
        raise ConfigurationError("KEY_IDENTIFIER_VALUE must be 1 to 64 letters, digits or dashes: it becomes part of Key Vault key names")
    if server_id is not None and env.get("KEY_METADATA_BLOB"):
        raise ConfigurationError("KEY_IDENTIFIER_VALUE and KEY_METADATA_BLOB cannot both be set: choose one way to keep the server id")
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
        key_vault_ca_bundle=_ca_bundle(env),
        verify_challenge_resource=not skip_challenge_check,
        sweep_policy=SweepPolicy(_stale_key_age(env), _max_deletions(env)),
        key_vault_retry_seconds=_key_vault_retry_seconds(env),
        hsm_keys=_key_protection(env) == "hsm",
    )


def _key_protection(env: Mapping[str, str]) -> str:
    value = env.get("KEY_VAULT_KEY_PROTECTION", "").lower() or "software"
    if value not in KEY_PROTECTIONS:
        raise ConfigurationError("KEY_VAULT_KEY_PROTECTION must be software or hsm (HSM-protected keys, which need a Premium vault)")
    return value


def _key_vault_retry_seconds(env: Mapping[str, str]) -> int:
    return _whole_number(env, "KEY_VAULT_RETRY_SECONDS", DEFAULT_KEY_VAULT_RETRY_SECONDS, 1, MAX_KEY_VAULT_RETRY_SECONDS, "seconds ")


def _whole_number(env: Mapping[str, str], name: str, default: int, low: int, high: int, unit: str = "") -> int:
    value = env.get(name, "")
    if not value:
        return default
    if not _WHOLE_NUMBER.fullmatch(value) or not low <= int(value) <= high:
        of_unit = f"of {unit}" if unit else ""
        raise ConfigurationError(f"{name} must be a whole number {of_unit}from {low} to {high}, in ASCII digits")
    return int(value)


def _stale_key_age(env: Mapping[str, str]) -> timedelta:
    value = env.get("STALE_KEY_AGE", "")
    if not value:
        return DEFAULT_STALE_KEY_AGE
    match = _DURATION.fullmatch(value)
    if not match:
        raise ConfigurationError("STALE_KEY_AGE must be a whole number (ASCII digits) of days, hours, minutes or seconds, such as 14d")
    age = timedelta(**{_DURATION_UNITS[match.group(2)]: int(match.group(1))})
    if age < MIN_STALE_KEY_AGE:
        raise ConfigurationError("STALE_KEY_AGE must be at least 1d: a shorter age would sweep keys that other servers still refresh")
    if age > MAX_STALE_KEY_AGE:
        raise ConfigurationError(f"STALE_KEY_AGE must be at most {MAX_STALE_KEY_AGE.days}d")
    return age


def _max_deletions(env: Mapping[str, str]) -> int:
    return _whole_number(env, "SWEEP_MAX_DELETIONS", DEFAULT_MAX_DELETIONS, 1, MAX_SWEEP_DELETIONS)


def _ca_bundle(env: Mapping[str, str]) -> str | None:
    path = env.get("KEY_VAULT_CA_BUNDLE") or None
    if path is not None and not os.path.isfile(path):
        raise ConfigurationError("KEY_VAULT_CA_BUNDLE names no file: give the path of the local Key Vault's CA certificate (PEM)")
    return path


def _trust_domain(env: Mapping[str, str]) -> str:
    value = env.get("TRUST_DOMAIN", "")
    if not value:
        raise ConfigurationError("TRUST_DOMAIN is required")
    if not _TRUST_DOMAIN.fullmatch(value):
        raise ConfigurationError('TRUST_DOMAIN is not a SPIFFE trust domain name: use lowercase letters, digits, ".", "-" and "_"')
    return value


def _key_vault_uri(env: Mapping[str, str]) -> str:
    value = env.get("KEY_VAULT_URI", "")
    if not value:
        raise ConfigurationError("KEY_VAULT_URI is required")
    parts = _url_parts(value)
    if parts is None or parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/") or parts.query:
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
    if len(blob) > MAX_METADATA_BLOB_PATH:
        raise ConfigurationError(f"KEY_METADATA_BLOB's blob path must be at most {MAX_METADATA_BLOB_PATH} characters")
    for connection in ("KEY_METADATA_STORAGE", "AzureWebJobsStorage"):
        if env.get(connection):
            _check_connection_string(connection, env[connection])
            return BlobLocation(container, blob, connection_string=env[connection], connection_setting=connection)
        setting = f"{connection}__blobServiceUri"
        account_url = env.get(setting)
        if account_url:
            if not _is_http_url(account_url):
                raise ConfigurationError(f"{setting} must be the storage account's blob service URL")
            return BlobLocation(container, blob, account_url=account_url, connection_setting=setting)
    raise ConfigurationError(
        "KEY_METADATA_STORAGE (or KEY_METADATA_STORAGE__blobServiceUri, or the app's AzureWebJobsStorage) "
        "is required to reach KEY_METADATA_BLOB"
    )


def _check_connection_string(setting: str, value: str) -> None:
    """Refuse what the storage SDK would refuse, or fail on, at the first request (never naming the value)."""
    pairs = [part.split("=", 1) for part in value.rstrip(";").split(";")]
    if any(len(pair) != 2 or not pair[0] for pair in pairs):
        raise ConfigurationError(f"{setting} is not a storage connection string: it must be <name>=<value> pairs separated by ';'")
    fields = {name.strip().lower(): part.strip() for name, part in pairs}
    if fields.get("usedevelopmentstorage") == "true":
        return
    endpoint = fields.get("blobendpoint")
    if endpoint is not None and not _is_http_url(endpoint):
        raise ConfigurationError(f"{setting}: BlobEndpoint must be the blob service URL")
    if endpoint is None and not fields.get("accountname"):
        raise ConfigurationError(f"{setting} names no storage account: give AccountName or BlobEndpoint")
    if "accountkey" in fields:
        if not fields.get("accountname"):
            raise ConfigurationError(f"{setting}: an AccountKey needs its AccountName")
        try:
            base64.b64decode(fields["accountkey"], validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError(f"{setting}: AccountKey is not base64") from None
    elif not fields.get("sharedaccesssignature"):
        raise ConfigurationError(f"{setting} has no credential: give AccountKey or SharedAccessSignature, or use {setting}__blobServiceUri")


def _is_http_url(value: str) -> bool:
    parts = _url_parts(value)
    return parts is not None and parts.scheme in ("https", "http") and bool(parts.hostname)


def _url_parts(value: str) -> SplitResult | None:
    """The URL's parts; None when it cannot be one (a bracket left open, a port that is no number)."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - parsing the port is what raises on a bad one
    except ValueError:
        return None
    return parts


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
