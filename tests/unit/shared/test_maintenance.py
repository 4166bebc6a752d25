"""The staleness rule and the refresh and sweep runs, with an injected clock and an in-process vault."""

from datetime import UTC, datetime, timedelta

import pytest

from shared.algorithms import KeyType
from shared.errors import NotFound, Unavailable
from shared.key_manager import KeyManager
from shared.maintenance import RecordedUse, SweepPolicy, is_stale
from shared.naming import KeyNaming
from shared.vault_port import KeySummary
from tests.unit.fakes import FixedIdentity, InMemoryVault

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
AGE = timedelta(days=14)
ME, OTHER, TD = "me-0000", "other-1111", "example.org"


def mine(key_id: str) -> str:
    return KeyNaming(TD, ME).key_name(key_id)


def others(key_id: str) -> str:
    return KeyNaming(TD, OTHER).key_name(key_id)


def summary(tags, updated=NOW - AGE - timedelta(seconds=1)):
    return KeySummary(others("k"), tags, True, updated)


@pytest.mark.parametrize(
    "tags, stale",
    [
        ({"spire-server-td": TD, "spire-server-id": OTHER}, True),
        ({"spire-server-td": TD, "spire-server-id": ME}, False),  # named in another namespace than its tags say
        ({"spire-server-td": TD, "spire-server-id": "third-2222"}, False),
        ({"spire-server-td": "other.org", "spire-server-id": OTHER}, False),
        ({"spire-server-td": TD}, False),
        ({"spire-server-td": TD, "spire-server-id": ""}, False),
        ({"spire-server-id": OTHER}, False),
        ({}, False),
    ],
)
def test_only_other_servers_keys_of_this_trust_domain_can_be_stale(tags, stale):
    assert is_stale(summary(tags), TD, ME, NOW, AGE, RecordedUse()) is stale


@pytest.mark.parametrize(
    "updated, stale",
    [
        (NOW - AGE - timedelta(seconds=1), True),
        (NOW - AGE, False),
        (NOW - AGE + timedelta(seconds=1), False),
        (NOW, False),
        (None, False),
    ],
)
def test_a_key_is_stale_only_when_older_than_the_age(updated, stale):
    assert is_stale(summary({"spire-server-td": TD, "spire-server-id": OTHER}, updated), TD, ME, NOW, AGE, RecordedUse()) is stale


@pytest.mark.parametrize(
    "recorded_use, stale",
    [
        (RecordedUse({OTHER: NOW - AGE - timedelta(seconds=1)}), True),
        (RecordedUse({OTHER: NOW - AGE}), False),  # called within the age: the refresh missed a live server
        (RecordedUse({OTHER: None}), False),  # its blob has no readable record: use unknown
        (RecordedUse({"third-2222": NOW}, complete=False), False),  # some blob unread: it may be OTHER's
        (RecordedUse({"third-2222": NOW}), True),  # no blob of OTHER's: Updated alone speaks for it
    ],
)
def test_an_aged_key_is_stale_only_when_its_servers_recorded_use_is_old_too(recorded_use, stale):
    aged = summary({"spire-server-td": TD, "spire-server-id": OTHER})
    assert is_stale(aged, TD, ME, NOW, AGE, recorded_use) is stale


def _manager(vault, server_id=ME, max_deletions=100, now=NOW + AGE + timedelta(days=1), recorded_use=RecordedUse()):
    return KeyManager(
        vault, FixedIdentity(server_id), TD, SweepPolicy(AGE, max_deletions), clock=lambda: now, recorded_use=lambda: recorded_use
    )


def _add(vault, name, server_id, td=TD):
    vault.add_version(name, KeyType.EC_P256, {"spire-server-td": td, "spire-server-id": server_id})


@pytest.fixture
def vault():
    vault = InMemoryVault(clock=lambda: NOW)  # keys written at NOW; the managers judge them later
    for i in range(3):
        _add(vault, others(f"k{i}"), OTHER)
    _add(vault, mine("mine"), ME)
    _add(vault, KeyNaming("other.org", OTHER).key_name("a"), OTHER, td="other.org")
    vault.add_version("untagged", KeyType.EC_P256, {})
    return vault


def test_sweep_deletes_only_stale_keys_of_other_servers(vault):
    report = _manager(vault).sweep()
    stale = [others(f"k{i}") for i in range(3)]
    assert report.candidates == stale and report.deleted == stale
    assert not report.failed and not report.cap_reached
    assert sorted(vault.keys) == sorted([mine("mine").lower(), KeyNaming("other.org", OTHER).key_name("a").lower(), "untagged"])


def test_sweep_keeps_the_keys_of_a_server_that_called_within_the_age_though_not_refreshed(vault, caplog):
    later = NOW + AGE + timedelta(days=1)
    report = _manager(vault, now=later, recorded_use=RecordedUse({OTHER: later - timedelta(days=1)})).sweep()
    assert report.candidates == [] and "delete_key" not in vault.names()
    assert "3 keys not refreshed for the stale age whose servers still call" in caplog.text


