"""Entra ID access tokens: every key and maintenance call proves its caller before anything is done.

The app verifies each token itself, whatever runs in front of it: RS256 only, signed by a key the
tenant publishes at a location the settings fix (never one the token names), the issuer and audience
of the configured token version (exactly one of each), the tenant, the validity window with a small
leeway, and app-only tokens only (a token with ``scp`` is a user's).

The tenant's signing keys are fetched once, then refreshed in the background; the last good keys stay
in use when a refresh fails. A token signed by a key not (yet) known asks for the keys again at most
once per ``UNKNOWN_KEY_REFRESH_INTERVAL``, and only that request waits for the answer. Keys that cannot
be had at all are Unavailable (a 503 the plugin retries), never Unauthenticated (which would stop a
SPIRE server at start).

A verified token is remembered, keyed by its SHA-256, until it expires: verifying RS256 costs a few
hundred microseconds, and a SPIRE server sends the same token for an hour.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import RSAAlgorithm

from shared.callers import Caller
from shared.errors import Unauthenticated, Unavailable, shortened

log = logging.getLogger(__name__)

ALGORITHM = "RS256"
# A bearer token from Entra is a few KiB; a larger header is refused before it is parsed.
MAX_AUTHORIZATION_BYTES = 16 * 1024
# Clock skew between Entra ID and this instance that a token's exp and nbf may have.
LEEWAY_SECONDS = 60
# Entra rolls its signing keys over weeks; an hour between looks is plenty, and cheap.
REFRESH_AFTER_SECONDS = 3600.0
UNKNOWN_KEY_REFRESH_INTERVAL = 300.0
# After a failed fetch, callers of a cold instance get a 503 at once rather than each waiting on a new fetch.
RETRY_FAILED_FETCH_AFTER = 10.0
MIN_RSA_KEY_BITS = 2048
MAX_JWKS_BYTES = 256 * 1024
JWKS_TIMEOUT = (3.05, 5)
# The whole fetch, however slowly the server sends: a cold instance's callers wait at most this long.
JWKS_DEADLINE_SECONDS = 8.0
REMEMBERED_TOKENS = 4096
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_REQUIRED_CLAIMS = ["exp", "nbf", "iat", "iss", "aud", "tid", "oid", "ver"]


@dataclass(frozen=True)
class TokenPolicy:
    """What a token must say to be accepted: one issuer, one audience, one tenant, one token version."""

    tenant_id: str
    issuer: str
    audience: str
    version: str
    jwks_uri: str

    @classmethod
    def for_entra(cls, authority_host: str, tenant_id: str, api_client_id: str, token_version: int) -> TokenPolicy:
        """Entra ID's values: v2 tokens name the API's client id, v1 tokens its identifier URI."""
        authority = authority_host.rstrip("/")
        jwks_uri = f"{authority}/{tenant_id}/discovery/v2.0/keys"
        if token_version == 1:
            return cls(tenant_id, f"https://sts.windows.net/{tenant_id}/", f"api://{api_client_id}", "1.0", jwks_uri)
        return cls(tenant_id, f"{authority}/{tenant_id}/v2.0", api_client_id, "2.0", jwks_uri)


FetchKeys = Callable[[], Mapping[str, Any]]


class SigningKeys:
    """The tenant's published signing keys by key id, fetched with ``fetch`` (the JWKS document)."""

    def __init__(
        self,
        fetch: FetchKeys,
        clock: Callable[[], float] = time.monotonic,
        in_background: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._in_background = in_background or _start_thread
        self._keys: dict[str, RSAPublicKey] | None = None
        self._fetched_at = float("-inf")
        self._failed_at = float("-inf")
        self._asked_for_unknown_at = float("-inf")
        # Held while fetching; no reader of known keys ever waits on it.
        self._fetching = threading.Lock()

    def known(self, kid: str) -> bool:
        keys = self._keys
        return keys is not None and kid in keys

    def key(self, kid: str) -> RSAPublicKey:
        """The key with id ``kid``.

        Unauthenticated only when keys fetched for this very question lack it; Unavailable (a 503 the
        plugin retries) when no keys can be had, or when the instance may not ask again yet.
        """
        keys = self._keys
        fetched_now = False
        if keys is None:
            keys, fetched_now = self._fetch_cold()
        elif self._due(self._fetched_at, REFRESH_AFTER_SECONDS) and self._due(self._failed_at, RETRY_FAILED_FETCH_AFTER):
            self._refresh_in_background()
            keys = self._keys or keys  # the refresh may have finished already
        key = keys.get(kid)
        if key is None:
            if fetched_now:
                raise _unknown_key()
            key = self._fetch_for_unknown(kid)
        return key

    def _due(self, since: float, interval: float) -> bool:
        return self._clock() - since >= interval

    def _fetch_cold(self) -> tuple[dict[str, RSAPublicKey], bool]:
        """The first keys of this instance, and whether this call fetched them.

        Callers wait for the one fetch under way, at most its deadline; after a failure they are
        answered at once until a new fetch is due.
        """
        if not self._fetching.acquire(timeout=JWKS_DEADLINE_SECONDS):
            raise _keys_unavailable()
        try:
            fetched = False
            if self._keys is None and self._due(self._failed_at, RETRY_FAILED_FETCH_AFTER):
                fetched = self._fetch_now()
        finally:
            self._fetching.release()
        if self._keys is None:
            raise _keys_unavailable()
        return self._keys, fetched

    def _fetch_for_unknown(self, kid: str) -> RSAPublicKey:
        """Ask for the keys again for a key id not seen, at most once per interval; only this caller waits.

        A key id that cannot be looked up now (a fetch is under way, or one was made lately) is
        Unavailable rather than Unauthenticated: it may be a key the tenant has just started to use,
        and a refusal would stop a SPIRE server. Forged key ids gain nothing from it.
        """
        if not self._fetching.acquire(blocking=False):
            raise _key_not_known_yet()
        try:
            if not self._due(self._asked_for_unknown_at, UNKNOWN_KEY_REFRESH_INTERVAL):
                raise _key_not_known_yet()
            self._asked_for_unknown_at = self._clock()
            if not self._fetch_now():
                raise _keys_unavailable()
        finally:
            self._fetching.release()
        key = (self._keys or {}).get(kid)
        if key is None:
            raise _unknown_key()
        return key

    def _refresh_in_background(self) -> None:
        """One refresh at a time: the lock is taken here and handed to the background run, which releases it."""
        if not self._fetching.acquire(blocking=False):
            return

        def refresh() -> None:
            try:
                self._fetch_now()
            finally:
                self._fetching.release()

        try:
            self._in_background(refresh)
        except Exception:
            self._fetching.release()
            raise

    def _fetch_now(self) -> bool:
        """Fetch and take the keys; on failure keep the last good ones. Call with ``_fetching`` held."""
        try:
            keys = parse_jwks(self._fetch())
        except Exception as error:  # noqa: BLE001 - any failure keeps the last good keys
            self._failed_at = self._clock()
            log.warning(
                "Fetching Entra ID's signing keys failed (%s); %s",
                type(error).__name__,
                "keeping the last good keys" if self._keys is not None else "no keys yet",
            )
            return False
        self._keys, self._fetched_at = keys, self._clock()
        return True


def parse_jwks(document: Mapping[str, Any]) -> dict[str, RSAPublicKey]:
    """The RSA signature keys of a JWKS document by key id; other keys are passed over."""
    keys: dict[str, RSAPublicKey] = {}
    entries = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(entries, list):
        raise ValueError("the JWKS document has no keys list")
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            continue
        try:
            key = RSAAlgorithm.from_jwk(json.dumps(entry))
        except (jwt.InvalidKeyError, ValueError, TypeError):
            continue
        if isinstance(key, RSAPublicKey) and key.key_size >= MIN_RSA_KEY_BITS:
            keys[kid] = key
    if not keys:
        raise ValueError("the JWKS document has no usable RSA signing key")
    return keys


@dataclass(frozen=True)
class _Remembered:
    caller: Caller
    kid: str
    expires_at: float


class TokenVerifier:
    """Proves callers: an Authorization header in, the Caller its token names out."""

    def __init__(self, policy: TokenPolicy, keys: SigningKeys, clock: Callable[[], float] = time.time) -> None:
        self._policy = policy
        self._keys = keys
        self._clock = clock
        self._remembered: dict[bytes, _Remembered] = {}
        self._lock = threading.Lock()

    def verify(self, authorization: str | None) -> Caller:
        token = _bearer_token(authorization)
        digest = hashlib.sha256(token.encode()).digest()
        remembered = self._remembered.get(digest)
        # A remembered token still needs its signing key published, and its expiry not passed.
        if remembered is not None and self._clock() < remembered.expires_at and self._keys.known(remembered.kid):
            return remembered.caller
        kid = _key_id(token)
        claims = self._decode(token, self._keys.key(kid))
        caller = self._caller(claims)
        self._remember(digest, _Remembered(caller, kid, float(claims["exp"])))
        return caller

    def _decode(self, token: str, key: RSAPublicKey) -> dict[str, Any]:
        policy = self._policy
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=policy.audience,
                issuer=policy.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": _REQUIRED_CLAIMS, "strict_aud": True},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the bearer token has expired; the caller's Azure identity library gets a new one") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("the bearer token is not valid yet (nbf is in the future): check this machine's clock") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"the bearer token is for another audience: ask Entra ID for scope {self._scope()}") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(
                f"the bearer token is from another issuer: the app accepts v{policy.version[0]} tokens of tenant {policy.tenant_id} only"
            ) from None
        except jwt.MissingRequiredClaimError as error:
            raise Unauthenticated(f"the bearer token has no {error.claim} claim: it is not an Entra ID access token") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the bearer token's signature does not verify") from None
        except jwt.InvalidTokenError:
            raise Unauthenticated("the bearer token is not a valid Entra ID access token") from None
        return claims

    def _caller(self, claims: Mapping[str, Any]) -> Caller:
        policy = self._policy
        if not isinstance(claims["iss"], str):
            raise Unauthenticated("the bearer token's issuer is not a single string")
        if claims["tid"] != policy.tenant_id:
            raise Unauthenticated(f"the bearer token is from another tenant: the app accepts tenant {policy.tenant_id} only")
        if claims["ver"] != policy.version:
            raise Unauthenticated(
                f"the bearer token is a v{shortened(str(claims['ver']), 8)} token: the app accepts v{policy.version} only"
            )
        if "scp" in claims or claims.get("idtyp", "app") != "app":
            raise Unauthenticated(
                "the bearer token is a user's (delegated) token: the app accepts app-only tokens, which a workload or "
                f"managed identity gets for scope {self._scope()}"
            )
        object_id = claims["oid"]
        if not isinstance(object_id, str) or not _GUID.fullmatch(object_id):
            raise Unauthenticated("the bearer token's oid is not an object id")
        client_id = claims.get("azp", claims.get("appid", ""))
        return Caller(policy.tenant_id, object_id, client_id if isinstance(client_id, str) else "")

    def _scope(self) -> str:
        audience = self._policy.audience
        return f"{audience if audience.startswith('api://') else 'api://' + audience}/.default"

    def _remember(self, digest: bytes, remembered: _Remembered) -> None:
        with self._lock:
            if len(self._remembered) >= REMEMBERED_TOKENS:
                now = self._clock()
                self._remembered = {key: entry for key, entry in self._remembered.items() if entry.expires_at > now}
                if len(self._remembered) >= REMEMBERED_TOKENS:
                    self._remembered.clear()  # a flood of valid tokens: start over rather than grow
            self._remembered[digest] = remembered


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated(
            "this call needs an Entra ID access token: send Authorization: Bearer <token> (the SPIRE plugin does)",
            has_token=False,
        )
    if len(authorization) > MAX_AUTHORIZATION_BYTES:
        raise Unauthenticated(f"the Authorization header is longer than {MAX_AUTHORIZATION_BYTES} bytes")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("the Authorization header must be Bearer <token>, an Entra ID access token")
    if not token.isascii():
        raise Unauthenticated("the bearer token is not a JWT")
    return token


