"""The server-id policy over an in-memory store: create once, adopt, re-check, restore, stop, record use.

The store keeps the conditional semantics of the id blobs (create only where there is nothing, write
use only over the ETag given) and records each request, so tests can count them.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import Unavailable
from shared.identity_port import Absent, NotAnId, Stored, UseRecord
from shared.server_ids import RECHECK_INTERVAL, USE_RECORD_INTERVAL, StoredServerDirectory, StoredServerIdentity

START = datetime(2026, 1, 1, tzinfo=UTC)
_etags = itertools.count()


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class MemoryIdStore:
    """One id record in memory; ``content`` None while there is none."""

    label = "server id record r"

    def __init__(self, content: str | None = None, last_used: datetime | None = None) -> None:
        self.content = content
        self.last_used = last_used
        self.etag = f"e{next(_etags)}"
        self.requests: list[str] = []
        self.unchanged_answers = 0
        self.failing = False
        # Run once, just before the next create: another instance's write that wins the race.
        self.before_create: Callable[[], None] | None = None

    def put(self, content: str | None, last_used: datetime | None = None) -> None:
        self.content, self.last_used, self.etag = content, last_used, f"e{next(_etags)}"

    def read(self):
        self._request("read")
        return self._found()

    def read_if_changed(self, etag: str):
        self._request("read if changed")
        if self.content is not None and etag == self.etag:
            self.unchanged_answers += 1
            return Absent.UNCHANGED
        return self._found()

    def create(self, server_id: str, now: datetime) -> str | None:
        self._request("create")
        if self.before_create is not None:
            self.before_create, run = None, self.before_create
            run()
        if self.content is not None:
            return None
        self.put(server_id, now)
        return self.etag

    def record_use(self, server_id: str, now: datetime, etag: str) -> str | None:
        self._request("record use")
        if self.content is None or etag != self.etag:
            return None
        self.put(server_id, now)
        return self.etag

    def _request(self, name: str) -> None:
        self.requests.append(name)
        if self.failing:
            raise Unavailable(f"could not reach the {self.label}")

    def _found(self) -> Stored | NotAnId | Absent:
        if self.content is None:
            return Absent.MISSING
        try:
            return Stored(str(uuid.UUID(self.content)), self.etag, self.last_used)
        except ValueError:
            return NotAnId(f"the {self.label} does not hold a server id (a UUID); it was left untouched")


class MemoryIdStores:
    def __init__(self) -> None:
        self.by_name: dict[str | None, MemoryIdStore] = {}
        self.listed_without_id: set[str | None] = set()  # records written before records named their id

    def store(self, server_name: str | None) -> MemoryIdStore:
        return self.by_name.setdefault(server_name, MemoryIdStore())

    def records(self) -> list[UseRecord]:
        return [
            UseRecord(name, None if name in self.listed_without_id else store.content, store.last_used)
            for name, store in self.by_name.items()
            if store.content is not None
        ]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> MemoryIdStore:
    return MemoryIdStore()


def serving(store: MemoryIdStore, clock: Clock) -> tuple[StoredServerIdentity, str]:
    """An identity that has served its id, with the store's requests so far cleared."""
    identity = StoredServerIdentity(store, clock)
    known = identity.server_id()
    store.requests.clear()
    return identity, known


def test_first_use_creates_an_id_that_other_instances_adopt(store, clock):
    created = StoredServerIdentity(store, clock).server_id()
    assert store.requests == ["read", "create"] and store.content == created and store.last_used == START
    assert StoredServerIdentity(store, clock).server_id() == created


def test_an_instance_that_loses_the_race_to_create_adopts_the_winners_id(store, clock):
    winner = str(uuid.uuid4())
    store.before_create = lambda: store.put(winner)
    assert StoredServerIdentity(store, clock).server_id() == winner
    assert store.content == winner


