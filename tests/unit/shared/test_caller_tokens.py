"""The token rules, one bad token each, and the signing keys' fetching, over an in-process tenant."""

import base64
import hashlib
import hmac
import json
import threading
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from shared.caller_tokens import (
    LEEWAY_SECONDS,
    MAX_AUTHORIZATION_BYTES,
    REFRESH_AFTER_SECONDS,
    RETRY_FAILED_FETCH_AFTER,
    UNKNOWN_KEY_REFRESH_INTERVAL,
    SigningKeys,
    TokenPolicy,
    TokenVerifier,
    parse_jwks,
)
from shared.callers import Caller
from shared.errors import Unauthenticated, Unavailable
from tests.unit import tokens


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Tenant:
    """A JWKS endpoint in memory that counts its fetches and can be made to fail or to publish other keys."""

    def __init__(self) -> None:
        self.published = {tokens.KID: tokens.SIGNING_KEY}
        self.fetches = 0
        self.failing = False

    def fetch(self) -> dict:
        self.fetches += 1
        if self.failing:
            raise ConnectionError("the JWKS endpoint does not answer")
        return tokens.jwks(self.published)


def verifier(tenant: Tenant | None = None, clock: Clock | None = None, policy: TokenPolicy | None = None) -> TokenVerifier:
    tenant = tenant or Tenant()
    keys = SigningKeys(tenant.fetch, clock or Clock(), in_background=lambda run: run())
    return TokenVerifier(policy or tokens.policy(), keys)


def refused(authorization: str | None, verifier_: TokenVerifier | None = None) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as error:
        (verifier_ or verifier()).verify(authorization)
    return error.value


def bearer(token: str) -> str:
    return f"Bearer {token}"


def b64url(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_valid_app_token_proves_its_caller():
    caller = verifier().verify(bearer(tokens.token()))
    assert caller == Caller(tokens.TENANT_ID, tokens.SERVER_CALLER, tokens.claims()["azp"])


def test_a_v1_token_proves_its_caller_where_v1_is_configured():
    token = tokens.token(version=1, azp=None, appid="app-client")
    caller = verifier(policy=tokens.policy(version=1)).verify(bearer(token))
    assert caller.object_id == tokens.SERVER_CALLER and caller.client_id == "app-client"


def test_no_header_is_refused_without_an_error_code():
    error = refused(None)
    assert error.has_token is False and "Authorization: Bearer" in error.message


@pytest.mark.parametrize(
    "authorization, message",
    [
        ("Basic dXNlcjpwYXNz", "must be Bearer"),
        ("Bearer", "must be Bearer"),
        ("Bearer not-a-jwt", "not a JWT"),
        ("Bearer a.b.c", "not a JWT"),
        ("Bearer \udcff.\u00e9.x", "not a JWT"),
        ("x" * (MAX_AUTHORIZATION_BYTES + 1), f"longer than {MAX_AUTHORIZATION_BYTES} bytes"),
    ],
)
def test_what_is_not_a_bearer_jwt_is_refused(authorization, message):
    error = refused(authorization)
    assert message in error.message and error.has_token


def test_alg_none_is_refused():
    unsigned = f"{b64url({'alg': 'none', 'typ': 'JWT', 'kid': tokens.KID})}.{b64url(tokens.claims())}."
    assert "RS256" in refused(bearer(unsigned)).message


def test_hs256_keyed_with_the_public_key_is_refused():
    public_pem = tokens.SIGNING_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "JWT", "kid": tokens.KID}
    signing_input = f"{b64url(header)}.{b64url(tokens.claims())}"
    signature = base64.urlsafe_b64encode(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
    assert "RS256" in refused(bearer(f"{signing_input}.{signature}")).message


def test_a_token_signed_by_an_unpublished_key_is_refused():
    forged = tokens.token(key=tokens.new_signing_key())  # the published kid, another key
    assert "signature does not verify" in refused(bearer(forged)).message


def test_a_token_naming_an_unknown_key_is_refused():
    assert "does not publish" in refused(bearer(tokens.token(kid="someone-elses-key"))).message


def test_a_jku_header_is_never_followed():
    tenant = Tenant()
    attacker_key = tokens.new_signing_key()
    token = jwt.encode(
        tokens.claims(), attacker_key, algorithm="RS256", headers={"kid": "attacker", "jku": "https://attacker.example/keys"}
    )
    refused(bearer(token), verifier(tenant))
    assert tenant.fetches == 1  # the tenant's own location only, once: that first fetch answers for the unknown kid too


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"aud": "another-api"}, "another audience"),
        ({"aud": [tokens.API_CLIENT_ID, "another-api"]}, "another audience"),
        ({"iss": "https://login.microsoftonline.com/another-tenant/v2.0"}, "another issuer"),
        ({"iss": f"https://sts.windows.net/{tokens.TENANT_ID}/", "ver": "1.0"}, "another issuer"),  # a v1 token where v2 is configured
        ({"tid": "8a5b6c7d-0000-4000-8000-000000000000"}, "another tenant"),
        ({"ver": "1.0"}, "v1.0 token"),
        ({"exp": tokens.SecondsFromNow(-LEEWAY_SECONDS - 5)}, "expired"),
        ({"nbf": tokens.SecondsFromNow(LEEWAY_SECONDS + 60)}, "not valid yet"),
        ({"scp": "user_impersonation"}, "user's (delegated) token"),
        ({"idtyp": "user"}, "user's (delegated) token"),
        ({"oid": None}, "no oid claim"),
        ({"oid": "not-an-object-id"}, "not an object id"),
        ({"tid": None}, "no tid claim"),
        ({"exp": None}, "no exp claim"),
    ],
)
def test_a_token_with_a_wrong_claim_is_refused(overrides, message):
    assert message in refused(bearer(tokens.token(**overrides))).message


