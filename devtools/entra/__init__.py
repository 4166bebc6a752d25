"""localentra: a local Microsoft Entra ID for development and tests (never deployed).

It issues RS256 access tokens as Entra does, through the endpoints unmodified Azure SDKs call
(OpenID discovery, JWKS, the v2.0 token endpoint, an App Service managed-identity endpoint), and
plays a Kubernetes cluster's OIDC issuer for workload identity federation. ``client.LocalEntra`` drives
it from tests; ``python -m devtools.entra --help`` runs it.
"""
