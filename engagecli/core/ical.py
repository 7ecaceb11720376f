"""iCalendar in, busy occurrences out: parse a VCALENDAR, expand recurrences, apply the busy rule.

Pure core: no network, no store. icalendar and recurring_ical_events are imported inside the functions so that
`engage --help` never loads them.

The rules (PROVIDERS.md, "The busy rule", made exact; the README repeats them for users):

- Recurrence: expanded by recurring-ical-events (RRULE, RDATE incl. periods, EXDATE, RECURRENCE-ID overrides
  incl. moved occurrences, RANGE=THISANDFUTURE). An occurrence is kept when it overlaps [start, end) (half-open).
- Busy: everything is busy, all-day events too, except
  * TRANSP:TRANSPARENT -> kept with busy=False, reason="free";
  * STATUS:CANCELLED -> dropped (a whole series, or one occurrence cancelled through its RECURRENCE-ID);
  * an ATTENDEE whose address (mailto: value or EMAIL parameter, case-insensitive) is in `me` with
    PARTSTAT=DECLINED -> kept with busy=False, reason="declined" (TRANSPARENT wins when both apply).
- Times:
  * DATE-TIME with TZID: the zone from zoneinfo, or from the file's VTIMEZONE for non-IANA ids (icalendar does
    that). A TZID that names nothing known and has no VTIMEZONE is treated as floating (below).
  * Gaps and overlaps follow RFC 5545 3.3.5: a wall-clock time that does not exist (spring forward) uses the
    offset from before the gap (02:30 on Oslo's change day is 03:30 CEST = 01:30Z); one that exists twice
    (fall back) is the first of the two. One addition: a timed event whose start and end both land on the same
    instant only because of a gap (02:30-03:30 on a spring-forward day) keeps its wall-clock length from its
    start instead of vanishing.
  * Floating DATE-TIME (no TZID, no Z): wall-clock time in the calendar's X-WR-TIMEZONE when the calendar has a
    valid one, else in `tz` (the advisor's zone). recurring-ical-events applies X-WR-TIMEZONE itself (through
    the x-wr-timezone package, as Google's exports need): floating times become times in that zone and UTC
    times are moved into that zone (same instant; a weekly series then keeps its local wall-clock time across
    DST, as Google shows it). An X-WR-TIMEZONE that names no known zone is ignored.
  * DATE (all-day): covers whole local dates in `tz`, from local midnight of DTSTART to local midnight of the
    (exclusive) DTEND; no DTEND and no DURATION = one day; DURATION (P2D) works too.
  * DURATION instead of DTEND works for timed events (exact duration).
  * A DATE-TIME event without DTEND or DURATION (or with a zero DURATION) takes no time: it can never overlap a
    slot, so it is dropped (it blocks nothing; RFC 5545 gives it no duration).
- Output: per UID, in file order: (uid, occurrences sorted by start, appointment_id). Occurrence start/end are
  UTC-aware; appointment_id is the X-ENGAGE-APPOINTMENT-ID of the UID's components (our marker on copies we
  made), else None. A UID appears only when it has at least one occurrence left in the window. An event
  without a UID gets a stable key made from its content ("nouid-" + hash).
- Malformed input (not iCalendar, no VCALENDAR, a broken date, a bad RRULE) raises ProviderError with one line
  saying the calendar is not a valid iCalendar file; the message never quotes the file's content.

Speed: the calendar is parsed once and expanded once. On recurring-ical-events versions that expose
`CalendarQuery._occurrences_between` (3.x) we read the occurrences directly instead of materialising a copied
VEVENT per occurrence, which makes us faster than a plain `of(cal).between(...)`; otherwise we fall back to the
public `between`. Both paths are tested. The last parsed calendar is remembered by content hash (one entry),
so validating a file and then pulling it parses it once; `clear_cache()` forgets it.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date, datetime, timedelta, timezone

from engagecli.core.models import Occurrence
from engagecli.errors import ProviderError

UTC = timezone.utc
MARKER = "X-ENGAGE-APPOINTMENT-ID"  # = engagecli.providers.base.MARKER_ICAL_PROP (core must not import providers)
_NOT_VALID = "the calendar is not a valid iCalendar file"

ExpandResult = list[tuple[str, list[Occurrence], str | None]]


def _invalid(reason: str) -> ProviderError:
    err = ProviderError(f"{_NOT_VALID} ({reason})", hint="check the file or address, or ask its owner for a new export")
    err.reason = reason  # type: ignore[attr-defined]  # lets a provider say it with the file's name
    return err


_last_parsed: tuple[bytes, object] | None = None  # (sha256 of the input, its Calendar): see parse_calendar


def parse_calendar(data: bytes | str):
    """An icalendar.Calendar from `data`, or ProviderError when it is not one VCALENDAR.

    The last result is remembered by content hash, so `engage link ics` (probe, then the first pull) and
    repeated expansions of one file parse it once. Callers must not modify the returned calendar.
    """
    global _last_parsed
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    digest = hashlib.sha256(raw).digest()
    if _last_parsed is not None and _last_parsed[0] == digest:
        return _last_parsed[1]
    cal = _parse(data)
    _fix_x_wr_timezone(cal)
    _last_parsed = (digest, cal)
    return cal


def clear_cache() -> None:
    """Forget the remembered parse (benchmarks call this between runs)."""
    global _last_parsed
    _last_parsed = None


def _parse(data: bytes | str):
    import icalendar

    if isinstance(data, (bytes, bytearray)):
        head = bytes(data[:64]).lstrip(b"\xef\xbb\xbf \t\r\n").upper()
        looks = head.startswith(b"BEGIN:VCALENDAR")
    else:
        looks = data[:64].lstrip("\ufeff \t\r\n").upper().startswith("BEGIN:VCALENDAR")
    if not looks:
        raise _invalid("it does not start with BEGIN:VCALENDAR")
    try:
        cal = icalendar.Calendar.from_ical(data)
    except Exception:  # icalendar raises ValueError, but be safe: never leak a traceback or content
        raise _invalid("it could not be parsed") from None
    if getattr(cal, "name", None) != "VCALENDAR":
        raise _invalid("it holds no VCALENDAR")
    return cal


def _fix_x_wr_timezone(cal) -> None:
    """Keep a usable X-WR-TIMEZONE (stripped), drop one that names no zone (floating times then use `tz`)."""
    from zoneinfo import ZoneInfo

    value = cal.get("X-WR-TIMEZONE")
    if value is None:
        return
    name = str(value).strip()
    try:
        if not name or name.startswith("/") or ".." in name:
            raise ValueError(name)
        ZoneInfo(name)
    except Exception:
        del cal["X-WR-TIMEZONE"]
        return
    if name != str(value):
        cal["X-WR-TIMEZONE"] = name


def _addresses(attendee) -> set[str]:
    out = set()
    value = str(attendee).strip()
    if value[:7].lower() == "mailto:":
        value = value[7:]
    if value:
        out.add(value.lower())
    email = getattr(attendee, "params", {}).get("EMAIL")
    if email:
        out.add(str(email).strip().lower())
    return out


def _declined(component, me: set[str]) -> bool:
    attendees = component.get("ATTENDEE")
    if attendees is None:
        return False
    if not isinstance(attendees, list):
        attendees = [attendees]
    for attendee in attendees:
        partstat = str(getattr(attendee, "params", {}).get("PARTSTAT", "")).upper()
        if partstat == "DECLINED" and _addresses(attendee) & me:
            return True
    return False


def _classify(component, me: set[str]) -> tuple[bool, bool, str | None, str, str | None]:
    """(dropped, busy, reason, summary, appointment_id) for one source component."""
    status = component.get("STATUS")
    if status is not None and str(status).strip().upper() == "CANCELLED":
        return True, False, None, "", None
    busy, reason = True, None
    transp = component.get("TRANSP")
    if transp is not None and str(transp).strip().upper() == "TRANSPARENT":
        busy, reason = False, "free"
    elif me and _declined(component, me):
        busy, reason = False, "declined"
    summary = component.get("SUMMARY")
    marker = component.get(MARKER)
    marker = str(marker).strip() if marker is not None else None
    return False, busy, reason, str(summary) if summary is not None else "", marker or None


def _uid(component) -> str:
    uid = component.get("UID")
    if uid is not None and str(uid).strip():
        return str(uid).strip()
    # no UID (invalid, but seen in hand-made files): a key that stays the same while the event does
    start = component.get("DTSTART")
    basis = f"{start.to_ical().decode() if start is not None else ''}|{component.get('SUMMARY', '')}"
    return "nouid-" + hashlib.sha256(basis.encode()).hexdigest()[:20]


def _to_utc(value, zone) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        return value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, tzinfo=zone).astimezone(UTC)


def _span(start, end, zone) -> tuple[datetime, datetime, bool]:
    """UTC (start, end, all_day) of one occurrence's DTSTART/DTEND values."""
    if not isinstance(start, datetime):  # all-day: whole local dates in the advisor's zone
        from engagecli.core.timeutil import all_day_span

        last = end if isinstance(end, date) and not isinstance(end, datetime) else None
        return (*all_day_span(start, last, zone), True)
    all_day = False
    s, e = _to_utc(start, zone), _to_utc(end, zone)
    if (
        e <= s
        and isinstance(start, datetime)
        and isinstance(end, datetime)
        and start.tzinfo is end.tzinfo
        and end.replace(tzinfo=None) > start.replace(tzinfo=None)
    ):
        # both ends in/around a spring-forward gap collapsed onto one instant: keep the wall-clock length
        e = s + (end.replace(tzinfo=None) - start.replace(tzinfo=None))
    return s, e, all_day


