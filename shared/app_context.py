"""The composition root: builds the process-wide key managers from app settings, once, on first use.

Nothing here runs at import time, so the Functions host indexes the app even when settings are
wrong; a request then gets a 503 that names the bad setting.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any

from azure.core.credentials import TokenCredential
from azure.identity import ClientSecretCredential, DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.blob import BlobServiceClient

from shared.caller_tokens import SigningKeys, TokenPolicy, TokenVerifier, jwks_fetcher
from shared.callers import CallerGate
from shared.errors import ConfigurationError, InvalidArgument, Unavailable
from shared.id_blobs import BlobIdStores, InstanceBlobs
from shared.identity_port import CheckedServerIdentity, ServerDirectory, ServerIdentity
from shared.instances import InstanceRecords, Instances, SharedInstances
from shared.key_manager import KeyManager
from shared.key_vault_client import key_vault_keys
from shared.maintenance import LastRefresh, SweepPolicy
from shared.server_ids import FixedServerDirectory, StoredServerDirectory
from shared.settings import BlobLocation, CallerSettings, ClientSecret, ManagedIdentity, Settings, load_caller_settings, load_settings
from shared.vault_port import Vault

# Explicit network timeouts (seconds) so that a stalled dependency fails a request, never hangs it.
CONNECTION_TIMEOUT = 5
READ_TIMEOUT = 10

# Blob storage is read at a server's first request and re-checked every few minutes: retry briefly
# (0.5 s, then 2.5 s) rather than with the storage SDK's default 15 s back-off, so a cold start fails
# fast and reports.
BLOB_RETRY = {"retry_total": 2, "initial_backoff": 0.5, "increment_base": 2, "random_jitter_range": 0.5}

# The Key Vault client's retry policy already repeats a token request that cannot connect, so the
# credential retries once itself; its default of three more would multiply the time a request waits.
CREDENTIAL_RETRY = {"retry_total": 1}

# Named servers one instance keeps (an id and a key manager each), so that callers inventing names
# cannot grow its memory without bound; SPIRE deployments run a handful of servers per trust domain.
MAX_NAMED_SERVERS = 10_000

_lock = threading.Lock()
_servers: SpireServers | None = None
_callers: CallerGate | None = None
# Shares the records of plugin processes with the app's other instances off the requests, one at a time.
_sharing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="instance-records")
_last_refresh = LastRefresh()


class SpireServers:
    """The SPIRE servers this app serves: one key manager per server name, all on one vault adapter.

    Callers that name no server are the default server. A server's id is re-checked while it serves
    (``CheckedServerIdentity.server_id``) and its use recorded, so that maintenance follows use.
    """

    def __init__(
        self,
        trust_domain: str,
        directory: ServerDirectory,
        vault: Vault,
        sweep_policy: SweepPolicy = SweepPolicy(),
        instances: SharedInstances | None = None,
        clock: Callable[[], datetime] = partial(datetime.now, UTC),
    ) -> None:
        self.trust_domain = trust_domain
        # The plugin processes that call as each server, shared with the app's other instances when ids are in blobs.
        self.instances = instances or SharedInstances(Instances())
        self._directory = directory
        self._vault = vault
        self._sweep_policy = sweep_policy
        self._clock = clock
        self._lock = threading.Lock()
        self._servers: dict[str | None, tuple[CheckedServerIdentity, KeyManager]] = {}
        self.default_manager = self._server(None)[1]

    def serve(self, server_name: str | None, trust_domain: str | None = None) -> KeyManager:
        """The key manager for a caller, its server id checked and its use recorded.

        A caller that says it belongs to another trust domain is refused before anything is done.
        """
        if trust_domain is not None and trust_domain != self.trust_domain:
            raise InvalidArgument(
                f'this app serves trust domain "{self.trust_domain}" only: the caller\'s trust domain '
                "(X-SPIRE-Trust-Domain) is another one, so nothing was done"
            )
        identity, manager = self._server(server_name)
        identity.server_id()
        identity.record_use()
        return manager

    def check(self, server_name: str | None) -> str:
        """The server's id, read or created on first use; raises while it cannot serve."""
        return self._server(server_name)[0].server_id()

    def conflicts(self) -> list[Unavailable]:
        """Why servers cannot serve on this instance.

        A stopped server's blob is read again once its re-check is due (at most every
        RECHECK_INTERVAL), so that a restored blob ends the stop without that server calling again.
        """
        stopped = [identity for identity, _ in list(self._servers.values()) if identity.conflict is not None]
        for identity in stopped:
            try:
                identity.server_id()
            except Unavailable:
                pass  # still stopped: its conflict says why
        return [identity.conflict for identity in stopped if identity.conflict is not None]

    def maintained(self) -> list[str | None]:
        """The servers maintenance covers: the default server, and every named server used within STALE_KEY_AGE.

        Use is what the id blobs record, and what this instance saw itself (their blobs may be gone).
        """
        cutoff = self._clock() - self._sweep_policy.stale_key_age
        seen_here = {
            name
            for name, (identity, _) in list(self._servers.items())
            if name is not None and identity.last_used is not None and identity.last_used >= cutoff
        }
        return [None, *sorted(seen_here.union(self._directory.names_used_since(cutoff)))]

    def for_maintenance(self, server_name: str | None) -> KeyManager:
        """The server's key manager once its blob is re-checked now; raises when the id is not confirmed."""
        identity, manager = self._server(server_name)
        identity.confirm()
        return manager

    def _server(self, server_name: str | None) -> tuple[CheckedServerIdentity, KeyManager]:
        server = self._servers.get(server_name)
        if server is None:
            with self._lock:
                server = self._servers.get(server_name)
                if server is None:
                    if len(self._servers) > MAX_NAMED_SERVERS:
                        # Never forget a known id to make room: reloading it could adopt a replaced one.
                        raise Unavailable(f"this instance already serves {MAX_NAMED_SERVERS} named SPIRE servers, its most")
                    identity = self._directory.identity(server_name)
                    server = self._servers[server_name] = (identity, self._manager(identity))
        return server

    def _manager(self, identity: ServerIdentity) -> KeyManager:
        # The sweep weighs what the id blobs record beside Updated, so a server the refresh missed keeps its keys.
        return KeyManager(
            self._vault, identity, self.trust_domain, self._sweep_policy, self._clock, recorded_use=self._directory.recorded_use
        )


