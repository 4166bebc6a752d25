"""The Key Vault adapter as the app builds it: its transport, and its check of the vault's challenge."""

from __future__ import annotations

from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy
from azure.core.pipeline.transport import HttpTransport
from requests import Session
from requests.utils import select_proxy

from shared.errors import ConfigurationError
from shared.key_vault import KeyVaultKeys
from shared.key_vault_pipeline import key_client
from shared.vault_http import PooledTransport

# A Key Vault authentication challenge that does not fit the vault's URI raises ValueError in the SDK.
_CHALLENGE_ERROR = "challenge"


def key_vault_keys(
    vault_uri: str,
    credential: TokenCredential,
    *,
    ca_bundle: str | None,
    hsm_keys: bool,
    verify_challenge_resource: bool,
    retry_seconds: float,
    retry_total: int,
    connection_timeout: float,
    read_timeout: float,
    transport: HttpTransport[Any, Any] | None = None,
    **client_options: Any,
) -> KeyVaultKeys:
    """The vault adapter over the app's KeyClient on ``transport`` (by default the vault's own, ``vault_transport``).

    ``hsm_keys``: create HSM-protected keys; ``client_options`` are the SDK client's (a ``raw_request_hook``, ...).
    """
    if transport is None:
        transport = vault_transport(vault_uri, ca_bundle, connection_timeout, read_timeout)
    client = key_client(
        vault_uri,
        credential,
        transport,
        retry_seconds,
        retry_total,
        verify_challenge_resource=verify_challenge_resource,
        per_call_policies=[ChallengeResourcePolicy()],
        **client_options,
    )
    return KeyVaultKeys(client, hsm_keys)


def vault_transport(vault_uri: str, ca_bundle: str | None, connection_timeout: float, read_timeout: float) -> PooledTransport:
    """The transport for the vault, with the proxy and CA bundle requests would use for it; ``ca_bundle`` wins.

    The environment (proxy variables, CA bundle variables) is read here, once, with requests' own
    rules for that URL.
    """
    environment = Session().merge_environment_settings(vault_uri, {}, None, None, None)
    verify = ca_bundle or environment["verify"]
    proxy = select_proxy(vault_uri, environment["proxies"])
    if proxy is not None and not proxy.lower().startswith("http://"):
        raise ConfigurationError("HTTPS_PROXY: the proxy for Key Vault must be an http:// URL (it tunnels TLS to the vault)")
    return PooledTransport(
        verify=True if verify is None else verify,
        connection_timeout=connection_timeout,
        read_timeout=read_timeout,
        proxy=proxy,
    )


class ChallengeResourcePolicy(HTTPPolicy[Any, Any]):
    """Reports a Key Vault challenge that does not fit KEY_VAULT_URI as the configuration error it is.

    The SDK's challenge policy raises a bare ValueError when the vault's challenge names another
    resource (a URI that is not the vault's, or a server that is not a Key Vault).
    """

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        try:
            return self.next.send(request)
        except ValueError as exc:
            if _CHALLENGE_ERROR not in str(exc).lower():
                raise
            raise ConfigurationError(
                "KEY_VAULT_URI: the server there answered with an authentication challenge for another resource; "
                "check that KEY_VAULT_URI is the vault's URI (https://<vault-name>.vault.azure.net/)"
            ) from None
