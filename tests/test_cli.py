"""End-to-end tests of the real commands against a temp ENGAGE_HOME (real SQLite files, real ICS files)."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

from conftest import FIXTURES

WORK_ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
X-WR-CALNAME:Work
BEGIN:VEVENT
UID:planning@test
DTSTART;TZID=Europe/Oslo:20300304T100000
DTEND;TZID=Europe/Oslo:20300304T110000
SUMMARY:Secret merger planning
END:VEVENT
BEGIN:VEVENT
UID:note@test
DTSTART;TZID=Europe/Oslo:20300304T140000
DTEND;TZID=Europe/Oslo:20300304T150000
SUMMARY:Reminder
TRANSP:TRANSPARENT
END:VEVENT
BEGIN:VEVENT
UID:gone@test
DTSTART;TZID=Europe/Oslo:20300304T150000
DTEND;TZID=Europe/Oslo:20300304T160000
SUMMARY:Cancelled thing
STATUS:CANCELLED
END:VEVENT
END:VCALENDAR
"""


def write_ics(tmp_path: Path, text: str = WORK_ICS) -> Path:
    path = tmp_path / "work.ics"
    path.write_text(text.replace("\n", "\r\n"))
    return path


def starts(result) -> list[str]:
    return [s["start"][11:16] for s in result.json()["slots"]]


# --- account ----------------------------------------------------------------------------------------------
def test_account_set_show_changes_only_given_fields(engage):
    assert engage("account", "set", "--email", "a@example.com").code == 2  # a new account needs a zone
    assert engage("account", "set", "--name", "Ann", "--email", "ann@example.com", "--timezone", "Europe/Oslo").code == 0
    assert engage("account", "set", "--phone", "+47 22 00 00 00").code == 0
    data = engage("account", "show", "--json").json()
    assert data == {"name": "Ann", "email": "ann@example.com", "phone": "+47 22 00 00 00", "timezone": "Europe/Oslo"}


def test_account_rejects_bad_input_with_one_line(engage):
    engage("account", "set", "--timezone", "Europe/Oslo")
    for args, word in ((["--timezone", "Europe/Atlantis"], "time zone"), (["--email", "not-an-email"], "email"),
                       (["--name", "  "], "name")):
        r = engage("account", "set", *args)
        assert r.code == 2 and word in r.err and len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    assert engage("account", "show", "--json").json()["timezone"] == "Europe/Oslo"


def test_commands_without_account_say_what_to_run(engage):
    r = engage("slots", "--week")
    assert r.code == 2 and "engage account set" in r.err


# --- availability -----------------------------------------------------------------------------------------
def test_availability_set_override_show(advisor):
    assert advisor("availability", "set", "sat", "10:00-14:00").code == 0
    assert advisor("availability", "override", "2030-03-05", "--off").code == 0
    assert advisor("availability", "override", "2030-03-06", "08:00-10:00").code == 0
    data = advisor("availability", "show", "--json").json()
    assert data["weekly"]["mon"] == ["09:00-12:00", "13:00-17:00"]
    assert data["weekly"]["sat"] == ["10:00-14:00"] and data["weekly"]["sun"] == []
    assert data["overrides"] == {"2030-03-05": [], "2030-03-06": ["08:00-10:00"]}
    r = advisor("slots", "--start", "2030-03-05", "--days", "2", "--json", "--duration", "60")
    assert [s["start"] for s in r.json()["slots"]] == ["2030-03-06T08:00:00+01:00", "2030-03-06T09:00:00+01:00"]
    assert advisor("availability", "override", "2030-03-05", "--clear").code == 0
    assert advisor("availability", "show", "--json").json()["overrides"] == {"2030-03-06": ["08:00-10:00"]}


