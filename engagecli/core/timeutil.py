"""Time rules: parsing user input and turning local wall-clock times into UTC instants.

Rules (documented in the README):
- A local time that does not exist (the spring-forward gap) resolves to the instant the gap ends.
- A local time that exists twice (the fall-back overlap) resolves to the earlier instant when it starts
  something and to the later instant when it ends something, so a window never loses real time.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engagecli.core.models import Window
from engagecli.errors import UsageError

UTC = timezone.utc
DAY_NAMES = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`, or a UsageError naming it."""
    if not name or name != name.strip() or name.startswith("/") or ".." in name:
        raise UsageError(f"unknown time zone {name!r}", hint="use an IANA name such as Europe/Oslo")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise UsageError(f"unknown time zone {name!r}", hint="use an IANA name such as Europe/Oslo") from None


def _exists(local: datetime, tz: ZoneInfo) -> bool:
    return local.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) == local


def resolve_local(local: datetime, tz: ZoneInfo, *, end: bool = False) -> datetime:
    """The UTC instant of naive wall-clock time `local` in `tz`, by the gap/overlap rules above."""
    first = local.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = local.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return first
    if _exists(local, tz):  # the overlap: two real instants
        return max(first, second) if end else min(first, second)
    # the gap: fold=0 uses the offset before the jump, fold=1 the offset after; the jump happens in between
    return _transition_between(min(first, second), max(first, second), tz)


def _transition_between(lo: datetime, hi: datetime, tz: ZoneInfo) -> datetime:
    """The first instant in (lo, hi] whose offset differs from lo's (binary search to the second)."""
    base = lo.astimezone(tz).utcoffset()
    a, b = lo, hi
    while (b - a) > timedelta(seconds=1):
        mid = a + (b - a) / 2
        mid = mid.replace(microsecond=0)
        if mid.astimezone(tz).utcoffset() == base:
            a = mid
        else:
            b = mid
    return b


def local_minute_to_utc(day: date, minute: int, tz: ZoneInfo, *, end: bool = False) -> datetime:
    """UTC instant of `minute` minutes after local midnight on `day` (1440 = the next midnight)."""
    local = datetime.combine(day, time()) + timedelta(minutes=minute)
    return resolve_local(local, tz, end=end)


def parse_hhmm(text: str) -> int:
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not m:
        raise UsageError(f"bad time {text!r}", hint="use HH:MM, e.g. 09:30")
    h, mi = int(m.group(1)), int(m.group(2))
    if mi > 59 or h > 24 or (h == 24 and mi):
        raise UsageError(f"bad time {text!r}", hint="use HH:MM between 00:00 and 24:00")
    return h * 60 + mi


def parse_window(text: str) -> Window:
    parts = text.split("-")
    if len(parts) != 2:
        raise UsageError(f"bad time range {text!r}", hint="use HH:MM-HH:MM, e.g. 09:00-12:00")
    start, end = parse_hhmm(parts[0]), parse_hhmm(parts[1])
    if end <= start:
        raise UsageError(f"time range {text!r} ends before it starts")
    return Window(start, end)


def parse_windows(texts: list[str]) -> list[Window]:
    """Windows for one day, sorted; overlapping or touching ranges are an error, not silently merged."""
    windows = sorted(parse_window(t) for t in texts)
    for a, b in zip(windows, windows[1:]):
        if b.start_min < a.end_min:
            raise UsageError(f"time ranges {a.label()} and {b.label()} overlap")
    return windows


def parse_days(text: str) -> list[int]:
    """'mon-fri', 'sat,sun', 'mon,wed-fri', 'daily'/'all' -> weekday numbers (Monday=0)."""
    text = text.strip().lower()
    if text in ("daily", "all", "every", "mon-sun"):
        return list(range(7))
    if text in ("weekdays", "workdays"):
        return list(range(5))
    if text == "weekend":
        return [5, 6]
    days: set[int] = set()
    for part in text.split(","):
        bounds = part.split("-")
        try:
            idx = [DAY_NAMES.index(b.strip()[:3]) for b in bounds if b.strip()]
        except ValueError:
            idx = []
        if len(idx) != len(bounds) or len(idx) not in (1, 2) or any(
            not DAY_NAMES[i].startswith(b.strip()[:3]) or len(b.strip()) < 3 for i, b in zip(idx, bounds)
        ):
            raise UsageError(f"bad days {text!r}", hint="use e.g. mon-fri, sat,sun or daily")
        if len(idx) == 1:
            days.add(idx[0])
        else:
            a, b = idx
            i = a
            while True:
                days.add(i)
                if i == b:
                    break
                i = (i + 1) % 7
    return sorted(days)


MIN_YEAR, MAX_YEAR = 1971, 9998  # room for zone offsets and periods at both ends of what datetime holds


def _check_year(value, text: str):
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise UsageError(f"{text!r} is out of range", hint=f"use a year from {MIN_YEAR} to {MAX_YEAR}")
    return value


def parse_date(text: str) -> date:
    try:
        value = date.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"bad date {text!r}", hint="use YYYY-MM-DD, e.g. 2030-03-04") from None
    return _check_year(value, text)


def parse_instant(text: str, tz: ZoneInfo) -> datetime:
    """An ISO 8601 date-time; without an offset it is wall-clock time in `tz`. Returns UTC.

    A wall-clock time in a DST gap or overlap is refused: an appointment must name a real, unique instant.
    """
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"bad date-time {text!r}", hint="use YYYY-MM-DDTHH:MM, e.g. 2030-03-04T10:00") from None
    _check_year(value, text)
    if value.tzinfo is not None:
        return value.astimezone(UTC)
    first = value.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = value.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first != second:
        if _exists(value, tz):
            offsets = " or ".join(sorted({isoformat(i, tz)[-6:] for i in (first, second)}))
            raise UsageError(f"{text} happens twice in {tz.key} (clocks go back that day)",
                             hint=f"add the offset you mean: {offsets}")
        raise UsageError(f"{text} does not exist in {tz.key} (clocks go forward that day)", hint="pick another time")
    return first


def to_epoch(value: datetime) -> int:
    return int(value.timestamp())


def from_epoch(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def isoformat(value: datetime, tz: ZoneInfo | None = None) -> str:
    """ISO 8601 with offset, seconds precision; in `tz` when given."""
    if tz is not None:
        value = value.astimezone(tz)
    return value.isoformat(timespec="seconds")


def utcnow() -> datetime:
    return datetime.now(UTC)


def all_day_span(first: date, last_exclusive: date | None, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC span of the local dates [first, last_exclusive) in `tz` (an all-day event; no end date = one day).
    Midnights follow the window rules above, so a date whose midnight falls in a DST gap starts when it ends."""
    if last_exclusive is None or last_exclusive <= first:
        last_exclusive = first + timedelta(days=1)
    return local_minute_to_utc(first, 0, tz), local_minute_to_utc(last_exclusive, 0, tz, end=True)
