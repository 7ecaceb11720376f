"""The whole product loop through the CLI against a REAL Radicale: link caldav → switches → sync → slots;
copies exactly once, also when the sync process is SIGKILLed at random points."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from fakes.radicale import PASSWORD, USERNAME, radicale  # noqa: F401

UTC = timezone.utc

BUSY_ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//other client//EN
BEGIN:VEVENT
UID:{uid}
DTSTAMP:20300101T000000Z
DTSTART:{start}
DTEND:{end}
SUMMARY:Dentist
{extra}END:VEVENT
END:VCALENDAR
"""


def busy_event(srv, cal_url, uid, start, end, extra=""):
    ics = BUSY_ICS.format(uid=uid, start=start, end=end, extra=extra).replace("\n", "\r\n")
    return srv.put_event(cal_url, uid, ics)


def our_copies(srv, cal_url) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for href, text in srv.list_events(cal_url).items():
        for line in text.splitlines():
            if line.startswith("X-ENGAGE-APPOINTMENT-ID:"):
                out.setdefault(line.split(":", 1)[1].strip(), []).append(href)
    return out


def link(engage, srv, cal_url, *extra):
    r = engage("link", "caldav", cal_url, "--username", USERNAME, "--password-stdin", *extra, input=PASSWORD + "\n")
    assert r.code == 0, r.err
    return engage("calendars", "list", "--json").json()[-1]


def starts(r):
    return [s["start"][11:16] for s in r.json()["slots"]]


def test_link_copy_sync_slots_end_to_end(advisor, radicale, home):  # noqa: F811
    cal_url = radicale.new_calendar("e2e")
    busy_event(radicale, cal_url, "dentist", "20300304T090000Z", "20300304T100000Z")  # 10:00-11:00 Oslo
    busy_event(radicale, cal_url, "note", "20300304T130000Z", "20300304T140000Z", "TRANSP:TRANSPARENT\r\n")
    cal = link(advisor, radicale, cal_url)
    assert cal["provider"] == "caldav" and cal["status"] == "ok" and cal["copy_appointments"] is False
    assert cal["account"].startswith(USERNAME + "@")
    # the password went to the secret store, never the database
    db = (home / "profiles" / "default" / "engage.db").read_bytes()
    assert PASSWORD.encode() not in db
    got = starts(advisor("slots", "--start", "2030-03-04", "--days", "1", "--json"))
    assert "10:00" not in got and "10:30" not in got and "14:00" in got
    # book, turn copies on, sync: exactly one copy each, at the exact times
    a1 = advisor("appointments", "add", "--start", "2030-03-04T13:00", "--title", "Review", "--customer-name", "Sam",
                 "--json").json()
    a2 = advisor("appointments", "add", "--start", "2030-03-05T09:00", "--duration", "60", "--title", "Plan", "--json").json()
    assert advisor("calendars", "set", cal["id"], "--copy").code == 0
    r = advisor("sync", "--json")
    assert r.code == 0, r.out
    rep = r.json()["calendars"][0]
    assert (rep["status"], rep["copied"]) == ("ok", 2)
    copies = our_copies(radicale, cal_url)
    assert {k: len(v) for k, v in copies.items()} == {a1["id"]: 1, a2["id"]: 1}
    text = radicale.get(copies[a1["id"]][0]).text
    assert "DTSTART:20300304T120000Z" in text and "DTEND:20300304T123000Z" in text
    assert "Sam" not in text  # no customer detail in the work calendar copy
    # our copies never come back as busy blocks: the slot of a1 is blocked by the appointment only
    assert advisor("sync").code == 0
    assert advisor("appointments", "cancel", a1["id"]).code == 0
    assert "13:00" in starts(advisor("slots", "--start", "2030-03-04", "--days", "1", "--json"))
    # move and cancel follow
    assert advisor("appointments", "move", a2["id"], "--start", "2030-03-05T14:00").code == 0
    rep = advisor("sync", "--json").json()["calendars"][0]
    assert (rep["updated"], rep["deleted"]) == (1, 1)
    copies = our_copies(radicale, cal_url)
    assert list(copies) == [a2["id"]]
    assert "DTSTART:20300305T130000Z" in radicale.get(copies[a2["id"]][0]).text
    # a copy deleted by the advisor in the work calendar comes back (engage owns its copies)
    radicale.delete(copies[a2["id"]][0])
    assert advisor("sync").code == 0
    assert len(our_copies(radicale, cal_url)[a2["id"]]) == 1
    # another client's new event blocks slots after a sync
    busy_event(radicale, cal_url, "late", "20300305T150000Z", "20300305T160000Z")
    assert advisor("sync").code == 0
    assert "16:00" not in starts(advisor("slots", "--start", "2030-03-05", "--days", "1", "--json"))
    # calendars list: human output says when it synced
    out = advisor("calendars", "list").out
    assert "just now" in out and "ok" in out
    # turning copies off asks what to do with the copies made
    r = advisor("calendars", "set", cal["id"], "--no-copy")
    assert r.code == 2 and "--keep-copies or --remove-copies" in r.err
    r = advisor("calendars", "set", cal["id"], "--no-copy", "--remove-copies")
    assert r.code == 0 and our_copies(radicale, cal_url) == {}


