"""NCRONTAB schedules as used by Azure Functions timer triggers.

Format: ``{second} {minute} {hour} {day} {month} {day-of-week}`` (5 fields are also
accepted and mean second 0). Fields support ``*``, numbers, ``a-b``, ``*/n``,
``a-b/n``, ``a/n``, lists ``a,b,c``, JAN-DEC and SUN-SAT (0 or 7 = Sunday).

Day-of-month and day-of-week: the Functions host uses the NCrontab library, which
requires BOTH to match (``0 0 9 13 * FRI`` = Friday the 13th), unlike classic cron;
devhost does the same, for fidelity.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


class CronError(ValueError):
    """An NCRONTAB expression that cannot be parsed or never fires."""


def _parse_field(text: str, lo: int, hi: int, names: tuple[str, ...] = (), base: int = 0) -> frozenset[int]:
    def number(token: str) -> int:
        if token.isdigit():
            value = int(token)
        elif token.upper() in names:
            value = names.index(token.upper()) + base
        else:
            raise CronError(f"bad value {token!r} in field {text!r}")
        if not lo <= value <= hi:
            raise CronError(f"{value} out of range {lo}-{hi} in field {text!r}")
        return value

    values: set[int] = set()
    for part in text.split(","):
        span, slash, step_text = part.partition("/")
        if slash and not (step_text.isdigit() and int(step_text) > 0):
            raise CronError(f"bad step in field {text!r}")
        step = int(step_text) if slash else 1
        if span == "*":
            first, last = lo, hi
        elif "-" in span:
            first, last = (number(t) for t in span.split("-", 1))
            if first > last:
                raise CronError(f"empty range {span!r} in field {text!r}")
        else:
            first = number(span)
            last = hi if slash else first  # "a/n" means from a to the end, every n
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        fields = expression.split()
        if len(fields) == 5:
            fields.insert(0, "0")
        if len(fields) != 6:
            raise CronError(f"expected 6 fields (or 5), got {len(fields)} in {expression!r}")
        try:
            sec, minute, hour, day, month = (
                _parse_field(fields[0], 0, 59),
                _parse_field(fields[1], 0, 59),
                _parse_field(fields[2], 0, 23),
                _parse_field(fields[3], 1, 31),
                _parse_field(fields[4], 1, 12, MONTHS, base=1),
            )
            weekdays = frozenset(d % 7 for d in _parse_field(fields[5], 0, 7, DAYS))
        except CronError as exc:
            raise CronError(f"{exc} (schedule {expression!r})") from None
        # Reject e.g. "0 0 0 30 2 *" up front rather than searching forever.
        if not any(d <= calendar.monthrange(2000, m)[1] for m in month for d in day):
            raise CronError(f"schedule {expression!r} never fires")
        return cls(expression, sec, minute, hour, day, month, weekdays)

    def _day_matches(self, when: datetime) -> bool:
        return when.day in self.days and (when.weekday() + 1) % 7 in self.weekdays  # Python: Monday = 0

    def matches(self, when: datetime) -> bool:
        return (
            when.month in self.months
            and self._day_matches(when)
            and when.hour in self.hours
            and when.minute in self.minutes
            and when.second in self.seconds
        )

    def next_after(self, when: datetime) -> datetime:
        """First occurrence strictly after ``when`` (whole seconds; tzinfo is kept)."""
        t = when.replace(microsecond=0) + timedelta(seconds=1)
        limit = t.year + 400  # the Gregorian calendar repeats every 400 years
        # Skip the largest non-matching unit each step; a matching day takes < 150 steps.
        while t.year <= limit:
            if t.month not in self.months:
                t = (t.replace(day=28) + timedelta(days=4)).replace(day=1, hour=0, minute=0, second=0)
            elif not self._day_matches(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0, second=0)
            elif t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0, second=0)
            elif t.minute not in self.minutes:
                t = (t + timedelta(minutes=1)).replace(second=0)
            elif t.second not in self.seconds:
                t += timedelta(seconds=1)
            else:
                return t
        raise CronError(f"schedule {self.expression!r} has no occurrence after {when}")
