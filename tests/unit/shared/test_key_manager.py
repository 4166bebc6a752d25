import hashlib
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from shared.algorithms import HashAlgorithm, KeyType, SignerOptions
from shared.errors import FailedPrecondition, InvalidArgument, NotFound
from shared.key_manager import KeyManager, SignRequest
from shared.public_keys import fingerprint
from tests.unit.fakes import FakeVault, FixedIdentity

SERVER_ID = "0b1c3f0e-8a5e-4c1e-9a55-7bd0c1f7f0a1"
OTHER_SERVER = "11111111-2222-3333-4444-555555555555"
TD = "example.org"
TAGS = {"spire-server-td": TD, "spire-server-id": SERVER_ID}
DIGEST_256 = hashlib.sha256(b"x").digest()


@pytest.fixture
def vault():
    return FakeVault()


@pytest.fixture
def manager(vault):
    return KeyManager(vault, FixedIdentity(SERVER_ID), TD)


def name(key_id: str) -> str:
    return f"spire-key-{SERVER_ID}-{key_id}"


def sign(manager, key_id="a", data=DIGEST_256, options=SignerOptions(HashAlgorithm.SHA256), fp=None):
    return manager.sign_data(SignRequest(key_id, data, options, fp))


def test_generate_creates_a_tagged_key_and_returns_its_public_key(manager, vault):
    public = manager.generate_key("a", KeyType.EC_P256)
    created = vault.keys[name("a").lower()][-1]
    assert created.tags == TAGS
    assert public.id == "a" and public.type is KeyType.EC_P256
    assert public.pkix_data == created.pkix_data
    assert public.fingerprint == fingerprint(created.pkix_data)
    assert vault.names() == ["create_key"]


def test_rotation_adds_a_version_that_becomes_current(manager, vault):
    first = manager.generate_key("a", KeyType.EC_P256)
    second = manager.generate_key("a", KeyType.RSA_2048)
    assert len(vault.keys[name("a").lower()]) == 2
    assert second.fingerprint != first.fingerprint
    assert manager.get_public_key("a") == second


def test_get_public_key_costs_one_request(manager, vault):
    manager.generate_key("a", KeyType.EC_P384)
    vault.calls.clear()
    manager.get_public_key("a")
    assert vault.names() == ["get_key"]


def test_unknown_key_is_not_found_with_spire_wording(manager):
    with pytest.raises(NotFound, match='key "missing" not found'):
        manager.get_public_key("missing")


def test_key_with_our_name_but_another_trust_domain_is_not_found(manager, vault):
    vault.add_version(name("a"), KeyType.EC_P256, {**TAGS, "spire-server-td": "other.org"})
    with pytest.raises(NotFound):
        manager.get_public_key("a")


def test_disabled_key_is_a_failed_precondition(manager, vault):
    vault.add_version(name("a"), KeyType.EC_P256, TAGS, enabled=False)
    with pytest.raises(FailedPrecondition, match="disabled"):
        manager.get_public_key("a")


def test_public_keys_lists_only_this_servers_enabled_keys_in_this_trust_domain(manager, vault):
    manager.generate_key("b", KeyType.EC_P256)
    manager.generate_key("a", KeyType.RSA_2048)
    vault.add_version(f"spire-key-{OTHER_SERVER}-a", KeyType.EC_P256, {**TAGS, "spire-server-id": OTHER_SERVER})
    vault.add_version(name("other-td"), KeyType.EC_P256, {**TAGS, "spire-server-td": "other.org"})
    vault.add_version(name("untagged"), KeyType.EC_P256, {})
    vault.add_version(name("disabled"), KeyType.EC_P256, TAGS, enabled=False)
    vault.add_version("unrelated", KeyType.EC_P256, TAGS)
    assert [key.id for key in manager.get_public_keys()] == ["a", "b"]


def test_sign_without_fingerprint_reads_the_current_version_then_signs_it(manager, vault):
    public = manager.generate_key("a", KeyType.RSA_2048)
    vault.calls.clear()
    result = sign(manager)
    assert vault.names() == ["get_key", "sign"]
    assert vault.calls[1][3] == "RS256"
    assert result.key_fingerprint == public.fingerprint


def test_warm_sign_with_fingerprint_costs_one_request(manager, vault):
    public = manager.generate_key("a", KeyType.EC_P256)
    vault.calls.clear()
    sign(manager, fp=public.fingerprint)
    assert vault.names() == ["sign"]


