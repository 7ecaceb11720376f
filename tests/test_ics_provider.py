"""The ICS provider (file and http(s) URL, read-only), the shared provider contract on it, the bundled sample
calendar, and shift_dates (which `engage demo` uses to move the sample to next week)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from contract import ProviderContract, spec
from engagecli.core.ical import expand, shift_dates
from engagecli.core.models import CalendarInfo
from engagecli.errors import ProviderError, Unreachable, UsageError
from engagecli.providers import ics, load
from engagecli.providers.base import CopyRef, ProviderContext

UTC = timezone.utc
OSLO = ZoneInfo("Europe/Oslo")
FIX = Path(__file__).parent / "fixtures" / "ics"
WINDOW = (datetime(2029, 12, 1, tzinfo=UTC), datetime(2031, 1, 1, tzinfo=UTC))
SECRET_PATH = "/calendar/ical/private-4f9a8c7e2b1d/basic.ics"


def U(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def ctx(tz: str = "Europe/Oslo") -> ProviderContext:
    return ProviderContext(timezone=tz, secrets=None, environ={})


def calinfo(source: str, **options) -> CalendarInfo:
    return CalendarInfo(id="c1", provider="ics", account="file", name="Work", remote_id=source, read_only=True,
                        options=options)


# --- the contract ----------------------------------------------------------------------------------------------------

class IcsHarness:
    """Another client edits an .ics file; the provider reads it."""

    def __init__(self, folder: Path):
        self.path = folder / "work.ics"
        self.events: dict[str, str] = {}
        self.n = 0
        self._write()

    def _write(self):
        body = "".join(self.events.values())
        self.path.write_text(f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//tests//EN\r\nX-WR-CALNAME:Work\r\n{body}END:VCALENDAR\r\n")

    def provider(self):
        return ics.Provider.from_calendar(calinfo(str(self.path)), ctx())

    def add_event(self, start, end, summary="Busy", transparent=False, cancelled=False):
        self.n += 1
        uid = f"ev{self.n}@tests"
        extra = ("TRANSP:TRANSPARENT\r\n" if transparent else "") + ("STATUS:CANCELLED\r\n" if cancelled else "")
        self.events[uid] = (f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20300101T000000Z\r\nDTSTART:{start:%Y%m%dT%H%M%SZ}\r\n"
                            f"DTEND:{end:%Y%m%dT%H%M%SZ}\r\nSUMMARY:{summary}\r\n{extra}END:VEVENT\r\n")
        self._write()
        return uid

    def delete_event(self, key):
        self.events.pop(key, None)
        self._write()

    def remote_copies(self):
        return {}  # read-only: there are never copies

    def bad_cursor(self, cursor):
        return "sha256:" + "0" * 64


class TestIcsContract(ProviderContract):
    read_only = True

    @pytest.fixture
    def harness(self, tmp_path):
        return IcsHarness(tmp_path)


# --- files -------------------------------------------------------------------------------------------------------------

def test_registry_loads_the_ics_module_with_probe():
    mod = load("ics")
    assert mod is ics and callable(mod.probe) and mod.Provider.name == "ics"
    p = mod.Provider("/tmp/x.ics")
    assert (p.can_read_busy, p.can_copy, p.supports_incremental) == (True, False, False)


def test_pull_from_a_file_groups_by_uid_and_applies_the_busy_rule():
    p = ics.Provider.from_calendar(calinfo(str(FIX / "recurrence_id.ics")), ctx())
    result = p.pull_changes(None, WINDOW)
    assert result.full is True and result.deleted == [] and result.cursor.startswith("sha256:")
    items = list(result.items)
    assert isinstance(result.items, list)  # parsed completely before returning
    assert [i.key for i in items] == ["weekly-team@engage.test"]
    assert [o.start for o in items[0].occurrences] == [U(2030, 1, 7, 9), U(2030, 1, 16, 13), U(2030, 1, 21, 9), U(2030, 1, 28, 9)]


def test_unchanged_content_returns_an_empty_incremental_result(tmp_path):
    path = tmp_path / "cal.ics"
    path.write_bytes((FIX / "transparent.ics").read_bytes())
    p = ics.Provider(str(path), "Europe/Oslo")
    first = p.pull_changes(None, WINDOW)
    again = ics.Provider(str(path), "Europe/Oslo").pull_changes(first.cursor, WINDOW)
    assert (again.full, list(again.items), again.deleted, again.cursor) == (False, [], [], first.cursor)
    # a window that moved within the same UTC day keeps the cursor; a new day changes it
    later = (WINDOW[0] + timedelta(hours=5), WINDOW[1] + timedelta(hours=5))
    assert p.pull_changes(first.cursor, (WINDOW[0] + timedelta(hours=5), WINDOW[1] - timedelta(hours=1))).full is False
    assert p.pull_changes(first.cursor, (WINDOW[0] + timedelta(days=1), WINDOW[1] + timedelta(days=1))).full is True
    assert p.pull_changes(first.cursor, later).full is True  # the end moved past midnight
    # any change to the file: a full pull again
    path.write_bytes(path.read_bytes().replace(b"Focus time", b"Deep work"))
    changed = p.pull_changes(first.cursor, WINDOW)
    assert changed.full is True and changed.cursor != first.cursor
    assert {o.summary for i in changed.items for o in i.occurrences} >= {"Deep work (marked Busy)"}


def test_cursor_depends_on_the_zone_and_the_advisors_addresses():
    path = str(FIX / "declined.ics")
    oslo = ics.Provider(path, "Europe/Oslo").pull_changes(None, WINDOW)
    assert ics.Provider(path, "America/New_York").pull_changes(oslo.cursor, WINDOW).full is True
    me = ics.Provider(path, "Europe/Oslo", {"advisor@example.com"}).pull_changes(oslo.cursor, WINDOW)
    assert me.full is True
    assert [(i.key, i.occurrences[0].reason) for i in me.items][0] == ("declined@engage.test", "declined")


def test_from_calendar_reads_source_and_me_from_options_and_account():
    info = CalendarInfo(id="c1", provider="ics", account="advisor@example.com", name="Work",
                        remote_id="/somewhere/else.ics", options={"source": str(FIX / "declined.ics")})
    p = ics.Provider.from_calendar(info, ctx())
    assert p.source == str(FIX / "declined.ics") and p.me == {"advisor@example.com"}
    items = {i.key: i for i in p.pull_changes(None, WINDOW).items}
    assert items["declined@engage.test"].occurrences[0].busy is False
    p2 = ics.Provider.from_calendar(calinfo(str(FIX / "declined.ics"), me=["Advisor@Example.com"]), ctx())
    assert {i.key: i for i in p2.pull_changes(None, WINDOW).items}["declined@engage.test"].occurrences[0].reason == "declined"


def test_our_copies_come_back_marked():
    items = ics.Provider(str(FIX / "own_copy.ics"), "UTC").pull_changes(None, WINDOW).items
    assert [(i.key, i.appointment_id) for i in items] == [("engage-appt-123@engage.test", "appt-123"),
                                                          ("lookalike@engage.test", None)]


def test_missing_file_is_a_usage_error_naming_the_path(tmp_path):
    missing = tmp_path / "nope" / "work.ics"
    for call in (lambda: ics.Provider(str(missing)).pull_changes(None, WINDOW),
                 lambda: ics.probe(str(missing)),
                 lambda: ics.Provider(str(missing)).list_calendars()):
        with pytest.raises(UsageError) as info:
            call()
        assert str(missing) in info.value.message and "not found" in info.value.message
        assert info.value.exit_code == 2


def test_a_folder_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="folder"):
        ics.probe(str(tmp_path))


def test_malformed_file_names_the_path_and_no_content():
    for name in ("malformed.ics", "not_a_calendar.ics"):
        path = str(FIX / name)
        with pytest.raises(ProviderError) as info:
            ics.Provider(path, "Europe/Oslo").pull_changes(None, WINDOW)
        msg = str(info.value)
        assert msg.startswith(f"{path} is not a valid iCalendar file") and "Falcon" not in msg and "\n" not in msg
        assert info.value.exit_code == 1


def test_probe_validates_up_front_and_names_the_calendar(tmp_path, monkeypatch):
    cal = ics.probe(str(FIX / "x_wr_timezone.ics"))
    assert (cal.remote_id, cal.name, cal.primary, cal.read_only) == (
        str(FIX / "x_wr_timezone.ics"), "Exported from a web calendar", True, True)
    assert ics.probe(str(FIX / "dst_europe.ics")).name == "dst_europe"  # no X-WR-CALNAME: the file name
    with pytest.raises(ProviderError, match="not a valid iCalendar file"):
        ics.probe(str(FIX / "not_a_calendar.ics"))
    with pytest.raises(ProviderError) as info:  # parses fully: a broken date is caught at link time
        ics.probe(str(FIX / "malformed.ics"))
    assert str(info.value).startswith(f"{FIX / 'malformed.ics'} is not a valid iCalendar file (an event has")
    assert "Falcon" not in str(info.value)
    truncated = tmp_path / "cut.ics"
    truncated.write_bytes((FIX / "recurrence_id.ics").read_bytes()[:500])
    with pytest.raises(ProviderError, match="not a valid iCalendar file"):
        ics.probe(str(truncated))
    # a relative path is stored absolute (cron runs `engage sync` from another folder)
    monkeypatch.chdir(FIX)
    assert ics.probe("empty.ics").remote_id == str(FIX / "empty.ics")
    assert ics.probe("empty.ics").name == "Nothing planned"


def test_probe_then_pull_parses_the_file_once(monkeypatch):
    from engagecli.core import ical

    ical.clear_cache()
    calls = []
    real = ical._parse
    monkeypatch.setattr(ical, "_parse", lambda data: calls.append(1) or real(data))
    path = str(FIX / "recurrence_id.ics")
    ics.probe(path)
    items = ics.Provider(path, "UTC").pull_changes(None, WINDOW).items
    assert len(calls) == 1 and len(items[0].occurrences) == 4
    ical.clear_cache()
    ics.Provider(path, "UTC").pull_changes(None, WINDOW)
    assert len(calls) == 2


def test_list_calendars_returns_one_read_only_calendar():
    [cal] = ics.Provider(str(FIX / "empty.ics")).list_calendars()
    assert (cal.remote_id, cal.name, cal.read_only) == (str(FIX / "empty.ics"), "Nothing planned", True)


def test_empty_calendar_pulls_nothing():
    result = ics.Provider(str(FIX / "empty.ics")).pull_changes(None, WINDOW)
    assert result.full is True and list(result.items) == [] and result.cursor


def test_copies_are_refused_as_read_only():
    p = ics.Provider(str(FIX / "empty.ics"))
    with pytest.raises(UsageError, match="read-only"):
        p.put_copy(spec("a1", U(2030, 3, 4, 8)), None)
    with pytest.raises(UsageError, match="read-only"):
        p.delete_copy(CopyRef("x"))


def test_source_normalisation():
    assert ics.normalize_source("webcal://example.com/a.ics") == "https://example.com/a.ics"
    assert ics.normalize_source(" https://example.com/a.ics ") == "https://example.com/a.ics"
    assert ics.normalize_source("file:///tmp/some%20cal.ics") == "/tmp/some cal.ics"
    assert ics.describe("https://user:pw@example.com:8443/secret/key.ics?token=abc") == "https://example.com:8443"
    with pytest.raises(UsageError):
        ics.normalize_source("  ")


# --- URLs --------------------------------------------------------------------------------------------------------------

class Served:
    """A tiny http.server on 127.0.0.1 in a thread: routes path -> (status, body); counts requests."""

    def __init__(self):
        self.routes: dict[str, tuple[int, bytes]] = {}
        self.hits: dict[str, int] = {}
        self.delay = 0.0
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                served.hits[self.path] = served.hits.get(self.path, 0) + 1
                if served.delay:
                    time.sleep(served.delay)
                status, body = served.routes.get(self.path, (404, b"not here"))
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/calendar; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served():
    s = Served()
    yield s
    s.stop()


def test_url_pull_and_unchanged_cursor(served):
    served.routes[SECRET_PATH] = (200, (FIX / "recurrence_id.ics").read_bytes())
    url = served.base + SECRET_PATH
    p = ics.Provider.from_calendar(calinfo(url), ctx())
    first = p.pull_changes(None, WINDOW)
    assert first.full and [i.key for i in first.items] == ["weekly-team@engage.test"]
    assert len(first.items[0].occurrences) == 4
    assert p.pull_changes(first.cursor, WINDOW).full is False
    served.routes[SECRET_PATH] = (200, (FIX / "exdate.ics").read_bytes())
    second = p.pull_changes(first.cursor, WINDOW)
    assert second.full and [i.key for i in second.items] == ["daily-standup@engage.test"]
    assert served.hits[SECRET_PATH] == 3


def test_url_probe_names_the_calendar(served):
    served.routes["/feeds/team.ics"] = (200, (FIX / "dst_europe.ics").read_bytes())
    served.routes["/feeds/named"] = (200, (FIX / "x_wr_timezone.ics").read_bytes())
    # without X-WR-CALNAME a feed is named after its host: its path may be the secret (Nextcloud tokens)
    assert ics.probe(served.base + "/feeds/team.ics").name == "127.0.0.1"
    assert ics.probe(served.base + "/feeds/named").name == "Exported from a web calendar"
    served.routes[SECRET_PATH] = (200, (FIX / "dst_europe.ics").read_bytes())
    assert ics.probe(served.base + SECRET_PATH).name == "127.0.0.1"
    served.routes["/public-calendars/kDmT8bXFXA8LL8H7"] = (200, (FIX / "dst_europe.ics").read_bytes())
    assert ics.probe(served.base + "/public-calendars/kDmT8bXFXA8LL8H7").name == "127.0.0.1"


def test_url_500_is_unreachable_after_one_retry(served):
    served.routes[SECRET_PATH] = (500, b"oops")
    with pytest.raises(Unreachable) as info:
        ics.Provider(served.base + SECRET_PATH).pull_changes(None, WINDOW)
    assert served.hits[SECRET_PATH] == 2
    assert info.value.exit_code == 4 and "500" in info.value.message
    assert "private-4f9a8c7e2b1d" not in str(info.value) and "127.0.0.1" in str(info.value)


def test_url_404_is_a_provider_error_without_retry(served):
    with pytest.raises(ProviderError) as info:
        ics.probe(served.base + SECRET_PATH)
    assert served.hits[SECRET_PATH] == 1
    assert "404" in str(info.value) and "private-4f9a8c7e2b1d" not in str(info.value)
    served.routes["/forbidden"] = (403, b"no")
    with pytest.raises(ProviderError, match="refused access"):
        ics.Provider(served.base + "/forbidden").pull_changes(None, WINDOW)


def test_url_serving_html_is_not_a_calendar(served):
    served.routes["/login"] = (200, (FIX / "not_a_calendar.ics").read_bytes())
    with pytest.raises(ProviderError) as info:
        ics.Provider(served.base + "/login").pull_changes(None, WINDOW)
    assert str(info.value).startswith(served.base + " is not a valid iCalendar file") and "Falcon" not in str(info.value)


def test_connection_refused_is_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Unreachable) as info:
        ics.Provider(f"http://127.0.0.1:{port}{SECRET_PATH}").pull_changes(None, WINDOW)
    assert info.value.exit_code == 4 and "private" not in str(info.value)


def test_a_slow_server_times_out_as_unreachable(served, monkeypatch):
    monkeypatch.setattr(ics, "TIMEOUT", (2, 0.2))
    served.delay = 1.0
    served.routes["/slow.ics"] = (200, (FIX / "empty.ics").read_bytes())
    with pytest.raises(Unreachable, match="timed out|could not be reached"):
        ics.Provider(served.base + "/slow.ics").pull_changes(None, WINDOW)
    assert served.hits["/slow.ics"] == 2  # one retry


# --- the bundled sample calendar -----------------------------------------------------------------------------------

def sample_text() -> str:
    return resources.files("engagecli.data").joinpath("sample.ics").read_text(encoding="utf-8")


def local_week(text: str, monday: date) -> list[tuple[str, str, str, bool, str | None]]:
    lo = datetime.combine(monday, datetime.min.time(), tzinfo=OSLO).astimezone(UTC)
    hi = datetime.combine(monday + timedelta(days=7), datetime.min.time(), tzinfo=OSLO).astimezone(UTC)
    rows = []
    for _, occs, _ in expand(text, lo, hi, "Europe/Oslo"):
        for o in occs:
            s, e = o.start.astimezone(OSLO), o.end.astimezone(OSLO)
            rows.append((f"{s:%a %H:%M}", f"{e:%a %H:%M}", re.sub(r" \(.*\)$", "", o.summary), o.busy, o.reason))
    return sorted(rows, key=lambda r: (["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].index(r[0][:3]), r[0]))


SAMPLE_WEEK = [
    ("Mon 09:00", "Mon 09:15", "Daily stand-up", True, None),
    ("Tue 09:00", "Tue 09:15", "Daily stand-up", True, None),
    ("Tue 12:00", "Tue 13:00", "Lunch with the sales team", True, None),
    ("Tue 14:00", "Tue 15:00", "Reminder: submit the expense report", False, "free"),
    ("Wed 09:00", "Wed 09:15", "Daily stand-up", True, None),
    ("Wed 10:00", "Wed 11:00", "Team meeting", True, None),  # moved from Monday by RECURRENCE-ID
    ("Wed 13:30", "Wed 15:00", "Planning session", True, None),
    ("Thu 09:00", "Thu 09:15", "Daily stand-up", True, None),
    ("Thu 11:30", "Thu 12:00", "Team lunch", True, None),
    # Thu 13:00-14:00 "Quarterly review" is CANCELLED: not there
    ("Fri 00:00", "Sat 00:00", "Training day", True, None),  # all-day, busy
    ("Fri 09:00", "Fri 09:15", "Daily stand-up", True, None),
]


def test_sample_calendar_week_of_2030_01_07():
    assert local_week(sample_text(), date(2030, 1, 7)) == SAMPLE_WEEK


def test_sample_calendar_week_after_has_the_exdate_and_the_week_before_is_normal():
    after = local_week(sample_text(), date(2030, 1, 14))
    assert [r for r in after if r[2] == "Team meeting"] == []  # EXDATE
    assert [r[0] for r in after if r[2] == "Daily stand-up"] == ["Mon 09:00", "Tue 09:00", "Wed 09:00", "Thu 09:00", "Fri 09:00"]
    before = local_week(sample_text(), date(2029, 12, 31))
    assert ("Mon 10:00", "Mon 11:00", "Team meeting", True, None) in before
    assert len(local_week(sample_text(), date(2030, 1, 21))) == 6  # later weeks: stand-ups and the meeting


@pytest.mark.parametrize("weeks", [1, 12, 64, 300, -2])
def test_sample_shifted_by_whole_weeks_keeps_local_times(weeks):
    """What `engage demo` does: shift so the sample week becomes next week; also across DST (summer weeks)."""
    shifted = shift_dates(sample_text(), 7 * weeks)
    assert local_week(shifted, date(2030, 1, 7) + timedelta(weeks=weeks)) == SAMPLE_WEEK


# --- shift_dates -------------------------------------------------------------------------------------------------------

def test_shift_dates_moves_only_the_scheduling_properties():
    text = (
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:20300107-uid\r\nDTSTAMP:20300101T000000Z\r\n"
        "DTSTART;TZID=Europe/Oslo:20300107T100000\r\nDTEND;TZID=Europe/Oslo:20300107T110000\r\n"
        "RRULE:FREQ=WEEKLY;UNTIL=20300301T090000Z;BYDAY=MO\r\n"
        "EXDATE;TZID=Europe/Oslo:20300114T100000,20300121T100000\r\n"
        "RDATE;VALUE=PERIOD:20300109T120000Z/PT1H,20300110T120000Z/20300110T130000Z\r\n"
        "SUMMARY:Meeting on 20300107\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\nUID:b\r\nRECURRENCE-ID;TZID=Europe/Oslo:20300107T100000\r\n"
        "DTSTART;VALUE=DATE:20300131\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    out = shift_dates(text, 3)
    assert out == (
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:20300107-uid\r\nDTSTAMP:20300101T000000Z\r\n"
        "DTSTART;TZID=Europe/Oslo:20300110T100000\r\nDTEND;TZID=Europe/Oslo:20300110T110000\r\n"
        "RRULE:FREQ=WEEKLY;UNTIL=20300304T090000Z;BYDAY=MO\r\n"
        "EXDATE;TZID=Europe/Oslo:20300117T100000,20300124T100000\r\n"
        "RDATE;VALUE=PERIOD:20300112T120000Z/PT1H,20300113T120000Z/20300113T130000Z\r\n"
        "SUMMARY:Meeting on 20300107\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\nUID:b\r\nRECURRENCE-ID;TZID=Europe/Oslo:20300110T100000\r\n"
        "DTSTART;VALUE=DATE:20300203\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    assert shift_dates(out, -3) == text
    assert shift_dates(text, 0) is text


def test_shift_dates_handles_folding_quotes_lf_and_year_ends():
    text = ('BEGIN:VEVENT\nDTSTART;TZID="Custom: zone":20301231T230000\n'
            "EXDATE:20301224T100000Z,20301225T100000Z,\n 20301226T100000Z\nDESCRIPTION:long text that\n  is folded\n"
            "dtend;value=date:20310101\nEND:VEVENT\n")
    out = shift_dates(text, 1)
    assert out == ('BEGIN:VEVENT\nDTSTART;TZID="Custom: zone":20310101T230000\n'
                   "EXDATE:20301225T100000Z,20301226T100000Z,20301227T100000Z\nDESCRIPTION:long text that\n  is folded\n"
                   "dtend;value=date:20310102\nEND:VEVENT\n")


def test_shift_dates_splits_lines_only_at_cr_and_lf():
    text = "SUMMARY:one\u2028DTSTART:20300101\rDTSTART:20300101"  # \u2028 is text inside SUMMARY, not a line end
    assert shift_dates(text, 1) == "SUMMARY:one\u2028DTSTART:20300101\rDTSTART:20300102"


def test_shifted_fixture_expands_to_the_same_times_a_week_later():
    text = (FIX / "recurrence_id.ics").read_text()
    before = [(o.start, o.end) for _, occs, _ in expand(text, *WINDOW, "UTC") for o in occs]
    after = [(o.start, o.end) for _, occs, _ in expand(shift_dates(text, 7), *WINDOW, "UTC") for o in occs]
    assert after == [(s + timedelta(days=7), e + timedelta(days=7)) for s, e in before]


def test_a_feed_address_is_kept_in_the_secret_store_not_the_database(served, advisor, home):
    served.routes[SECRET_PATH] = (200, (FIX / "dst_europe.ics").read_bytes())
    r = advisor("link", "ics", served.base + SECRET_PATH)
    assert r.code == 0, r.err
    cal = advisor("calendars", "list", "--json").json()[0]
    db = (home / "profiles" / "default" / "engage.db").read_bytes()
    assert b"private-4f9a8c7e2b1d" not in db
    assert "private-4f9a8c7e2b1d" not in json.dumps(cal) + r.out + r.err
    assert "private-4f9a8c7e2b1d" in (home / "secrets.json").read_text()  # ENGAGE_SECRETS=file in tests
    served.routes[SECRET_PATH] = (200, (FIX / "x_wr_timezone.ics").read_bytes())
    assert advisor("sync").code == 0 and served.hits[SECRET_PATH] >= 2  # sync reads the address back
    assert advisor("link", "ics", served.base + SECRET_PATH).code == 2  # already linked (by its hash)
    assert advisor("calendars", "unlink", cal["id"], "--yes").code == 0
    assert "private-4f9a8c7e2b1d" not in (home / "secrets.json").read_text()
