"""Several SPIRE servers and trust domains on one local Key Vault: none can read, sign with, rotate,
refresh or sweep another's keys, whatever their ids spell."""

from __future__ import annotations

import uuid

import pytest

from shared.naming import KeyNaming
from shared.ownership import owner_tags
from tests.integration.conftest import App, Callers, is_soft_deleted_soon, make_app
from tests.integration.verify import digest, verify

FIFTEEN_DAYS = 15 * 24 * 3600


def make_server_app(app_env: dict[str, str], monkeypatch, callers: Callers, server_id: str, trust_domain: str, **settings: str) -> App:
    """An app instance of a server whose id is configured (KEY_IDENTIFIER_VALUE, so no metadata blob)."""
    monkeypatch.delenv("KEY_METADATA_BLOB", raising=False)
    env = {name: value for name, value in app_env.items() if name != "KEY_METADATA_BLOB"}
    # A configured id serves the default server alone: the callers may name no other.
    env.update(callers.settings(server_names=("",)))
    return make_app({**env, "TRUST_DOMAIN": trust_domain, "KEY_IDENTIFIER_VALUE": server_id, **settings}, monkeypatch, callers)


@pytest.fixture
def server(app_env, monkeypatch, callers):
    def start(server_id: str, trust_domain: str = app_env["TRUST_DOMAIN"]) -> App:
        return make_server_app(app_env, monkeypatch, callers, server_id, trust_domain)

    return start


@pytest.fixture
def suffix() -> str:
    return uuid.uuid4().hex[:8]  # server ids of their own: the vault outlives each test


def _signs_with(app, key_id: str, public_key: dict) -> None:
    data = digest("SHA256")
    status, body = app.sign(key_id, data, hash_algorithm="SHA256")
    assert status == 200, body
    assert body["key_fingerprint"] == public_key["fingerprint"]
    verify(public_key, body["signature"], data, "SHA256")


@pytest.mark.parametrize(
    "first, second",
    [
        # Server "a" with key id "b-x" and server "a-b" with key id "x" once shared a Key Vault name.
        (("s{}", "b-x", None), ("s{}-b", "x", None)),
        # Two trust domains with one server id once shared every name.
        (("s{}", "x509-CA-A", "one-{}.example.org"), ("s{}", "x509-CA-A", "two-{}.example.org")),
    ],
    ids=["dashes in server and key ids", "one server id in two trust domains"],
)
def test_servers_whose_ids_once_collided_keep_their_own_keys(server, suffix, first, second):
    apps, keys = [], []
    for server_id, key_id, trust_domain in (first, second):
        args = [server_id.format(suffix)] + ([trust_domain.format(suffix)] if trust_domain else [])
        app = server(*args)
        status, generated = app.generate(key_id, "ec-p256")
        assert status == 200, generated
        apps.append(app)
        keys.append((key_id, generated["public_key"]))
    assert keys[0][1]["fingerprint"] != keys[1][1]["fingerprint"]
    for app, (key_id, public_key) in zip(apps, keys):
        assert app.get(key_id) == (200, {"public_key": public_key})
        assert app.list() == (200, {"public_keys": [public_key]})
        _signs_with(app, key_id, public_key)


def test_a_key_under_a_servers_name_tagged_for_another_is_never_used(server, suffix, vault_admin):
    me, other = f"me-{suffix}", f"other-{suffix}"
    mine = server(me)
    trust_domain = mine.manager.naming().trust_domain
    name = KeyNaming(trust_domain, me).key_name("x509-CA-A")
    planted = vault_admin.create_ec_key(name, curve="P-256", tags=owner_tags(trust_domain, other))
    for app in (mine, server(other)):
        assert app.get("x509-CA-A")[0] == 404
        status, body = app.sign("x509-CA-A", digest("SHA256"), hash_algorithm="SHA256")
        assert (status, body["error"]["message"]) == (404, 'key "x509-CA-A" not found')
        assert app.list() == (200, {"public_keys": []})
        assert app.refresh() == (200, {"refreshed": [], "failed": [], "failed_servers": []})
    status, body = mine.generate("x509-CA-A", "ec-p256")
    assert status == 409 and body["error"]["code"] == "FailedPrecondition"
    assert body["error"]["message"] == 'key id "x509-CA-A" cannot be generated: its Key Vault key name belongs to another server'
    status, _ = mine.sign("x509-CA-A", digest("SHA256"), hash_algorithm="SHA256", key_fingerprint="0" * 64)
    assert status == 404
    # Nothing was rotated, re-tagged or refreshed.
    versions = list(vault_admin.list_properties_of_key_versions(name))
    assert [v.version for v in versions] == [planted.properties.version]
    current = vault_admin.get_key(name)
    assert current.properties.tags == owner_tags(trust_domain, other)
    assert current.properties.updated_on == planted.properties.updated_on


