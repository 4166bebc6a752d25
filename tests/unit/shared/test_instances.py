"""The rule that tells two live plugin processes under one server name from a restart."""

import pytest

from shared.errors import InvalidArgument
from shared.instances import MAX_IDS_PER_SERVER, Instances, parse_instance_id, shared_name_message

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
