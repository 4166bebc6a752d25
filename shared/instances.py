"""Which plugin processes call as each SPIRE server, and whether two of them keep calling under one name.

Each plugin process sends a random instance id on every call. Two live processes under one server
name (a Deployment where a StatefulSet was meant) rotate each other's keys; a restart never looks
like that, because the old process stops calling when the new one starts.

An instance id is noted once per minute at most (the minute it was seen in); the rule reads the
minutes. Two ids overlap when both were seen in SHARED_MINUTES of the last WINDOW_MINUTES minutes
and both were seen in the last STILL_CALLING_MINUTES minutes (this one and the one before). An old process and its successor can
share at most two minutes (the restart, even with up to a minute in which both call), so a restart
never overlaps; the overlap ends within STILL_CALLING_MINUTES once one of the processes stops.

Two processes may call different app instances, so each instance shares what it saw through a
record per server name (``InstanceRecords``, a small blob beside the id blobs, never the id blob
itself): at most once a minute per name, off the request that noted it, it merges its minutes into
the record and the record's into its own. A GenerateKey reads the record first, so it judges by
every instance's calls up to the minute before.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from shared.errors import InvalidArgument, Unavailable
from shared.naming import server_label

WINDOW_MINUTES = 5
SHARED_MINUTES = 3
STILL_CALLING_MINUTES = 2
# How long a GenerateKey waits for the shared record, at most, before it judges by this instance's calls.
RECORD_READ_SECONDS = 1.0
# Ids kept per server name: a server restarting in a loop cannot grow memory beyond this.
MAX_IDS_PER_SERVER = 32
INSTANCE_ID_DIGITS = 32

_INSTANCE_ID = re.compile(f"[0-9a-f]{{{INSTANCE_ID_DIGITS}}}")

log = logging.getLogger(__name__)

# Minutes in which each instance id called, by instance id: what one server name's record holds.
Seen = Mapping[str, frozenset[int]]


def is_instance_id(value: object) -> bool:
    return isinstance(value, str) and _INSTANCE_ID.fullmatch(value) is not None


def parse_instance_id(value: str | None) -> str | None:
    """The plugin process's instance id (None when the caller sent none); anything but 32 lowercase hex digits is a 400."""
    if value is None:
        return None
    if not is_instance_id(value):
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
        minute = self.current_minute()
        with self._lock:
            minutes = self._seen.get(server_name, {}).get(instance_id)
            if minutes is not None and minute in minutes:
                return False
            self._add(server_name, {instance_id: frozenset({minute})}, minute)
            return True

    def merge(self, server_name: str | None, seen: Seen) -> None:
        """Add the minutes another instance saw (a shared record's) to this one's."""
        with self._lock:
            self._add(server_name, seen, self.current_minute())

    def seen(self, server_name: str | None) -> dict[str, frozenset[int]]:
        """The minutes of the window in which each id called as this server, as far as this instance knows."""
        minute = self.current_minute()
        with self._lock:
            return {
                instance_id: recent
                for instance_id, minutes in self._seen.get(server_name, {}).items()
                if (recent := frozenset(seen for seen in minutes if seen > minute - WINDOW_MINUTES))
            }

    def _add(self, server_name: str | None, seen: Seen, minute: int) -> None:
        """Add minutes, forget those past the window, and keep at most MAX_IDS_PER_SERVER ids (the latest)."""
        ids = self._seen.setdefault(server_name, {})
        for instance_id, minutes in seen.items():
            ids.setdefault(instance_id, set()).update(minutes)
        for known in list(ids):
            recent = {seen for seen in ids[known] if minute - WINDOW_MINUTES < seen <= minute + 1}  # a minute of clock skew
            if recent:
                ids[known] = recent
            else:
                del ids[known]
        while len(ids) > MAX_IDS_PER_SERVER:
            del ids[min(ids, key=lambda known: max(ids[known]))]

    def overlaps(self, server_name: str | None) -> bool:
        """Whether two instance ids keep calling as this server within the same minutes."""
        minute = self.current_minute()
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

    def current_minute(self) -> int:
        return int(self._clock() // 60)


class InstanceRecords(Protocol):
    """Where the app's instances share the minutes they saw, one record per server name."""

    def read(self, server_name: str | None, within_seconds: float | None = None) -> tuple[dict[str, frozenset[int]], str | None]:
        """The record's minutes and its version (None: no record yet), in one attempt of at most
        ``within_seconds`` when given; raises Unavailable."""
        ...

    def write(self, server_name: str | None, seen: Seen, version: str | None) -> bool:
        """Replace the record only if it is still at ``version`` (None: only if there is none); False if not."""
        ...


class SharedInstances:
    """``Instances`` of this app instance, shared with the others through ``records`` when there are any.

    ``submit`` runs a share off the request that asked for it (a one-thread executor's ``submit``);
    a name has at most one share waiting or running, so a stalled Blob storage queues nothing more.
    """

    def __init__(
        self,
        instances: Instances,
        records: InstanceRecords | None = None,
        submit: Callable[..., object] | None = None,
    ) -> None:
        self._instances = instances
        self._records = records
        self._submit = submit
        self._lock = threading.Lock()
        self._shared_minute: dict[str | None, int] = {}
        self._pending: set[str | None] = set()

    def note(self, server_name: str | None, instance_id: str) -> bool:
        """Note a call; the first of a minute for a server name also starts a share of its record."""
        noted = self._instances.note(server_name, instance_id)
        if noted and self._records is not None and self._submit is not None and self._claim_share(server_name):
            self._submit(self.share, server_name)
        return noted

    def overlaps(self, server_name: str | None) -> bool:
        return self._instances.overlaps(server_name)

    def overlapping(self) -> list[str | None]:
        return self._instances.overlapping()

    def overlaps_on_any_instance(self, server_name: str | None) -> bool:
        """Whether two ids keep calling as this server on this or another instance (reads the shared record)."""
        if self._records is not None:
            try:
                seen, _ = self._records.read(server_name, within_seconds=RECORD_READ_SECONDS)
            except Unavailable as error:  # judged by this instance's calls alone: a record never stops a generate
                log.warning("Reading the record of plugin instances failed: %s", error.message)
            else:
                self._instances.merge(server_name, seen)
        return self._instances.overlaps(server_name)

    def share(self, server_name: str | None) -> None:
        """Merge the record into this instance's minutes and this instance's into the record (If-Match, twice at most)."""
        assert self._records is not None
        try:
            for _ in range(2):
                seen, version = self._records.read(server_name)
                self._instances.merge(server_name, seen)
                if self._records.write(server_name, self._instances.seen(server_name), version):
                    return
            log.warning("The record of plugin instances kept changing; this instance shares it again next minute")
        except Unavailable as error:
            log.warning("Sharing the record of plugin instances failed: %s", error.message)
        finally:
            with self._lock:
                self._pending.discard(server_name)

    def _claim_share(self, server_name: str | None) -> bool:
        minute = self._instances.current_minute()
        with self._lock:
            if self._shared_minute.get(server_name) == minute or server_name in self._pending:
                return False
            self._shared_minute[server_name] = minute
            self._pending.add(server_name)
            return True
