"""How long this instance sends nothing to Key Vault that counts against a limit Key Vault throttled,
and in which order its held-back callers then go.

Key Vault counts a vault's requests against separate limits per 10 seconds: key creations; operations
on keys (signs, reads, updates, deletions), weighted by key type and summed; and its other
transactions (listings). A 429 answers a request over one of them, with the seconds to wait in
Retry-After; until then every request counting against that limit would be another 429 (and
Key Vault does not count 429s, so sending them only lengthens the queue of callers, not the wait).
A throttled create therefore holds back creates only, and a throttled sign every operation on keys.

The window slides, and Retry-After comes in whole seconds, so a vault at its limit frees room one
request at a time, long before the wait ends: at 40 signs a second, a one-second wait leaves room for
40 more. Callers told only "retry after one second" all come back at its end beside the new ones and
overrun the vault again. So when this instance's own requests fill the window, a 429 also starts
pacing: each request Key Vault counted frees its room a window after Key Vault answered it (it
counted it by then), and each caller gets the next such room as its turn, no earlier than the hold's
end: at once when that has come (within a few milliseconds, waited for here), otherwise a reserved
turn with a ticket to come back with, which no newcomer can take until a second after it began (its
caller may have given up, or come back to another instance). A caller whose turn would be
further than ``queue_seconds`` past the hold's end gets none (the vault serves its limit either way,
and a longer queue only delays every caller and the recovery after the load drops). Pacing ends
once Key Vault has throttled nothing for a whole window: the rooms copy this instance's past share
of the vault, and only the next 429 can tell whether that share has grown.
"""

from __future__ import annotations

import functools
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from urllib.parse import urlsplit

# Key Vault's throttling window.
WINDOW_SECONDS = 10.0
# How far past the hold's end turns are given: the longest a paced caller waits beyond Key Vault's own wait.
QUEUE_SECONDS = 0.25
# A turn this close is waited for in the invocation: a caller's round trip would take about as long.
WAIT_HERE_SECONDS = 0.02
# A caller may come back this early for its turn (clocks and timers are not exact).
EARLY_SECONDS = 0.01
# A turn not taken this long after it began is given to others: its caller gave up, or came back to another
# instance (each has turns of its own), which a scaled-out app's front end picks per request.
UNCLAIMED_SECONDS = 1.0


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


@dataclass(frozen=True)
class Turn:
    """When a request may be sent: ``wait`` seconds from now (0: now), and the ticket that holds a
    reserved turn (None: no turn is held, and a caller that comes back queues again)."""

    wait: float
    ticket: str | None = None
    # The turn is this request's, so close that the wait is spent here rather than on a round trip.
    here: bool = False
    # The request takes the turn its caller's ticket reserved (an invocation's other requests may
    # count against other limits, and must leave the ticket to the one it was reserved for).
    taken: bool = False


SEND_NOW = Turn(0.0)
TAKEN = Turn(0.0, taken=True)


@dataclass
class _Pace:
    """One limit's state: the hold, this instance's requests Key Vault counted in the last window, and,
    while pacing, when each room of the window frees (oldest first) and the reserved turns by ticket."""

    until: float = 0.0
    counted: deque[float] = field(default_factory=deque)
    frees_at: deque[float] | None = None
    reserved: dict[str, float] = field(default_factory=dict)
    throttled_at: float = -math.inf