def instances() -> SharedInstances:
    return servers().instances


def last_refresh() -> LastRefresh:
    return _last_refresh


def callers() -> CallerGate:
    """The process-wide caller gate; raises ConfigurationError while its settings are invalid."""
    global _callers
    if _callers is None:
        with _lock:
            if _callers is None:
                _callers = build_caller_gate(load_caller_settings(os.environ))
    return _callers


def build_caller_gate(settings: CallerSettings) -> CallerGate:
    policy = TokenPolicy.for_entra(settings.authority_host, settings.tenant_id, settings.api_client_id, settings.token_version)
    keys = SigningKeys(jwks_fetcher(policy.jwks_uri, settings.ca_bundle))
    return CallerGate(TokenVerifier(policy, keys).verify, settings.permissions)


def install_servers(servers: SpireServers | None) -> None:
    """Serve every call with ``servers`` in place of those settings build (tests and benchmarks: the app's own
    SpireServers over fakes, or over the Azure clients with a request hook); None: built from settings again."""
    global _servers
    with _lock:
        _servers = servers


def servers() -> SpireServers:
    """The process-wide servers; raises ConfigurationError while settings are invalid."""
    global _servers
    if _servers is None:
        with _lock:
            if _servers is None:
                _servers = build_servers(load_settings(os.environ))
    return _servers


def key_manager(server_name: str | None = None, trust_domain: str | None = None) -> KeyManager:
    """The key manager that serves a caller naming ``server_name`` (None: the app's default server)."""
    return servers().serve(server_name, trust_domain)


def default_key_manager() -> KeyManager:
    """The default server's key manager as built: no check of its id, no record of use (for health)."""
    return servers().default_manager


def check_default_server() -> None:
    """Read (or create) the default server's id, or re-check it when due; raises while it cannot serve."""
    servers().check(None)


def conflicts() -> list[Unavailable]:
    """Why servers cannot serve on this instance (stopped ones re-checked when due); raises on invalid settings."""
    return servers().conflicts()


def servers_to_maintain() -> list[str | None]:
    return servers().maintained()


def key_manager_for_maintenance(server_name: str | None) -> KeyManager:
    return servers().for_maintenance(server_name)


def build_servers(settings: Settings, **client_options: Any) -> SpireServers:
    """Wire the app's servers; ``client_options`` reach every Azure client (a ``raw_request_hook``, a ``transport``)."""
    credential = build_credential(settings, **_client_options({**CREDENTIAL_RETRY, **client_options}))
    vault = key_vault_keys(
        settings.key_vault_uri,
        credential,
        ca_bundle=settings.key_vault_ca_bundle,
        hsm_keys=settings.hsm_keys,
        verify_challenge_resource=settings.verify_challenge_resource,
        retry_seconds=settings.key_vault_retry_seconds,
        **_client_options(client_options),
    )
    directory, instance_records = build_server_directory(settings, credential, **client_options)
    instances = SharedInstances(Instances(), instance_records, _sharing.submit)
    return SpireServers(settings.trust_domain, directory, vault, settings.sweep_policy, instances)


def build_credential(settings: Settings, **client_options: Any) -> TokenCredential:
    credentials = settings.credentials
    if isinstance(credentials, ClientSecret):
        return ClientSecretCredential(credentials.tenant_id, credentials.app_id, credentials.app_secret, **client_options)
    if isinstance(credentials, ManagedIdentity):
        return ManagedIdentityCredential(client_id=credentials.client_id, **client_options)
    return DefaultAzureCredential(**client_options)


def build_server_directory(
    settings: Settings, credential: TokenCredential, **client_options: Any
) -> tuple[ServerDirectory, InstanceRecords | None]:
    """The servers' ids, and the record through which the app's instances share their plugin callers (none without blobs)."""
    if settings.server_id is not None:
        return FixedServerDirectory(settings.server_id), None
    location = settings.metadata_blob
    assert location is not None  # settings require one of the two
    options = _client_options({**BLOB_RETRY, **client_options})
    container = _blob_service(location, credential, options).get_container_client(location.container)
    return StoredServerDirectory(BlobIdStores(container, location.blob)), InstanceBlobs(container, location.blob)


def _blob_service(location: BlobLocation, credential: TokenCredential, options: Mapping[str, Any]) -> BlobServiceClient:
    if location.connection_string is None:
        assert location.account_url is not None  # settings give one or the other
        return BlobServiceClient(location.account_url, credential=credential, **options)
    try:
        return BlobServiceClient.from_connection_string(location.connection_string, **options)
    except ValueError:  # what the settings' check let through and the SDK refuses
        raise ConfigurationError(f"{location.connection_setting} is not a storage connection string the storage SDK accepts") from None


def _client_options(overrides: Mapping[str, Any]) -> dict[str, Any]:
    return {"connection_timeout": CONNECTION_TIMEOUT, "read_timeout": READ_TIMEOUT, "retry_total": 3, **overrides}