def test_unlink_can_remove_copies(advisor, radicale):  # noqa: F811
    cal_url = radicale.new_calendar("unlink")
    cal = link(advisor, radicale, cal_url, "--copy")
    advisor("appointments", "add", "--start", "2030-03-04T13:00", "--title", "Review")
    assert advisor("sync").code == 0 and len(our_copies(radicale, cal_url)) == 1
    assert advisor("calendars", "unlink", cal["id"], "--yes").code == 2  # must say keep or remove
    assert advisor("calendars", "unlink", cal["id"], "--yes", "--remove-copies").code == 0
    assert our_copies(radicale, cal_url) == {}


def test_wrong_password_and_server_down(advisor, radicale, monkeypatch):  # noqa: F811
    r = advisor("link", "caldav", radicale.calendar_url, "--username", USERNAME, "--password-stdin", input="wrong\n")
    assert r.code == 3 and "wrong" not in r.err
    cal = link(advisor, radicale, radicale.new_calendar("down"))
    # the password is changed on the server side: the calendar needs linking again, sync exits 3
    from engagecli.env import Env
    from engagecli.providers.base import secret_name

    env = Env.from_environ()
    env.secrets.set(secret_name("default", cal["id"], "password"), "changed")
    r = advisor("sync", "--json")
    assert r.code == 3 and r.json()["calendars"][0]["status"] == "relink"
    assert advisor("calendars", "list", "--json").json()[0]["status"] == "relink"


def test_one_failing_calendar_does_not_stop_the_others(advisor, radicale, tmp_path):  # noqa: F811
    good = link(advisor, radicale, radicale.new_calendar("good"), "--copy")
    ics = tmp_path / "feed.ics"
    ics.write_text("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nEND:VCALENDAR\r\n")
    assert advisor("link", "ics", str(ics)).code == 0
    ics.unlink()
    advisor("appointments", "add", "--start", "2030-03-04T13:00", "--title", "Review")
    r = advisor("sync", "--json")
    assert r.code == 5
    by_id = {c["id"]: c for c in r.json()["calendars"]}
    assert by_id[good["id"]]["status"] == "ok" and by_id[good["id"]]["copied"] == 1
    assert [c["status"] for c in by_id.values()].count("error") == 1


def test_concurrent_syncs_take_turns(advisor, radicale, home):  # noqa: F811
    link(advisor, radicale, radicale.new_calendar("lock"), "--copy")
    from engagecli.sync.lock import sync_lock

    with sync_lock(home / "profiles" / "default" / "sync.lock"):
        started = time.monotonic()
        r = advisor("sync", "--json")
        assert r.code == 0 and "running" in r.json()["skipped"]
        assert time.monotonic() - started < 30


@pytest.mark.slow
def test_sigkill_during_sync_never_duplicates(advisor, radicale, home):  # noqa: F811
    """Kill `engage sync` (SIGKILL) at random points while it copies 200 new appointments; after the next
    sync the server holds exactly 200 copies and the store is intact."""
    cal_url = radicale.new_calendar("crash")
    link(advisor, radicale, cal_url, "--copy")
    from engagecli.core.models import Appointment
    from engagecli.store import Store

    db = home / "profiles" / "default" / "engage.db"
    store = Store.open(db)
    base = datetime(2030, 3, 4, 8, 0, tzinfo=UTC)
    with store.transaction():
        for i in range(200):
            start = base + timedelta(hours=i)
            store.add_appointment(Appointment(f"crash{i:03d}", start, start + timedelta(minutes=30), "Europe/Oslo",
                                              f"Appointment {i}"), base)
    store.close()
    rng = random.Random(1234)
    env = dict(os.environ)
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-m", "engagecli", "sync", "--quiet"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 1  # the test must actually have interrupted a sync
    r = subprocess.run([sys.executable, "-m", "engagecli", "sync", "--json"], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    copies = our_copies(radicale, cal_url)
    assert len(copies) == 200 and all(len(v) == 1 for v in copies.values())
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT COUNT(*) FROM copies").fetchone()[0] == 200


def test_doctor_checks_sign_in_and_reachability(advisor, radicale, home):  # noqa: F811
    cal = link(advisor, radicale, radicale.new_calendar("doctor"))
    r = advisor("doctor")
    assert r.code == 0, r.out
    assert "password present" in r.out and "reachable" in r.out and PASSWORD not in r.out
    from engagecli.env import Env
    from engagecli.providers.base import secret_name

    Env.from_environ().secrets.set(secret_name("default", cal["id"], "password"), "wrong")
    r = advisor("doctor")
    assert r.code == 1 and "PROBLEM" in r.out and "wrong" not in r.out
    assert advisor("doctor", "--offline").code == 0
