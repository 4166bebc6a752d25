import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from shared.algorithms import HashAlgorithm, KeyType, SignerOptions
from shared.errors import FailedPrecondition, InvalidArgument, KeyManagerError, NotFound, Unavailable
from shared.key_manager import KeyManager, SignRequest
from shared.naming import KeyNaming
from shared.public_keys import fingerprint
from shared.vault_port import LATEST
from tests.unit.fakes import FixedIdentity, InMemoryVault

SERVER_ID = "0b1c3f0e-8a5e-4c1e-9a55-7bd0c1f7f0a1"
OTHER_SERVER = "11111111-2222-3333-4444-555555555555"
TD = "example.org"
TAGS = {"spire-server-td": TD, "spire-server-id": SERVER_ID}
OTHER_TAGS = {"spire-server-td": TD, "spire-server-id": OTHER_SERVER}
DIGEST_256 = hashlib.sha256(b"x").digest()


@pytest.fixture
def vault():
    return InMemoryVault()


@pytest.fixture
def manager(vault):
    return KeyManager(vault, FixedIdentity(SERVER_ID), TD)


def name(key_id: str) -> str:
    return KeyNaming(TD, SERVER_ID).key_name(key_id)


def sign(manager, key_id="a", data=DIGEST_256, options=SignerOptions(HashAlgorithm.SHA256), fp=None):
    return manager.sign_data(SignRequest(key_id, data, options, fp))


def cold(vault) -> KeyManager:
    """Another instance of the same server: it has seen nothing yet."""
    return KeyManager(vault, FixedIdentity(SERVER_ID), TD)


# --- generate ---------------------------------------------------------------------------------------------------------


def test_generate_creates_a_tagged_key_and_returns_its_public_key(manager, vault):
    public = manager.generate_key("a", KeyType.EC_P256)
    created = vault.keys[name("a").lower()][-1]
    assert created.tags == TAGS
    assert public.id == "a" and public.type is KeyType.EC_P256
    assert public.pkix_data == created.pkix_data
    assert public.fingerprint == fingerprint(created.pkix_data)
    assert vault.names() == ["get_key", "create_key"]  # whose the name is, then the key


def test_rotation_adds_a_version_that_becomes_current(manager, vault):
    first = manager.generate_key("a", KeyType.EC_P256)
    second = manager.generate_key("a", KeyType.RSA_2048)
    assert len(vault.keys[name("a").lower()]) == 2
    assert second.fingerprint != first.fingerprint
    assert manager.get_public_key("a") == second


def test_a_name_held_by_another_servers_key_is_refused_and_left_alone(manager, vault):
    vault.add_version(name("a"), KeyType.EC_P256, OTHER_TAGS)
    with pytest.raises(FailedPrecondition, match="belongs to another server"):
        manager.generate_key("a", KeyType.EC_P256)
    assert "create_key" not in vault.names() and len(vault.keys[name("a").lower()]) == 1


def test_a_key_id_whose_key_was_deleted_is_recovered_then_rotated(manager, vault):
    old = manager.generate_key("a", KeyType.EC_P256)
    vault.delete_key(name("a"))
    vault.calls.clear()
    new = manager.generate_key("a", KeyType.EC_P384)
    assert vault.names() == ["get_key", "create_key", "recover_deleted_key", "create_key"]
    assert [v.key_type for v in vault.keys[name("a").lower()]] == [KeyType.EC_P256, KeyType.EC_P384]
    assert manager.get_public_key("a") == new != old


def test_a_deleted_key_another_request_recovers_first_is_unavailable_not_a_wrong_not_found(manager, vault, monkeypatch):
    manager.generate_key("a", KeyType.EC_P256)
    vault.delete_key(name("a"))
    refused_create = vault.create_key

    def create_then_another_request_recovers(*args):
        try:
            return refused_create(*args)
        finally:
            vault.recover_deleted_key(name("a"))  # the other request, between this one's create and recover

    monkeypatch.setattr(vault, "create_key", create_then_another_request_recovers)
    with pytest.raises(Unavailable, match='key "a" is being recovered by another request'):
        manager.generate_key("a", KeyType.EC_P256)


