"""The slot engine against brute-force references, DST days and the edge cases of CLI.md's slot rule."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engagecli.core.models import Slot, Window
from engagecli.core.slots import compute_slots, merge_busy, windows_for_period
from engagecli.errors import UsageError

UTC = timezone.utc
BASE = datetime(2030, 3, 4, tzinfo=UTC)  # a Monday
B = int(BASE.timestamp())
H = 3600
M = 60


def at(seconds: int) -> datetime:
    return BASE + timedelta(seconds=seconds)


def starts(slots: list[Slot]) -> list[int]:
    return [int(s.start.timestamp()) - B for s in slots]


# ---------------------------------------------------------------------------------------------------------
# compute_slots vs a brute-force reference


def reference_slots(windows, busy, duration_min, interval_min, now, span):
    """Independent reference: mark every busy second of [0, span) in a bytearray and look each candidate up.

    Inputs are offsets from BASE in seconds; busy blocks may stick out of [0, span) and are clipped.
    """
    occupied = bytearray(span)
    for s, e in busy:
        lo, hi = max(s, 0), min(e, span)
        if hi > lo:
            occupied[lo:hi] = b"\x01" * (hi - lo)
    dur = duration_min * 60
    step = (interval_min or duration_min) * 60
    out = set()
    for ws, we in windows:
        s = ws
        while s + dur <= we:
            if at(s) >= now and 1 not in occupied[s : s + dur]:
                out.add(s)
            s += step
    return sorted(out)


SPAN = 2 * 86400
# mostly minute-aligned values (so edges touch often), sometimes odd seconds
instant = st.one_of(
    st.integers(0, SPAN // M).map(lambda m: m * M),
    st.integers(0, SPAN),
)
length = st.one_of(st.integers(0, 8 * 60).map(lambda m: m * M), st.integers(0, 8 * H))


@st.composite
def slot_inputs(draw):
    duration = draw(st.one_of(st.sampled_from([15, 30, 45, 60, 90]), st.integers(1, 240)))
    interval = draw(st.one_of(st.none(), st.sampled_from([5, 15, 30, 60]), st.integers(1, 300)))
    dur, step = duration * M, (interval or duration) * M
    windows = []
    for _ in range(draw(st.sampled_from([0, 1, 1, 2, 3, 5]))):
        s = draw(instant)
        e = min(s + draw(st.one_of(length, st.integers(0, 8).map(lambda k: k * step + dur))), SPAN)
        windows.append((s, e))

    def edge():
        """A candidate's start (or a second either side), where off-by-one mistakes show."""
        ws, _ = draw(st.sampled_from(windows))
        return ws + draw(st.sampled_from([0, 0, 1, 2, 3, 5, 8])) * step + draw(st.sampled_from([0, 0, 0, -1, 1]))

    def point():
        return edge() if windows and draw(st.booleans()) else draw(instant)

    short = st.one_of(st.integers(0, 90).map(lambda m: m * M), st.integers(0, 2 * H), length)
    busy = []
    for _ in range(draw(st.sampled_from([0, 1, 2, 3, 5, 8]))):
        kind = draw(st.sampled_from(["random", "before", "after", "inverted"] if windows else ["random"]))
        if kind == "random":
            s = draw(instant) - draw(st.sampled_from([0, 0, 0, H]))  # a few start before the span
            e = s + draw(short)
        elif kind == "before":  # ends at, or a second around, a candidate's start
            e = edge()
            s = e - draw(short)
        elif kind == "after":  # starts at, or a second around, a candidate's end
            s = edge() + dur
            e = s + draw(short)
        else:  # ends before it starts: blocks nothing
            s = point()
            e = s - draw(short)
        busy.append((s, min(e, SPAN + H)))
    if draw(st.integers(0, 3)) == 0:
        now = at(0) - timedelta(days=1)  # everything is in the future
    else:  # often a fraction of a second after a candidate's start
        now = at(edge() if windows and draw(st.integers(0, 2)) else draw(instant))
        now += timedelta(microseconds=draw(st.sampled_from([0, 1, 500_000, 999_999, -1])))
    return windows, busy, duration, interval, now


@settings(max_examples=200, deadline=None)
@given(slot_inputs())
def test_compute_slots_matches_brute_force(inputs):
    windows, busy, duration, interval, now = inputs
    got = compute_slots(
        windows=[(B + s, B + e) for s, e in windows],
        busy=[(B + s, B + e) for s, e in busy],
        duration_min=duration,
        interval_min=interval,
        now=now,
    )
    assert starts(got) == reference_slots(windows, busy, duration, interval, now, SPAN + H)
    for slot in got:
        assert slot.start.tzinfo is UTC and slot.end.tzinfo is UTC
        assert slot.end - slot.start == timedelta(minutes=duration)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(instant, length), max_size=15))