def test_a_sweep_keeps_a_key_its_owner_refreshed_after_the_listing(server, suffix, shift_vault_time, vault_admin):
    owner, sweeper = server(f"owner-{suffix}"), server(f"sweeper-{suffix}")
    for key_id in ("a", "b"):
        owner.generate(key_id, "ec-p256")
    names = {key_id: owner.manager.naming().key_name(key_id) for key_id in ("a", "b")}
    shift_vault_time(FIFTEEN_DAYS)
    listed = sweeper.manager._vault.list_keys

    def listing_then_owner_refreshes():
        yield from listed()
        assert owner.refresh()[1]["refreshed"] == sorted(names.values())

    sweeper.manager._vault.list_keys = listing_then_owner_refreshes
    status, report = sweeper.sweep()
    assert status == 200 and sorted(report["candidates"]) == sorted(names.values())
    assert report["deleted"] == [] and report["failed"] == []
    for key_id, name in names.items():
        assert vault_admin.get_key(name).name == name
        assert owner.get(key_id)[0] == 200


def test_a_server_never_sweeps_its_own_keys_nor_another_trust_domains(server, suffix, shift_vault_time, vault_admin):
    me = server(f"me-{suffix}")
    same_id_elsewhere = server(f"me-{suffix}", f"elsewhere-{suffix}.example.org")
    me.generate("a", "ec-p256")
    same_id_elsewhere.generate("a", "ec-p256")
    shift_vault_time(FIFTEEN_DAYS)
    for app in (me, same_id_elsewhere):
        status, report = app.sweep()
        assert status == 200 and report["candidates"] == []
        assert app.get("a")[0] == 200


def test_a_swept_key_id_is_recovered_and_rotated_by_its_owner(server, suffix, shift_vault_time, vault_admin):
    owner, sweeper = server(f"owner-{suffix}"), server(f"sweeper-{suffix}")
    _, old = owner.generate("x509-CA-B", "ec-p256")
    name = owner.manager.naming().key_name("x509-CA-B")
    shift_vault_time(FIFTEEN_DAYS)
    assert sweeper.sweep()[1]["deleted"] == [name]
    assert owner.get("x509-CA-B")[0] == 404

    status, new = owner.generate("x509-CA-B", "rsa-2048")
    assert status == 200, new
    assert new["public_key"]["type"] == "rsa-2048" and new != old
    assert len(list(vault_admin.list_properties_of_key_versions(name))) == 2  # recovered, then rotated
    assert owner.get("x509-CA-B") == (200, new)
    _signs_with(owner, "x509-CA-B", new["public_key"])
    status, body = owner.sign("x509-CA-B", digest("SHA256"), hash_algorithm="SHA256", key_fingerprint=old["public_key"]["fingerprint"])
    assert status == 409


def test_a_deleted_key_under_a_servers_name_tagged_for_another_is_not_taken_over(server, suffix, vault_admin):
    me = server(f"me-{suffix}")
    trust_domain = me.manager.naming().trust_domain
    name = KeyNaming(trust_domain, me.manager.naming().server_id).key_name("a")
    vault_admin.create_ec_key(name, curve="P-256", tags=owner_tags(trust_domain, f"other-{suffix}"))
    vault_admin.begin_delete_key(name).wait()
    status, body = me.generate("a", "ec-p256")
    assert status == 409 and "belongs to another server" in body["error"]["message"]
    assert is_soft_deleted_soon(vault_admin, name)  # deleted again once recovered and found another's
    assert me.get("a")[0] == 404
