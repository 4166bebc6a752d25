"""The tenant localentra serves, kept in its state directory between runs.

One JSON file holds the tenant id, the token-signing keys, the Kubernetes issuer's key and the
registry (API applications and service principals). It holds private keys, so only its owner may
read it, and it is rewritten through a temporary file and a rename after each change, so a crash
never leaves half a state behind. Client secrets are kept only as SHA-256 digests: like Entra, the
directory shows a secret once, when it is made.

One lock guards the state; records are frozen dataclasses, replaced and never changed, so callers
may read what the directory returns after the lock is released.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .keys import load_private_pem, new_private_key, private_pem, self_signed_certificate, thumbprint

STATE_FILE = "state.json"
SECRET_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789~._-"
# Where an identity's managed-identity kind is recorded; "" for a principal that is no managed identity.
USER_ASSIGNED = "user_assigned"
SYSTEM_ASSIGNED = "system_assigned"
MANAGED_IDENTITY_KINDS = ("", USER_ASSIGNED, SYSTEM_ASSIGNED)
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    published: bool


@dataclass(frozen=True)
class Application:
    """An API that callers get tokens for; ``token_version`` is its accessTokenAcceptedVersion."""

    client_id: str
    object_id: str
    identifier_uri: str
    token_version: int


@dataclass(frozen=True)
class FederatedCredential:
    issuer: str
    subject: str
    audiences: tuple[str, ...] = (TOKEN_EXCHANGE_AUDIENCE,)


@dataclass(frozen=True)
class ServicePrincipal:
    """A caller: an application's service principal, or a managed identity (``managed_identity`` not "")."""

    name: str
    client_id: str
    object_id: str
    secret_sha256: str | None = None
    federated_credentials: tuple[FederatedCredential, ...] = ()
    managed_identity: str = ""

    def has_secret(self, secret: str) -> bool:
        return self.secret_sha256 is not None and hmac.compare_digest(self.secret_sha256, _sha256(secret))


