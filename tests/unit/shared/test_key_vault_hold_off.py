"""The instance's hold-off after Key Vault's 429s: per limit, as long as Key Vault asked, on an injected clock."""

import pytest

from shared.key_vault_hold_off import SEND_NOW, TAKEN, HoldOff, Limit, Turn, limit_of

VAULT = "https://vault.vault.azure.net"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    "method, path, limit",
    [
        ("POST", "/keys/k/create", Limit.KEY_CREATIONS),
        ("POST", "/keys/k//sign", Limit.KEY_OPERATIONS),
        ("POST", "/keys/k/v1/sign", Limit.KEY_OPERATIONS),
        ("GET", "/keys/k/", Limit.KEY_OPERATIONS),
        ("PATCH", "/keys/k/v1", Limit.KEY_OPERATIONS),
        ("DELETE", "/keys/k", Limit.KEY_OPERATIONS),
        ("GET", "/keys/create", Limit.KEY_OPERATIONS),  # a key named "create"
        ("GET", "/keys", Limit.VAULT_OPERATIONS),
        ("GET", "/keys/", Limit.VAULT_OPERATIONS),
        ("GET", "/deletedkeys/k", Limit.VAULT_OPERATIONS),
    ],
)
def test_each_request_counts_against_the_limit_key_vault_counts_it_against(method, path, limit):
    assert limit_of(method, f"{VAULT}{path}?api-version=7.5") is limit


def test_a_429_holds_back_its_limit_for_as_long_as_key_vault_asked():
    clock = Clock()
    hold_off = HoldOff(clock)
    assert hold_off.turn(Limit.KEY_OPERATIONS) == SEND_NOW
    hold_off.hold(Limit.KEY_OPERATIONS, 3)
    clock.now += 1.25
    assert hold_off.turn(Limit.KEY_OPERATIONS) == Turn(pytest.approx(1.75))
    clock.now += 1.75
    assert hold_off.turn(Limit.KEY_OPERATIONS) == SEND_NOW


def test_a_throttled_limit_leaves_the_others_open():
    hold_off = HoldOff(Clock())
    hold_off.hold(Limit.KEY_CREATIONS, 5)
    assert hold_off.turn(Limit.KEY_OPERATIONS) == hold_off.turn(Limit.VAULT_OPERATIONS) == SEND_NOW
    assert hold_off.turn(Limit.KEY_CREATIONS) == Turn(5)


def test_a_shorter_retry_after_does_not_shorten_the_hold():
    clock = Clock()
    hold_off = HoldOff(clock)
    hold_off.hold(Limit.KEY_OPERATIONS, 4)
    clock.now += 1
    hold_off.hold(Limit.KEY_OPERATIONS, 1)  # a request in flight before the first 429 came back
    assert hold_off.turn(Limit.KEY_OPERATIONS) == Turn(3)
    hold_off.hold(Limit.KEY_OPERATIONS, 5)
    assert hold_off.turn(Limit.KEY_OPERATIONS) == Turn(5)


def _paced_hold_off(clock: Clock, queue_seconds: float = 0.5) -> HoldOff:
    """Twenty signs counted, one every 0.5 s up to 100.0; at 100.2 a 429 asks for 1 s (until 101.2).
    The rooms they took free at 100.5, 101.0, 101.5, ...: two during the hold."""
    hold_off = HoldOff(clock, queue_seconds=queue_seconds)
    for moment in range(181, 201):
        clock.now = moment / 2
        hold_off.counted(Limit.KEY_OPERATIONS)
    clock.now = 100.2
    hold_off.hold(Limit.KEY_OPERATIONS, 1)
    return hold_off


def test_after_a_429_the_rooms_freed_during_the_hold_are_turns_at_its_end_and_later_ones_are_paced():
    clock = Clock()
    hold_off = _paced_hold_off(clock)
    turns = []
    for moment in (100.3, 100.4, 100.5, 100.6):
        clock.now = moment
        turns.append(hold_off.turn(Limit.KEY_OPERATIONS))
    first, second, third, fourth = turns
    assert first.wait == pytest.approx(0.9) and second.wait == pytest.approx(0.8)  # both at the hold's end
    assert third.wait == pytest.approx(1.0)  # the room that frees at 101.5
    assert first.ticket and second.ticket and third.ticket and len({first.ticket, second.ticket, third.ticket}) == 3
    # Past the queue's half second: no turn is held, and the wait ends when this one would be in the queue.
    assert fourth.ticket is None and fourth.wait == pytest.approx(102.0 - 0.5 - 100.6)
    assert hold_off.turn(Limit.KEY_CREATIONS) == SEND_NOW  # another limit is neither held nor paced


