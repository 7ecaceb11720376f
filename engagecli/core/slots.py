"""The slot engine: availability windows and busy time in, offered slots out (CLI.md, "Slots: the exact rule").

Pure and fast: no I/O, stdlib + core only. Inside, every instant is an integer number of UTC epoch seconds and
every interval is half-open [start, end).

- `windows_for_period` turns weekly hours and per-date overrides into UTC availability windows, one local date
  at a time, with the DST gap/overlap rules of `core.timeutil` (a window never loses real time; a window that
  falls wholly inside a spring-forward gap disappears).
- `compute_slots` applies the rule: candidates start at each window's start plus k x interval (elapsed time),
  run [s, s + duration), and are offered iff wholly inside that window, not before `now`, and overlapping no
  busy interval (touching is fine). Busy intervals are merged once, then each candidate costs one bisect; a
  candidate that hits a busy block jumps straight to the first candidate after it.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import date, datetime, timedelta, timezone
from operator import itemgetter
from zoneinfo import ZoneInfo

from engagecli.core.models import Overrides, Slot, WeeklyHours
from engagecli.core.timeutil import local_minute_to_utc
from engagecli.errors import UsageError

UTC = timezone.utc
MAX_MINUTES = 24 * 60
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)
_first = itemgetter(0)


def _epoch(value: datetime) -> int:
    """Whole epoch seconds of an aware datetime (floor; exact, no float)."""
    return (value - _EPOCH) // _SECOND


def _epoch_ceil(value: datetime) -> int:
    """The first whole epoch second at or after an aware datetime."""
    delta = value - _EPOCH
    seconds = delta.days * 86400 + delta.seconds
    return seconds + 1 if delta.microseconds else seconds


def windows_for_period(
    start: date, end: date, tz: ZoneInfo, hours: WeeklyHours, overrides: Overrides
) -> list[tuple[int, int]]:
    """Availability windows as sorted UTC epoch-second pairs for local dates start..end inclusive.

    A date present in `overrides` uses the override's windows (an empty list: off) instead of the weekly hours.
    A window's start resolves with the "starts something" rule, its end with the "ends something" rule.
    Windows that end up empty (wholly inside a DST gap) are dropped; windows are never merged, because a slot
    must lie inside one window.
    """
    out: list[tuple[int, int]] = []
    day = start
    while day <= end:
        day_windows = overrides[day] if day in overrides else hours.get(day.weekday(), ())
        for w in day_windows:
            s = _epoch(local_minute_to_utc(day, w.start_min, tz))
            e = _epoch(local_minute_to_utc(day, w.end_min, tz, end=True))
            if e > s:
                out.append((s, e))
        day += _DAY
    out.sort()
    return out


def merge_busy(busy: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Sorted, disjoint, non-touching busy intervals as parallel (starts, ends) lists.

    Empty or inverted intervals block nothing and are dropped; overlapping and touching ones are joined
    (for half-open intervals a candidate overlaps the union iff it overlaps one of them).
    """
    starts: list[int] = []
    ends: list[int] = []
    cur_s = cur_e = None
    for s, e in sorted(busy, key=_first):  # by start only: cheaper than comparing tuples, order of ends is moot
        if e <= s:
            continue
        if cur_e is not None and s <= cur_e:
            if e > cur_e:
                cur_e = e
        else:
            if cur_e is not None:
                starts.append(cur_s)
                ends.append(cur_e)
            cur_s, cur_e = s, e
    if cur_e is not None:
        starts.append(cur_s)
        ends.append(cur_e)
    return starts, ends


def _check_minutes(option: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{option} must be a whole number of minutes, got {value!r}", hint="e.g. 30")
    if not 1 <= value <= MAX_MINUTES:
        raise UsageError(f"{option} {value} is out of range", hint=f"give 1 to {MAX_MINUTES} minutes (24 hours)")
    return value


def compute_slots(
    *,
    windows: list[tuple[int, int]],
    busy: list[tuple[int, int]],
    duration_min: int,
    interval_min: int | None,
    now: datetime,
) -> list[Slot]:
    """The offered slots, sorted by start, without duplicates (see the module docstring for the rule).

    `windows` and `busy` are UTC epoch-second pairs in any order; busy may overlap (pass appointments as busy).
    `now` must be timezone-aware. Raises UsageError for a duration or interval outside 1..1440 minutes.
    """
    duration = _check_minutes("--duration", duration_min) * 60
    step = duration if interval_min is None else _check_minutes("--interval", interval_min) * 60
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    earliest = _epoch_ceil(now)
    b_starts, b_ends = merge_busy(busy)
    n_busy = len(b_starts)

    found: list[int] = []
    in_order = True  # stays True while candidates come out strictly increasing (disjoint, sorted windows)
    for ws, we in windows:
        last = we - duration  # the latest start that still fits the window
        if last < ws:
            continue
        s = ws
        if s < earliest:
            s = ws + -(-(earliest - ws) // step) * step
        i = 0
        while s <= last:
            i = bisect_right(b_ends, s, i)  # the first busy block that ends after s
            if i < n_busy and b_starts[i] < s + duration:
                # overlaps block i: skip to the first candidate that starts at or after its end
                s = ws + -(-(b_ends[i] - ws) // step) * step
                continue
            if found and s <= found[-1]:
                in_order = False
            found.append(s)
            s += step
    if not in_order:
        found = sorted(set(found))

    slot = Slot
    epoch = _EPOCH
    second = _SECOND
    return [slot(epoch + s * second, epoch + (s + duration) * second) for s in found]