def test_merge_busy_is_disjoint_and_covers_the_same_seconds(blocks):
    busy = [(s, s + n) for s, n in blocks]
    b_starts, b_ends = merge_busy(busy)
    merged = list(zip(b_starts, b_ends))
    assert all(s < e for s, e in merged)
    assert all(e1 < s2 for (_, e1), (s2, _) in zip(merged, merged[1:]))  # sorted, not even touching

    def covered(blocks):
        seconds = bytearray(SPAN + 8 * H + 1)
        for s, e in blocks:
            if e > s:
                seconds[s:e] = b"\x01" * (e - s)
        return seconds

    assert covered(merged) == covered(busy)  # exactly the same busy seconds


# ---------------------------------------------------------------------------------------------------------
# windows_for_period vs a reference


def ref_local_to_utc(day: date, minute: int, tz: ZoneInfo, end: bool) -> int:
    """Independent: try every offset the zone uses around that time; in a gap, scan for the jump by minutes."""
    local = datetime.combine(day, time()) + timedelta(minutes=minute)
    as_utc = local.replace(tzinfo=UTC)
    offsets = {(as_utc + timedelta(hours=h)).astimezone(tz).utcoffset() for h in range(-30, 31)}
    real = sorted(
        as_utc - off for off in offsets if (as_utc - off).astimezone(tz).replace(tzinfo=None) == local
    )
    if real:
        return int((real[-1] if end else real[0]).timestamp())
    u = as_utc - max(offsets)
    while u.astimezone(tz).replace(tzinfo=None) <= local:  # in the gap: the first instant past it
        u += timedelta(minutes=1)
    return int(u.timestamp())


def ref_windows(start, end, tz, hours, overrides):
    out = []
    for n in range((end - start).days + 1):
        day = start + timedelta(days=n)
        for w in overrides.get(day, hours.get(day.weekday(), [])):
            s = ref_local_to_utc(day, w.start_min, tz, end=False)
            e = ref_local_to_utc(day, w.end_min, tz, end=True)
            if e > s:
                out.append((s, e))
    return sorted(out)


ZONES = ["Europe/Oslo", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]
DST_DAYS = [  # (zone, a day its clocks change)
    ("Europe/Oslo", date(2030, 3, 31)), ("Europe/Oslo", date(2030, 10, 27)),
    ("America/New_York", date(2030, 3, 10)), ("America/New_York", date(2030, 11, 3)),
    ("Australia/Lord_Howe", date(2030, 4, 7)), ("Australia/Lord_Howe", date(2030, 10, 6)),  # 30 minutes
]