def test_another_servers_deleted_key_is_not_recovered_for_good(manager, vault):
    vault.add_version(name("a"), KeyType.EC_P256, OTHER_TAGS)
    vault.delete_key(name("a"))
    with pytest.raises(FailedPrecondition, match="belongs to another server"):
        manager.generate_key("a", KeyType.EC_P256)
    assert name("a").lower() in vault.deleted and name("a").lower() not in vault.keys
    assert vault.names().count("create_key") == 1


# --- read -------------------------------------------------------------------------------------------------------------


def test_get_public_key_costs_one_request(manager, vault):
    manager.generate_key("a", KeyType.EC_P384)
    vault.calls.clear()
    manager.get_public_key("a")
    assert vault.names() == ["get_key"]


def test_unknown_key_is_not_found_with_spire_wording(manager):
    with pytest.raises(NotFound, match='^key "missing" not found$'):
        manager.get_public_key("missing")


def test_disabled_key_is_a_failed_precondition_naming_the_key_id(manager, vault):
    vault.add_version(name("a"), KeyType.EC_P256, TAGS, enabled=False)
    with pytest.raises(FailedPrecondition, match='key "a" is disabled'):
        manager.get_public_key("a")


def test_public_keys_lists_only_this_servers_enabled_keys_in_this_trust_domain(manager, vault):
    manager.generate_key("b", KeyType.EC_P256)
    manager.generate_key("a", KeyType.RSA_2048)
    vault.add_version(KeyNaming(TD, OTHER_SERVER).key_name("a"), KeyType.EC_P256, OTHER_TAGS)
    vault.add_version(KeyNaming("other.org", SERVER_ID).key_name("a"), KeyType.EC_P256, {**TAGS, "spire-server-td": "other.org"})
    vault.add_version(name("other-td"), KeyType.EC_P256, {**TAGS, "spire-server-td": "other.org"})
    vault.add_version(name("untagged"), KeyType.EC_P256, {})
    vault.add_version(name("disabled"), KeyType.EC_P256, TAGS, enabled=False)
    vault.add_version("unrelated", KeyType.EC_P256, TAGS)
    assert [key.id for key in manager.get_public_keys()] == ["a", "b"]


# --- one ownership rule on every path ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tags",
    [OTHER_TAGS, {**TAGS, "spire-server-td": "other.org"}, {}, {"spire-server-td": TD}],
    ids=["another server", "another trust domain", "untagged", "half tagged"],
)
def test_a_key_under_this_servers_name_that_is_not_its_own_is_never_used(manager, vault, tags):
    foreign = vault.add_version(name("a"), KeyType.EC_P256, tags)
    with pytest.raises(NotFound, match='key "a" not found'):
        manager.get_public_key("a")
    with pytest.raises(NotFound, match='key "a" not found'):
        sign(manager)
    with pytest.raises(NotFound, match='key "a" not found'):
        sign(manager, fp=fingerprint(foreign.pkix_data))
    with pytest.raises(FailedPrecondition, match="belongs to another server"):
        manager.generate_key("a", KeyType.EC_P256)
    assert manager.get_public_keys() == []
    assert manager.refresh().refreshed == []
    assert not {"sign", "create_key", "update_key_operations"} & set(vault.names())
    assert vault.keys[name("a").lower()] == [foreign]


def test_listing_and_refresh_agree_on_which_keys_are_this_servers(manager, vault):
    manager.generate_key("mine", KeyType.EC_P256)
    vault.add_version("hand-made-with-our-tags", KeyType.EC_P256, TAGS)
    vault.add_version(name("retagged"), KeyType.EC_P256, OTHER_TAGS)
    listed = [name(key.id) for key in manager.get_public_keys()]
    assert listed == [name("mine")] and manager.refresh().refreshed == listed


def retag_after_listing(vault, key_id: str) -> list:
    """The vault's listing as it was, then ``key_id``'s key re-tagged for another server before it is read."""
    listing = list(vault.list_keys())
    versions = vault.keys[name(key_id).lower()]
    versions[-1] = dataclasses.replace(versions[-1], tags=OTHER_TAGS)
    vault.list_keys = lambda: iter(listing)
    return listing


def test_listing_and_refresh_skip_a_key_retagged_between_the_listing_and_its_read(manager, vault):
    manager.generate_key("mine", KeyType.EC_P256)
    manager.generate_key("retagged", KeyType.EC_P256)
    listing = retag_after_listing(vault, "retagged")
    assert [key.id for key in manager.get_public_keys()] == ["mine"]
    vault.calls.clear()
    assert manager.refresh(listing).refreshed == [name("mine")]
    assert [call[1] for call in vault.calls if call[0] == "update_key_operations"] == [name("mine")]


