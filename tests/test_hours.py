"""Opening hours through opening-hours-py, with the region's public-holiday calendar for `PH`."""

from __future__ import annotations

from datetime import datetime

import pytest

from config import load_region
from geo._hours import InvalidOpeningHours, can_fill_up, check_opening_hours, open_now

LIJIANG = load_region("lijiang")
# 2026-10-05 is a Monday inside China's National Day holiday (lijiang.toml), 2026-10-12 a normal Monday
HOLIDAY_MON_10 = datetime(2026, 10, 5, 10, 0)
NORMAL_MON_10 = datetime(2026, 10, 12, 10, 0)
SUNDAY_10 = datetime(2026, 10, 18, 10, 0)

# (value, local time, expected open_now) for common OSM forms the old hand-written parser missed
FORMS = [
    ("24/7", NORMAL_MON_10, True),
    ("Mo-Sa 07:00-20:00; Su closed", SUNDAY_10, False),
    ("Mo-Sa 07:00-20:00; Su closed", NORMAL_MON_10, True),
    ("Mo-Sa 07:00-20:00; Su off", SUNDAY_10, False),
    ("06:00-22:00; PH off", HOLIDAY_MON_10, False),
    ("06:00-22:00; PH off", NORMAL_MON_10, True),
    ("Mo-Fr 08:00-18:00; PH 10:00-14:00", datetime(2026, 10, 5, 15, 0), False),
    ("Mo-Fr 08:00-18:00; PH 10:00-14:00", datetime(2026, 10, 12, 15, 0), True),
    ("Mo-Su 07:00-22:00; Dec 25 off", datetime(2026, 12, 25, 10, 0), False),
    ("Mo-Su 07:00-22:00; Dec 25 off", datetime(2026, 12, 24, 10, 0), True),
    ("Apr-Oct 07:00-22:00; Nov-Mar 08:00-20:00", datetime(2026, 12, 1, 7, 30), False),
    ("Apr-Oct 07:00-22:00; Nov-Mar 08:00-20:00", datetime(2026, 6, 1, 7, 30), True),
    ('Mo-Su 07:00-22:00 "cash only at night"', NORMAL_MON_10, True),
    ('Mo-Fr 08:00-18:00 || "by appointment"', NORMAL_MON_10, True),
    ("06:00+", NORMAL_MON_10, True),
    ("Mo-Su 22:00-02:00", datetime(2026, 10, 13, 1, 0), True),
    ("Mo-Su 22:00-02:00", datetime(2026, 10, 13, 3, 0), False),
    ("Mo-Fr 07:00-12:00,13:00-19:00", datetime(2026, 10, 12, 12, 30), False),
    ("sunrise-sunset", NORMAL_MON_10, True),
]


@pytest.mark.parametrize(("value", "at", "expected"), FORMS)
def test_common_forms_are_understood(value: str, at: datetime, expected: bool) -> None:
    assert open_now(value, at, LIJIANG.holidays) is expected
    assert check_opening_hours(f"  {value} ") == value


def test_region_holidays_decide_ph_not_the_library_calendar() -> None:
    # the library's CN calendar marks only the first day of the National Day week; the region has all 7
    for day in range(1, 8):
        assert open_now("06:00-22:00; PH off", datetime(2026, 10, day, 12), LIJIANG.holidays) is False
    assert open_now("06:00-22:00; PH off", datetime(2026, 10, 8, 12), LIJIANG.holidays) is True
    assert open_now("06:00-22:00; PH off", datetime(2026, 10, 3, 12)) is True  # no calendar given


@pytest.mark.parametrize("bad", ["每天早上", "garbage", "25:00-26:00", "Mo-Xx 08:00-12:00", "   "])
def test_garbage_is_rejected_with_the_param_named(bad: str) -> None:
    with pytest.raises(InvalidOpeningHours) as err:
        check_opening_hours(bad)
    assert err.value.param == "opening_hours"
    assert isinstance(err.value, ValueError)
    assert open_now(bad, NORMAL_MON_10) is None


def test_can_fill_up_is_status_then_hours_at_the_time() -> None:
    hours = "Mo-Su 07:00-23:00"
    assert can_fill_up("open", hours, datetime(2026, 10, 12, 22, 59)).ok is True
    late = can_fill_up("open", hours, datetime(2026, 10, 12, 23, 1))
    assert late.ok is False and late.reason == "outside_opening_hours"
    shut = can_fill_up("temporarily_closed", "24/7", NORMAL_MON_10)
    assert shut.ok is False and shut.reason == "temporarily_closed"
    unknown = can_fill_up("open", None, NORMAL_MON_10)
    assert unknown.ok is None and unknown.reason is None
    assert can_fill_up("open", "06:00-22:00; PH off", HOLIDAY_MON_10, LIJIANG.holidays).reason == (
        "outside_opening_hours"
    )