class HoldOff:
    """Per limit, until when (on ``clock``) Key Vault asked this instance to wait, and the turns of the
    callers held back by it; a later 429 may only lengthen the hold."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, queue_seconds: float = QUEUE_SECONDS) -> None:
        self._clock = clock
        self._queue_seconds = queue_seconds
        self._lock = threading.Lock()
        self._paces = {limit: _Pace() for limit in Limit}

    def counted(self, limit: Limit) -> None:
        """Key Vault answered a request counting against ``limit`` with anything but a 429: it counted
        it by now, so its room in the window frees a window from now at the latest."""
        with self._lock:
            now = self._clock()
            pace = self._paces[limit]
            pace.counted.append(now)
            while pace.counted[0] <= now - WINDOW_SECONDS:
                pace.counted.popleft()
            if pace.frees_at is not None:
                pace.frees_at.append(now + WINDOW_SECONDS)

    def hold(self, limit: Limit, seconds: float) -> None:
        """Key Vault answered a request counting against ``limit`` with a 429 and Retry-After ``seconds``."""
        with self._lock:
            now = self._clock()
            pace = self._paces[limit]
            pace.until = max(pace.until, now + seconds)
            pace.throttled_at = now
            if pace.frees_at is None:
                frees_at = deque(moment + WINDOW_SECONDS for moment in pace.counted if moment > now - WINDOW_SECONDS)
                # Pace only when this instance's own requests fill the window: if none of their rooms
                # frees by the end of the hold and the queue, the vault's room is others', and a hold is all.
                if frees_at and frees_at[0] <= pace.until + self._queue_seconds:
                    pace.frees_at = frees_at

    def paced(self, limit: Limit) -> bool:
        """Whether callers of ``limit`` are given turns: after a 429, once this instance's own requests were counted."""
        return self._paces[limit].frees_at is not None

    def turn(self, limit: Limit, ticket: str | None = None, reserve: bool = True, in_turn: bool = False) -> Turn:
        """When a request counting against ``limit`` may go, taking the turn it is given; ``ticket`` is
        the one its caller was given earlier, if any. A wait without a ticket holds no turn, unless it
        is one to wait out here; without ``reserve`` (a caller that cannot come back with a ticket) none is held.
        ``in_turn``: the invocation already took its turn, and this is its next request of the limit (a sign's
        read of a rotated key): it goes now, on the next room, rather than queue anew and fail the call."""
        with self._lock:
            now = self._clock()
            pace = self._paces[limit]
            if in_turn:
                if pace.frees_at:
                    pace.frees_at.popleft()
                return SEND_NOW
            if ticket is not None and (reserved := pace.reserved.get(ticket)) is not None:
                if reserved - EARLY_SECONDS > now:
                    return Turn(reserved - now, ticket)
                del pace.reserved[ticket]
                if now >= pace.until:
                    return TAKEN
                # A later 429 began a hold over this turn: the caller queues again, and its room is the queue's
                # first (one that frees earlier would give the same turn: none begins before the hold's end).
                if pace.frees_at is not None:
                    pace.frees_at.appendleft(min(reserved, pace.frees_at[0]) if pace.frees_at else reserved)
            earliest = max(now, pace.until)
            frees_at = pace.frees_at
            if frees_at is not None:
                self._release_unclaimed(pace, frees_at, now)
                # Key Vault throttled nothing for a whole window: the rooms copy this instance's past share of the
                # vault, which may have grown since (load moved, other instances went), so the next 429 measures it anew.
                calm = pace.throttled_at < now - WINDOW_SECONDS
                # Every room went to a request Key Vault did not count (throttled, unanswered, never sent), and none
                # was counted for a window: nothing of this instance's is left in Key Vault's window to pace by.
                lost = not frees_at and not pace.reserved and not (pace.counted and pace.counted[-1] > now - WINDOW_SECONDS)
                if calm or lost:
                    frees_at = pace.frees_at = None
                    pace.reserved.clear()  # a caller coming back is a newcomer, and goes at once
            if frees_at is None:
                return Turn(earliest - now)
            begins = max(earliest, frees_at[0]) if frees_at else math.inf
            if begins > earliest + self._queue_seconds:
                # No turn: the queue is full. Come back when this one would be in it (every room reserved: when the queue is passed).
                return Turn(min(begins, earliest + 2 * self._queue_seconds) - self._queue_seconds - now)
            if begins - now <= WAIT_HERE_SECONDS:
                frees_at.popleft()
                return Turn(max(0.0, begins - now), here=True)
            if not reserve:
                return Turn(begins - now)
            frees_at.popleft()
            ticket = secrets.token_urlsafe(12)
            pace.reserved[ticket] = begins
            return Turn(begins - now, ticket)

    @staticmethod
    def _release_unclaimed(pace: _Pace, frees_at: deque[float], now: float) -> None:
        """A turn not taken ``UNCLAIMED_SECONDS`` after it began will not be: its room, free since then, is
        the queue's first. Turns are reserved in about the order they begin, so the oldest come first."""
        while pace.reserved and (begins := next(iter(pace.reserved.values()))) < now - UNCLAIMED_SECONDS:
            del pace.reserved[next(iter(pace.reserved))]
            frees_at.appendleft(min(begins, frees_at[0]) if frees_at else begins)