def test_a_warm_sign_does_not_sign_with_a_key_retagged_to_another_server_at_a_new_version(manager, vault):
    manager.generate_key("a", KeyType.EC_P256)
    vault.add_version(name("a"), KeyType.EC_P256, OTHER_TAGS)  # someone wrote a version for another server
    with pytest.raises(NotFound):
        sign(manager)


# --- sign -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_fingerprint", [False, True])
def test_a_warm_sign_costs_one_request_with_or_without_fingerprint(manager, vault, with_fingerprint):
    public = manager.generate_key("a", KeyType.RSA_2048)
    vault.calls.clear()
    result = sign(manager, fp=public.fingerprint if with_fingerprint else None)
    assert vault.calls == [("sign", name("a"), LATEST, "RS256")]
    assert result.key_fingerprint == public.fingerprint


def test_a_cold_sign_of_a_key_with_200_versions_costs_two_requests(manager, vault):
    for _ in range(199):
        vault.add_version(name("a"), KeyType.EC_P256, TAGS)
    current = manager.generate_key("a", KeyType.EC_P256)
    instance = cold(vault)
    vault.calls.clear()
    assert sign(instance, fp=current.fingerprint).key_fingerprint == current.fingerprint
    assert vault.calls == [("get_key", name("a"), LATEST), ("sign", name("a"), current.version, "ES256")]  # the version read signs
    vault.calls.clear()
    sign(instance, fp=current.fingerprint)
    assert vault.names() == ["sign"]


@pytest.mark.parametrize(
    "new_type, requests",
    [
        (KeyType.EC_P256, [("sign", "ES256"), ("get_key",)]),  # the new version's facts, read once
        (KeyType.RSA_2048, [("sign", "ES256"), ("get_key",), ("sign", "RS256")]),  # ES256 refused: read, then sign
    ],
)
def test_a_rotation_through_another_instance_signs_with_the_new_key_at_once(manager, vault, new_type, requests):
    manager.generate_key("a", KeyType.EC_P256)
    rotated = cold(vault).generate_key("a", new_type)
    vault.calls.clear()
    assert sign(manager).key_fingerprint == rotated.fingerprint
    assert [call[0::3] for call in vault.calls] == requests
    vault.calls.clear()
    sign(manager)
    assert vault.names() == ["sign"]


def test_a_rotation_to_another_type_between_read_and_sign_signs_with_the_version_read(vault):
    old = cold(vault).generate_key("a", KeyType.EC_P256)
    read_key = vault.get_key

    def read_then_another_instance_rotates(key_name, version=LATEST):
        read = read_key(key_name, version)
        vault.get_key = read_key
        vault.add_version(key_name, KeyType.RSA_2048, TAGS)
        return read

    vault.get_key = read_then_another_instance_rotates
    manager = cold(vault)
    assert sign(manager).key_fingerprint == old.fingerprint  # the version read signs, by its own algorithm
    assert [call[2:] for call in vault.calls if call[0] == "sign"] == [(old.version, "ES256")]
    vault.calls.clear()
    new = vault.keys[name("a").lower()][-1]
    assert sign(manager).key_fingerprint == fingerprint(new.pkix_data)
    assert [call[0::2] for call in vault.calls] == [("sign", LATEST), ("get_key", LATEST), ("sign", new.version)]  # ES256 refused
    vault.calls.clear()
    sign(manager)
    assert vault.calls == [("sign", name("a"), LATEST, "RS256")]  # the instance still signs by the empty version


def test_a_key_retagged_for_another_server_is_not_found_by_the_next_read(manager, vault):
    manager.generate_key("a", KeyType.EC_P256)
    versions = vault.keys[name("a").lower()]
    versions[-1] = dataclasses.replace(versions[-1], tags=OTHER_TAGS)  # re-tagged by hand in Key Vault
    with pytest.raises(NotFound):
        manager.get_public_key("a")
    assert manager.get_public_keys() == []
    with pytest.raises(NotFound):
        sign(manager)  # the read above renewed what this instance knows of the version