def test_a_record_created_and_gone_again_is_reported_and_nothing_is_created(store, clock):
    identity = StoredServerIdentity(store, clock)
    store.create = lambda server_id, now: None  # another created it, and it was deleted before the read
    with pytest.raises(Unavailable, match="created and is gone again"):
        identity.server_id()
    assert store.content is None
    del store.create  # the next attempt's create succeeds
    assert identity.server_id() == store.content


def test_a_failed_first_read_mints_nothing_and_the_next_call_reads_again(store, clock):
    store.failing = True
    identity = StoredServerIdentity(store, clock)
    for _ in range(2):
        with pytest.raises(Unavailable):
            identity.server_id()
    assert store.requests == ["read", "read"] and store.content is None


def test_a_record_that_holds_no_id_is_unavailable_and_left_untouched(store, clock):
    store.put("not a uuid")
    with pytest.raises(Unavailable, match="left untouched"):
        StoredServerIdentity(store, clock).server_id()
    assert store.content == "not a uuid" and "create" not in store.requests


def test_an_unchanged_record_costs_one_conditional_read_each_interval(store, clock):
    identity, known = serving(store, clock)
    clock.advance(RECHECK_INTERVAL - timedelta(seconds=1))
    assert identity.server_id() == known and store.requests == []
    clock.advance(timedelta(seconds=1))
    assert identity.server_id() == known and identity.server_id() == known
    assert store.requests == ["read if changed"]


def test_a_missing_record_is_restored_with_the_known_id(store, clock, caplog):
    identity, known = serving(store, clock)
    store.put(None)
    clock.advance(RECHECK_INTERVAL)
    assert identity.server_id() == known
    assert store.content == known and store.requests == ["read if changed", "create"]
    assert "restored it with the known server id" in caplog.text


def test_a_record_restored_first_by_another_instance_with_another_id_stops_the_server(store, clock):
    identity, known = serving(store, clock)
    store.put(None)
    other = str(uuid.uuid4())
    store.before_create = lambda: store.put(other)
    clock.advance(RECHECK_INTERVAL)
    with pytest.raises(Unavailable, match="holds another server id"):
        identity.server_id()
    assert store.content == other


def test_another_id_stops_the_server_once_logged_until_the_record_holds_its_id_again(store, clock, caplog):
    identity, known = serving(store, clock)
    store.put(str(uuid.uuid4()))
    clock.advance(RECHECK_INTERVAL)
    for _ in range(3):
        with pytest.raises(Unavailable, match="holds another server id"):
            identity.server_id()
    with pytest.raises(Unavailable, match="holds another server id"):
        identity.confirm()
    assert [r.levelname for r in caplog.records if r.getMessage().startswith("Stopping")] == ["ERROR"]
    clock.advance(RECHECK_INTERVAL)
    with pytest.raises(Unavailable, match="holds another server id"):
        identity.server_id()
    assert store.unchanged_answers == 2  # the confirm's and this re-check's: a replaced record costs a 304
    assert identity.conflict is not None
    store.put(known)
    assert identity.confirm() == known and identity.conflict is None
    assert "serving resumes" in caplog.text


def test_a_stopped_server_whose_record_is_deleted_restores_it(store, clock):
    identity, known = serving(store, clock)
    store.put(str(uuid.uuid4()))
    with pytest.raises(Unavailable):
        identity.confirm()
    store.put(None)
    assert identity.confirm() == known and store.content == known


def test_a_record_that_comes_to_hold_no_id_stops_the_server_and_is_left_untouched(store, clock):
    identity, _ = serving(store, clock)
    store.put("garbage")
    clock.advance(RECHECK_INTERVAL)
    with pytest.raises(Unavailable, match="left untouched"):
        identity.server_id()
    assert store.content == "garbage" and "create" not in store.requests


