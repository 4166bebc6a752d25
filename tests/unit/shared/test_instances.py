"""The rule that tells two live plugin processes under one server name from a restart."""

import pytest

from shared.errors import InvalidArgument, Unavailable
from shared.instances import MAX_IDS_PER_SERVER, RECORD_READ_SECONDS, Instances, SharedInstances, parse_instance_id, shared_name_message

A = "a" * 32
B = "b" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000 * 60.0

    def __call__(self) -> float:
        return self.now

    def minutes(self, count: float) -> None:
        self.now += count * 60


@pytest.fixture
def clock():
    return Clock()


def both_call_each_minute(instances, clock, minutes, name="spire-a"):
    for _ in range(minutes):
        instances.note(name, A)
        instances.note(name, B)
        clock.minutes(1)


def test_two_ids_calling_in_three_shared_minutes_overlap(clock):
    instances = Instances(clock)
    both_call_each_minute(instances, clock, 2)
    instances.note("spire-a", A)
    assert not instances.overlaps("spire-a")
    instances.note("spire-a", B)
    assert instances.overlaps("spire-a")
    assert instances.overlapping() == ["spire-a"]
    assert not instances.overlaps("spire-b")


def test_one_id_calling_alone_never_overlaps(clock):
    instances = Instances(clock)
    for _ in range(20):
        instances.note(None, A)
        clock.minutes(0.5)
    assert not instances.overlaps(None)
    assert instances.overlapping() == []


def test_ids_under_different_names_do_not_overlap(clock):
    instances = Instances(clock)
    for _ in range(5):
        instances.note("spire-a", A)
        instances.note("spire-b", B)
        clock.minutes(1)
    assert instances.overlapping() == []


@pytest.mark.parametrize("overlap_seconds", [0, 1, 30, 59])
@pytest.mark.parametrize("restart_at_second", [0, 20, 59.5])
def test_a_restart_never_overlaps_even_when_both_call_for_up_to_a_minute(clock, overlap_seconds, restart_at_second):
    instances = Instances(clock)
    clock.now += restart_at_second
    for _ in range(10):  # the old process, calling every ten seconds
        instances.note("spire-a", A)
        assert not instances.overlaps("spire-a")
        clock.now += 10
    start = clock.now - overlap_seconds  # the new process started that long before the old one's last call
    clock.now = start
    for _ in range(60):
        if clock.now <= start + overlap_seconds:
            instances.note("spire-a", A)
        instances.note("spire-a", B)
        assert not instances.overlaps("spire-a")
        clock.now += 10


def test_the_overlap_ends_once_one_process_stops(clock):
    instances = Instances(clock)
    both_call_each_minute(instances, clock, 4)
    instances.note("spire-a", B)
    assert instances.overlaps("spire-a"), "A called in the minute before"
    clock.minutes(1)
    instances.note("spire-a", B)
    assert not instances.overlaps("spire-a"), "A called neither this minute nor the one before"


def test_an_id_is_noted_once_a_minute(clock):
    instances = Instances(clock)
    assert instances.note("spire-a", A)
    clock.now += 30
    assert not instances.note("spire-a", A)
    clock.now += 30
    assert instances.note("spire-a", A)


def test_ids_kept_per_server_are_bounded(clock):
    instances = Instances(clock)
    for n in range(MAX_IDS_PER_SERVER * 3):
        instances.note("spire-a", f"{n:032x}")
        clock.now += 1
    assert len(instances._seen["spire-a"]) == MAX_IDS_PER_SERVER


def test_quiet_ids_are_forgotten(clock):
    instances = Instances(clock)
    instances.note("spire-a", A)
    clock.minutes(10)
    instances.note("spire-a", B)
    assert set(instances._seen["spire-a"]) == {B}


@pytest.mark.parametrize("value", ["", "a" * 31, "a" * 33, "A" * 32, "g" * 32, " " + "a" * 31, "a" * 31 + "\n"])
def test_an_instance_id_is_32_lowercase_hex_digits(value):
    with pytest.raises(InvalidArgument, match="X-SPIRE-Plugin-Instance"):
        parse_instance_id(value)


def test_no_instance_id_is_none_and_a_valid_one_is_itself():
    assert parse_instance_id(None) is None
    assert parse_instance_id("0123456789abcdef" * 2) == "0123456789abcdef" * 2


def test_the_message_names_the_server_and_the_fix():
    assert "as server spire-a: give each its own server_name (a StatefulSet), or stop one" in shared_name_message("spire-a")
    assert "as server (default)" in shared_name_message(None)