def test_an_overwritten_key_never_signs_again(manager, vault):
    # SPIRE's KeyManager contract: after GenerateKey overwrites a key id, the old key must not sign.
    old = manager.generate_key("id", KeyType.EC_P256)
    manager.generate_key("id", KeyType.RSA_2048)
    for instance in (manager, cold(vault)):
        with pytest.raises(FailedPrecondition, match='key "id" has been rotated') as refused:
            sign(instance, key_id="id", fp=old.fingerprint)
        assert not hasattr(refused.value, "signature")


def test_a_fingerprint_that_is_not_the_current_versions_gets_no_signature(manager):
    manager.generate_key("a", KeyType.EC_P256)
    with pytest.raises(FailedPrecondition, match="rotated"):
        sign(manager, fp="0" * 64)


def test_a_missing_key_does_not_pass_for_a_vault_that_cannot_sign_by_the_empty_version(manager, vault):
    manager.generate_key("a", KeyType.EC_P256)
    vault.keys.pop(name("a").lower())
    with pytest.raises(NotFound, match='key "a" not found'):
        sign(manager)
    manager.generate_key("b", KeyType.EC_P256)
    vault.calls.clear()
    sign(manager, key_id="b")
    assert vault.calls == [("sign", name("b"), LATEST, "ES256")]


def test_a_key_disabled_or_without_sign_is_a_failed_precondition_naming_the_key_id(manager, vault):
    manager.generate_key("a", KeyType.EC_P256)
    vault.add_version(name("a"), KeyType.EC_P256, TAGS, key_ops=("verify",))
    with pytest.raises(FailedPrecondition, match='^key "a" cannot be used: its key operations'):
        sign(manager)
    vault.add_version(name("a"), KeyType.EC_P256, TAGS, enabled=False)
    with pytest.raises(FailedPrecondition, match='^key "a" cannot be used: it is disabled'):
        sign(manager)


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


def test_no_error_names_a_key_vault_key_or_the_server_id(manager, vault):
    errors: list[KeyManagerError] = []
    manager.generate_key("rotated", KeyType.EC_P256)
    old = manager.generate_key("rotated", KeyType.EC_P256)
    manager.generate_key("rotated", KeyType.EC_P256)
    vault.add_version(name("disabled"), KeyType.EC_P256, TAGS, enabled=False)
    vault.add_version(name("foreign"), KeyType.EC_P256, OTHER_TAGS)
    manager.generate_key("deleted", KeyType.EC_P256)
    vault.delete_key(name("deleted"))
    vault.add_version(name("deleted-foreign"), KeyType.EC_P256, OTHER_TAGS)
    vault.delete_key(name("deleted-foreign"))
    attempts = [
        lambda: manager.get_public_key("missing"),
        lambda: manager.get_public_key("disabled"),
        lambda: sign(manager, key_id="disabled"),
        lambda: sign(manager, key_id="foreign"),
        lambda: manager.generate_key("foreign", KeyType.EC_P256),
        lambda: manager.generate_key("deleted-foreign", KeyType.EC_P256),
        lambda: sign(manager, key_id="rotated", fp=old.fingerprint),
        lambda: sign(manager, key_id="k" * 84),
    ]
    for attempt in attempts:
        with pytest.raises(KeyManagerError) as raised:
            attempt()
        errors.append(raised.value)
    namespace = name("x").removeprefix("spire-key-").removesuffix("-x")
    for error in errors:
        assert SERVER_ID not in error.message and namespace not in error.message, error.message
        assert len(error.message) < 200


# --- the listing cache ------------------------------------------------------------------------------------------------


def _later_clock(seconds: float):
    return lambda: datetime.now(UTC) + timedelta(seconds=seconds)


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


@pytest.mark.parametrize("read_after, requests", [(5, ["list_keys", "get_key"]), (5.001, ["list_keys"])])
def test_a_key_is_read_again_until_5_seconds_after_its_update(read_after, requests):
    updated = datetime(2026, 1, 1, tzinfo=UTC)
    vault = InMemoryVault(clock=lambda: updated)
    manager = KeyManager(vault, FixedIdentity(SERVER_ID), TD, clock=lambda: updated + timedelta(seconds=read_after))
    manager.generate_key("a", KeyType.EC_P256)
    manager.get_public_keys()
    vault.calls.clear()
    manager.get_public_keys()
    assert vault.names() == requests