class Directory:
    """The tenant: loaded from ``state_dir`` if it was made there before, made (and saved) otherwise."""

    def __init__(self, state_dir: Path, cluster_issuer: str) -> None:
        self._path = state_dir / STATE_FILE
        self.cluster_issuer = cluster_issuer
        self._lock = threading.Lock()
        if self._path.exists():
            self._load(json.loads(self._path.read_text()))
        else:
            self.tenant_id = str(uuid.uuid4())
            self.cluster_key = new_private_key()
            self._keys: list[SigningKey] = []
            self._current_kid = ""
            self._applications: list[Application] = []
            self._principals: list[ServicePrincipal] = []
            # Entra publishes more keys than it signs with; the one listed first does not sign, so that a
            # verifier that takes the first key rather than the token's kid fails at once.
            self.add_signing_key(current=False, published=True)
            self.add_signing_key(current=True, published=True)

    # --- signing keys ------------------------------------------------------------------------------------------------

    def add_signing_key(self, current: bool, published: bool) -> SigningKey:
        if current and not published:
            raise ValueError("a current signing key is published")
        private_key = new_private_key()
        certificate = self_signed_certificate(private_key)
        key = SigningKey(thumbprint(certificate), private_key, certificate, published)
        with self._lock:
            self._keys.append(key)
            if current:
                self._current_kid = key.kid
            self._save()
        return key

    def current_key(self) -> SigningKey:
        with self._lock:
            return next(key for key in self._keys if key.kid == self._current_kid)

    def published_keys(self) -> list[SigningKey]:
        """The keys a JWKS lists, oldest first."""
        with self._lock:
            return [key for key in self._keys if key.published]

    def signing_key(self, kid: str) -> SigningKey | None:
        with self._lock:
            return next((key for key in self._keys if key.kid == kid), None)

    # --- registry ----------------------------------------------------------------------------------------------------

    def register_application(self, token_version: int) -> Application:
        if token_version not in (1, 2):
            raise ValueError("token_version is 1 or 2")
        client_id = str(uuid.uuid4())
        application = Application(client_id, str(uuid.uuid4()), f"api://{client_id}", token_version)
        with self._lock:
            self._applications.append(application)
            self._save()
        return application

    def register_principal(
        self, name: str, with_secret: bool, federated_credential: FederatedCredential | None, managed_identity: str
    ) -> tuple[ServicePrincipal, str | None]:
        """The new principal and its secret (None without one), which only this answer ever shows.

        A new system-assigned identity replaces the old one, as when an app's identity is turned off and on.
        """
        if managed_identity not in MANAGED_IDENTITY_KINDS:
            raise ValueError(f"managed_identity is one of {MANAGED_IDENTITY_KINDS}")
        if federated_credential is not None and federated_credential.issuer != self.cluster_issuer:
            raise ValueError(f"federated credentials trust this stand-in's cluster issuer {self.cluster_issuer}")
        secret = _new_secret() if with_secret else None
        principal = ServicePrincipal(
            name,
            str(uuid.uuid4()),
            str(uuid.uuid4()),
            None if secret is None else _sha256(secret),
            () if federated_credential is None else (federated_credential,),
            managed_identity,
        )
        with self._lock:
            if managed_identity == SYSTEM_ASSIGNED:
                self._principals = [p for p in self._principals if p.managed_identity != SYSTEM_ASSIGNED]
            self._principals.append(principal)
            self._save()
        return principal, secret

    def application(self, resource: str) -> Application | None:
        """The API a resource names: by its identifier URI, or by its client id."""
        with self._lock:
            return next((a for a in self._applications if resource == a.identifier_uri or resource.lower() == a.client_id), None)

    def principal(self, client_id: str) -> ServicePrincipal | None:
        with self._lock:
            return next((p for p in self._principals if p.client_id == client_id.lower()), None)

    def managed_identity(self, client_id: str | None, object_id: str | None) -> ServicePrincipal | None:
        """The identity a managed-identity request selects; the system-assigned one when it names none."""
        with self._lock:
            for principal in self._principals:
                if not principal.managed_identity:
                    continue
                if client_id is not None:
                    if principal.client_id == client_id.lower():
                        return principal
                elif object_id is not None:
                    if principal.object_id == object_id.lower():
                        return principal
                elif principal.managed_identity == SYSTEM_ASSIGNED:
                    return principal
            return None

    # --- persistence -------------------------------------------------------------------------------------------------

    def _load(self, state: dict) -> None:
        self.tenant_id = state["tenant_id"]
        self.cluster_key = load_private_pem(state["cluster_key"])
        self._keys = [
            SigningKey(
                k["kid"], load_private_pem(k["private_key"]), x509.load_pem_x509_certificate(k["certificate"].encode()), k["published"]
            )
            for k in state["signing_keys"]
        ]
        self._current_kid = state["current_kid"]
        self._applications = [Application(**a) for a in state["applications"]]
        self._principals = [
            ServicePrincipal(
                **{
                    **p,
                    "federated_credentials": tuple(
                        FederatedCredential(f["issuer"], f["subject"], tuple(f["audiences"])) for f in p["federated_credentials"]
                    ),
                }
            )
            for p in state["principals"]
        ]

    def _save(self) -> None:
        """Write the whole state; the caller holds the lock."""
        state = {
            "tenant_id": self.tenant_id,
            "cluster_key": private_pem(self.cluster_key),
            "signing_keys": [
                {
                    "kid": k.kid,
                    "private_key": private_pem(k.private_key),
                    "certificate": k.certificate.public_bytes(serialization.Encoding.PEM).decode(),
                    "published": k.published,
                }
                for k in self._keys
            ],
            "current_kid": self._current_kid,
            "applications": [dataclasses.asdict(a) for a in self._applications],
            "principals": [dataclasses.asdict(p) for p in self._principals],
        }
        descriptor, temporary = tempfile.mkstemp(dir=self._path.parent, prefix=f".{STATE_FILE}.")
        try:
            with os.fdopen(descriptor, "w") as file:  # mkstemp makes the file readable by its owner only
                json.dump(state, file, indent=1)
            os.replace(temporary, self._path)
        except BaseException:
            os.unlink(temporary)
            raise


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _new_secret() -> str:
    """A client secret in Entra's shape: three characters, "8Q~", then 34 more."""
    characters = "".join(secrets.choice(SECRET_ALPHABET) for _ in range(37))
    return f"{characters[:3]}8Q~{characters[3:]}"