class MemoryRecords:
    """Shared records as the blobs keep them: a write lands only on the version it read."""

    def __init__(self) -> None:
        self.records: dict[str | None, tuple[dict[str, frozenset[int]], str]] = {}
        self.writes = 0
        self.unavailable = False
        self.read_within: list[float | None] = []

    def read(self, server_name, within_seconds=None):
        self.read_within.append(within_seconds)
        if self.unavailable:
            raise Unavailable("Blob storage does not answer")
        seen, version = self.records.get(server_name, ({}, None))
        return dict(seen), version

    def write(self, server_name, seen, version):
        if self.records.get(server_name, (None, None))[1] != version:
            return False
        self.writes += 1
        self.records[server_name] = (dict(seen), f"v{self.writes}")
        return True


def app_instance(clock, records) -> SharedInstances:
    return SharedInstances(Instances(clock), records, submit=lambda share, *args: share(*args))


def test_two_processes_on_two_app_instances_overlap_through_the_shared_record(clock):
    records = MemoryRecords()
    one, other = app_instance(clock, records), app_instance(clock, records)
    for _ in range(3):
        one.note("spire-a", A)
        other.note("spire-a", B)
        clock.minutes(1)
    clock.minutes(-1)  # still in the third minute
    assert not one.overlaps("spire-a"), "neither instance saw both processes itself"
    assert one.overlaps_on_any_instance("spire-a") and other.overlaps_on_any_instance("spire-a")
    assert one.overlapping() == ["spire-a"]  # health, once a generate read the record


def test_a_restart_onto_another_app_instance_never_overlaps(clock):
    records = MemoryRecords()
    one, other = app_instance(clock, records), app_instance(clock, records)
    for _ in range(5):
        one.note("spire-a", A)
        clock.minutes(1)
    clock.minutes(-0.5)  # the new process starts in the old one's last minute, on the other instance
    for _ in range(6):
        other.note("spire-a", B)
        assert not other.overlaps_on_any_instance("spire-a") and not one.overlaps_on_any_instance("spire-a")
        clock.minutes(1)


def test_an_instance_shares_at_most_once_a_minute_per_server_name(clock):
    records = MemoryRecords()
    one = app_instance(clock, records)
    for _ in range(0, 60, 5):
        one.note("spire-a", A)
        one.note("spire-a", B)
        one.note("spire-b", A)
        clock.now += 5
    assert records.writes == 2  # one a name; the second id's minute goes out with the next minute's share
    one.note("spire-a", A)
    assert records.writes == 3 and set(records.records["spire-a"][0]) == {A, B}


def test_a_share_that_loses_a_race_reads_again_and_keeps_both_instances_minutes(clock):
    records = MemoryRecords()
    one, other = app_instance(clock, records), app_instance(clock, records)
    one.note("spire-a", A)
    original_read = records.read

    def read_then_other_writes(server_name, within_seconds=None):
        seen = original_read(server_name)
        records.read = original_read
        other.note("spire-a", B)  # lands between this share's read and its write
        return seen

    clock.minutes(1)
    records.read = read_then_other_writes
    one.note("spire-a", A)
    assert records.records["spire-a"][0] == {A: frozenset({clock.now // 60 - 1, clock.now // 60}), B: frozenset({clock.now // 60})}


def test_without_the_record_a_generate_is_judged_by_this_instances_calls_and_never_refused_for_it(clock, caplog):
    records = MemoryRecords()
    one = app_instance(clock, records)
    records.unavailable = True
    one.note("spire-a", A)  # the share fails and says so; the call goes on
    assert not one.overlaps_on_any_instance("spire-a")
    assert "record of plugin instances failed" in caplog.text


def test_minutes_of_a_record_outside_the_window_change_nothing(clock):
    records = MemoryRecords()
    records.records["spire-a"] = ({B: frozenset({0, 10**12})}, "v0")
    one = app_instance(clock, records)
    both = [one.note("spire-a", A), one.overlaps_on_any_instance("spire-a")]
    assert both == [True, False] and set(one._instances.seen("spire-a")) == {A}


def test_a_generate_waits_for_the_record_one_second_at_most_and_a_share_as_long_as_storage_takes(clock):
    records = MemoryRecords()
    one = app_instance(clock, records)
    one.note("spire-a", A)
    one.overlaps_on_any_instance("spire-a")
    assert records.read_within == [None, RECORD_READ_SECONDS] and RECORD_READ_SECONDS == 1.0


def test_shares_do_not_pile_up_while_blob_storage_stalls(clock):
    records = MemoryRecords()
    queued = []
    one = SharedInstances(Instances(clock), records, submit=lambda share, *args: queued.append(args))
    for _ in range(60):  # an hour in which no share ends
        for name in ("spire-a", "spire-b"):
            one.note(name, A)
            one.note(name, B)
        clock.minutes(1)
    assert queued == [("spire-a",), ("spire-b",)]
    one.share("spire-a")  # ends at last: the next minute's call queues again
    one.note("spire-a", A)
    assert queued[-1] == ("spire-a",) and len(queued) == 3
