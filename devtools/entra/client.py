"""Drive a running localentra from tests and starters: register callers and APIs, get and craft tokens.

Tokens come through the real endpoints (the token endpoint, the managed-identity endpoint), so what a
test holds is what an Azure SDK would have got. Everything else goes through the administration API.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests

from devtools.stack.services import Service

from . import cluster
from .directory import TOKEN_EXCHANGE_AUDIENCE, USER_ASSIGNED
from .grants import JWT_BEARER
from .msi import API_VERSION
from .tokens import v1_issuer, v2_issuer

TIMEOUT_SECONDS = 30
VIA = ("secret", "managed_identity", "workload")


@dataclass(frozen=True)
class Api:
    client_id: str
    object_id: str
    identifier_uri: str


@dataclass(frozen=True)
class Principal:
    name: str
    client_id: str
    object_id: str
    secret: str | None
    federated_subject: str | None


class LocalEntra:
    def __init__(self, service: Service) -> None:
        self.authority = service.url
        self.tenant_id = service.details["tenant_id"]
        self.ca_bundle = service.details["ca_bundle"]
        self._msi_endpoint = service.details["msi_endpoint"]
        self._msi_header = service.details["msi_header"]
        self._http = requests.Session()
        self._http.trust_env = False  # never through a proxy, and trusting only the stand-in's CA
        self._http.verify = self.ca_bundle

    @property
    def jwks_uri(self) -> str:
        return f"{self.authority}/{self.tenant_id}/discovery/v2.0/keys"

    @property
    def federated_issuer(self) -> str:
        """The cluster issuer whose service-account tokens federated credentials trust."""
        return cluster.issuer_url(self.authority)

    def issuer(self, version: int = 2) -> str:
        return v1_issuer(self.tenant_id) if version == 1 else v2_issuer(self.authority, self.tenant_id)

    def register_api(self, token_version: int = 2) -> Api:
        body = self._admin("applications", {"token_version": token_version})
        return Api(body["client_id"], body["object_id"], body["identifier_uri"])

    def register_principal(
        self, name: str, secret: bool = True, federated_subject: str | None = None, managed_identity: bool = False
    ) -> Principal:
        body = self._admin(
            "principals",
            {
                "name": name,
                "secret": secret,
                "federated_credential": None if federated_subject is None else {"subject": federated_subject},
                "managed_identity": USER_ASSIGNED if managed_identity else "",
            },
        )
        return Principal(name, body["client_id"], body["object_id"], body["secret"], federated_subject)

    def token(self, principal: Principal, api: Api, via: str = "secret") -> str:
        """An access token for ``api`` got as an SDK gets it: with the secret, as a managed identity, or with a
        federated service-account token for the principal's subject (workload identity)."""
        if via == "managed_identity":
            response = self._http.get(
                self._msi_endpoint,
                headers={"X-IDENTITY-HEADER": self._msi_header},
                params={"api-version": API_VERSION, "resource": api.identifier_uri, "client_id": principal.client_id},
                timeout=TIMEOUT_SECONDS,
            )
        elif via == "secret" and principal.secret is not None:
            response = self._client_credentials(principal, api, {"client_secret": principal.secret})
        elif via == "workload" and principal.federated_subject is not None:
            assertion = self.federated_token(principal.federated_subject)
            response = self._client_credentials(principal, api, {"client_assertion_type": JWT_BEARER, "client_assertion": assertion})
        else:
            raise ValueError(f"via is one of {VIA}, and {principal.name} was registered with what it needs")
        response.raise_for_status()
        return response.json()["access_token"]

    def federated_token(self, subject: str, audience: str = TOKEN_EXCHANGE_AUDIENCE, lifetime: int = 3600) -> str:
        """A service-account token from the cluster issuer; a negative lifetime makes an expired one."""
        body = self._admin("federated-tokens", {"subject": subject, "audience": audience, "lifetime": lifetime})
        return body["token"]

    def add_signing_key(self, current: bool = True, published: bool = True) -> str:
        return self._admin("signing-keys", {"current": current, "published": published})["kid"]

    def sign(self, claims: dict, header: dict | None = None, kid: str | None = None) -> str:
        """``claims`` signed with key ``kid`` (the current signing key by default); ``header`` fields override the
        usual ones, and a None value leaves one out."""
        return self._admin("sign", {"claims": claims, "header": header, "kid": kid})["token"]

    def claims_for(self, principal: Principal, api: Api, version: int = 2) -> dict:
        """The claims of a token the principal would get now with its secret, in token format ``version``."""
        return self._admin("claims", {"client_id": principal.client_id, "resource": api.client_id, "version": version})["claims"]

    def _client_credentials(self, principal: Principal, api: Api, credential: dict[str, str]) -> requests.Response:
        return self._http.post(
            f"{self.authority}/{self.tenant_id}/oauth2/v2.0/token",
            timeout=TIMEOUT_SECONDS,
            data={
                "grant_type": "client_credentials",
                "client_id": principal.client_id,
                "scope": f"{api.identifier_uri}/.default",
                **credential,
            },
        )

    def _admin(self, name: str, body: dict) -> dict:
        response = self._http.post(f"{self.authority}/_local/{name}", json=body, timeout=TIMEOUT_SECONDS)
        response.raise_for_status()
        return response.json()