_USE_FAST_PATH = True  # tests switch it off to cover the public-API path


def _occurrence_values(query, lo, hi):
    """(component, start value, end value, shared) for every occurrence the query finds in [lo, hi).

    shared=True: `component` is the source VEVENT (the same object for every occurrence of a series), so what we
    derive from it may be cached by id(); False: a fresh copy per occurrence.
    """
    fast = getattr(query, "_occurrences_between", None) if _USE_FAST_PATH else None
    if fast is not None:
        occurrences = fast(lo, hi)
        if all(hasattr(o, "_adapter") and hasattr(o._adapter, "_component") for o in occurrences[:1]):
            for occ in occurrences:
                yield occ._adapter._component, occ.start, occ.end, True
            return
    for component in query.between(lo, hi):  # public API: one copied VEVENT per occurrence
        start = component["DTSTART"].dt
        end_prop = component.get("DTEND")
        yield component, start, (end_prop.dt if end_prop is not None else start), False


def expand(data: bytes | str, start: datetime, end: datetime, tz: str, me: set[str] | None = None) -> ExpandResult:
    """Occurrences of every event in the VCALENDAR `data` that overlap [start, end) (UTC), grouped by UID.

    See the module docstring for the exact rules. Raises ProviderError for malformed input.
    """
    import recurring_ical_events

    from engagecli.core.timeutil import zone as get_zone

    zone = get_zone(tz)
    me_lower = {m.strip().lower() for m in (me or ()) if m and m.strip()}
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("expand() needs timezone-aware start and end")
    start, end = start.astimezone(UTC), end.astimezone(UTC)

    cal = parse_calendar(data)
    # Ask the library for a day more on each side (all-day and floating events are compared in wall-clock time
    # there), then decide exactly on UTC instants here.
    lo = (start - timedelta(days=1)).astimezone(zone)
    hi = (end + timedelta(days=1)).astimezone(zone)

    groups: dict[str, list[Occurrence]] = {}
    markers: dict[str, str] = {}
    seen: dict[int, tuple] = {}  # id(source component) -> (dropped, busy, reason, summary, marker, uid)
    try:
        query = recurring_ical_events.of(cal)
        for component, occ_start, occ_end, shared in _occurrence_values(query, lo, hi):
            info = seen.get(id(component)) if shared else None
            if info is None:
                info = (*_classify(component, me_lower), _uid(component))
                if shared:
                    seen[id(component)] = info  # source components live as long as `cal`: ids stay unique
            dropped, busy, reason, summary, marker, uid = info
            if dropped:
                continue
            s, e, all_day = _span(occ_start, occ_end, zone)
            if e <= s or s >= end or e <= start:
                continue  # zero length (blocks nothing) or outside the window
            groups.setdefault(uid, []).append(Occurrence(s, e, busy=busy, all_day=all_day, summary=summary, reason=reason))
            if marker and uid not in markers:
                markers[uid] = marker
    except ProviderError:
        raise
    except Exception as exc:  # broken dates, bad RRULEs, missing DTSTART, ...: never a traceback
        raise _invalid(_reason(exc)) from None
    out: ExpandResult = []
    for uid, occurrences in groups.items():
        occurrences.sort(key=lambda o: (o.start, o.end))
        out.append((uid, _dedupe(occurrences), markers.get(uid)))
    return out


