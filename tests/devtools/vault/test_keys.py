"""Key lifecycle through the real KeyClient, plus the REST details the SDK hides."""

from __future__ import annotations

import re
import uuid

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.keys import KeyClient, KeyType

from .conftest import Running

VERSION = re.compile(r"[0-9a-f]{32}")


def test_create_rsa_and_ec_keys(localvault: Running, key_client: KeyClient, name: str) -> None:
    rsa_key = key_client.create_rsa_key(f"{name}-rsa", size=2048, tags={"purpose": "test"})
    assert rsa_key.key_type == KeyType.rsa
    assert len(rsa_key.key.n) == 256 and rsa_key.key.e == b"\x01\x00\x01"
    assert rsa_key.id == f"{localvault.vault_url}/keys/{name}-rsa/{rsa_key.properties.version}"
    assert VERSION.fullmatch(rsa_key.properties.version)
    assert rsa_key.properties.enabled is True
    assert rsa_key.properties.tags == {"purpose": "test"}
    assert rsa_key.properties.recovery_level == "Recoverable+Purgeable"
    assert rsa_key.properties.recoverable_days == 90
    assert rsa_key.properties.created_on == rsa_key.properties.updated_on
    assert "sign" in rsa_key.key_operations

    ec_key = key_client.create_ec_key(f"{name}-ec", curve="P-521", hardware_protected=True)
    assert ec_key.key_type == KeyType.ec_hsm
    assert ec_key.key.crv == "P-521"
    assert len(ec_key.key.x) == len(ec_key.key.y) == 66
    assert sorted(ec_key.key_operations) == ["sign", "verify"]


def test_new_version_on_create_and_latest_wins(key_client: KeyClient, name: str) -> None:
    first = key_client.create_ec_key(name, curve="P-256")
    second = key_client.create_rsa_key(name.upper(), size=2048)  # names are case-insensitive
    assert second.name == name  # the name as first created
    assert second.properties.version != first.properties.version

    latest = key_client.get_key(name)
    assert latest.properties.version == second.properties.version and latest.key_type == KeyType.rsa
    older = key_client.get_key(name, first.properties.version)
    assert older.key_type == KeyType.ec and older.id == first.id

    versions = {p.version for p in key_client.list_properties_of_key_versions(name)}
    assert versions == {first.properties.version, second.properties.version}


def test_list_keys_pages_through_every_key(
    localvault: Running, auth: dict[str, str], key_client: KeyClient
) -> None:
    prefix = f"page-{uuid.uuid4().hex[:8]}"
    names = {f"{prefix}-{i:02d}" for i in range(30)}
    for key_name in names:
        key_client.create_ec_key(key_name, curve="P-256")

    pages = list(key_client.list_properties_of_keys().by_page())
    assert len(pages) >= 2
    listed = [p for page in pages for p in page]
    assert names <= {p.name for p in listed}
    assert all(p.version is None for p in listed)  # items carry unversioned ids

    small = [list(page) for page in key_client.list_properties_of_keys(max_page_size=7).by_page()]
    assert all(len(page) <= 7 for page in small) and sum(map(len, small)) == len(listed)

    first = requests.get(f"{localvault.vault_url}/keys", params={"api-version": "7.5", "maxresults": 25},
                         headers=auth, verify=localvault.ca, timeout=5).json()
    assert len(first["value"]) == 25
    assert first["nextLink"].startswith(f"{localvault.vault_url}/keys?")
    assert "$skiptoken=" in first["nextLink"] and "api-version=7.5" in first["nextLink"]
    too_big = requests.get(f"{localvault.vault_url}/keys", params={"maxresults": 26}, headers=auth,
                           verify=localvault.ca, timeout=5)
    assert too_big.status_code == 400


def test_update_properties_of_one_version(
    localvault: Running, auth: dict[str, str], key_client: KeyClient, name: str
) -> None:
    first = key_client.create_ec_key(name, curve="P-256", tags={"a": "1"})
    second = key_client.create_ec_key(name, curve="P-256", tags={"a": "1"})
    updated = key_client.update_key_properties(name, first.properties.version, enabled=False, tags={"b": "2"})
    assert updated.properties.enabled is False and updated.properties.tags == {"b": "2"}
    assert updated.properties.updated_on >= first.properties.updated_on
    untouched = key_client.get_key(name, second.properties.version)
    assert untouched.properties.enabled is True and untouched.properties.tags == {"a": "1"}

    only_ops = key_client.update_key_properties(name, first.properties.version, key_operations=["verify"])
    assert only_ops.key_operations == ["verify"] and only_ops.properties.tags == {"b": "2"}

    for path in (f"/keys/{name}", f"/keys/{name}/"):
        response = requests.patch(f"{localvault.vault_url}{path}", json={"tags": {}}, headers=auth,
                                  verify=localvault.ca, timeout=5)
        assert response.status_code == 405
        assert response.json()["error"]["code"] == "MethodNotAllowed"