@st.composite
def day_windows(draw):
    """Sorted, non-overlapping windows for one day; bounds often in the small hours, where clocks change."""
    grid = draw(st.sampled_from([30, 30, 15, 1]))
    bound = st.one_of(st.integers(0, 1440 // grid).map(lambda b: b * grid), st.integers(0, 4 * 60))
    bounds = sorted(draw(st.sets(bound, max_size=6)))
    return [Window(a, b) for a, b in zip(bounds[::2], bounds[1::2])]


@st.composite
def period_inputs(draw):
    if draw(st.booleans()):
        name, start = draw(st.sampled_from(DST_DAYS))
    else:
        name, start = draw(st.sampled_from(ZONES)), draw(st.dates(date(2029, 1, 1), date(2031, 12, 31)))
    tz = ZoneInfo(name)
    start -= timedelta(days=draw(st.integers(0, 2)))
    end = start + timedelta(days=draw(st.integers(-1, 4)))
    hours = {d: draw(day_windows()) for d in draw(st.sets(st.integers(0, 6)))}
    overrides = {}
    for _ in range(draw(st.integers(0, 3))):
        overrides[start + timedelta(days=draw(st.integers(0, 4)))] = draw(st.one_of(st.just([]), day_windows()))
    return start, end, tz, hours, overrides


@settings(max_examples=120, deadline=None)
@given(period_inputs())
def test_windows_for_period_matches_reference(inputs):
    start, end, tz, hours, overrides = inputs
    got = windows_for_period(start, end, tz, hours, overrides)
    assert got == ref_windows(start, end, tz, hours, overrides)
    assert got == sorted(got) and all(s < e for s, e in got)


def test_every_zone_and_dst_day_is_checked_at_least_once():
    """The hypothesis strategy draws from these; make sure each DST day really changes the offset."""
    for name, day in DST_DAYS:
        tz = ZoneInfo(name)
        before = datetime.combine(day, time(0), tz).utcoffset()
        after = datetime.combine(day, time(23), tz).utcoffset()
        assert before != after, (day, name)
        hours = {day.weekday(): [Window(0, 1440)]}
        [(s, e)] = windows_for_period(day, day, tz, hours, {})
        assert e - s == 86400 + int((before - after).total_seconds())  # 23 h, 25 h, 23.5 h or 24.5 h


# ---------------------------------------------------------------------------------------------------------
# DST days end to end

OSLO = ZoneInfo("Europe/Oslo")
NY = ZoneInfo("America/New_York")
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def day_slots(day, tz, windows, duration=30, interval=None):
    wins = windows_for_period(day, day, tz, {day.weekday(): windows}, {})
    return compute_slots(windows=wins, busy=[], duration_min=duration, interval_min=interval, now=LONG_AGO)


def local_labels(slots, tz):
    return [s.start.astimezone(tz).strftime("%H:%M%z") for s in slots]


def test_oslo_spring_forward():
    slots = day_slots(date(2030, 3, 31), OSLO, [Window(0, 6 * 60)])
    labels = local_labels(slots, OSLO)
    # 00:00 CET .. 06:00 CEST is five real hours: ten slots, none at the missing 02:00 or 02:30
    assert not any(label.startswith(("02:00", "02:30")) for label in labels)
    assert labels == [
        "00:00+0100", "00:30+0100", "01:00+0100", "01:30+0100",
        "03:00+0200", "03:30+0200", "04:00+0200", "04:30+0200", "05:00+0200", "05:30+0200",
    ]
    assert slots[0].start == datetime(2030, 3, 30, 23, 0, tzinfo=UTC)
    assert slots[-1].end == datetime(2030, 3, 31, 4, 0, tzinfo=UTC)


def test_oslo_spring_forward_window_inside_the_gap_disappears():
    day = date(2030, 3, 31)
    assert windows_for_period(day, day, OSLO, {}, {day: [Window(2 * 60, 2 * 60 + 30)]}) == []
    # a window starting in the gap starts when the gap ends (03:00 CEST)
    [(s, e)] = windows_for_period(day, day, OSLO, {}, {day: [Window(2 * 60 + 30, 4 * 60)]})
    assert datetime.fromtimestamp(s, UTC) == datetime(2030, 3, 31, 1, 0, tzinfo=UTC)  # 03:00 CEST
    assert datetime.fromtimestamp(e, UTC) == datetime(2030, 3, 31, 2, 0, tzinfo=UTC)  # 04:00 CEST


def test_oslo_fall_back_offers_each_real_instant_once():
    slots = day_slots(date(2030, 10, 27), OSLO, [Window(0, 6 * 60)])
    labels = local_labels(slots, OSLO)
    # 00:00 CEST .. 06:00 CET is seven real hours; 02:00 and 02:30 appear twice with different offsets
    assert labels == [
        "00:00+0200", "00:30+0200", "01:00+0200", "01:30+0200", "02:00+0200", "02:30+0200",
        "02:00+0100", "02:30+0100", "03:00+0100", "03:30+0100", "04:00+0100", "04:30+0100",
        "05:00+0100", "05:30+0100",
    ]
    instants = [s.start for s in slots]
    assert len(set(instants)) == len(instants) == 14
    assert all(b.start - a.start == timedelta(minutes=30) for a, b in zip(slots, slots[1:]))


def test_oslo_fall_back_window_in_the_overlap_keeps_both_hours():
    day = date(2030, 10, 27)
    # 02:00-03:00 starts at the first 02:00 (CEST) and ends at the later 03:00 (CET): two real hours
    [(s, e)] = windows_for_period(day, day, OSLO, {}, {day: [Window(120, 180)]})
    assert e - s == 2 * H


def test_new_york_spring_forward():
    slots = day_slots(date(2030, 3, 10), NY, [Window(60, 4 * 60)], duration=60)
    assert local_labels(slots, NY) == ["01:00-0500", "03:00-0400"]  # 01:00 EST .. 04:00 EDT: two hours


def test_new_york_fall_back():
    slots = day_slots(date(2030, 11, 3), NY, [Window(0, 3 * 60)], duration=30)
    labels = local_labels(slots, NY)
    assert labels == [
        "00:00-0400", "00:30-0400", "01:00-0400", "01:30-0400",
        "01:00-0500", "01:30-0500", "02:00-0500", "02:30-0500",
    ]
    assert len({s.start for s in slots}) == 8


def test_interval_is_elapsed_time_across_a_gap():
    # 90-minute interval from 00:00 CET on spring-forward day: every 90 real minutes, not wall-clock minutes
    slots = day_slots(date(2030, 3, 31), OSLO, [Window(0, 6 * 60)], duration=30, interval=90)
    # 00:00 CET, 01:30 CET, then 90 real minutes later is 04:00 CEST (not 03:00), then 05:30 CEST
    assert local_labels(slots, OSLO) == ["00:00+0100", "01:30+0100", "04:00+0200", "05:30+0200"]


# ---------------------------------------------------------------------------------------------------------
# edge cases


def slots_of(windows, busy=(), duration=30, interval=None, now=LONG_AGO):
    return starts(
        compute_slots(
            windows=[(B + s, B + e) for s, e in windows],
            busy=[(B + s, B + e) for s, e in busy],
            duration_min=duration,
            interval_min=interval,
            now=now,
        )
    )


def test_busy_touching_a_slot_edge_still_offers_it():
    # busy 09:00-09:30 and 10:00-10:30 touch the 09:30-10:00 slot on both sides
    got = slots_of([(9 * H, 11 * H)], busy=[(9 * H, 9 * H + 30 * M), (10 * H, 10 * H + 30 * M)])
    assert got == [9 * H + 30 * M, 10 * H + 30 * M]


def test_busy_overlapping_by_one_second_blocks():
    got = slots_of([(9 * H, 10 * H)], busy=[(9 * H + 30 * M - 1, 9 * H + 30 * M)])
    assert got == [9 * H + 30 * M]


def test_slot_crossing_window_end_not_offered():
    got = slots_of([(9 * H, 10 * H + 20 * M)])
    assert got == [9 * H, 9 * H + 30 * M]  # 10:00-10:30 would cross 10:20
    assert slots_of([(9 * H, 9 * H + 29 * M)]) == []


def test_slot_must_lie_in_one_window_even_if_windows_touch():
    # 09:00-09:45 and 09:45-10:30: no slot spans the seam; candidates restart at each window's start
    got = slots_of([(9 * H, 9 * H + 45 * M), (9 * H + 45 * M, 10 * H + 30 * M)])
    assert got == [9 * H, 9 * H + 45 * M]


def test_past_slots_dropped():
    windows = [(9 * H, 12 * H)]
    assert slots_of(windows, now=at(10 * H + 10 * M)) == [10 * H + 30 * M, 11 * H, 11 * H + 30 * M]
    # exactly at a candidate's start it is still offered; a microsecond later it is not
    assert slots_of(windows, now=at(11 * H))[0] == 11 * H
    assert slots_of(windows, now=at(11 * H) + timedelta(microseconds=1))[0] == 11 * H + 30 * M
    # now given in another zone means the same instant
    assert slots_of(windows, now=at(11 * H).astimezone(OSLO)) == [11 * H, 11 * H + 30 * M]
    assert slots_of(windows, now=at(12 * H)) == []


def test_overlapping_unsorted_busy_is_merged():
    busy = [(10 * H, 11 * H), (9 * H + 15 * M, 10 * H + 15 * M), (9 * H + 15 * M, 9 * H + 20 * M), (11 * H, 11 * H)]
    got = slots_of([(9 * H, 12 * H)], busy=busy, duration=30, interval=15)
    assert got == [11 * H, 11 * H + 15 * M, 11 * H + 30 * M]


def test_interval_smaller_than_duration_overlapping_candidates():
    got = slots_of([(9 * H, 10 * H)], duration=30, interval=10)
    assert got == [9 * H + k * 10 * M for k in range(4)]  # 9:00, 9:10, 9:20, 9:30
    got = slots_of([(9 * H, 10 * H)], busy=[(9 * H + 25 * M, 9 * H + 35 * M)], duration=30, interval=10)
    assert got == []  # every candidate covers 9:25-9:35 in part
    got = slots_of([(9 * H, 11 * H)], busy=[(9 * H + 25 * M, 9 * H + 35 * M)], duration=30, interval=10)
    assert got == [9 * H + 40 * M + k * 10 * M for k in range(6)]


def test_interval_larger_than_duration():
    got = slots_of([(9 * H, 12 * H)], duration=30, interval=60)
    assert got == [9 * H, 10 * H, 11 * H]
    # a busy hit skips to the next candidate on the interval grid, not to the busy block's end
    got = slots_of([(9 * H, 12 * H)], busy=[(9 * H + 50 * M, 10 * H + 5 * M)], duration=30, interval=60)
    assert got == [9 * H, 11 * H]


def test_overlapping_windows_do_not_duplicate_slots():
    got = slots_of([(9 * H, 11 * H), (10 * H, 12 * H), (9 * H, 11 * H)])
    assert got == [9 * H + k * 30 * M for k in range(6)]


def test_empty_inputs():
    assert slots_of([]) == []
    assert slots_of([], busy=[(0, H)]) == []
    assert slots_of([(9 * H, 9 * H)]) == []
    assert slots_of([(10 * H, 9 * H)]) == []
    assert slots_of([(9 * H, 10 * H)], busy=[]) == [9 * H, 9 * H + 30 * M]
    d = date(2030, 3, 4)
    assert windows_for_period(d, d, OSLO, {}, {}) == []
    assert windows_for_period(d, d - timedelta(days=1), OSLO, {0: [Window(0, 60)]}, {}) == []
    assert merge_busy([]) == ([], [])


def test_fully_busy_window_offers_nothing():
    assert slots_of([(9 * H, 17 * H)], busy=[(8 * H, 18 * H)]) == []


def test_overrides_off_and_override_hours():
    monday, tuesday, wednesday = date(2030, 3, 4), date(2030, 3, 5), date(2030, 3, 6)
    hours = {d: [Window(9 * 60, 12 * 60)] for d in range(5)}
    tz = ZoneInfo("UTC")
    overrides = {tuesday: [], wednesday: [Window(13 * 60, 14 * 60), Window(15 * 60, 15 * 60 + 30)]}
    got = windows_for_period(monday, wednesday, tz, hours, overrides)
    day = lambda d, m: int(datetime.combine(d, time(), UTC).timestamp()) + m * 60
    assert got == [
        (day(monday, 540), day(monday, 720)),
        (day(wednesday, 780), day(wednesday, 840)),
        (day(wednesday, 900), day(wednesday, 930)),
    ]
    # an override also switches on a day without weekly hours
    saturday = date(2030, 3, 9)
    assert windows_for_period(saturday, saturday, tz, hours, {saturday: [Window(600, 660)]}) == [
        (day(saturday, 600), day(saturday, 660))
    ]
    slots = compute_slots(windows=got, busy=[], duration_min=60, interval_min=None, now=LONG_AGO)
    assert [s.start for s in slots] == [datetime.combine(monday, time(h), UTC) for h in (9, 10, 11)] + [
        datetime.combine(wednesday, time(13), UTC)
    ]


def test_window_until_midnight_uses_the_next_day():
    d = date(2030, 3, 4)
    [(s, e)] = windows_for_period(d, d, OSLO, {0: [Window(22 * 60, 1440)]}, {})
    assert e - s == 2 * H
    assert datetime.fromtimestamp(e, OSLO).replace(tzinfo=None) == datetime(2030, 3, 5, 0, 0)


@pytest.mark.parametrize(
    "duration, interval",
    [(0, None), (-30, None), (1441, None), (30, 0), (30, 1441), (30.5, None), (True, None), ("30", None)],
)
def test_bad_duration_or_interval_is_a_usage_error(duration, interval):
    with pytest.raises(UsageError) as info:
        compute_slots(windows=[(0, 3600)], busy=[], duration_min=duration, interval_min=interval, now=LONG_AGO)
    message = str(info.value)
    assert "\n" not in message
    assert ("--interval" if interval is not None else "--duration") in message
    assert info.value.exit_code == 2


def test_limits_are_inclusive():
    day = [(0, 86400)]
    assert slots_of(day, duration=1440) == [0]
    assert len(slots_of(day, duration=1, interval=1440)) == 1
    assert len(slots_of(day, duration=1)) == 1440


def test_naive_now_refused():
    with pytest.raises(ValueError):
        compute_slots(windows=[], busy=[], duration_min=30, interval_min=None, now=datetime(2030, 1, 1))


def test_large_input_is_handled_correctly():
    """20,000 busy blocks over a year of windows: spot-check against the reference on a slice."""
    import random

    rng = random.Random(7)
    windows = [(d * 86400 + 8 * H, d * 86400 + 18 * H) for d in range(365)]
    busy_starts = [rng.randrange(0, 365 * 86400) for _ in range(20_000)]
    busy = [(t, t + rng.choice([15, 30, 45, 60, 120]) * M) for t in busy_starts]
    got = slots_of(windows, busy=busy, duration=30, interval=15)
    slice_windows = windows[:20]
    span = 20 * 86400
    expected = reference_slots(slice_windows, [b for b in busy if b[0] < span], 30, 15, LONG_AGO, span)
    assert [s for s in got if s < span] == expected
    assert got == sorted(set(got))
    assert len(got) > 300 and got[-1] > 360 * 86400  # the whole year was walked, not just the slice
