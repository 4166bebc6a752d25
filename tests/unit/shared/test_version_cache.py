from datetime import UTC, datetime, timedelta

import pytest

from shared.algorithms import KeyType
from shared.public_keys import fingerprint
from shared.vault_port import KeySummary, KeyVersion
from shared.version_cache import VersionCache, VersionFacts
from tests.unit.fakes import public_der

UPDATED = datetime(2026, 1, 1, tzinfo=UTC)
DER = public_der(KeyType.EC_P256)


def version(name: str = "Key", number: str = "v1", key_type: KeyType | None = KeyType.EC_P256) -> KeyVersion:
    return KeyVersion(name, number, key_type, DER, True, updated_on=UPDATED)


def listed(updated_on: datetime | None = UPDATED, name: str = "key") -> KeySummary:
    return KeySummary(name, {}, True, updated_on)


def test_a_versions_facts_are_remembered_under_its_name_in_any_case():
    cache = VersionCache()
    facts = cache.remember(version("Key"), ours=True)
    assert facts == VersionFacts(KeyType.EC_P256, fingerprint(DER), True)
    assert cache.facts("KEY", "v1") == facts and cache.facts("key", "v2") is None


def test_a_version_of_no_spire_type_has_no_fingerprint():
    assert VersionCache().remember(version(key_type=None), ours=True) == VersionFacts(None, "", True)


def test_each_read_renews_whose_a_version_is():
    cache = VersionCache()
    cache.remember(version(), ours=True)
    assert cache.remember(version(), ours=False).ours is False
    assert cache.facts("key", "v1").ours is False


def test_the_version_last_seen_current_is_a_hint_by_name_in_any_case():
    cache = VersionCache()
    facts = cache.remember(version(), ours=True)
    assert cache.last_current("key") is None
    cache.saw_current("Key", facts)
    assert cache.last_current("KEY") == facts


def test_the_least_recently_written_entry_is_forgotten_beyond_the_capacity():
    cache = VersionCache(capacity=2)
    cache.remember(version(number="v1"), ours=True)
    cache.remember(version(number="v2"), ours=True)
    cache.remember(version(number="v1"), ours=False)  # written again: whose it is changed
    cache.remember(version(number="v3"), ours=True)
    assert cache.facts("key", "v1") is not None and cache.facts("key", "v2") is None and cache.facts("key", "v3") is not None


def test_a_read_after_a_listing_serves_while_the_listing_shows_the_same_settled_updated_time():
    cache = VersionCache()
    current = version()
    cache.read_after_listing(listed(), UPDATED + timedelta(seconds=6), current)
    assert cache.listed_current(listed(name="KEY")) == current
    assert cache.listed_current(listed(UPDATED + timedelta(seconds=1))) is None  # rotated or refreshed since


@pytest.mark.parametrize("read_after", [timedelta(seconds=0), timedelta(seconds=5)])
def test_a_read_within_the_settle_time_of_the_update_is_not_trusted(read_after):
    # Key Vault's Updated has one-second granularity: a change in the same second keeps it.
    cache = VersionCache()
    cache.read_after_listing(listed(), UPDATED + read_after, version())
    assert cache.listed_current(listed()) is None


def test_a_listing_without_an_updated_time_is_not_remembered():
    cache = VersionCache()
    cache.read_after_listing(listed(None), UPDATED + timedelta(minutes=1), version())
    assert cache.listed_current(listed(None)) is None