def test_sweep_keeps_the_keys_of_a_server_whose_use_cannot_be_determined(vault, caplog):
    report = _manager(vault, recorded_use=RecordedUse({OTHER: None})).sweep()
    assert report.candidates == [] and "delete_key" not in vault.names()
    assert "3 keys whose servers' use could not be determined" in caplog.text


def test_sweep_reads_the_recorded_use_once_a_run(vault):
    reads = []
    manager = KeyManager(
        vault,
        FixedIdentity(ME),
        TD,
        SweepPolicy(AGE),
        clock=lambda: NOW + AGE + timedelta(days=1),
        recorded_use=lambda: reads.append(1) or RecordedUse(),
    )
    assert len(manager.sweep().deleted) == 3 and reads == [1]


def test_dry_run_lists_candidates_and_deletes_nothing(vault):
    report = _manager(vault).sweep(dry_run=True)
    assert len(report.candidates) == 3 and report.deleted == [] and report.dry_run
    assert "delete_key" not in vault.names()


def test_a_dry_run_says_whether_the_cap_would_stop_a_real_run(vault):
    assert _manager(vault, max_deletions=2).sweep(dry_run=True).cap_reached is True
    assert _manager(vault, max_deletions=3).sweep(dry_run=True).cap_reached is False


def _after_the_listing(vault, change) -> None:
    """Make ``change`` happen once the sweep has listed the keys, before it deletes any."""
    listed = vault.list_keys

    def list_then_change():
        yield from listed()
        change()

    vault.list_keys = list_then_change


def test_a_candidate_refreshed_by_its_owner_after_the_listing_is_kept(vault):
    def refresh():
        vault.updated[others("k0").lower()] = NOW + AGE + timedelta(days=1)

    _after_the_listing(vault, refresh)
    report = _manager(vault).sweep()
    assert len(report.candidates) == 3 and report.deleted == [others("k1"), others("k2")]
    assert others("k0").lower() in vault.keys


def test_a_candidate_rotated_by_its_owner_after_the_listing_is_kept(vault):
    def rotate():
        vault.add_version(others("k1"), KeyType.EC_P384, {"spire-server-td": TD, "spire-server-id": OTHER})
        vault.updated[others("k1").lower()] = NOW + AGE + timedelta(days=1)

    _after_the_listing(vault, rotate)
    report = _manager(vault).sweep()
    assert report.deleted == [others("k0"), others("k2")]
    assert len(vault.keys[others("k1").lower()]) == 2


def test_a_candidate_deleted_after_the_listing_counts_as_deleted(vault):
    _after_the_listing(vault, lambda: vault.keys.pop(others("k2").lower()))
    assert _manager(vault).sweep().deleted == [others(f"k{i}") for i in range(3)]


def test_young_keys_are_kept(vault):
    report = _manager(vault, now=NOW).sweep()
    assert report.candidates == [] and "delete_key" not in vault.names()


def test_the_cap_stops_a_run_and_the_next_run_goes_on(vault):
    report = _manager(vault, max_deletions=2).sweep()
    assert len(report.deleted) == 2 and report.cap_reached
    assert vault.names().count("delete_key") == 2
    report = _manager(vault, max_deletions=2).sweep()
    assert len(report.deleted) == 1 and not report.cap_reached


def test_a_key_already_gone_counts_as_deleted_and_other_failures_are_reported(vault):
    vault.failing[others("k0")] = NotFound("gone")
    vault.failing[others("k1")] = Unavailable("Key Vault did not answer")
    report = _manager(vault).sweep()
    assert report.deleted == [others("k0"), others("k2")]
    assert [(f.key_name, f.error) for f in report.failed] == [(others("k1"), "Key Vault did not answer")]


def test_refresh_updates_each_own_key_with_its_operations_unchanged(vault):
    _add(vault, mine("second"), ME)
    vault.calls.clear()
    report = _manager(vault).refresh()
    assert report.refreshed == [mine("mine"), mine("second")] and not report.failed
    updates = [call for call in vault.calls if call[0] == "update_key_operations"]
    assert [(c[1], c[3]) for c in updates] == [(name, ("sign", "verify")) for name in report.refreshed]
    assert vault.names().count("get_key") == 2  # two requests per key, plus the listing


def test_one_failing_refresh_does_not_stop_the_others(vault):
    _add(vault, mine("second"), ME)
    vault.failing[mine("mine")] = Unavailable("Key Vault failed to answer (HTTP 503)")
    report = _manager(vault).refresh()
    assert report.refreshed == [mine("second")]
    assert [f.key_name for f in report.failed] == [mine("mine")]


def test_refresh_includes_disabled_keys(vault):
    vault.add_version(mine("disabled"), KeyType.EC_P256, {"spire-server-td": TD, "spire-server-id": ME}, enabled=False)
    assert _manager(vault).refresh().refreshed == [mine("mine"), mine("disabled")]