def _key_id(token: str) -> str:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise Unauthenticated("the bearer token is not a JWT") from None
    if header.get("alg") != ALGORITHM:
        raise Unauthenticated(f"the bearer token must be signed with {ALGORITHM}, as Entra ID signs access tokens")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise Unauthenticated("the bearer token names no signing key (kid)")
    return kid


def _unknown_key() -> Unauthenticated:
    return Unauthenticated("the bearer token is signed by a key the tenant does not publish")


def _key_not_known_yet() -> Unavailable:
    return Unavailable("the bearer token is signed by a key this instance does not know yet; it asks Entra ID again shortly; retry")


def _keys_unavailable() -> Unavailable:
    return Unavailable("Entra ID's signing keys cannot be had now, so no caller can be verified; retry")


def _start_thread(run: Callable[[], None]) -> None:
    threading.Thread(target=run, name="entra-signing-keys", daemon=True).start()


def jwks_fetcher(jwks_uri: str, ca_bundle: str | None = None) -> FetchKeys:
    """Fetch the JWKS document at ``jwks_uri`` (fixed by settings): a 200 only, within a deadline and a size cap."""

    def fetch() -> Mapping[str, Any]:
        deadline = time.monotonic() + JWKS_DEADLINE_SECONDS
        with requests.get(
            jwks_uri,
            timeout=JWKS_TIMEOUT,
            verify=ca_bundle or True,
            stream=True,
            headers={"Accept": "application/json"},
            allow_redirects=False,
        ) as response:
            if response.status_code != 200:
                raise ValueError(f"the JWKS endpoint answered {response.status_code}")
            body = bytearray()
            # read1 returns what has arrived (each wait bounded by the read timeout), so the deadline is checked.
            while chunk := response.raw.read1(MAX_JWKS_BYTES + 1, decode_content=True):
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError(f"the JWKS document is larger than {MAX_JWKS_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the JWKS document took more than {JWKS_DEADLINE_SECONDS} s")
        document: Mapping[str, Any] = json.loads(bytes(body))
        return document

    return fetch