def test_delete_blocks_the_name_until_purged(key_client: KeyClient, name: str) -> None:
    created = key_client.create_ec_key(name, curve="P-256")
    key_client.create_ec_key(name, curve="P-256")
    deletion = key_client.begin_delete_key(name)
    deletion.wait()  # the deletion takes effect a moment after it is answered
    deleted = deletion.result()
    assert deleted.recovery_id.endswith(f"/deletedkeys/{name}")
    assert deleted.scheduled_purge_date > deleted.deleted_date
    with pytest.raises(ResourceNotFoundError):
        key_client.get_key(name)
    with pytest.raises(ResourceNotFoundError):
        key_client.get_key(name, created.properties.version)
    with pytest.raises(ResourceExistsError) as conflict:
        key_client.create_ec_key(name, curve="P-256")
    assert conflict.value.status_code == 409
    assert "deleted but recoverable state" in conflict.value.message
    assert conflict.value.response.json()["error"]["innererror"]["code"] == "ObjectIsDeletedButRecoverable"
    assert name in {k.name for k in key_client.list_deleted_keys()}
    assert name not in {k.name for k in key_client.list_properties_of_keys()}
    with pytest.raises(ResourceNotFoundError):
        key_client.begin_delete_key(name).result()

    recovery = key_client.begin_recover_deleted_key(name)
    recovery.wait()
    recovered = recovery.result()
    assert recovered.name == name
    assert len(list(key_client.list_properties_of_key_versions(name))) == 2

    key_client.begin_delete_key(name).wait()
    key_client.purge_deleted_key(name)
    with pytest.raises(ResourceNotFoundError):
        key_client.get_deleted_key(name)
    fresh = key_client.create_ec_key(name, curve="P-256")
    assert [p.version for p in key_client.list_properties_of_key_versions(name)] == [fresh.properties.version]


def test_time_shift_moves_timestamps_back(
    localvault: Running, auth: dict[str, str], key_client: KeyClient, name: str
) -> None:
    before = key_client.create_ec_key(name, curve="P-256").properties
    response = requests.put(f"{localvault.vault_url}/management/vault/time/all", params={"seconds": 3600},
                            verify=localvault.ca, timeout=5)
    assert response.status_code == 204
    after = key_client.get_key(name).properties
    assert (before.updated_on - after.updated_on).total_seconds() == 3600
    assert (before.created_on - after.created_on).total_seconds() == 3600
    for bad in ("0", "-5", "soon", ""):
        response = requests.put(f"{localvault.vault_url}/management/vault/time/all", params={"seconds": bad},
                                verify=localvault.ca, timeout=5)
        assert response.status_code == 400


def test_bad_requests_get_key_vault_errors(
    localvault: Running, auth: dict[str, str], key_client: KeyClient, name: str
) -> None:
    def call(method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{localvault.vault_url}{path}", headers=auth, verify=localvault.ca,
                                timeout=5, **kwargs)

    with pytest.raises(ResourceNotFoundError):
        key_client.get_key(name)
    with pytest.raises(HttpResponseError) as bad_name:
        key_client.create_ec_key("not_a_valid_name", curve="P-256")
    assert bad_name.value.status_code == 400
    cases = [
        (call("GET", f"/keys/{name}"), 404, "KeyNotFound"),
        (call("POST", f"/keys/{name}/create", data=b"{not json"), 400, "BadParameter"),
        (call("POST", f"/keys/{name}/create", json={"kty": "oct"}), 400, "BadParameter"),
        (call("POST", f"/keys/{name}/create", json={"kty": "RSA", "key_size": 1024}), 400, "BadParameter"),
        (call("POST", f"/keys/{name}/create", json={"kty": "EC", "crv": "P-256K"}), 400, "BadParameter"),
        (call("POST", f"/keys/{name}/create", json={"kty": "EC", "key_ops": ["fly"]}), 400, "BadParameter"),
        (call("GET", "/secrets/whatever"), 404, None),
        (call("DELETE", f"/deletedkeys/{name}"), 404, "KeyNotFound"),
        (call("POST", f"/deletedkeys/{name}/recover"), 404, "KeyNotFound"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.request.url
        if code:
            assert response.json()["error"]["code"] == code


def test_time_shift_past_the_purge_date_purges_deleted_keys(
    localvault: Running, key_client: KeyClient, name: str
) -> None:
    key_client.create_ec_key(name, curve="P-256")
    key_client.begin_delete_key(name).result()
    response = requests.put(f"{localvault.vault_url}/management/vault/time/all", params={"seconds": 90 * 86400},
                            verify=localvault.ca, timeout=5)
    assert response.status_code == 204
    with pytest.raises(ResourceNotFoundError):
        key_client.get_deleted_key(name)
    key_client.create_ec_key(name, curve="P-256")  # the name is free again