def test_availability_rejects_bad_hours(advisor):
    for args in (["mon-fri", "09:00-12:00", "11:00-13:00"], ["mon-fri", "17:00-09:00"], ["funday", "09:00-10:00"],
                 ["mon", "9-5"], ["mon", "25:00-26:00"], ["mon"]):
        r = advisor("availability", "set", *args)
        assert r.code == 2, args
        assert "Traceback" not in r.err and r.err.strip()
    assert advisor("availability", "override", "2030-02-30", "--off").code == 2
    assert advisor("availability", "show", "--json").json()["weekly"]["mon"] == ["09:00-12:00", "13:00-17:00"]


# --- appointments -----------------------------------------------------------------------------------------
def test_book_list_move_cancel(advisor):
    r = advisor("appointments", "add", "--start", "2030-03-04T10:00", "--duration", "45", "--title", "Review",
                "--customer-name", "Sam", "--customer-email", "sam@example.com", "--json")
    assert r.code == 0, r.err
    appt = r.json()
    assert appt["start"] == "2030-03-04T10:00:00+01:00" and appt["end"] == "2030-03-04T10:45:00+01:00"
    listed = advisor("appointments", "list", "--json").json()
    assert [a["id"] for a in listed] == [appt["id"]]
    assert set(listed[0]) >= {"id", "start", "end", "title", "customer_name", "customer_email", "status"}
    # the slot is gone from the offer
    assert "10:00" not in starts(advisor("slots", "--start", "2030-03-04", "--days", "1", "--json"))
    # refused: overlaps itself? no - moving onto its own time is fine; onto a busy one is not
    other = advisor("appointments", "add", "--start", "2030-03-04T11:00", "--title", "Other", "--json").json()
    r = advisor("appointments", "move", appt["id"], "--start", "2030-03-04T10:30")
    assert r.code == 2 and other["id"] in r.err and "Sam" not in r.err
    assert advisor("appointments", "move", appt["id"], "--start", "2030-03-04T13:00").code == 0
    moved = {a["id"]: a for a in advisor("appointments", "list", "--json").json()}[appt["id"]]
    assert moved["start"] == "2030-03-04T13:00:00+01:00" and moved["end"] == "2030-03-04T13:45:00+01:00"
    assert advisor("appointments", "cancel", appt["id"]).code == 0
    assert [a["id"] for a in advisor("appointments", "list", "--json").json()] == [other["id"]]
    all_ = advisor("appointments", "list", "--all", "--json").json()
    assert {a["id"]: a["status"] for a in all_}[appt["id"]] == "cancelled"
    assert "13:00" in starts(advisor("slots", "--start", "2030-03-04", "--days", "1", "--json"))


def test_booking_refuses_times_that_are_not_free_unless_forced(advisor):
    cases = {
        "2030-03-04T12:00": "outside your hours",
        "2030-03-02T10:00": "outside your hours",  # a Saturday
        "2030-02-28T10:00": "in the past",
        "2030-03-04T11:45": "outside your hours",  # runs past 12:00
    }
    for start, why in cases.items():
        r = advisor("appointments", "add", "--start", start, "--title", "T")
        assert r.code == 2 and why in r.err, (start, r.err)
    assert advisor("appointments", "add", "--start", "2030-03-04T12:00", "--title", "T", "--force").code == 0
    assert advisor("appointments", "add", "--start", "2030-03-04T12:15", "--title", "T").code == 2


def test_booking_bad_input(advisor):
    for args in (["--start", "tomorrow", "--title", "T"], ["--start", "2030-03-04T10:00", "--title", "T", "--duration", "0"],
                 ["--start", "2030-03-04T10:00", "--title", " "], ["--start", "2030-03-31T02:30", "--title", "T"],
                 ["--start", "2030-03-04T10:00", "--title", "T", "--customer-email", "x"]):
        r = advisor("appointments", "add", *args)
        assert r.code == 2 and "Traceback" not in r.err, args
    assert advisor("appointments", "cancel", "nosuchid").code == 2
    assert advisor("appointments", "list", "--json").json() == []


def test_offset_times_are_honoured(advisor):
    r = advisor("appointments", "add", "--start", "2030-03-04T09:00:00+00:00", "--title", "T", "--json")
    assert r.json()["start"] == "2030-03-04T10:00:00+01:00"


