"""The v2.0 token endpoint's client credentials grant, checked in the order Entra checks it.

A caller proves itself with a client secret, or with a client assertion that is a federated token
(workload identity): signed by a key of the issuer a federated credential on the caller trusts, in its
valid time range, with that credential's subject and one of its audiences. The scope names one API,
by identifier URI or client id, with ``/.default``. Errors carry Entra's AADSTS codes and wording.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from .directory import Directory, ServicePrincipal
from .errors import EntraError, invalid_client, invalid_request, missing_parameter
from .keys import Jwt, public_key_id
from .tokens import ASSERTION, SECRET, TOKEN_LIFETIME, TokenIssuer

OPENID_SCOPES = {"openid", "profile", "offline_access", "email"}
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLOCK_SKEW = 300  # seconds of leeway on an assertion's lifetime
LAST_INSTANT = 253402300800  # 10000-01-01: later times cannot be written as Entra writes them
NOT_INSTALLED = (
    "This can happen if the application has not been installed by the administrator of the tenant or "
    "consented to by any user in the tenant."
)
FEDERATION_DOCS = "https://learn.microsoft.com/entra/workload-id/workload-identity-federation"


class ClientCredentialsGrant:
    def __init__(self, directory: Directory, issuer: TokenIssuer) -> None:
        self.directory = directory
        self.issuer = issuer

    def token(self, form: Mapping[str, str], now: float) -> dict:
        """The token response for a form POSTed to the token endpoint; raises EntraError."""
        grant_type, client_id = form.get("grant_type"), form.get("client_id")
        if not grant_type:
            raise missing_parameter("grant_type")
        if grant_type != "client_credentials":
            raise EntraError(400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant_type}'.")
        if not client_id:
            raise missing_parameter("client_id")
        resource = _resource(form.get("scope", ""))
        caller = self.directory.principal(client_id)
        if caller is None:
            raise EntraError(
                400,
                "unauthorized_client",
                700016,
                (
                    f"Application with identifier '{client_id}' was not found in the directory "
                    f"'{self.directory.tenant_id}'. {NOT_INSTALLED} You may have sent your authentication request to the "
                    "wrong tenant."
                ),
            )
        credential = self._authenticate(caller, form, now)
        api = self.directory.application(resource)
        if api is None:
            raise EntraError(
                400,
                "invalid_resource",
                500011,
                (
                    f"The resource principal named {resource} was not found in the tenant named "
                    f"{self.directory.tenant_id}. {NOT_INSTALLED} You might have sent your authentication request to the "
                    "wrong tenant."
                ),
            )
        access_token, _ = self.issuer.issue(caller, api, credential)
        return {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME, "ext_expires_in": TOKEN_LIFETIME, "access_token": access_token}

    def _authenticate(self, caller: ServicePrincipal, form: Mapping[str, str], now: float) -> str:
        """How the caller proved itself (SECRET or ASSERTION)."""
        assertion, secret = form.get("client_assertion"), form.get("client_secret")
        if assertion:
            if form.get("client_assertion_type") != JWT_BEARER:
                raise invalid_request(700023, "Unexpected client assertion type.")
            self._check_federated_assertion(caller, assertion, now)
            return ASSERTION
        if secret:
            if not caller.has_secret(secret):
                raise invalid_client(
                    7000215,
                    (
                        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
                        f"value, not the client secret ID, for a secret added to app '{caller.client_id}'."
                    ),
                )
            return SECRET
        raise invalid_client(7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")

    def _check_federated_assertion(self, caller: ServicePrincipal, assertion: str, now: float) -> None:
        try:
            token = Jwt.parse(assertion)
        except ValueError:
            raise invalid_request(50027, "JWT token is invalid or malformed.") from None
        claims = token.claims
        issuer, subject = claims.get("iss"), claims.get("sub")
        audience_claim = claims.get("aud")
        audiences = audience_claim if isinstance(audience_claim, list) else [audience_claim]
        trusted = [c for c in caller.federated_credentials if c.issuer == issuer]
        if not trusted:
            raise invalid_client(
                700211,
                (
                    f"No matching federated identity record found for presented assertion issuer '{issuer}'. Please check "
                    f"your federated identity credential Subject, Audience and Issuer against the presented assertion. "
                    f"{FEDERATION_DOCS}"
                ),
            )
        key = self.directory.cluster_key  # the only issuer a credential may trust (see Directory.register_principal)
        if token.header.get("kid") != public_key_id(key):
            raise invalid_client(
                7000272,
                (
                    f"The certificate with identifier {token.header.get('kid', '')} used to sign the federated credential "
                    f"could not be found in the metadata of identity provider {issuer}. Please validate that your "
                    "Identity Provider's metadata exposes the key used to sign the incoming token."
                ),
            )
        if not token.signed_by(key):
            raise invalid_client(700027, "Client assertion failed signature validation.")
        _check_lifetime(claims, now)
        trusted = [c for c in trusted if c.subject == subject]
        if not trusted:
            raise invalid_client(
                700213,
                (
                    f"No matching federated identity record found for presented assertion subject '{subject}'. Check your "
                    f"federated identity credential Subject, Audience and Issuer against the presented assertion. "
                    f"{FEDERATION_DOCS}"
                ),
            )
        if not any(audience in c.audiences for c in trusted for audience in audiences):
            raise invalid_client(
                700212,
                (
                    f"No matching federated identity record found for presented assertion audience "
                    f"'{','.join(map(str, audiences))}'. Please check your federated identity credential Subject, "
                    f"Audience and Issuer against the presented assertion. {FEDERATION_DOCS}"
                ),
            )


def _resource(scope: str) -> str:
    if not scope.strip():
        raise invalid_request(
            90014,
            "The required field 'scope' is missing from the credential. Ensure that you have "
            "all the necessary parameters for the login request.",
        )
    # MSAL adds the OpenID Connect scopes to every request; Entra ignores them beside a resource's.
    scopes = [s for s in scope.split() if s not in OPENID_SCOPES]
    invalid = scope if not scopes else next((s for s in scopes if not s.endswith("/.default")), None)
    if invalid is not None:
        raise EntraError(
            400,
            "invalid_scope",
            1002012,
            (
                f"The provided value for scope {invalid} is not valid. Client credential flows must have a scope value "
                "with /.default suffixed to the resource identifier (application ID URI)."
            ),
        )
    if len(scopes) > 1:
        raise EntraError(
            400,
            "invalid_scope",
            28000,
            (
                f"Provided value for the input parameter scope is not valid because it contains more than one resource. "
                f"Scope {scope} is not valid."
            ),
        )
    return scopes[0].removesuffix("/.default")


def _check_lifetime(claims: dict, now: float) -> None:
    expires, not_before = claims.get("exp"), claims.get("nbf", 0)
    if not all(isinstance(t, (int, float)) and 0 <= t < LAST_INSTANT for t in (expires, not_before)):
        raise invalid_request(50027, "JWT token is invalid or malformed.")
    if not not_before - CLOCK_SKEW <= now <= expires + CLOCK_SKEW:
        raise invalid_client(
            700024,
            (
                f"Client assertion is not within its valid time range. Current time: {_instant(now)}, assertion valid "
                f"from {_instant(not_before)}, expiry time of assertion {_instant(expires)}. Review the documentation at "
                "https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."
            ),
        )


def _instant(epoch_seconds: float) -> str:
    """Entra's timestamp in these messages: seven fractional digits."""
    moment = datetime.datetime.fromtimestamp(epoch_seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