def _dedupe(occurrences: list[Occurrence]) -> list[Occurrence]:
    """Drop exact repeats (a file that lists the same override twice); `occurrences` is sorted."""
    out: list[Occurrence] = []
    for occ in occurrences:
        if not out or out[-1] != occ:
            out.append(occ)
    return out


def _reason(exc: Exception) -> str:
    name = type(exc).__name__
    if "Broken" in name or isinstance(exc, (KeyError, AttributeError, TypeError)):
        return "an event has a missing or unreadable date"
    if "Rule" in name:
        return "an event has a recurrence rule that cannot be read"
    return "an event could not be read"


# --- shift_dates -----------------------------------------------------------------------------------------------

_SHIFT_PROPS = frozenset({"DTSTART", "DTEND", "RECURRENCE-ID", "EXDATE", "RDATE"})
_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")
_TOKEN = re.compile(r"^(\d{4})(\d{2})(\d{2})((?:T\d{6}Z?)?)$")


def _shift_token(token: str, days: int) -> str:
    m = _TOKEN.match(token)
    if not m:
        return token  # a duration of a PERIOD, or something we do not understand: left alone
    y, mo, d, rest = m.groups()
    try:
        shifted = date(int(y), int(mo), int(d)) + timedelta(days=days)
    except (ValueError, OverflowError):
        return token
    return f"{shifted:%Y%m%d}{rest}"