def test_a_failed_recheck_serves_on_and_is_retried_after_the_interval_not_on_every_call(store, clock, caplog):
    identity, known = serving(store, clock)
    store.failing = True
    clock.advance(RECHECK_INTERVAL)
    for _ in range(5):
        assert identity.server_id() == known
    assert store.requests == ["read if changed"]
    assert "serving on with the known server id" in caplog.text
    clock.advance(RECHECK_INTERVAL)
    identity.server_id()
    assert store.requests == ["read if changed", "read if changed"]


def test_maintenance_runs_only_on_an_id_confirmed_now(store, clock):
    identity, known = serving(store, clock)
    assert identity.confirm() == known and store.requests == ["read if changed"]  # whatever the interval
    store.failing = True
    with pytest.raises(Unavailable, match="could not reach"):
        identity.confirm()
    store.failing = False
    assert identity.confirm() == known


def test_use_is_written_once_an_interval(store, clock):
    identity, _ = serving(store, clock)  # created with its use recorded
    for _ in range(10):
        identity.record_use()
    assert store.requests == [] and identity.last_used == START
    clock.advance(USE_RECORD_INTERVAL)
    for _ in range(10):
        identity.record_use()
    assert store.requests == ["record use"] and store.last_used == clock.now
    clock.advance(RECHECK_INTERVAL)
    identity.server_id()
    assert store.requests == ["record use", "read if changed"]  # the write's ETag is the one known


def test_an_instance_that_reads_a_fresh_use_record_does_not_write_it_again(store, clock):
    serving(store, clock)
    other, _ = serving(store, clock)
    other.record_use()
    assert store.requests == []


def test_use_is_never_written_over_a_replaced_record(store, clock):
    identity, known = serving(store, clock)
    other = str(uuid.uuid4())
    store.put(other)
    clock.advance(USE_RECORD_INTERVAL)
    identity.record_use()
    assert store.content == other and store.last_used is None  # the write lost its condition
    assert store.requests == ["record use", "read if changed"]  # and the record was re-checked at once
    with pytest.raises(Unavailable, match="holds another server id"):
        identity.server_id()


def test_a_failed_use_record_waits_out_the_interval(store, clock):
    identity, _ = serving(store, clock)
    clock.advance(USE_RECORD_INTERVAL)
    store.failing = True
    identity.record_use()
    identity.record_use()
    assert store.requests == ["record use"]


def test_a_named_server_without_a_readable_use_counts_as_used(clock):
    stores = MemoryIdStores()
    directory = StoredServerDirectory(stores, clock)
    for name in ("recent", "unknown", "quiet"):
        directory.identity(name).server_id()
    stores.store("unknown").last_used = None
    stores.store("quiet").last_used = START - timedelta(days=20)
    directory.identity(None).server_id()
    assert directory.names_used_since(START - timedelta(days=14)) == ["recent", "unknown"]


def test_recorded_use_reads_a_record_whose_listing_names_no_id_and_is_incomplete_when_it_cannot(clock):
    stores = MemoryIdStores()
    directory = StoredServerDirectory(stores, clock)
    ids = {name: directory.identity(name).server_id() for name in (None, "a", "b")}
    stores.listed_without_id = {"a", "b"}
    stores.store("b").put("garbage", START)
    recorded = directory.recorded_use()
    assert recorded.last_used == {ids[None]: START, ids["a"]: START} and not recorded.complete
    stores.store("b").failing = True
    assert not directory.recorded_use().complete
    stores.store("b").put(None)
    stores.store("b").failing = False
    assert directory.recorded_use().complete


def test_recorded_use_of_one_id_in_two_records_is_unknown_if_either_is(clock):
    stores = MemoryIdStores()
    shared_id = str(uuid.uuid4())
    stores.store("a").put(shared_id, START)
    stores.store("b").put(shared_id, START + timedelta(hours=1))
    directory = StoredServerDirectory(stores, clock)
    assert directory.recorded_use().last_used == {shared_id: START + timedelta(hours=1)}
    stores.store("c").put(shared_id, None)
    assert directory.recorded_use().last_used == {shared_id: None}
