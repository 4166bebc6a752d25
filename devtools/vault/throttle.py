"""Key Vault's service limits for a vault, per 10-second window, as Microsoft documents them.

Source: "Azure Key Vault service limits", resource type vault
(https://learn.microsoft.com/en-us/azure/key-vault/general/service-limits), and "Azure Key Vault
throttling guidance" (https://learn.microsoft.com/en-us/azure/key-vault/general/overview-throttling).

Key transactions, maximum per 10 seconds per vault:

    key type              HSM create  HSM other  software create  software other
    RSA 2,048-bit                 10      2,000               20           4,000
    RSA 3,072-bit                 10        500               20           1,000
    RSA 4,096-bit                 10        250               20             500
    EC (P-256/384/521, K)         10      2,000               20           4,000

"The throttling thresholds are weighted, and enforcement is on their sum": 248 RSA-4096 HSM GETs and
16 RSA-2048 HSM GETs fill one window. So each row is a share of one budget: an operation costs
(budget / its row's limit), e.g. one RSA-4096 HSM sign costs 16 of the 4,000 that RSA-2048 software
operations are counted in. Creations are their own budget (20, an HSM creation costing two), and
operations on no key (listings, names the vault does not hold) count against the page's "vault
transactions" limit, "all other transactions" 4,000. A throttled call is a 429, and "failed requests
that return a 429 do not count towards the throttle limits".

The window slides: the pages state a maximum "in 10 seconds" / "in a given 10-second interval", not
per clock-aligned slot, so no 10 seconds may hold more than the limit (a fixed window would let
twice the limit through across a slot's edge). Retry-After is then exact: the time until enough of
the oldest counted operations leave the window for this one to fit.

``scale`` multiplies every limit, so that a small machine can reach them; a row never drops below
one operation per window, so that every operation stays possible at any scale.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

from cryptography.hazmat.primitives.asymmetric import rsa

from .crypto import PrivateKey

WINDOW_SECONDS = 10.0
# Budget name -> its documented size: the limit of its cheapest row.
BUDGETS = {"keys": 4000, "creates": 20, "vault": 4000}
# "All other transactions" per window by key: RSA by size, and any curve; (software, HSM).
_RSA_LIMITS = {2048: (4000, 2000), 3072: (1000, 500), 4096: (500, 250)}
_EC_LIMITS = (4000, 2000)
_CREATE_LIMITS = (20, 10)
# Float sums of weights such as 16.666... must still fill a budget exactly.
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Charge:
    """What one operation costs: the budget it draws on, and its row's documented limit in that budget."""

    budget: str
    row_limit: int


VAULT_OPERATION = Charge("vault", BUDGETS["vault"])


def key_operation(key: PrivateKey, hsm: bool) -> Charge:
    software, hardware = _RSA_LIMITS[key.key_size] if isinstance(key, rsa.RSAPrivateKey) else _EC_LIMITS
    return Charge("keys", hardware if hsm else software)


def key_creation(hsm: bool) -> Charge:
    software, hardware = _CREATE_LIMITS
    return Charge("creates", hardware if hsm else software)


class _Window:
    """One budget's operations of the last ``WINDOW_SECONDS``: (when admitted, weight), oldest first."""

    def __init__(self, size: float) -> None:
        self.size = size
        self.admitted: deque[tuple[float, float]] = deque()
        self.used = 0.0
        self.served = 0
        self.throttled = 0

    def forget_before(self, moment: float) -> None:
        while self.admitted and self.admitted[0][0] <= moment:
            self.used -= self.admitted.popleft()[1]
        if not self.admitted:
            self.used = 0.0  # no float residue once empty

    def wait_for(self, weight: float, now: float) -> Optional[float]:
        """None if ``weight`` fits now; else the seconds until enough of the oldest operations leave."""
        excess = self.used + weight - self.size
        if excess <= _TOLERANCE:
            return None
        for admitted_at, earlier in self.admitted:
            excess -= earlier
            if excess <= _TOLERANCE:
                return admitted_at + WINDOW_SECONDS - now
        raise AssertionError("a weight never exceeds its budget")


class Throttle:
    """The vault's budgets over a sliding window on a monotonic clock (the time-shift API leaves it alone)."""

    def __init__(self, scale: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.scale = scale
        self._clock = clock
        self._lock = threading.Lock()
        self._budgets = {name: _Window(self._scaled(size)) for name, size in BUDGETS.items()}

    def _scaled(self, limit: int) -> float:
        return max(1.0, limit * self.scale)

    def admit(self, charge: Charge) -> Optional[float]:
        """Count the operation and return None, or refuse it (uncounted) with the seconds to wait."""
        budget = self._budgets[charge.budget]
        weight = budget.size / self._scaled(charge.row_limit)
        with self._lock:
            now = self._clock()
            budget.forget_before(now - WINDOW_SECONDS)
            wait = budget.wait_for(weight, now)
            if wait is None:
                budget.admitted.append((now, weight))
                budget.used += weight
                budget.served += 1
            else:
                budget.throttled += 1
            return wait

    def counters(self) -> dict:
        """Per budget: its size, what the window holds now, and the operations served and throttled so far."""
        with self._lock:
            now = self._clock()
            for budget in self._budgets.values():
                budget.forget_before(now - WINDOW_SECONDS)
            return {
                "scale": self.scale,
                "windowSeconds": WINDOW_SECONDS,
                "budgets": {
                    name: {"size": budget.size, "inWindow": round(budget.used, 6), "served": budget.served,
                           "throttled": budget.throttled}
                    for name, budget in self._budgets.items()
                },
            }