def test_a_reserved_turn_is_its_holders_and_no_newcomers():
    clock = Clock()
    hold_off = _paced_hold_off(clock)
    clock.now = 100.3
    held = hold_off.turn(Limit.KEY_OPERATIONS)
    hold_off.turn(Limit.KEY_OPERATIONS)  # the other room freed during the hold
    clock.now = 100.5
    later = hold_off.turn(Limit.KEY_OPERATIONS)  # at 101.5
    clock.now = 101.2
    newcomer = hold_off.turn(Limit.KEY_OPERATIONS)
    assert newcomer.wait > 0  # the hold has ended, but the rooms are taken
    assert hold_off.turn(Limit.KEY_OPERATIONS, held.ticket) == TAKEN
    assert hold_off.turn(Limit.KEY_OPERATIONS, held.ticket).wait > 0  # a turn is taken once
    clock.now = 101.3
    assert hold_off.turn(Limit.KEY_OPERATIONS, later.ticket) == Turn(pytest.approx(0.2), later.ticket)  # too early: still its
    clock.now = 101.515
    assert hold_off.turn(Limit.KEY_OPERATIONS, later.ticket) == TAKEN


def test_a_turn_under_a_later_hold_is_queued_again():
    clock = Clock()
    hold_off = _paced_hold_off(clock, queue_seconds=2)
    clock.now = 100.3
    held = hold_off.turn(Limit.KEY_OPERATIONS)
    clock.now = 101.1
    hold_off.hold(Limit.KEY_OPERATIONS, 1)  # Key Vault throttled again: hold until 102.1
    clock.now = 101.2
    again = hold_off.turn(Limit.KEY_OPERATIONS, held.ticket)
    assert again.ticket not in (None, held.ticket) and again.wait == pytest.approx(0.9)  # from the later hold's end


def test_a_turn_that_is_not_this_instances_is_a_newcomers():
    clock = Clock()
    hold_off = _paced_hold_off(clock)
    clock.now = 100.3
    assert hold_off.turn(Limit.KEY_OPERATIONS, "AAAAAAAAAAAAAAAA").wait == pytest.approx(0.9)


def test_without_requests_of_its_own_counted_a_429_is_a_hold_without_turns():
    clock = Clock()
    hold_off = HoldOff(clock)
    hold_off.hold(Limit.KEY_OPERATIONS, 2)
    clock.now += 0.5
    assert hold_off.turn(Limit.KEY_OPERATIONS) == Turn(1.5)


def test_pacing_ends_once_a_room_went_unused_for_a_whole_window():
    clock = Clock()
    hold_off = _paced_hold_off(clock)
    clock.now = 125.0  # every room freed before 115 went unused
    assert hold_off.turn(Limit.KEY_OPERATIONS) == SEND_NOW
    hold_off.hold(Limit.KEY_OPERATIONS, 1)  # nothing counted in the last window: Key Vault's room is others'
    assert hold_off.turn(Limit.KEY_OPERATIONS) == Turn(1.0)


def test_a_turn_is_taken_only_by_a_request_of_the_limit_it_was_reserved_in():
    clock = Clock()
    hold_off = _paced_hold_off(clock)
    clock.now = 100.3
    held = hold_off.turn(Limit.KEY_OPERATIONS)
    clock.now = 101.2
    assert hold_off.turn(Limit.KEY_CREATIONS, held.ticket) == SEND_NOW  # e.g. a create before the sign: not its turn
    assert hold_off.turn(Limit.KEY_OPERATIONS, held.ticket) == TAKEN


def test_turns_never_taken_give_their_rooms_back_and_pacing_ends():
    clock = Clock()
    hold_off = _paced_hold_off(clock, queue_seconds=100)
    clock.now = 100.3
    for _ in range(20):  # every room is reserved, and no caller comes back
        assert hold_off.turn(Limit.KEY_OPERATIONS).ticket
    assert hold_off.turn(Limit.KEY_OPERATIONS).ticket is None
    clock.now = 125.0  # a window after the last of those turns began
    assert hold_off.turn(Limit.KEY_OPERATIONS) == SEND_NOW
    hold_off.hold(Limit.KEY_OPERATIONS, 1)
    assert hold_off.turn(Limit.KEY_OPERATIONS) == Turn(1.0)  # pacing ended: nothing counted since, a hold alone