# --- linking an ICS calendar, slots, agenda, sync --------------------------------------------------------
def test_link_ics_blocks_busy_times_only(advisor, tmp_path):
    path = write_ics(tmp_path)
    r = advisor("link", "ics", str(path))
    assert r.code == 0, r.err
    cals = advisor("calendars", "list", "--json").json()
    assert len(cals) == 1
    cal = cals[0]
    assert cal["provider"] == "ics" and cal["name"] == "Work" and cal["status"] == "ok"
    assert cal["use_for_availability"] is True and cal["copy_appointments"] is False
    assert cal["last_synced_at"] == "2030-03-01T08:00:00+00:00"
    got = starts(advisor("slots", "--start", "2030-03-04", "--days", "1", "--json"))
    assert "10:00" not in got and "10:30" not in got  # busy
    assert "14:00" in got and "15:00" in got  # Free reminder and cancelled event do not block
    assert "09:30" in got and "11:00" in got  # touching is fine


def test_slot_output_never_shows_work_calendar_details(advisor, tmp_path):
    advisor("link", "ics", str(write_ics(tmp_path)))
    for fmt in ([], ["--json"], ["--ics"]):
        r = advisor("slots", "--start", "2030-03-04", "--days", "1", *fmt)
        assert r.code == 0
        for secret in ("Secret", "merger", "Reminder", "Work", "ics-", "planning"):
            assert secret not in r.out
    data = advisor("slots", "--start", "2030-03-04", "--days", "1", "--json").json()
    assert set(data) == {"timezone", "duration_minutes", "slots"}
    assert all(set(s) == {"start", "end"} for s in data["slots"])


def test_slots_json_shape_tz_and_interval(advisor):
    data = advisor("slots", "--start", "2030-03-04", "--end", "2030-03-04", "--json", "--tz", "America/New_York",
                   "--duration", "60", "--interval", "30").json()
    assert data["timezone"] == "America/New_York" and data["duration_minutes"] == 60
    assert data["slots"][0] == {"start": "2030-03-04T03:00:00-05:00", "end": "2030-03-04T04:00:00-05:00"}
    assert len(data["slots"]) == 5 + 7  # 09:00..11:00 and 13:00..16:00 every 30 min
    assert advisor("slots", "--week", "--days", "3").code == 2
    assert advisor("slots", "--start", "2030-03-05", "--end", "2030-03-04").code == 2
    assert advisor("slots", "--tz", "Nowhere/Land").code == 2


def test_slots_refuse_periods_past_the_synced_window(advisor):
    r = advisor("slots", "--start", "2031-06-01", "--json")
    assert r.code == 2 and "sync.window_future_days" in r.err
    assert advisor("settings", "set", "sync.window_future_days", "900").code == 0
    assert advisor("slots", "--start", "2031-06-02", "--json").code == 0
    assert advisor("settings", "set", "sync.window_future_days", "many").code == 2


def test_ics_is_read_only(advisor, tmp_path):
    advisor("link", "ics", str(write_ics(tmp_path)))
    cal = advisor("calendars", "list", "--json").json()[0]["id"]
    r = advisor("calendars", "set", cal, "--copy")
    assert r.code == 2 and "read-only" in r.err
    r = advisor("link", "ics", str(tmp_path / "work.ics"), "--copy")
    assert r.code == 2 and "read-only" in r.err
    assert advisor("calendars", "set", cal, "--no-availability").code == 0
    assert "10:00" in starts(advisor("slots", "--start", "2030-03-04", "--days", "1", "--json"))
    assert advisor("calendars", "set", cal, "--availability").code == 0
    assert "10:00" not in starts(advisor("slots", "--start", "2030-03-04", "--days", "1", "--json"))


