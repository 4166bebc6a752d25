"""App Service's managed-identity endpoint (``IDENTITY_ENDPOINT``, protocol version 2019-08-01).

``GET /msi/token?api-version=2019-08-01&resource=<resource>[&client_id=<id>|&object_id=<id>]`` with
the header ``X-IDENTITY-HEADER: <IDENTITY_HEADER>``. It selects the user-assigned identity a client or
object id names, or else the system-assigned one, and answers with a token from the tenant for it,
``expires_on`` in epoch seconds as a string. Its errors are App Service's: ``{"statusCode",
"message", "correlationId"}``, a 500 when Entra refused the token.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from .directory import Directory
from .endpoints import Request, Response
from .errors import AppServiceError
from .tokens import MANAGED_IDENTITY, TokenIssuer

PATH = "/msi/token"
API_VERSION = "2019-08-01"


class ManagedIdentityEndpoint:
    def __init__(self, directory: Directory, issuer: TokenIssuer, identity_header: str) -> None:
        self.directory = directory
        self.issuer = issuer
        self.identity_header = identity_header

    def handle(self, request: Request) -> Response:
        if request.path != PATH or request.method != "GET":
            return 404, None, {}
        try:
            return 200, self._token(request.query, request.identity_header), {}
        except AppServiceError as error:
            return error.status, error.body(), {}

    def _token(self, query: Mapping[str, str], identity_header: str | None) -> dict:
        """The answer to a GET of PATH; raises AppServiceError."""
        if not hmac.compare_digest((identity_header or "").encode(), self.identity_header.encode()):
            raise AppServiceError(401, "The X-IDENTITY-HEADER header is missing or does not match IDENTITY_HEADER.")
        if query.get("api-version") != API_VERSION:
            raise AppServiceError(400, f"The api-version '{query.get('api-version', '')}' is not supported; use {API_VERSION}.")
        resource = query.get("resource")
        if not resource:
            raise AppServiceError(400, "The resource query parameter is required.")
        identity = self.directory.managed_identity(query.get("client_id"), query.get("object_id"))
        if identity is None:
            raise AppServiceError(400, "Unable to load the proper Managed Identity.")
        api = self.directory.application(resource)
        if api is None:  # App Service does not pass on Entra's AADSTS500011
            raise AppServiceError(500, "An unexpected error occured while fetching the AAD Token.")
        access_token, expires_on = self.issuer.issue(identity, api, MANAGED_IDENTITY)
        return {
            "access_token": access_token,
            "expires_on": str(expires_on),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": identity.client_id,
        }