def test_a_turn_a_moment_away_is_waited_for_in_the_invocation():
    clock = Clock()
    hold_off = _paced_hold_off(clock)
    clock.now = 101.49  # the hold is over; rooms freed at 100.5 and 101.0, and one frees at 101.5
    assert [hold_off.turn(Limit.KEY_OPERATIONS) for _ in range(3)] == [
        Turn(0.0, here=True),
        Turn(0.0, here=True),
        Turn(pytest.approx(0.01), here=True),
    ]
    assert hold_off.turn(Limit.KEY_OPERATIONS).ticket is None  # 102.0 is past the queue


def test_a_request_answered_after_the_429_frees_its_room_a_window_after_its_answer():
    clock = Clock()
    hold_off = _paced_hold_off(clock, queue_seconds=100)
    clock.now = 100.3
    hold_off.counted(Limit.KEY_OPERATIONS)  # sent before the 429 came back: Key Vault counted it too
    waits = [hold_off.turn(Limit.KEY_OPERATIONS).wait for _ in range(21)]
    assert waits[-1] == pytest.approx(110.3 - 100.3)


def test_a_429_while_this_instance_sends_little_is_a_hold_without_turns():
    clock = Clock()
    hold_off = HoldOff(clock)
    hold_off.counted(Limit.KEY_OPERATIONS)  # its room frees at 110: Key Vault's window holds others' requests
    clock.now = 101.0
    hold_off.hold(Limit.KEY_OPERATIONS, 1)
    assert not hold_off.paced(Limit.KEY_OPERATIONS)
    assert hold_off.turn(Limit.KEY_OPERATIONS) == Turn(1.0)


def _tickets_left(hold_off: HoldOff) -> int:
    tickets = 0
    while hold_off.turn(Limit.KEY_OPERATIONS).ticket:
        tickets += 1
    return tickets


def test_a_turn_queued_again_under_a_later_hold_keeps_its_room():
    clock = Clock()
    hold_off = _paced_hold_off(clock, queue_seconds=100)  # twenty rooms, all within the queue
    clock.now = 100.3
    held = hold_off.turn(Limit.KEY_OPERATIONS)
    clock.now = 101.1
    hold_off.hold(Limit.KEY_OPERATIONS, 1)
    clock.now = 101.2
    again = hold_off.turn(Limit.KEY_OPERATIONS, held.ticket)
    assert again.ticket and again.wait == pytest.approx(0.9)
    assert _tickets_left(hold_off) == 19  # one caller holds one room of twenty, as before the later hold


def test_pacing_ends_once_every_room_went_to_requests_key_vault_never_counted():
    clock = Clock()
    hold_off = _paced_hold_off(clock, queue_seconds=100)
    clock.now = 100.3
    turns = [hold_off.turn(Limit.KEY_OPERATIONS) for _ in range(20)]
    for turn in turns:  # each is taken, and its request is throttled again, times out, or never leaves
        clock.now = 100.3 + turn.wait
        assert hold_off.turn(Limit.KEY_OPERATIONS, turn.ticket) == TAKEN
    clock.now = 125.0  # nothing counted for a window, nothing free nor reserved
    assert hold_off.turn(Limit.KEY_OPERATIONS) == SEND_NOW


def test_a_turn_its_caller_does_not_come_back_for_goes_to_a_newcomer_a_second_after_it_began():
    clock = Clock()
    hold_off = _paced_hold_off(clock, queue_seconds=100)
    clock.now = 100.3
    abandoned = [hold_off.turn(Limit.KEY_OPERATIONS) for _ in range(20)]  # e.g. each caller came back to another instance
    assert all(turn.ticket for turn in abandoned) and hold_off.turn(Limit.KEY_OPERATIONS).ticket is None
    clock.now = 102.3  # the two turns at the hold's end, 101.2, began over a second ago
    assert [hold_off.turn(Limit.KEY_OPERATIONS) for _ in range(2)] == [Turn(0.0, here=True)] * 2
    assert hold_off.turn(Limit.KEY_OPERATIONS).ticket is None


def test_an_instance_that_sent_little_before_a_429_is_not_paced_at_that_rate_for_as_long_as_callers_come():
    clock = Clock()
    hold_off = HoldOff(clock)
    hold_off.counted(Limit.KEY_OPERATIONS)  # one sign; the rest of Key Vault's window was other instances'
    clock.now = 109.5
    hold_off.hold(Limit.KEY_OPERATIONS, 1)
    served = 0
    for step in range(300):  # a caller every 0.1 s for 30 s, which Key Vault never throttles again
        clock.now = 110.5 + step / 10
        if hold_off.turn(Limit.KEY_OPERATIONS).wait == 0:
            served += 1
            hold_off.counted(Limit.KEY_OPERATIONS)
    assert served > 30  # paced at its one sign a window, 3 are