def test_link_ics_bad_sources(advisor, tmp_path):
    r = advisor("link", "ics", str(tmp_path / "nope.ics"))
    assert r.code == 2 and "nope.ics" in r.err
    r = advisor("link", "ics", str(FIXTURES / "ics" / "malformed.ics"))
    assert r.code in (1, 2) and "Traceback" not in r.err and r.err.count("\n") == 1
    assert advisor("calendars", "list", "--json").json() == []


def test_sync_rereads_ics_and_keeps_data_when_it_breaks(advisor, tmp_path):
    path = write_ics(tmp_path)
    advisor("link", "ics", str(path))
    path.write_text(WORK_ICS.replace("T100000", "T090000").replace("T110000", "T093000"))
    r = advisor("sync", "--json")
    assert r.code == 0 and r.json()["calendars"][0]["status"] == "ok"
    got = starts(advisor("slots", "--start", "2030-03-04", "--days", "1", "--json"))
    assert "09:00" not in got and "10:00" in got
    path.write_text("this is not a calendar")
    r = advisor("sync", "--json")
    assert r.code == 5
    report = r.json()["calendars"][0]
    assert report["status"] == "error" and report["error"]
    assert "09:00" not in starts(advisor("slots", "--start", "2030-03-04", "--days", "1", "--json"))  # kept
    cal = advisor("calendars", "list", "--json").json()[0]
    assert cal["status"] == "error" and cal["last_synced_at"] == "2030-03-01T08:00:00+00:00"
    human = advisor("slots", "--start", "2030-03-04", "--days", "1")
    assert "warning" in human.err
    path.unlink()
    assert advisor("sync").code == 5


def test_calendar_agenda_explains_busy_and_free(advisor, tmp_path):
    advisor("link", "ics", str(write_ics(tmp_path)))
    advisor("appointments", "add", "--start", "2030-03-04T13:00", "--title", "Review", "--customer-name", "Sam")
    data = advisor("calendar", "--start", "2030-03-04", "--days", "1", "--json").json()
    kinds = [(e["start"][11:16], e["kind"], e["title"]) for e in data["entries"]]
    assert kinds == [("10:00", "busy", "Secret merger planning"), ("13:00", "appointment", "Review"),
                     ("14:00", "free", "Reminder")]
    text = advisor("calendar", "--start", "2030-03-04", "--days", "1").out
    assert "marked Free" in text and "Secret merger planning" in text


def test_calendars_unlink(advisor, tmp_path):
    advisor("link", "ics", str(write_ics(tmp_path)))
    cal = advisor("calendars", "list", "--json").json()[0]["id"]
    assert advisor("calendars", "unlink", cal).code == 2  # needs --yes when not on a terminal
    assert advisor("calendars", "unlink", cal, "--yes").code == 0
    assert advisor("calendars", "list", "--json").json() == []
    assert "10:00" in starts(advisor("slots", "--start", "2030-03-04", "--days", "1", "--json"))
    assert advisor("calendars", "unlink", cal, "--yes").code == 2
    assert advisor("link", "ics", str(tmp_path / "work.ics")).code == 0


def test_linking_the_same_calendar_twice_is_refused(advisor, tmp_path):
    path = write_ics(tmp_path)
    assert advisor("link", "ics", str(path)).code == 0
    r = advisor("link", "ics", str(path))
    assert r.code == 2 and "already linked" in r.err


# --- store: permissions, corruption, profiles ------------------------------------------------------------
def test_files_are_private(advisor, home):
    db = home / "profiles" / "default" / "engage.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    for folder in (home, home / "profiles", home / "profiles" / "default"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_corrupt_database_gives_one_line(engage, home):
    db = home / "profiles" / "default" / "engage.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"garbage" * 1000)
    r = engage("slots", "--week")
    assert r.code == 1 and "cannot be read" in r.err and "Traceback" not in r.err
    assert db.read_bytes() == b"garbage" * 1000  # never overwritten


def test_newer_schema_is_refused(advisor, home):
    db = home / "profiles" / "default" / "engage.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version = 99")
    con.close()
    r = advisor("slots", "--week")
    assert r.code == 1 and "newer engage" in r.err


