"""Which plugin processes call as each SPIRE server, and whether two of them keep calling under one name.

Each plugin process sends a random instance id on every call. Two live processes under one server
name (a Deployment where a StatefulSet was meant) rotate each other's keys; a restart never looks
like that, because the old process stops calling when the new one starts.

An instance id is noted once per minute at most (the minute it was seen in); the rule reads the
minutes. Two ids overlap when both were seen in SHARED_MINUTES of the last WINDOW_MINUTES minutes
and both were seen in the last STILL_CALLING_MINUTES minutes (this one and the one before). An old process and its successor can
share at most two minutes (the restart, even with up to a minute in which both call), so a restart
never overlaps; the overlap ends within STILL_CALLING_MINUTES once one of the processes stops.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Callable

from shared.errors import InvalidArgument
from shared.naming import server_label

WINDOW_MINUTES = 5
SHARED_MINUTES = 3
STILL_CALLING_MINUTES = 2
# Ids kept per server name: a server restarting in a loop cannot grow memory beyond this.
MAX_IDS_PER_SERVER = 32
INSTANCE_ID_DIGITS = 32

_INSTANCE_ID = re.compile(f"[0-9a-f]{{{INSTANCE_ID_DIGITS}}}")


def parse_instance_id(value: str | None) -> str | None:
    """The plugin process's instance id (None when the caller sent none); anything but 32 lowercase hex digits is a 400."""
    if value is None:
        return None
    if not _INSTANCE_ID.fullmatch(value):
        raise InvalidArgument(f"X-SPIRE-Plugin-Instance must be {INSTANCE_ID_DIGITS} lowercase hex digits")
    return value


def shared_name_message(server_name: str | None) -> str:
    return (
        f"two SPIRE server processes call as server {server_label(server_name)}: give each its own server_name (a StatefulSet), "
        "or stop one; keys are not generated while both call"
    )


class Instances:
    """The minutes in which each instance id called, per server name, in memory."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str | None, dict[str, set[int]]] = {}

    def note(self, server_name: str | None, instance_id: str) -> bool:
        """Note that the id called now; True when this is its first call this minute (a change was made)."""
        minute = self._minute()
        with self._lock:
            ids = self._seen.setdefault(server_name, {})
            minutes = ids.get(instance_id)
            if minutes is not None and minute in minutes:
                return False
            for known in list(ids):
                recent = {seen for seen in ids[known] if seen > minute - WINDOW_MINUTES}
                if recent:
                    ids[known] = recent
                else:
                    del ids[known]
            if instance_id not in ids and len(ids) >= MAX_IDS_PER_SERVER:
                del ids[min(ids, key=lambda known: max(ids[known]))]
            ids.setdefault(instance_id, set()).add(minute)
            return True

    def overlaps(self, server_name: str | None) -> bool:
        """Whether two instance ids keep calling as this server within the same minutes."""
        minute = self._minute()
        with self._lock:
            recent = [
                {seen for seen in minutes if seen > minute - WINDOW_MINUTES}
                for minutes in self._seen.get(server_name, {}).values()
                if max(minutes) > minute - STILL_CALLING_MINUTES
            ]
        return any(len(a & b) >= SHARED_MINUTES for i, a in enumerate(recent) for b in recent[i + 1 :])

    def overlapping(self) -> list[str | None]:
        """The server names under which two instance ids keep calling."""
        with self._lock:
            names = list(self._seen)
        return [name for name in names if self.overlaps(name)]

    def _minute(self) -> int:
        return int(self._clock() // 60)
