"""Periods, free slots, the advisor's agenda, and whether a time is free (with the reason when it is not)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from engagecli.core.models import Period, Slot
from engagecli.core.slots import compute_slots, windows_for_period
from engagecli.core.timeutil import isoformat, local_minute_to_utc, parse_date, to_epoch, zone
from engagecli.errors import UsageError
from engagecli.services.profile import require_account

MAX_PERIOD_DAYS = 366


def resolve_period(env, tz: ZoneInfo, *, start: str | None, end: str | None, days: int | None, week: bool) -> Period:
    """--start DATE (default today) and --days N (default 7; --week is 7) or --end DATE (inclusive)."""
    if sum((end is not None, days is not None, bool(week))) > 1:
        raise UsageError("give only one of --week, --days and --end")
    first = parse_date(start) if start else env.now().astimezone(tz).date()
    if end is not None:
        last = parse_date(end)
        if last < first:
            raise UsageError(f"--end {end} is before --start {first.isoformat()}")
    else:
        n = 7 if (week or days is None) else days
        if not 1 <= n <= MAX_PERIOD_DAYS:
            raise UsageError(f"--days must be from 1 to {MAX_PERIOD_DAYS}")
        try:
            last = first + timedelta(days=n - 1)
        except OverflowError:
            raise UsageError("that period runs past the year 9999") from None
    if (last - first).days + 1 > MAX_PERIOD_DAYS:
        raise UsageError(f"a period can span at most {MAX_PERIOD_DAYS} days")
    return Period(first, last, tz.key)


def period_bounds(period: Period) -> tuple[datetime, datetime]:
    tz = ZoneInfo(period.tz)
    return (local_minute_to_utc(period.start, 0, tz),
            local_minute_to_utc(period.end + timedelta(days=1), 0, tz, end=True))


def sync_window(env) -> tuple[datetime, datetime]:
    """The span busy times are fetched for. Day-aligned (UTC midnight), so that incremental pulls keep the
    same window all day and a provider needs a full pull about once a day to roll it forward."""
    now = env.now().replace(hour=0, minute=0, second=0, microsecond=0)
    return (now - timedelta(days=env.int_setting("sync.window_past_days")),
            now + timedelta(days=env.int_setting("sync.window_future_days")))


def check_known(env, lo: datetime, hi: datetime) -> None:
    """Refuse a period that reaches past what is known: the synced-window setting, or the window the work
    calendars were actually fetched for (a raised setting without a sync, or a cron job that stopped)."""
    wlo, whi = sync_window(env)
    if hi > whi:
        raise UsageError(
            f"that period reaches past the synced window ({env.setting('sync.window_future_days')} days ahead)",
            hint="pick an earlier period, or raise it: `engage settings set sync.window_future_days N` then `engage sync`",
        )
    known = env.store.known_until()
    if known is not None and hi > known:
        raise UsageError(f"your work calendars were fetched only up to {known:%Y-%m-%d}, so later free time is unknown",
                         hint="run `engage sync`, or pick an earlier period")


@dataclass
class SlotsResult:
    timezone: str
    duration: int
    slots: list[Slot]
    warnings: list[str]


STALE_AFTER = timedelta(days=1)


def stale_warnings(env) -> list[str]:
    out = []
    now = env.now()
    for cal in env.store.list_calendars():
        if not cal.use_for_availability:
            continue
        if cal.status != "ok":
            what = "has never synced" if cal.status == "never" else f"did not sync ({cal.status})"
            out.append(f"calendar {cal.id} {what}: its busy times may be missing; run `engage sync`")
        elif cal.last_synced_at and now - cal.last_synced_at > STALE_AFTER:
            days = (now - cal.last_synced_at).days
            out.append(f"calendar {cal.id} last synced {days} day{'s' if days != 1 else ''} ago: newer busy times may "
                       "be missing; is the cron job running?")
    return out


def free_slots(env, *, start=None, end=None, days=None, week=False, duration=None, interval=None, tz=None) -> SlotsResult:
    account = require_account(env)
    home_tz = zone(account.timezone)
    out_tz = zone(tz) if tz else home_tz
    period = resolve_period(env, home_tz, start=start, end=end, days=days, week=week)
    lo, hi = period_bounds(period)
    check_known(env, lo, hi)
    duration = duration if duration is not None else env.int_setting("slots.duration_minutes")
    hours, overrides = env.store.get_hours(), env.store.get_overrides(period.start, period.end)
    windows = windows_for_period(period.start, period.end, home_tz, hours, overrides)
    warnings = stale_warnings(env)
    if not hours:
        warnings.append("no weekly hours are set, so nothing is offered: run `engage availability set mon-fri 09:00-17:00`")
    blocked = env.store.busy_between(to_epoch(lo), to_epoch(hi)) + env.store.booked_between(to_epoch(lo), to_epoch(hi))
    slots = compute_slots(windows=windows, busy=blocked, duration_min=duration, interval_min=interval, now=env.now())
    return SlotsResult(out_tz.key, duration, slots, warnings)


def slots_json(result: SlotsResult) -> dict:
    tz = ZoneInfo(result.timezone)
    return {"timezone": result.timezone, "duration_minutes": result.duration,
            "slots": [{"start": isoformat(s.start, tz), "end": isoformat(s.end, tz)} for s in result.slots]}


# --- is a time free? ---------------------------------------------------------------------------------------
def conflicts(env, start: datetime, end: datetime, *, exclude: str | None = None) -> list[str]:
    """Why [start, end) is not free for an appointment: empty when it is. Reasons are for the advisor
    (they may name a work event's title), never for a customer."""
    account = require_account(env)
    tz = zone(account.timezone)
    reasons: list[str] = []
    if start < env.now():
        reasons.append("it is in the past")
    local_start, local_end = start.astimezone(tz), end.astimezone(tz)
    day = local_start.date() - timedelta(days=1)
    windows = windows_for_period(day, local_end.date(), tz, env.store.get_hours(),
                                 env.store.get_overrides(day, local_end.date()))
    s, e = to_epoch(start), to_epoch(end)
    inside = any(ws <= s and e <= we for ws, we in windows)
    if not inside:
        reasons.append(f"it is outside your hours on {local_start:%a %Y-%m-%d} (see `engage availability show`)")
    known = env.store.known_until()
    if known is not None and end > known:
        reasons.append(f"your work calendars were fetched only up to {known:%Y-%m-%d} (run `engage sync`)")
    for cal_id, cal_name, used, occ in env.store.occurrences_between(s, e):
        if used and occ.busy:
            what = "an all-day event" if occ.all_day else f"{occ.start.astimezone(tz):%H:%M}-{occ.end.astimezone(tz):%H:%M}"
            reasons.append(f"it overlaps {what} {_quote(occ.summary)} in calendar {cal_id}")
    for a in env.store.list_appointments(start, end):
        if a.id != exclude:
            reasons.append(f"it overlaps appointment {a.id} at {a.start.astimezone(tz):%H:%M}-{a.end.astimezone(tz):%H:%M}")
    return reasons


def _quote(summary: str) -> str:
    summary = " ".join(summary.split())
    return f"'{summary[:40]}'" if summary else "(no title)"


# --- agenda ------------------------------------------------------------------------------------------------
@dataclass
class AgendaEntry:
    start: datetime
    end: datetime
    kind: str  # appointment | busy | free | ignored
    title: str
    calendar: str | None
    all_day: bool = False
    note: str | None = None
    id: str | None = None


def agenda(env, *, start=None, end=None, days=None, week=False) -> tuple[Period, list[AgendaEntry]]:
    account = require_account(env)
    tz = zone(account.timezone)
    period = resolve_period(env, tz, start=start, end=end, days=days, week=week)
    lo, hi = period_bounds(period)
    entries = [AgendaEntry(a.start, a.end, "appointment", a.title, None, id=a.id,
                           note=f"with {a.customer_name}" if a.customer_name else None)
               for a in env.store.list_appointments(lo, hi)]
    for cal_id, _name, used, occ in env.store.occurrences_between(to_epoch(lo), to_epoch(hi)):
        if not occ.busy:
            kind, note = "free", ("marked Free" if occ.reason == "free" else "declined")
        elif not used:
            kind, note = "ignored", "calendar not used for availability"
        else:
            kind, note = "busy", None
        entries.append(AgendaEntry(occ.start, occ.end, kind, occ.summary, cal_id, occ.all_day, note))
    entries.sort(key=lambda e: (e.start, not e.all_day, e.end))
    return period, entries


def agenda_json(period: Period, entries: list[AgendaEntry]) -> dict:
    tz = ZoneInfo(period.tz)
    return {"timezone": period.tz, "start": period.start.isoformat(), "end": period.end.isoformat(),
            "entries": [{"start": isoformat(e.start, tz), "end": isoformat(e.end, tz), "kind": e.kind, "title": e.title,
                         "calendar": e.calendar, "all_day": e.all_day, "note": e.note, "id": e.id} for e in entries]}