def test_leeway_accepts_a_token_just_expired():
    token = tokens.token(exp=int(time.time()) - LEEWAY_SECONDS + 10)
    assert verifier().verify(bearer(token)).object_id == tokens.SERVER_CALLER


def test_no_refusal_echoes_the_token():
    token = tokens.token(aud="another-api")
    error = refused(bearer(token))
    assert token not in error.message and token.split(".")[1] not in error.message


@pytest.fixture
def decodes(monkeypatch) -> list[int]:
    """Counts full verifications (PyJWT's decode) from here on."""
    calls: list[int] = []
    original = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    return calls


def test_a_verified_token_is_remembered_until_it_expires(decodes):
    now = [time.time()]
    verify = TokenVerifier(tokens.policy(), SigningKeys(Tenant().fetch), clock=lambda: now[0])
    token = bearer(tokens.token(exp=int(now[0]) + 100))
    for _ in range(3):
        verify.verify(token)
    assert len(decodes) == 1
    now[0] += 100  # its exp: remembered no longer, so verified in full again
    verify.verify(token)
    assert len(decodes) == 2


def test_a_remembered_token_of_a_key_no_longer_published_is_verified_again():
    tenant = Tenant()
    clock = Clock()
    verify = TokenVerifier(tokens.policy(), SigningKeys(tenant.fetch, clock, in_background=lambda run: run()))
    token = bearer(tokens.token())
    verify.verify(token)
    tenant.published = {"rolled-over": tokens.new_signing_key()}
    clock.now += REFRESH_AFTER_SECONDS  # the next call refreshes the keys, and the old one is gone
    verify.verify(bearer(tokens.token(key=tenant.published["rolled-over"], kid="rolled-over")))
    assert "does not publish" in refused(token, verify).message


# ---- the signing keys -----------------------------------------------------------------------------------------------


def test_keys_are_fetched_once_then_refreshed_in_the_background_after_an_hour():
    tenant, clock = Tenant(), Clock()
    background = []
    keys = SigningKeys(tenant.fetch, clock, in_background=background.append)
    keys.key(tokens.KID)
    keys.key(tokens.KID)
    assert tenant.fetches == 1 and background == []
    clock.now += REFRESH_AFTER_SECONDS
    keys.key(tokens.KID)
    keys.key(tokens.KID)  # a refresh is under way: no second one
    assert len(background) == 1 and tenant.fetches == 1
    background[0]()
    assert tenant.fetches == 2


def test_a_failed_refresh_keeps_the_last_good_keys():
    tenant, clock = Tenant(), Clock()
    keys = SigningKeys(tenant.fetch, clock, in_background=lambda run: run())
    keys.key(tokens.KID)
    tenant.failing = True
    clock.now += REFRESH_AFTER_SECONDS
    assert keys.key(tokens.KID) is not None  # the refresh failed; the key still serves
    assert keys.key(tokens.KID) is not None and tenant.fetches == 2  # and it is not retried at once