def test_profiles_are_separate(advisor, monkeypatch):
    assert advisor("--profile", "bob", "account", "set", "--timezone", "America/New_York").code == 0
    assert advisor("--profile", "bob", "account", "show", "--json").json()["timezone"] == "America/New_York"
    assert advisor("account", "show", "--json").json()["timezone"] == "Europe/Oslo"
    monkeypatch.setenv("ENGAGE_PROFILE", "bob")
    assert advisor("account", "show", "--json").json()["timezone"] == "America/New_York"
    assert advisor("--profile", "../etc", "account", "show").code == 2


# --- misc -------------------------------------------------------------------------------------------------
def test_version_help_and_usage_errors(engage):
    r = engage("--version")
    assert r.code == 0 and r.out.startswith("engage ")
    assert engage("--help").code == 0
    r = engage("slots", "--bogus")
    assert r.code == 2 and "Traceback" not in r.err
    assert engage("nosuchcommand").code == 2


def test_doctor(advisor, tmp_path):
    advisor("link", "ics", str(write_ics(tmp_path)))
    r = advisor("doctor")
    assert r.code == 0, r.out
    assert "database" in r.out and "Europe/Oslo" in r.out


def test_no_color_and_color(advisor, monkeypatch):
    assert "\x1b[" not in advisor("slots", "--start", "2030-03-04", "--days", "1").out


def test_demo_runs_and_is_repeatable(engage, monkeypatch):
    monkeypatch.delenv("ENGAGE_NOW")
    for _ in range(2):
        r = engage("demo")
        assert r.code == 0, r.err
        assert "Agenda" in r.out and "Free 30-minute slots" in r.out and "marked Free" in r.out
    data = engage("demo", "--json").json()
    assert data["slots"]["slots"] and data["agenda"]["entries"]
    kinds = {e["kind"] for e in data["agenda"]["entries"]}
    assert {"appointment", "busy", "free"} <= kinds
    monkeypatch.setenv("ENGAGE_PROFILE", "demo")
    assert len(engage("appointments", "list", "--json").json()) == 2
    assert engage("calendars", "list", "--json").json()[0]["status"] == "ok"
    assert engage("slots", "--week", "--json").code == 0
    r = engage("doctor")
    assert r.code == 0 and "reachable" in r.out, r.out
    assert json.loads(engage("slots", "--week", "--json").out)["timezone"] == "Europe/Oslo"


def test_admin_sees_and_syncs_all_profiles(advisor, tmp_path, home):
    advisor("link", "ics", str(write_ics(tmp_path)))
    assert advisor("--profile", "bob", "account", "set", "--timezone", "America/New_York").code == 0
    other = tmp_path / "bob.ics"
    other.write_text(WORK_ICS)
    assert advisor("--profile", "bob", "link", "ics", str(other)).code == 0
    rows = advisor("calendars", "list", "--all-profiles", "--json").json()
    assert sorted(r["profile"] for r in rows) == ["bob", "default"]
    assert "PROFILE" in advisor("calendars", "list", "--all-profiles").out
    other.write_text("broken")
    r = advisor("sync", "--all-profiles", "--json")
    assert r.code == 5
    assert {(c["profile"], c["status"]) for c in r.json()["calendars"]} == {("default", "ok"), ("bob", "error")}
    # what cron did is in the log: ids, counts and errors, nothing from the calendars
    log = (home / "logs" / "sync.log").read_text().splitlines()
    assert len(log) >= 2 and all(json.loads(line)["id"] for line in log)
    assert "Secret" not in "".join(log)
    assert stat.S_IMODE((home / "logs" / "sync.log").stat().st_mode) == 0o600


def test_slots_without_hours_say_why_nothing_is_offered(engage):
    engage("account", "set", "--timezone", "Europe/Oslo")
    r = engage("slots", "--start", "2030-03-04", "--json")
    assert r.code == 0 and r.json()["slots"] == [] and "engage availability set" in r.err


