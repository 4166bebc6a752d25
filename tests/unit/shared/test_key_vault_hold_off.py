"""The instance's hold-off after Key Vault's 429s: per limit, as long as Key Vault asked, on an injected clock."""

import pytest

from shared.key_vault_hold_off import HoldOff, Limit, limit_of

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
    assert hold_off.remaining(Limit.KEY_OPERATIONS) == 0
    hold_off.hold(Limit.KEY_OPERATIONS, 3)
    clock.now += 1.25
    assert hold_off.remaining(Limit.KEY_OPERATIONS) == pytest.approx(1.75)
    clock.now += 1.75
    assert hold_off.remaining(Limit.KEY_OPERATIONS) == 0


def test_a_throttled_limit_leaves_the_others_open():
    hold_off = HoldOff(Clock())
    hold_off.hold(Limit.KEY_CREATIONS, 5)
    assert hold_off.remaining(Limit.KEY_OPERATIONS) == hold_off.remaining(Limit.VAULT_OPERATIONS) == 0
    assert hold_off.remaining(Limit.KEY_CREATIONS) == 5


def test_a_shorter_retry_after_does_not_shorten_the_hold():
    clock = Clock()
    hold_off = HoldOff(clock)
    hold_off.hold(Limit.KEY_OPERATIONS, 4)
    clock.now += 1
    hold_off.hold(Limit.KEY_OPERATIONS, 1)  # a request in flight before the first 429 came back
    assert hold_off.remaining(Limit.KEY_OPERATIONS) == 3
    hold_off.hold(Limit.KEY_OPERATIONS, 5)
    assert hold_off.remaining(Limit.KEY_OPERATIONS) == 5