def test_a_cold_instance_without_keys_is_unavailable_and_does_not_retry_on_every_call():
    tenant, clock = Tenant(), Clock()
    tenant.failing = True
    keys = SigningKeys(tenant.fetch, clock)
    for _ in range(5):
        with pytest.raises(Unavailable):
            keys.key(tokens.KID)
    assert tenant.fetches == 1
    clock.now += RETRY_FAILED_FETCH_AFTER
    tenant.failing = False
    assert keys.key(tokens.KID) is not None and tenant.fetches == 2


def test_an_unknown_kid_refreshes_at_most_once_per_interval():
    tenant, clock = Tenant(), Clock()
    keys = SigningKeys(tenant.fetch, clock)
    keys.key(tokens.KID)
    with pytest.raises(Unauthenticated):
        keys.key("unknown")  # looked up: the tenant does not publish it
    for _ in range(50):
        with pytest.raises(Unavailable):
            keys.key("unknown")  # not looked up again so soon: retry, never a refusal of what may be a new key
    assert tenant.fetches == 2
    clock.now += UNKNOWN_KEY_REFRESH_INTERVAL
    new_key = tokens.new_signing_key()
    tenant.published = {**tenant.published, "new": new_key}
    assert keys.key("new").public_numbers() == new_key.public_key().public_numbers()
    assert tenant.fetches == 3


def test_a_key_the_tenant_starts_using_after_someone_spent_the_lookup_is_never_refused():
    tenant, clock = Tenant(), Clock()
    keys = SigningKeys(tenant.fetch, clock)
    keys.key(tokens.KID)
    with pytest.raises(Unauthenticated):
        keys.key("forged")  # an outsider spends this interval's lookup
    new_key = tokens.new_signing_key()
    tenant.published = {**tenant.published, "new": new_key}
    with pytest.raises(Unavailable):
        keys.key("new")  # a SPIRE server's token by the new key: retried, not refused
    clock.now += UNKNOWN_KEY_REFRESH_INTERVAL
    assert keys.key("new").public_numbers() == new_key.public_key().public_numbers()


def test_a_cold_instance_waits_for_one_fetch_at_most_its_deadline(monkeypatch):
    monkeypatch.setattr("shared.caller_tokens.JWKS_DEADLINE_SECONDS", 0.2)
    release = threading.Event()
    keys = SigningKeys(lambda: release.wait(10) and tokens.jwks())
    first = threading.Thread(target=lambda: keys.key(tokens.KID))
    first.start()
    time.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        keys.key(tokens.KID)
    assert time.monotonic() - started < 1
    release.set()
    first.join(5)
    assert keys.key(tokens.KID) is not None


def test_an_unknown_kid_whose_refresh_fails_is_unavailable():
    tenant, clock = Tenant(), Clock()
    keys = SigningKeys(tenant.fetch, clock)
    keys.key(tokens.KID)
    tenant.failing = True
    with pytest.raises(Unavailable):
        keys.key("rolled-over")
    assert keys.key(tokens.KID) is not None  # the known key still serves


def test_a_fetch_for_an_unknown_kid_holds_no_caller_of_a_known_key():
    tenant, clock = Tenant(), Clock()
    release = threading.Event()
    fetching = threading.Event()
    keys = SigningKeys(tenant.fetch, clock)
    keys.key(tokens.KID)

    def slow_fetch() -> dict:
        fetching.set()
        release.wait(10)
        return tenant.fetch()

    keys._fetch = slow_fetch
    unknown = threading.Thread(target=lambda: pytest.raises(Unauthenticated, keys.key, "unknown"))
    unknown.start()
    assert fetching.wait(5)
    started = time.monotonic()
    for _ in range(100):
        keys.key(tokens.KID)  # no wait on the slow fetch
    with pytest.raises(Unavailable):
        keys.key("another-unknown")  # nor for another unknown kid: answered at once, to retry
    assert time.monotonic() - started < 1
    release.set()
    unknown.join(5)


def test_jwks_parsing_takes_rsa_signature_keys_only():
    small = rsa.generate_private_key(65537, 1024)
    document = tokens.jwks({"good": tokens.SIGNING_KEY, "small": small})
    document["keys"] += [{"kty": "EC", "kid": "ec"}, {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"}, "junk"]
    assert set(parse_jwks(document)) == {"good"}
    with pytest.raises(ValueError):
        parse_jwks({"keys": []})
