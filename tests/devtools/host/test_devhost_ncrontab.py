from datetime import UTC, datetime

import pytest

from shared.ncrontab import CronError, Schedule


def nexts(expression: str, start: datetime, count: int = 3) -> list[datetime]:
    schedule, out, t = Schedule.parse(expression), [], start
    for _ in range(count):
        t = schedule.next_after(t)
        out.append(t)
    return out


D = datetime


def test_every_six_hours():
    assert nexts("0 0 */6 * * *", D(2024, 1, 1, 0, 0, 0), 4) == [D(2024, 1, 1, 6), D(2024, 1, 1, 12), D(2024, 1, 1, 18), D(2024, 1, 2, 0)]
    # strictly after, and sub-second parts are ignored
    assert nexts("0 0 */6 * * *", D(2024, 1, 1, 5, 59, 59, 999999), 1) == [D(2024, 1, 1, 6)]


def test_every_other_day_of_month():
    assert nexts("0 0 0 */2 * *", D(2024, 1, 29), 3) == [D(2024, 1, 31), D(2024, 2, 1), D(2024, 2, 3)]
    assert nexts("0 0 0 */2 * *", D(2023, 2, 27), 1) == [D(2023, 3, 1)]  # no Feb 29 in 2023
    assert nexts("0 0 0 */2 * *", D(2024, 2, 27), 1) == [D(2024, 2, 29)]


def test_five_fields_mean_second_zero():
    assert nexts("*/15 * * * *", D(2024, 1, 1, 0, 0, 30), 3) == [D(2024, 1, 1, 0, 15), D(2024, 1, 1, 0, 30), D(2024, 1, 1, 0, 45)]


@pytest.mark.parametrize(
    "field, expected",
    [
        ("*", set(range(60))),
        ("7", {7}),
        ("10-12", {10, 11, 12}),
        ("*/20", {0, 20, 40}),
        ("10-30/10", {10, 20, 30}),
        ("5/20", {5, 25, 45}),
        ("1,2,40-42,50/5", {1, 2, 40, 41, 42, 50, 55}),
    ],
)
def test_field_syntax(field, expected):
    assert Schedule.parse(f"{field} * * * * *").seconds == expected
    assert Schedule.parse(f"0 {field} * * * *").minutes == expected


def test_month_names_and_ranges():
    assert Schedule.parse("0 0 0 1 JAN,jul *").months == {1, 7}
    assert Schedule.parse("0 0 0 1 Mar-MAY *").months == {3, 4, 5}
    assert nexts("0 0 0 1 JAN,jul *", D(2024, 2, 1), 2) == [D(2024, 7, 1), D(2025, 1, 1)]


def test_day_names():
    assert Schedule.parse("0 0 0 * * MON-FRI").weekdays == {1, 2, 3, 4, 5}
    # Sunday is 0, 7 or SUN
    assert Schedule.parse("0 0 0 * * 0").weekdays == Schedule.parse("0 0 0 * * 7").weekdays == {0}
    assert Schedule.parse("0 0 0 * * sun").weekdays == {0}
    assert Schedule.parse("0 0 0 * * *").weekdays == set(range(7))
    # 2024-01-06 is a Saturday
    assert nexts("0 30 9 * * MON-FRI", D(2024, 1, 6, 12), 2) == [D(2024, 1, 8, 9, 30), D(2024, 1, 9, 9, 30)]
    assert nexts("0 0 0 * * SUN", D(2024, 1, 6), 1) == [D(2024, 1, 7)]


def test_day_of_month_and_week_both_restricted():
    # NCrontab (the Functions host) needs both to match: Fridays the 13th.
    assert nexts("0 0 0 13 * FRI", D(2024, 1, 1), 2) == [D(2024, 9, 13), D(2024, 12, 13)]


def test_rollovers():
    assert nexts("0 0 0 1 1 *", D(2024, 12, 31, 23, 59, 59), 1) == [D(2025, 1, 1)]
    assert nexts("59 59 23 31 12 *", D(2024, 12, 31, 23, 59, 59), 1) == [D(2025, 12, 31, 23, 59, 59)]
    assert nexts("0 0 0 31 * *", D(2024, 4, 1), 2) == [D(2024, 5, 31), D(2024, 7, 31)]
    assert nexts("0 0 12 29 2 *", D(2023, 3, 1), 2) == [D(2024, 2, 29, 12), D(2028, 2, 29, 12)]
    assert nexts("* * * * * *", D(2024, 2, 29, 23, 59, 59), 1) == [D(2024, 3, 1)]
    assert nexts("0 0 0 29 2 MON", D(2024, 3, 1), 1) == [D(2044, 2, 29)]


def test_timezone_is_kept():
    start = datetime(2024, 1, 1, 1, tzinfo=UTC)
    assert Schedule.parse("0 0 */6 * * *").next_after(start) == datetime(2024, 1, 1, 6, tzinfo=UTC)


def test_matches():
    schedule = Schedule.parse("30 15 10 * * *")
    assert schedule.matches(D(2024, 5, 5, 10, 15, 30))
    assert not schedule.matches(D(2024, 5, 5, 10, 15, 31))


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "* * * *",
        "* * * * * * *",
        "60 * * * * *",
        "* * 24 * * *",
        "* * * 0 * *",
        "* * * * 13 *",
        "* * * * * 8",
        "* * * * * MONX",
        "*/0 * * * * *",
        "5-1 * * * * *",
        "1,,2 * * * * *",
        "a * * * * *",
        "0 0 0 30 2 *",  # never fires
    ],
)
def test_invalid(expression):
    with pytest.raises(CronError):
        Schedule.parse(expression)
