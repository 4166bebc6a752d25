"""How long this instance sends nothing to Key Vault that counts against a limit Key Vault throttled.

Key Vault counts a vault's requests against separate limits per 10 seconds: key creations; operations
on keys (signs, reads, updates, deletions), weighted by key type and summed; and its other
transactions (listings). A 429 answers a request over one of them, with the seconds to wait in
Retry-After; until then every request counting against that limit would be another 429 (and
Key Vault does not count 429s, so sending them only lengthens the queue of callers, not the wait).
A throttled create therefore holds back creates only, and a throttled sign every operation on keys.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from enum import Enum
from urllib.parse import urlsplit


class Limit(Enum):
    """One of Key Vault's throttling limits; the value names its requests in an error message."""

    KEY_CREATIONS = "key creations"
    KEY_OPERATIONS = "operations on keys"
    VAULT_OPERATIONS = "vault operations"


@functools.lru_cache(maxsize=1024)  # every request asks, up to three times; a key's URLs repeat
def limit_of(method: str, url: str) -> Limit:
    """The Key Vault limit a request counts against, by its method and path (``/keys/{name}/...``)."""
    segments = urlsplit(url).path.strip("/").split("/")
    if segments[0] != "keys" or len(segments) < 2:
        return Limit.VAULT_OPERATIONS
    if method.upper() == "POST" and len(segments) == 3 and segments[2] == "create":
        return Limit.KEY_CREATIONS
    return Limit.KEY_OPERATIONS


class HoldOff:
    """Per limit, until when (on ``clock``) Key Vault asked this instance to wait; a later 429 may only lengthen it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._until: dict[Limit, float] = {}

    def hold(self, limit: Limit, seconds: float) -> None:
        """Key Vault answered a request counting against ``limit`` with a 429 and Retry-After ``seconds``."""
        with self._lock:
            self._until[limit] = max(self._until.get(limit, 0.0), self._clock() + seconds)

    def remaining(self, limit: Limit) -> float:
        """Seconds before a request counting against ``limit`` may be sent; 0 when it may go now."""
        return max(0.0, self._until.get(limit, 0.0) - self._clock())
