"""Human renderings of slots and the agenda (plain text; colour through engagecli.output.style)."""

from __future__ import annotations

from datetime import datetime
from itertools import groupby
from zoneinfo import ZoneInfo

from engagecli.output import style


def slots_text(env, result) -> str:
    tz = ZoneInfo(result.timezone)
    head = f"Free {result.duration}-minute slots ({result.timezone}):"
    if not result.slots:
        return head + "\n  none in this period"
    lines = [style(env, head, "bold")]
    for day, group in groupby(result.slots, key=lambda s: s.start.astimezone(tz).date()):
        times = []
        for s in group:
            local = s.start.astimezone(tz)
            times.append(local.strftime("%H:%M") + (local.strftime("%z")[:3] if _ambiguous(local) else ""))
        lines.append(f"  {day:%a %Y-%m-%d}  " + " ".join(times))
    return "\n".join(lines)


def _ambiguous(local: datetime) -> bool:
    """True for a wall time that happens twice that day (the fall-back hour): print its offset too."""
    other = local.replace(fold=1 - local.fold)
    return other.utcoffset() != local.utcoffset()


def slots_ics(result, now: datetime) -> str:
    """Free slots as VEVENTs (times only). Written by hand: importing icalendar would cost start-up time."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//engage//slots//EN", "METHOD:PUBLISH"]
    for s in result.slots:
        begin, end = s.start.strftime("%Y%m%dT%H%M%SZ"), s.end.strftime("%Y%m%dT%H%M%SZ")
        lines += ["BEGIN:VEVENT", f"UID:slot-{begin}-{end}@engage", f"DTSTAMP:{stamp}", f"DTSTART:{begin}",
                  f"DTEND:{end}", "SUMMARY:Available", "TRANSP:TRANSPARENT", "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return "\r\n".join(lines) + "\r\n"


MARK = {"appointment": ("●", "cyan"), "busy": ("■", "red"), "free": ("○", "green"), "ignored": ("·", "dim")}


def agenda_text(env, period, entries) -> str:
    tz = ZoneInfo(period.tz)
    lines = [style(env, f"Agenda {period.start:%a %Y-%m-%d} to {period.end:%a %Y-%m-%d} ({period.tz})", "bold"),
             "  " + "   ".join(f"{MARK[k][0]} {label}" for k, label in
                                (("appointment", "appointment"), ("busy", "busy: blocks slots"),
                                 ("free", "free: does not block"), ("ignored", "not used for availability")))]
    if not entries:
        lines.append("  nothing booked and nothing in the work calendars")
    for day, group in groupby(entries, key=lambda e: e.start.astimezone(tz).date() if not e.all_day else _all_day_date(e, tz)):
        lines.append(style(env, f"{day:%a %Y-%m-%d}", "bold"))
        for e in group:
            when = "all day    " if e.all_day else f"{e.start.astimezone(tz):%H:%M}-{e.end.astimezone(tz):%H:%M}"
            mark, colour = MARK[e.kind]
            where = f"[{e.calendar}]" if e.calendar else f"[{e.id}]"
            note = f" ({e.note})" if e.note else ""
            lines.append("  " + style(env, f"{mark} {when}", colour) + f"  {e.title or '(no title)'}{note} {style(env, where, 'dim')}")
    return "\n".join(lines)


def _all_day_date(entry, tz):
    return entry.start.astimezone(tz).date()