def test_slots_refuse_past_what_was_fetched(advisor, tmp_path, monkeypatch):
    advisor("link", "ics", str(write_ics(tmp_path)))
    assert advisor("settings", "set", "sync.window_future_days", "900").code == 0
    r = advisor("slots", "--start", "2031-06-02", "--days", "1", "--json")  # setting raised, no sync yet
    assert r.code == 2 and "fetched only up to" in r.err
    r = advisor("appointments", "add", "--start", "2031-06-02T10:00", "--title", "T")
    assert r.code == 2 and "fetched only up to" in r.err
    assert advisor("sync").code == 0
    assert advisor("slots", "--start", "2031-06-02", "--days", "1", "--json").code == 0
    # cron stopped: a warning says so
    monkeypatch.setenv("ENGAGE_NOW", "2030-03-11T08:00:00+00:00")
    r = advisor("slots", "--week", "--json")
    assert r.code == 0 and "last synced 10 days ago" in r.err


def test_dates_out_of_range_are_usage_errors(advisor):
    for args in (["slots", "--start", "9999-12-31"], ["calendar", "--start", "0001-01-01"],
                 ["slots", "--days", "99999999999"],
                 ["appointments", "add", "--start", "9999-12-31T23:59", "--title", "X", "--force"]):
        r = advisor(*args)
        assert r.code == 2 and "Traceback" not in r.err and "internal" not in r.err, (args, r.err)
    assert advisor("appointments", "list", "--json").code == 0


def test_one_broken_profile_does_not_stop_the_others(advisor, tmp_path, home):
    advisor("link", "ics", str(write_ics(tmp_path)))
    bad = home / "profiles" / "broken" / "engage.db"
    bad.parent.mkdir(mode=0o700)
    bad.write_bytes(b"junk" * 2000)
    r = advisor("sync", "--all-profiles", "--json")
    assert r.code == 5
    assert {(c["profile"], c["status"]) for c in r.json()["calendars"]} == {("default", "ok"), ("broken", "error")}
    r = advisor("calendars", "list", "--all-profiles", "--json")
    assert r.code == 1 and [c["profile"] for c in r.json()] == ["default"] and "broken" in r.err


def test_damage_found_after_opening_is_a_clear_error(advisor, home, tmp_path):
    advisor("link", "ics", str(write_ics(tmp_path)))
    db = home / "profiles" / "default" / "engage.db"
    advisor("sync")
    import sqlite3 as sq

    sq.connect(db).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    data = bytearray(db.read_bytes())
    data[4096:] = b"\x00\xff" * ((len(data) - 4096) // 2)
    db.write_bytes(bytes(data))
    for args in (["calendars", "list", "--json"], ["slots", "--week"], ["doctor", "--offline"]):
        r = advisor(*args)
        assert r.code == 1 and "internal" not in r.err and "Traceback" not in r.err, (args, r.err, r.out)


def test_odd_input_never_gives_an_internal_error(advisor, monkeypatch, tmp_path):
    cases = [(["link", "ics", "http://[::1"], 2), (["link", "ics", "https://"], 2),
             (["settings", "set", "slots.duration_minutes", "²"], 2),
             (["link", "caldav", "http://127.0.0.1:9/", "-u", "u", "--password-stdin"], 2)]
    for args, code in cases:
        r = advisor(*args)
        assert r.code == code and "internal" not in r.err, (args, r.err)
    monkeypatch.setenv("ENGAGE_HOME", str(write_ics(tmp_path)))  # a file, not a folder
    r = advisor("account", "show")
    assert r.code == 1 and "ENGAGE_HOME" in r.err


def test_changing_the_time_zone_makes_the_next_sync_pull_afresh(advisor, tmp_path):
    advisor("link", "ics", str(write_ics(tmp_path)))
    from engagecli.env import Env

    assert Env.from_environ().store.list_calendars()[0].cursor
    assert advisor("account", "set", "--timezone", "America/New_York").code == 0
    assert Env.from_environ().store.list_calendars()[0].cursor is None