def test_sign_with_fingerprint_of_an_older_version_signs_with_that_version(manager, vault):
    old = manager.generate_key("a", KeyType.EC_P256)
    manager.generate_key("a", KeyType.EC_P256)
    old_version = vault.keys[name("a").lower()][0].version
    result = sign(manager, fp=old.fingerprint)
    assert vault.calls[-1][2] == old_version
    assert result.key_fingerprint == old.fingerprint


def test_cold_sign_with_fingerprint_learns_the_versions_once(vault):
    KeyManager(vault, FixedIdentity(SERVER_ID), TD).generate_key("a", KeyType.EC_P256)
    target = vault.keys[name("a").lower()][0]
    cold = KeyManager(vault, FixedIdentity(SERVER_ID), TD)
    vault.calls.clear()
    sign(cold, fp=fingerprint(target.pkix_data))
    assert vault.names() == ["list_versions", "get_key", "sign"]
    vault.calls.clear()
    sign(cold, fp=fingerprint(target.pkix_data))
    assert vault.names() == ["sign"]


def test_unknown_fingerprint_is_a_failed_precondition(manager):
    manager.generate_key("a", KeyType.EC_P256)
    with pytest.raises(FailedPrecondition, match="fingerprint"):
        sign(manager, fp="0" * 64)


def test_ecdsa_signatures_come_back_der_encoded(manager):
    manager.generate_key("a", KeyType.EC_P256)
    assert decode_dss_signature(sign(manager).signature) == (1, 2)


def test_digest_length_must_match_the_hash(manager):
    manager.generate_key("a", KeyType.RSA_2048)
    with pytest.raises(InvalidArgument, match="SHA384 digest of 48 bytes, not 32"):
        sign(manager, options=SignerOptions(HashAlgorithm.SHA384))


def test_ec_key_with_wrong_hash_is_refused_before_key_vault_signs(manager, vault):
    manager.generate_key("a", KeyType.EC_P256)
    vault.calls.clear()
    with pytest.raises(InvalidArgument, match="unsupported combination of key type: ec-p256 and hashing algorithm: SHA384"):
        sign(manager, data=hashlib.sha384(b"x").digest(), options=SignerOptions(HashAlgorithm.SHA384))
    assert "sign" not in vault.names()


def test_pss_uses_ps_algorithms(manager, vault):
    manager.generate_key("a", KeyType.RSA_4096)
    sign(manager, data=hashlib.sha512(b"x").digest(), options=SignerOptions(HashAlgorithm.SHA512, pss=True))
    assert vault.calls[-1][3] == "PS512"


def test_sign_unknown_key_is_not_found(manager):
    with pytest.raises(NotFound, match='key "nope" not found'):
        sign(manager, key_id="nope")
    with pytest.raises(NotFound, match='key "nope" not found'):
        sign(manager, key_id="nope", fp="0" * 64)


def _later_clock(seconds: float):
    return lambda: datetime.now(timezone.utc) + timedelta(seconds=seconds)


def test_warm_listing_with_nothing_changed_costs_only_the_listing(vault):
    manager = KeyManager(vault, FixedIdentity(SERVER_ID), TD, clock=_later_clock(60))
    manager.generate_key("a", KeyType.EC_P256)
    manager.generate_key("b", KeyType.EC_P256)
    first = manager.get_public_keys()
    vault.calls.clear()
    assert manager.get_public_keys() == first
    assert vault.names() == ["list_keys"]


def test_a_key_whose_updated_time_moved_is_read_again(vault):
    manager = KeyManager(vault, FixedIdentity(SERVER_ID), TD, clock=_later_clock(60))
    manager.generate_key("a", KeyType.EC_P256)
    manager.get_public_keys()
    rotated = manager.generate_key("a", KeyType.EC_P384)
    vault.calls.clear()
    assert manager.get_public_keys() == [rotated]
    assert vault.names() == ["list_keys", "get_key"]


def test_keys_read_within_the_settle_time_of_their_update_are_read_again(vault):
    manager = KeyManager(vault, FixedIdentity(SERVER_ID), TD, clock=_later_clock(1))
    manager.generate_key("a", KeyType.EC_P256)
    manager.get_public_keys()
    vault.calls.clear()
    manager.get_public_keys()
    assert vault.names() == ["list_keys", "get_key"]
