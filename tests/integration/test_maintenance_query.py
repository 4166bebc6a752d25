"""The maintenance endpoints' query strings over HTTP, through devhost on the local stack.

devhost hands query parameters to the app as the Functions host does (empty values dropped, repeated
ones joined), so these are the requests Azure would deliver: a malformed one must run nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import requests

from tests.hermetic import start_app_host
from tests.integration.conftest import make_app
from tests.integration.test_maintenance import FIFTEEN_DAYS, key_exists

# code= was a function key; callers are proven by their tokens now, and it is an unknown parameter like any other.
MALFORMED_SWEEPS = [
    "dry_run=",
    "dry_run",
    "dry_run=true&dry_run=false",
    "dryrun=true",
    "dry_run=TRUE",
    "dry_run=1",
    "dry_run=true&",
    "code=an-admin-key&dry_run=false",
]
MALFORMED_REFRESHES = ["dry_run=true", "code=k&code=k", "force="]


@pytest.fixture
def api(app_env):
    """This server: devhost serving the app on the stack, with a metadata blob (so a server id) of its own."""
    host = start_app_host(app_env)
    yield host.url + "/api"
    host.stop()


def created_key(vault_admin, create: Callable[[], object]) -> str:
    """The name of the one key that ``create`` adds to the vault."""
    before = {key.name for key in vault_admin.list_properties_of_keys()}
    create()
    (name,) = {key.name for key in vault_admin.list_properties_of_keys()} - before
    return name


@pytest.fixture
def abandoned_key(app_env, monkeypatch, callers, vault_admin) -> str:
    """A key of another server of this trust domain; once the vault's clock moves on, sweeps delete it."""
    other = make_app({**app_env, "KEY_METADATA_BLOB": f"t{uuid.uuid4().hex[:20]}/key-metadata"}, monkeypatch, callers)
    return created_key(vault_admin, lambda: other.generate("abandoned", "ec-p256"))


@pytest.fixture
def maintainer_post(callers) -> Callable[[str], tuple[int, dict]]:
    """POST to a URL as the maintainer: its status and JSON body."""

    def post(url: str) -> tuple[int, dict]:
        response = requests.post(url, headers=callers.headers(callers.maintainer), timeout=60)
        return response.status_code, response.json()

    return post


def test_malformed_queries_are_400_and_nothing_runs(api, callers, maintainer_post, abandoned_key, shift_vault_time, vault_admin):
    own_key = created_key(
        vault_admin,
        lambda: requests.post(
            f"{api}/keys", json={"key_id": "mine", "key_type": "ec-p256"}, headers=callers.headers(), timeout=60
        ).raise_for_status(),
    )
    shift_vault_time(FIFTEEN_DAYS)
    for query in MALFORMED_SWEEPS:
        status, body = maintainer_post(f"{api}/maintenance/sweep?{query}")
        assert (status, body["error"]["code"]) == (400, "InvalidArgument"), query
    for query in MALFORMED_REFRESHES:
        status, body = maintainer_post(f"{api}/maintenance/refresh?{query}")
        assert (status, body["error"]["code"]) == (400, "InvalidArgument"), query
    assert key_exists(vault_admin, abandoned_key)  # no sweep ran
    not_refreshed = datetime.now(UTC) - vault_admin.get_key(own_key).properties.updated_on
    assert not_refreshed > timedelta(days=14)  # no refresh ran


def test_a_dry_run_reports_what_the_real_run_then_deletes(api, maintainer_post, abandoned_key, shift_vault_time, vault_admin):
    shift_vault_time(FIFTEEN_DAYS)
    status, dry = maintainer_post(f"{api}/maintenance/sweep?dry_run=true")
    assert status == 200 and dry["dry_run"] is True
    assert dry["candidates"] == [abandoned_key] and dry["deleted"] == [] and key_exists(vault_admin, abandoned_key)
    status, real = maintainer_post(f"{api}/maintenance/sweep?dry_run=false")
    assert status == 200 and real["dry_run"] is False
    assert real["candidates"] == real["deleted"] == dry["candidates"]
    assert not key_exists(vault_admin, abandoned_key)


def test_refresh_without_a_query_runs_and_a_sweep_without_dry_run_does_not(
    api, maintainer_post, abandoned_key, shift_vault_time, vault_admin
):
    assert maintainer_post(f"{api}/maintenance/refresh") == (200, {"refreshed": [], "failed": [], "failed_servers": []})
    shift_vault_time(FIFTEEN_DAYS)
    status, body = maintainer_post(f"{api}/maintenance/sweep")
    assert (status, body["error"]["code"]) == (400, "InvalidArgument")
    assert "dry_run=true" in body["error"]["message"] and "dry_run=false" in body["error"]["message"]
    assert key_exists(vault_admin, abandoned_key)  # no sweep ran
