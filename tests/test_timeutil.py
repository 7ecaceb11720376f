"""Time rules of core.timeutil: DST gaps and overlaps, parsing of user input."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from engagecli.core.timeutil import (
    all_day_span, local_minute_to_utc, parse_days, parse_instant, parse_window, parse_windows, resolve_local, zone,
)
from engagecli.errors import UsageError

UTC = timezone.utc
OSLO = zone("Europe/Oslo")


def test_gap_resolves_to_the_jump_and_overlap_to_earliest_or_latest():
    # 2030-03-31 02:00 -> 03:00 in Oslo: 02:30 does not exist; the clocks jump at 01:00Z
    assert resolve_local(datetime(2030, 3, 31, 2, 30), OSLO) == datetime(2030, 3, 31, 1, 0, tzinfo=UTC)
    assert resolve_local(datetime(2030, 3, 31, 2, 30), OSLO, end=True) == datetime(2030, 3, 31, 1, 0, tzinfo=UTC)
    # 2030-10-27 03:00 -> 02:00: 02:30 happens at 00:30Z and at 01:30Z
    assert resolve_local(datetime(2030, 10, 27, 2, 30), OSLO) == datetime(2030, 10, 27, 0, 30, tzinfo=UTC)
    assert resolve_local(datetime(2030, 10, 27, 2, 30), OSLO, end=True) == datetime(2030, 10, 27, 1, 30, tzinfo=UTC)
    assert local_minute_to_utc(date(2030, 7, 1), 9 * 60, OSLO) == datetime(2030, 7, 1, 7, 0, tzinfo=UTC)


def test_all_day_span_covers_local_dates_even_when_midnight_does_not_exist():
    assert all_day_span(date(2030, 3, 31), None, OSLO) == (datetime(2030, 3, 30, 23, tzinfo=UTC),
                                                          datetime(2030, 3, 31, 22, tzinfo=UTC))  # a 23-hour day
    assert all_day_span(date(2030, 1, 1), date(2030, 1, 3), OSLO) == (datetime(2029, 12, 31, 23, tzinfo=UTC),
                                                                     datetime(2030, 1, 2, 23, tzinfo=UTC))
    # America/Santiago skips 00:00-01:00 on 2030-09-08: that date starts at 01:00 local (04:00Z)
    start, end = all_day_span(date(2030, 9, 8), None, zone("America/Santiago"))
    assert start == datetime(2030, 9, 8, 4, tzinfo=UTC)
    assert (end - start).total_seconds() == 23 * 3600


def test_parse_days():
    assert parse_days("mon-fri") == [0, 1, 2, 3, 4]
    assert parse_days("fri-mon") == [0, 4, 5, 6]
    assert parse_days("sat,sun") == [5, 6]
    assert parse_days("Monday,wed-thu") == [0, 2, 3]
    assert parse_days("daily") == list(range(7))
    for bad in ("funday", "mon-", "m", "mon-fri-sat", ""):
        with pytest.raises(UsageError):
            parse_days(bad)


def test_parse_windows():
    assert parse_window("09:00-24:00").end_min == 1440
    assert [w.label() for w in parse_windows(["13:00-17:00", "09:00-12:00"])] == ["09:00-12:00", "13:00-17:00"]
    for bad in (["9-5"], ["10:00-09:00"], ["09:00-12:00", "11:59-13:00"], ["24:30-25:00"], ["09:60-10:00"]):
        with pytest.raises(UsageError):
            parse_windows(bad)


def test_parse_instant_refuses_ambiguous_and_missing_wall_times():
    assert parse_instant("2030-03-04T10:00", OSLO) == datetime(2030, 3, 4, 9, tzinfo=UTC)
    assert parse_instant("2030-10-27T02:30+01:00", OSLO) == datetime(2030, 10, 27, 1, 30, tzinfo=UTC)
    for text in ("2030-03-31T02:30", "2030-10-27T02:30", "next tuesday"):
        with pytest.raises(UsageError):
            parse_instant(text, OSLO)


def test_zone_names():
    assert zone("America/New_York").key == "America/New_York"
    for bad in ("Mars/Base", "", "../etc/passwd", "/etc/localtime", " Europe/Oslo"):
        with pytest.raises(UsageError):
            zone(bad)