def _value_start(line: str) -> int:
    """Index of the ':' that separates name;params from the value (colons inside quoted params skipped)."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == ":" and not quoted:
            return i
    return -1


def _shift_line(line: str, days: int) -> str:
    colon = _value_start(line)
    if colon < 0:
        return line
    head, value = line[:colon], line[colon + 1 :]
    name = re.split(r"[;:]", head, maxsplit=1)[0].strip().upper()
    if name in _SHIFT_PROPS:
        parts = [("/".join(_shift_token(t, days) for t in item.split("/"))) for item in value.split(",")]
        return f"{head}:{','.join(parts)}"
    if name == "RRULE":
        parts = [
            f"UNTIL={_shift_token(p[6:], days)}" if p.upper().startswith("UNTIL=") else p for p in value.split(";")
        ]
        return f"{head}:{';'.join(parts)}"
    return line


def shift_dates(text: str, days: int) -> str:
    """`text` (an iCalendar file) with every DTSTART, DTEND, RECURRENCE-ID, EXDATE, RDATE and RRULE UNTIL value
    moved by `days` days.

    Text-level: TZID parameters and wall-clock times stay as they are, so a 10:00 Europe/Oslo meeting stays at
    10:00 local time even across a DST change (UTC values, with Z, keep their UTC time instead). Lines that are
    not shifted are copied byte for byte; a shifted line that was folded comes out unfolded (still valid).
    """
    if not days:
        return text
    physical = _LINES.findall(text)  # CRLF, LF or CR only (str.splitlines also splits on \x0c, \u2028, ...)
    out: list[str] = []
    i = 0
    while i < len(physical):
        j = i + 1
        while j < len(physical) and physical[j][:1] in (" ", "\t"):
            j += 1  # continuation lines of a folded property
        raw = physical[i:j]
        first = raw[0].lstrip()
        name = re.split(r"[;:]", first, maxsplit=1)[0].strip().upper()
        if name in _SHIFT_PROPS or name == "RRULE":
            ending = raw[-1][len(raw[-1].rstrip("\r\n")) :]
            logical = raw[0].rstrip("\r\n") + "".join(p.rstrip("\r\n")[1:] for p in raw[1:])
            out.append(_shift_line(logical, days) + ending)
        else:
            out.extend(raw)
        i = j
    return "".join(out)
