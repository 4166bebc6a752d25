"""The HTTPS endpoints as plain functions of a parsed request, free of sockets.

Entra's, for a tenant served at ``authority``:

- ``GET /{tenant}/v2.0/.well-known/openid-configuration`` and ``GET /{tenant}/.well-known/openid-configuration``
- ``GET /{tenant}/discovery/v2.0/keys`` and ``GET /{tenant}/discovery/keys``
- ``POST /{tenant}/oauth2/v2.0/token``
- ``GET /common/discovery/instance`` (instance discovery, which clients are told to skip for this host)

The cluster issuer's (``/kubernetes/...``, see ``cluster``) and, from loopback clients only, the
administration API (``/_local/...``, see ``admin``). Anything else is a 404 with no body.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization

from . import cluster
from .admin import AdminApi
from .directory import Directory, SigningKey
from .errors import AdminError, EntraError, invalid_request, tenant_not_found
from .grants import ClientCredentialsGrant
from .keys import rsa_jwk
from .tokens import TokenIssuer, v1_issuer, v2_issuer

Response = tuple[int, dict | None, dict[str, str]]
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Entra's values for the fields of its discovery documents that do not depend on the host.
_CLOUD = {
    "tenant_region_scope": "NA",
    "cloud_instance_name": "microsoftonline.com",
    "cloud_graph_host_name": "graph.windows.net",
    "msgraph_host": "graph.microsoft.com",
    "rbac_url": "https://pas.windows.net",
}
_AUTH_METHODS = ["client_secret_post", "private_key_jwt", "client_secret_basic"]
_CLAIMS_SUPPORTED = [
    "sub",
    "iss",
    "cloud_instance_name",
    "cloud_instance_host_name",
    "cloud_graph_host_name",
    "msgraph_host",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "acr",
]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str]  # the first value of each parameter
    form: Mapping[str, str]  # the same, of an urlencoded body
    body: bytes
    client_request_id: str | None
    identity_header: str | None  # App Service's X-IDENTITY-HEADER
    from_loopback: bool


class EntraEndpoints:
    def __init__(self, directory: Directory, authority: str) -> None:
        self.directory = directory
        self.authority = authority
        self.tokens = TokenIssuer(directory, authority)
        self.grant = ClientCredentialsGrant(directory, self.tokens)
        self.cluster_issuer = cluster.issuer_url(authority)
        self.admin = AdminApi(directory, self.tokens, self.cluster_issuer)

    def handle(self, request: Request) -> Response:
        """Answer a request: status, JSON body (None for none) and extra headers.

        Like Entra, every answer names the request (``x-ms-request-id``, its trace id) and echoes the
        client's ``client-request-id``, which errors give as their correlation id.
        """
        trace_id = str(uuid.uuid4())
        client_request_id = request.client_request_id or ""
        correlation_id = client_request_id if _GUID.fullmatch(client_request_id) else str(uuid.uuid4())
        headers = {"x-ms-request-id": trace_id, "client-request-id": correlation_id}
        try:
            status, body, extra = self._route(request)
            return status, body, {**headers, **extra}
        except EntraError as error:
            return error.status, error.body(trace_id, correlation_id), headers
        except AdminError as error:
            return error.status, {"error": error.message}, {}

    def _route(self, request: Request) -> Response:
        segments = request.path.strip("/").split("/")
        if segments[0] == "_local" and len(segments) == 2 and request.from_loopback:
            status, body = self.admin.handle(request.method, segments[1], request.body)
            return status, body, {}
        if request.path.startswith(cluster.ISSUER_PATH + "/") and request.method == "GET":
            return self._cluster(request.path.removeprefix(cluster.ISSUER_PATH))
        if segments == ["common", "discovery", "instance"] and request.method == "GET":
            return 200, self._instance_discovery(request.query.get("authorization_endpoint")), {}
        tenant, endpoint = segments[0], "/".join(segments[1:])
        if endpoint == "oauth2/v2.0/token":
            return self._token(tenant, request)
        documents = {
            "v2.0/.well-known/openid-configuration": self._openid_configuration_v2,
            ".well-known/openid-configuration": self._openid_configuration_v1,
            "discovery/v2.0/keys": lambda: self._jwks(v2_issuer(self.authority, self.directory.tenant_id)),
            "discovery/keys": lambda: self._jwks(None),
        }
        if endpoint not in documents or request.method != "GET":
            return 404, None, {}
        if tenant.lower() != self.directory.tenant_id:
            raise tenant_not_found(tenant, "invalid_tenant")
        return 200, documents[endpoint](), {}

    def _token(self, tenant: str, request: Request) -> Response:
        if request.method != "POST":
            raise invalid_request(900561, f"The endpoint only accepts POST requests. Received a {request.method} request.")
        if tenant.lower() != self.directory.tenant_id:
            raise tenant_not_found(tenant, "invalid_request")
        return 200, self.grant.token(request.form, time.time()), {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}

    def _cluster(self, path: str) -> Response:
        if path == cluster.DISCOVERY_PATH:
            return 200, cluster.discovery_document(self.cluster_issuer), {}
        if path == cluster.JWKS_PATH:
            return 200, cluster.jwks(self.directory.cluster_key), {}
        return 404, None, {}

    # --- discovery ---------------------------------------------------------------------------------------------------

    def _endpoint(self, path: str) -> str:
        return f"{self.authority}/{self.directory.tenant_id}/{path}"

    def _openid_configuration_v2(self) -> dict:
        return {
            "token_endpoint": self._endpoint("oauth2/v2.0/token"),
            "token_endpoint_auth_methods_supported": _AUTH_METHODS,
            "jwks_uri": self._endpoint("discovery/v2.0/keys"),
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": v2_issuer(self.authority, self.directory.tenant_id),
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": self._endpoint("oauth2/v2.0/authorize"),
            "device_authorization_endpoint": self._endpoint("oauth2/v2.0/devicecode"),
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": self._endpoint("oauth2/v2.0/logout"),
            "claims_supported": _CLAIMS_SUPPORTED + ["nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
            "kerberos_endpoint": self._endpoint("kerberos"),
            **_CLOUD,
        }

    def _openid_configuration_v1(self) -> dict:
        return {
            "token_endpoint": self._endpoint("oauth2/token"),
            "token_endpoint_auth_methods_supported": _AUTH_METHODS,
            "jwks_uri": self._endpoint("discovery/keys"),
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
            "scopes_supported": ["openid"],
            "issuer": v1_issuer(self.directory.tenant_id),
            "microsoft_multi_refresh_token": True,
            "authorization_endpoint": self._endpoint("oauth2/authorize"),
            "device_authorization_endpoint": self._endpoint("oauth2/devicecode"),
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": self._endpoint("oauth2/logout"),
            "claims_supported": _CLAIMS_SUPPORTED + ["amr", "nonce", "email", "given_name", "family_name", "nickname"],
            "check_session_iframe": self._endpoint("oauth2/checksession"),
            "userinfo_endpoint": self._endpoint("openid/userinfo"),
            "kerberos_endpoint": self._endpoint("kerberos"),
            **_CLOUD,
        }

    def _jwks(self, issuer: str | None) -> dict:
        """Entra's JWKS; the v2.0 one names each key's issuer."""
        return {"keys": [{**_jwk(key), **({"issuer": issuer} if issuer else {})} for key in self.directory.published_keys()]}

    def _instance_discovery(self, authorization_endpoint: str | None) -> dict:
        """Entra's answer for an authority on this host; AADSTS50049 for any other."""
        parts = urlsplit(authorization_endpoint or "")
        host = urlsplit(self.authority).netloc
        if parts.scheme != "https" or parts.netloc != host:
            raise EntraError(400, "invalid_instance", 50049, "Unknown or invalid instance.")
        tenant = parts.path.strip("/").split("/")[0] or "common"
        return {
            "tenant_discovery_endpoint": f"{self.authority}/{tenant}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        }


def _jwk(key: SigningKey) -> dict:
    der = key.certificate.public_bytes(serialization.Encoding.DER)
    return {"kty": "RSA", "use": "sig", "kid": key.kid, "x5t": key.kid, **rsa_jwk(key.private_key), "x5c": [base64.b64encode(der).decode()]}
