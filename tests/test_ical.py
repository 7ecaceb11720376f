"""engagecli.core.ical.expand: recurrence, zones and the busy rule on small odd calendars (tests/fixtures/ics).

Every expectation is an exact UTC instant. `big_calendar()` builds the 20,000-event file for the import benchmark.
"""

from __future__ import annotations

import random
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engagecli.core import ical
from engagecli.core.ical import expand
from engagecli.errors import ProviderError

UTC = timezone.utc
FIX = Path(__file__).parent / "fixtures" / "ics"
LO = datetime(2029, 12, 1, tzinfo=UTC)
HI = datetime(2031, 1, 1, tzinfo=UTC)


def U(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def load(name: str) -> bytes:
    return (FIX / name).read_bytes()


def spans(name: str, tz: str = "Europe/Oslo", me=None, lo=LO, hi=HI) -> dict[str, list[tuple]]:
    """uid -> [(start, end, busy, reason, all_day), ...]"""
    return {
        uid: [(o.start, o.end, o.busy, o.reason, o.all_day) for o in occs]
        for uid, occs, _ in expand(load(name), lo, hi, tz, me)
    }


def times(name: str, **kw) -> dict[str, list[tuple[datetime, datetime]]]:
    return {uid: [(s, e) for s, e, *_ in occs] for uid, occs in spans(name, **kw).items()}


# --- time zones and DST -------------------------------------------------------------------------------------------

def test_dst_europe_gap_overlap_and_series():
    assert times("dst_europe.ics") == {
        # 02:30 does not exist on 2030-03-31 in Oslo: RFC 5545 reads it with the offset before the gap (+01:00);
        # 03:30 is CEST. Both would be 01:30Z: the event keeps its one hour from its start.
        "dst-eu-gap@engage.test": [(U(2030, 3, 31, 1, 30), U(2030, 3, 31, 2, 30))],
        # 02:30 exists twice on 2030-10-27: the first (CEST, 00:30Z); 03:30 is CET (02:30Z): two real hours
        "dst-eu-overlap@engage.test": [(U(2030, 10, 27, 0, 30), U(2030, 10, 27, 2, 30))],
        "dst-eu-morning@engage.test": [(U(2030, 3, 31, 8, 0), U(2030, 3, 31, 9, 0))],
        "dst-eu-nightly@engage.test": [
            (U(2030, 3, 30, 1, 30), U(2030, 3, 30, 1, 45)),  # CET
            (U(2030, 3, 31, 1, 30), U(2030, 3, 31, 1, 45)),  # in the gap: offset before it
            (U(2030, 4, 1, 0, 30), U(2030, 4, 1, 0, 45)),  # CEST
        ],
    }


def test_dst_america_with_zoneinfo_only():
    assert times("dst_america.ics") == {
        "dst-us-gap@engage.test": [(U(2030, 3, 10, 7, 30), U(2030, 3, 10, 8, 30))],  # 02:30 EST rule, 1 h kept
        "dst-us-overlap@engage.test": [(U(2030, 11, 3, 5, 30), U(2030, 11, 3, 7, 30))],  # first 01:30 (EDT)
        "dst-us-weekly@engage.test": [
            (U(2030, 3, 4, 14, 0), U(2030, 3, 4, 14, 30)),  # 09:00 EST
            (U(2030, 3, 11, 13, 0), U(2030, 3, 11, 13, 30)),  # 09:00 EDT: wall-clock time kept
        ],
    }


def test_result_is_independent_of_the_advisors_zone_for_zoned_events():
    assert times("dst_america.ics", tz="Asia/Tokyo") == times("dst_america.ics", tz="Europe/Oslo")


def test_floating_times_are_local_in_the_advisors_zone():
    assert times("floating.ics", tz="Europe/Oslo") == {
        "floating@engage.test": [(U(2030, 1, 7, 9), U(2030, 1, 7, 10))],
        "unknown-tzid@engage.test": [(U(2030, 1, 8, 9), U(2030, 1, 8, 10))],
    }
    assert times("floating.ics", tz="America/New_York") == {
        "floating@engage.test": [(U(2030, 1, 7, 15), U(2030, 1, 7, 16))],
        "unknown-tzid@engage.test": [(U(2030, 1, 8, 15), U(2030, 1, 8, 16))],
    }


def test_x_wr_timezone_applies_to_floating_and_utc_series():
    expected = {
        "xwr-floating@engage.test": [(U(2030, 1, 7, 15), U(2030, 1, 7, 16))],  # 10:00 New York, not Oslo
        "xwr-utc-weekly@engage.test": [
            (U(2030, 3, 4, 15), U(2030, 3, 4, 16)),  # 10:00 EST
            (U(2030, 3, 11, 14), U(2030, 3, 11, 15)),  # 10:00 EDT: the series follows New York wall-clock time
        ],
    }
    assert times("x_wr_timezone.ics", tz="Europe/Oslo") == expected
    assert times("x_wr_timezone.ics", tz="Asia/Tokyo") == expected


def test_an_unknown_x_wr_timezone_is_ignored():
    data = load("x_wr_timezone.ics").replace(b"X-WR-TIMEZONE:America/New_York", b"X-WR-TIMEZONE:Mars/Olympus")
    groups = {uid: [(o.start, o.end) for o in occ] for uid, occ, _ in expand(data, LO, HI, "Europe/Oslo")}
    assert groups["xwr-floating@engage.test"] == [(U(2030, 1, 7, 9), U(2030, 1, 7, 10))]  # advisor's zone
    assert groups["xwr-utc-weekly@engage.test"] == [(U(2030, 3, 4, 15), U(2030, 3, 4, 16)),
                                                     (U(2030, 3, 11, 15), U(2030, 3, 11, 16))]  # plain UTC


def test_custom_vtimezone_with_a_windows_name():
    data = b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:x\r
BEGIN:VTIMEZONE\r
TZID:W. Europe Standard Time\r
BEGIN:STANDARD\r
DTSTART:16010101T030000\r
TZOFFSETFROM:+0200\r
TZOFFSETTO:+0100\r
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10\r
END:STANDARD\r
BEGIN:DAYLIGHT\r
DTSTART:16010101T020000\r
TZOFFSETFROM:+0100\r
TZOFFSETTO:+0200\r
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3\r
END:DAYLIGHT\r
END:VTIMEZONE\r
BEGIN:VEVENT\r
UID:outlook@engage.test\r
DTSTART;TZID=W. Europe Standard Time:20300704T100000\r
DTEND;TZID=W. Europe Standard Time:20300704T110000\r
END:VEVENT\r
END:VCALENDAR\r
"""
    [(uid, occs, _)] = expand(data, LO, HI, "America/New_York")
    assert [(o.start, o.end) for o in occs] == [(U(2030, 7, 4, 8), U(2030, 7, 4, 9))]  # CEST from the VTIMEZONE


# --- all-day, duration, zero length ---------------------------------------------------------------------------------

def test_all_day_events_cover_whole_local_dates_and_are_busy():
    assert spans("allday.ics") == {
        "allday-one@engage.test": [(U(2030, 1, 10, 23), U(2030, 1, 11, 23), True, None, True)],
        "allday-multi@engage.test": [(U(2030, 1, 13, 23), U(2030, 1, 16, 23), True, None, True)],  # Mon-Wed
        "allday-duration@engage.test": [(U(2030, 1, 20, 23), U(2030, 1, 22, 23), True, None, True)],
        "allday-dst@engage.test": [(U(2030, 3, 30, 23), U(2030, 3, 31, 22), True, None, True)],  # 23 hours
    }


def test_all_day_dates_follow_the_advisors_zone():
    assert times("allday.ics", tz="America/New_York")["allday-one@engage.test"] == [(U(2030, 1, 11, 5), U(2030, 1, 12, 5))]


def test_duration_instead_of_dtend_and_zero_length_events():
    assert times("duration.ics") == {
        "duration@engage.test": [(U(2030, 1, 7, 9), U(2030, 1, 7, 9, 45))],
        "duration-weekly@engage.test": [
            (U(2030, 3, 25, 8), U(2030, 3, 25, 9, 30)),  # 09:00 CET
            (U(2030, 4, 1, 7), U(2030, 4, 1, 8, 30)),  # 09:00 CEST, same 1 h 30
        ],
        # "instant@engage.test" (DATE-TIME, no DTEND, no DURATION) takes no time and blocks nothing: dropped
    }


# --- recurrence ----------------------------------------------------------------------------------------------------

def test_recurrence_id_moves_one_occurrence_and_overrides_another():
    groups = {uid: [(o.start, o.end, o.summary) for o in occs] for uid, occs, _ in expand(load("recurrence_id.ics"), LO, HI, "UTC")}
    assert groups == {
        "weekly-team@engage.test": [
            (U(2030, 1, 7, 9), U(2030, 1, 7, 10), "Team meeting"),
            (U(2030, 1, 16, 13), U(2030, 1, 16, 14, 30), "Team meeting (moved to Wednesday)"),  # not on Mon 14th
            (U(2030, 1, 21, 9), U(2030, 1, 21, 10), "Team meeting (new agenda)"),
            (U(2030, 1, 28, 9), U(2030, 1, 28, 10), "Team meeting"),
        ]
    }


def test_moved_occurrence_is_found_from_a_window_around_its_new_time_only():
    win = (U(2030, 1, 16), U(2030, 1, 17))
    assert times("recurrence_id.ics", lo=win[0], hi=win[1]) == {
        "weekly-team@engage.test": [(U(2030, 1, 16, 13), U(2030, 1, 16, 14, 30))]
    }
    assert times("recurrence_id.ics", lo=U(2030, 1, 14), hi=U(2030, 1, 15)) == {}  # its old slot is free


def test_exdate_in_zone_and_in_utc():
    assert times("exdate.ics") == {
        "daily-standup@engage.test": [
            (U(2030, 1, 7, 8), U(2030, 1, 7, 8, 15)),
            (U(2030, 1, 8, 8), U(2030, 1, 8, 8, 15)),
            # 9th: EXDATE with TZID; 10th: EXDATE given in UTC (08:00Z = 09:00 Oslo)
            (U(2030, 1, 11, 8), U(2030, 1, 11, 8, 15)),
        ]
    }


def test_rdate_dates_and_periods():
    assert times("rdate.ics") == {
        "rdate@engage.test": [
            (U(2030, 1, 7, 9), U(2030, 1, 7, 10)),
            (U(2030, 1, 9, 13), U(2030, 1, 9, 14)),  # RDATE: the event's own length
            (U(2030, 1, 10, 11), U(2030, 1, 10, 13)),  # RDATE PERIOD: its own length (PT2H)
            (U(2030, 1, 11, 7), U(2030, 1, 11, 8)),
        ]
    }


def test_this_and_future_moves_the_rest_of_the_series():
    assert times("thisandfuture.ics") == {
        "taf@engage.test": [
            (U(2030, 1, 7, 8), U(2030, 1, 7, 8, 30)),
            (U(2030, 1, 8, 8), U(2030, 1, 8, 8, 30)),
            (U(2030, 1, 9, 10), U(2030, 1, 9, 11)),
            (U(2030, 1, 10, 10), U(2030, 1, 10, 11)),
            (U(2030, 1, 11, 10), U(2030, 1, 11, 11)),
        ]
    }


# --- the busy rule ---------------------------------------------------------------------------------------------------

def test_transparent_is_free_and_opaque_is_busy():
    assert spans("transparent.ics") == {
        "free@engage.test": [(U(2030, 1, 8, 13), U(2030, 1, 8, 14), False, "free", False)],
        "opaque@engage.test": [(U(2030, 1, 8, 14), U(2030, 1, 8, 15), True, None, False)],
        "free-allday@engage.test": [(U(2030, 1, 8, 23), U(2030, 1, 9, 23), False, "free", True)],
    }


def test_cancelled_events_and_a_cancelled_occurrence_are_dropped():
    assert times("cancelled.ics") == {
        # cancelled-single and cancelled-series are gone; the lunch series lost only Tuesday the 8th
        "one-cancelled@engage.test": [
            (U(2030, 1, 7, 11), U(2030, 1, 7, 11, 30)),
            (U(2030, 1, 9, 11), U(2030, 1, 9, 11, 30)),
        ]
    }


def test_declined_by_me_is_not_busy_case_insensitively():
    assert spans("declined.ics", me={"ADVISOR@example.com"}) == {
        "declined@engage.test": [(U(2030, 1, 8, 9), U(2030, 1, 8, 10), False, "declined", False)],
        "other-declined@engage.test": [(U(2030, 1, 8, 11), U(2030, 1, 8, 12), True, None, False)],
        "tentative@engage.test": [(U(2030, 1, 8, 13), U(2030, 1, 8, 14), True, None, False)],
    }


def test_declined_needs_to_know_who_i_am():
    assert all(busy for occs in spans("declined.ics").values() for _, _, busy, _, _ in occs)
    assert all(busy for occs in spans("declined.ics", me={"nobody@example.com"}).values() for _, _, busy, _, _ in occs)


def test_our_own_copy_carries_the_appointment_id_and_lookalikes_do_not():
    result = expand(load("own_copy.ics"), LO, HI, "UTC")
    assert [(uid, appt) for uid, _, appt in result] == [
        ("engage-appt-123@engage.test", "appt-123"),
        ("lookalike@engage.test", None),  # same title, no marker: an ordinary busy event
    ]
    assert [(o.start, o.end) for o in result[0][1]] == [(U(2030, 1, 8, 9, 30), U(2030, 1, 8, 10))]


# --- window, grouping, input forms ----------------------------------------------------------------------------------

def test_window_is_half_open():
    data = load("transparent.ics")  # free 13-14Z, opaque 14-15Z on 2030-01-08
    keys = lambda lo, hi: [uid for uid, _, _ in expand(data, lo, hi, "UTC")]  # noqa: E731
    assert keys(U(2030, 1, 8, 14), U(2030, 1, 8, 15)) == ["opaque@engage.test"]  # free ends at 14: not inside
    assert keys(U(2030, 1, 8, 12), U(2030, 1, 8, 13)) == []  # free starts at 13: not inside
    assert keys(U(2030, 1, 8, 13, 59), U(2030, 1, 8, 14, 1)) == ["free@engage.test", "opaque@engage.test"]


def test_window_cuts_an_open_ended_series():
    data = (Path(ical.__file__).parent.parent / "data" / "sample.ics").read_bytes()
    [stand_up] = [occs for uid, occs, _ in expand(data, U(2030, 1, 7), U(2030, 1, 12), "Europe/Oslo") if "stand-up" in uid]
    assert [o.start for o in stand_up] == [U(2030, 1, d, 8) for d in (7, 8, 9, 10, 11)]


def test_str_and_bytes_give_the_same_result_and_crlf_is_fine():
    text = load("recurrence_id.ics").decode()
    a = expand(text, LO, HI, "UTC")
    b = expand(text.replace("\n", "\r\n").encode(), LO, HI, "UTC")
    c = expand(b"\xef\xbb\xbf" + text.encode(), LO, HI, "UTC")  # a byte-order mark
    assert a == b == c and len(a[0][1]) == 4


def test_empty_calendar_and_calendar_without_events():
    assert expand(load("empty.ics"), LO, HI, "UTC") == []
    todo_only = b"BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VTODO\nUID:t\nDTSTART:20300101T100000Z\nEND:VTODO\nEND:VCALENDAR\n"
    assert expand(todo_only, LO, HI, "UTC") == []


def test_event_without_uid_gets_a_stable_key():
    data = b"BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nDTSTART:20300101T100000Z\nDTEND:20300101T110000Z\nSUMMARY:No uid\nEND:VEVENT\nEND:VCALENDAR\n"
    first, second = expand(data, LO, HI, "UTC"), expand(data, LO, HI, "UTC")
    assert first == second
    [(key, occs, _)] = first
    assert key.startswith("nouid-") and occs[0].start == U(2030, 1, 1, 10)


def test_window_bounds_must_be_aware():
    with pytest.raises(ValueError):
        expand(load("empty.ics"), datetime(2030, 1, 1), HI, "UTC")


def test_summary_is_kept_for_the_agenda():
    [(_, occs, _)] = expand(load("duration.ics"), U(2030, 1, 7), U(2030, 1, 8), "UTC")
    assert occs[0].summary == "Call (DURATION instead of DTEND)"


def test_outputs_are_utc_aware():
    for name in ("floating.ics", "allday.ics", "dst_europe.ics"):
        for _, occs, _ in expand(load(name), LO, HI, "Europe/Oslo"):
            for o in occs:
                assert o.start.utcoffset() == timedelta(0) and o.end.utcoffset() == timedelta(0) and o.end > o.start


# --- malformed input -------------------------------------------------------------------------------------------------

BAD_INPUTS = {
    "broken date": load("malformed.ics"),
    "html page": load("not_a_calendar.ics"),
    "empty": b"",
    "whitespace": b"  \n ",
    "truncated": load("recurrence_id.ics")[:400],
    "lone VEVENT": b"BEGIN:VEVENT\nUID:x\nDTSTART:20300101T100000Z\nSUMMARY:Secret project Falcon\nEND:VEVENT\n",
    "bad rrule": b"BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nUID:r\nDTSTART:20300101T100000Z\nDTEND:20300101T110000Z\n"
                 b"RRULE:FREQ=SOMETIMES;BYDAY=XX\nSUMMARY:Secret project Falcon\nEND:VEVENT\nEND:VCALENDAR\n",
    "no DTSTART": b"BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nUID:n\nDTEND:20300101T110000Z\nSUMMARY:Secret project Falcon\n"
                  b"END:VEVENT\nEND:VCALENDAR\n",
    "bad dtend": b"BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nUID:n\nDTSTART:20300101T100000Z\nDTEND:20301301T110000Z\n"
                 b"SUMMARY:Secret project Falcon\nEND:VEVENT\nEND:VCALENDAR\n",
}


@pytest.mark.parametrize("what", sorted(BAD_INPUTS))
def test_malformed_input_is_a_one_line_provider_error(what):
    with pytest.raises(ProviderError) as info:
        expand(BAD_INPUTS[what], LO, HI, "Europe/Oslo")
    text = str(info.value)
    assert "not a valid iCalendar file" in text
    assert "\n" not in text and "Traceback" not in text
    assert "Falcon" not in text and "2030" not in text  # no event details
    assert info.value.__cause__ is None  # no chained parser error (with file content) in a traceback
    assert info.value.__context__ is None or info.value.__suppress_context__


# --- both code paths, and the plain library as a reference -----------------------------------------------------------

ALL_GOOD = sorted(p.name for p in FIX.glob("*.ics") if p.name not in ("malformed.ics", "not_a_calendar.ics"))


@pytest.mark.parametrize("name", ALL_GOOD)
def test_public_api_path_gives_the_same_result(name, monkeypatch):
    fast = expand(load(name), LO, HI, "Europe/Oslo", {"advisor@example.com"})
    monkeypatch.setattr(ical, "_USE_FAST_PATH", False)
    assert expand(load(name), LO, HI, "Europe/Oslo", {"advisor@example.com"}) == fast


def test_agrees_with_plain_recurring_ical_events_on_a_generated_calendar():
    import icalendar
    import recurring_ical_events

    data = big_calendar(400, seed=7).encode()
    lo, hi = U(2029, 10, 1), U(2030, 6, 1)
    ours = sorted((uid, o.start, o.end, o.busy) for uid, occs, _ in expand(data, lo, hi, "Europe/Oslo") for o in occs)
    reference = sorted(
        (str(c["UID"]), c["DTSTART"].dt.astimezone(UTC), c["DTEND"].dt.astimezone(UTC), c.get("TRANSP") != "TRANSPARENT")
        for c in recurring_ical_events.of(icalendar.Calendar.from_ical(data)).between(lo, hi)
        if c.get("STATUS") != "CANCELLED"
    )
    assert ours == reference and len(ours) > 100


def test_importing_core_ical_does_not_load_the_parsers():
    code = "import sys, engagecli.core.ical as m; print('icalendar' in sys.modules, 'recurring_ical_events' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


# --- a property test against a brute-force reference ----------------------------------------------------------------

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    given = None

if given is not None:

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        zone=st.sampled_from(["Europe/Oslo", "America/New_York", "Australia/Sydney"]),
        first=st.dates(min_value=date(2030, 1, 1), max_value=date(2030, 12, 31)),
        minute=st.integers(0, 24 * 60 - 15).map(lambda m: m - m % 15),
        length=st.sampled_from([15, 30, 60, 90, 150]),
        interval=st.integers(1, 9),
        count=st.integers(1, 12),
    )
    def test_daily_series_matches_a_brute_force_reference(zone, first, minute, length, interval, count):
        z = ZoneInfo(zone)
        start = datetime.combine(first, datetime.min.time()) + timedelta(minutes=minute)
        end = start + timedelta(minutes=length)
        data = (
            "BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nUID:p\n"
            f"DTSTART;TZID={zone}:{start:%Y%m%dT%H%M%S}\nDTEND;TZID={zone}:{end:%Y%m%dT%H%M%S}\n"
            f"RRULE:FREQ=DAILY;INTERVAL={interval};COUNT={count}\nEND:VEVENT\nEND:VCALENDAR\n"
        )
        expected = []
        for i in range(count):
            wall = start + timedelta(days=i * interval)
            s = wall.replace(tzinfo=z).astimezone(UTC)  # RFC 5545: fold=0 in gaps and overlaps
            e = (wall + timedelta(minutes=length)).replace(tzinfo=z).astimezone(UTC)
            if e <= s:  # both ends collapsed by a gap: keep the wall-clock length
                e = s + timedelta(minutes=length)
            expected.append((s, e))
        result = expand(data, U(2029, 12, 1), U(2033, 1, 1), "UTC")
        assert [(o.start, o.end) for _, occs, _ in result for o in occs] == sorted(expected)


# --- the benchmark file ----------------------------------------------------------------------------------------------

_VTZ_OSLO = (FIX / "dst_europe.ics").read_text().split("BEGIN:VTIMEZONE", 1)[1].split("END:VTIMEZONE", 1)[0]


def big_calendar(n: int = 20000, seed: int = 1, first: date = date(2029, 1, 1), days: int = 730) -> str:
    """A work calendar of `n` VEVENTs over `days` days from `first` in Europe/Oslo (with its VTIMEZONE):
    5 % weekly series (COUNT=20), 5 % TRANSPARENT, 2 % CANCELLED, the rest single timed events of 15-90
    minutes between 07:00 and 18:00. CRLF line ends. Used by the import benchmark:
    `expand(big_calendar(), ...)` against `recurring_ical_events.of(Calendar.from_ical(...)).between(...)`."""
    rnd = random.Random(seed)
    out = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//engage//bench//EN", "X-WR-CALNAME:Bench",
           "BEGIN:VTIMEZONE" + _VTZ_OSLO.rstrip("\n") + "\nEND:VTIMEZONE"]
    for i in range(n):
        day = datetime.combine(first + timedelta(days=rnd.randrange(days)), datetime.min.time())
        start = day.replace(hour=rnd.randrange(7, 18), minute=rnd.choice((0, 15, 30, 45)))
        end = start + timedelta(minutes=rnd.choice((15, 30, 45, 60, 90)))
        out += ["BEGIN:VEVENT", f"UID:bench-{i}@engage.invalid", "DTSTAMP:20290101T000000Z",
                f"DTSTART;TZID=Europe/Oslo:{start:%Y%m%dT%H%M%S}", f"DTEND;TZID=Europe/Oslo:{end:%Y%m%dT%H%M%S}",
                f"SUMMARY:Event {i}"]
        r = rnd.random()
        if r < 0.05:
            out.append("RRULE:FREQ=WEEKLY;COUNT=20")
        elif r < 0.10:
            out.append("TRANSP:TRANSPARENT")
        elif r < 0.12:
            out.append("STATUS:CANCELLED")
        out.append("END:VEVENT")
    out.append("END:VCALENDAR")
    return "\r\n".join("\r\n".join(block.split("\n")) for block in out) + "\r\n"


def test_big_calendar_generator_shape():
    text = big_calendar(50, seed=3)
    assert text.count("BEGIN:VEVENT") == 50 and "\r\n" in text and "\n" not in text.replace("\r\n", "")
    assert len(expand(text, U(2029, 1, 1), U(2031, 1, 1), "Europe/Oslo")) >= 45  # all but the cancelled ones
