"""The Microsoft product loop through the CLI against the local HTTPS fake of the identity platform and Graph
(tests/fakes/graph.py), with the REAL msal and requests: link (device code) → switches → sync → slots; copies
exactly once, no-op syncs write nothing, a revoked grant asks for `engage link microsoft` while other calendars
keep syncing, tokens stay out of every file but the encrypted cache (whose key is in the secret store), and a
real Secret Service round trip into a new process."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from datetime import date, datetime, timezone

import pytest

from engagecli.providers import microsoft
from engagecli.providers.base import secret_name
from fakes.graph import GraphFake

UTC = timezone.utc
CUSTOMER = "Sam Customerson"
CUSTOMER_EMAIL = "sam.customerson@example.net"
HOURS = [f"{h:02d}:{m:02d}" for h in (9, 10, 11, 13, 14, 15, 16) for m in (0, 30)]


@pytest.fixture
def fake(tmp_path, monkeypatch):
    f = GraphFake(tmp_path).start()
    for key, value in f.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ENGAGE_MS_CLIENT_ID")  # the client id comes from --client-id
    yield f
    f.stop()


def link_microsoft(engage, fake, *extra):
    r = engage("link", "microsoft", "--client-id", fake.client_id, *extra)
    assert r.code == 0, r.err
    assert "Traceback" not in r.err
    return r


def linked_microsoft(engage, fake, *extra) -> dict:
    link_microsoft(engage, fake, *extra)
    return next(c for c in engage("calendars", "list", "--json").json() if c["provider"] == "microsoft")


def all_tokens(fake) -> list[str]:
    return list(fake.issued_refresh_tokens) + list(fake.access_tokens)


def files_holding(root, *needles: str) -> list[str]:
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if any(n.encode() in data for n in needles if n):
            hits.append(str(path.relative_to(root)))
    return hits


def week_slots(engage) -> dict[str, list[str]]:
    r = engage("slots", "--week", "--json")
    assert r.code == 0, r.err
    out: dict[str, list[str]] = {}
    for s in r.json()["slots"]:
        out.setdefault(s["start"][:10], []).append(s["start"][11:16])
    return out


def our_events(fake) -> dict[str, list[dict]]:
    """Live events in the work calendar carrying our marker, by appointment id (the fake's raw records)."""
    out: dict[str, list[dict]] = {}
    for ev in fake.live(fake.work_calendar):
        appt = ev["props"].get(microsoft.MARKER_PROP)
        if appt:
            out.setdefault(appt, []).append(ev)
    return out


def at(y, mo, d, h, mi=0):
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


# --- 1. the whole loop -------------------------------------------------------------------------------------------

def test_link_copy_sync_slots_end_to_end(advisor, fake, home, capsys):
    r = link_microsoft(advisor, fake)
    # device code: the verification address and the user code on stderr; the fake approved after two polls
    assert f"{fake.url}/devicelogin" in r.err
    assert len(fake.user_codes) == 1 and fake.user_codes[0] in r.err
    assert fake.grants["device_code"] == fake.device_pending + 1
    assert not any(t in r.out + r.err for t in all_tokens(fake))
    cals = advisor("calendars", "list", "--json").json()
    assert len(cals) == 1
    cal = cals[0]
    assert (cal["provider"], cal["account"], cal["name"], cal["status"]) == ("microsoft", fake.username, "Calendar", "ok")
    assert cal["copy_appointments"] is False and cal["use_for_availability"] is True
    assert cal["last_synced_at"] and cal["error"] is None

    r = advisor("calendars", "set", cal["id"], "--copy", "--availability")
    assert r.code == 0, r.err
    a1 = advisor("appointments", "add", "--start", "2030-03-04T13:00", "--title", "Review", "--customer-name",
                 CUSTOMER, "--customer-email", CUSTOMER_EMAIL, "--json").json()
    a2 = advisor("appointments", "add", "--start", "2030-03-05T09:00", "--duration", "60", "--title", "Plan",
                 "--json").json()
    r = advisor("sync", "--json")
    assert r.code == 0, r.out + r.err
    [rep] = r.json()["calendars"]
    assert (rep["id"], rep["status"], rep["copied"], rep["error"]) == (cal["id"], "ok", 2, None)

    # exactly one copy each, at the exact UTC instants (Oslo is UTC+1 in early March), no customer detail
    assert fake.copies(fake.work_calendar) == {a1["id"]: [(at(2030, 3, 4, 12), at(2030, 3, 4, 12, 30))],
                                               a2["id"]: [(at(2030, 3, 5, 8), at(2030, 3, 5, 9))]}
    assert fake.copies() == fake.copies(fake.work_calendar)  # nothing in the read-only holiday calendar
    evs = our_events(fake)
    for appt, title in ((a1, "Review"), (a2, "Plan")):
        [ev] = evs[appt["id"]]
        assert ev["props"] == {microsoft.MARKER_PROP: appt["id"]}
        assert ev["subject"] == title and ev["showAs"] == "busy" and not ev["isAllDay"] and not ev["isCancelled"]
        assert ev["transactionId"]
        text = repr(ev)
        assert CUSTOMER not in text and CUSTOMER_EMAIL not in text and "Customerson" not in text
    assert not fake.violations

    # a second sync copies nothing and writes nothing. (Its incremental pull still sees the two copies the
    # first sync made, and reads their marker once each; the sync after that is a single delta request.)
    noops = []
    for _ in range(2):
        log0, grants0 = len(fake.log), sum(fake.grants.values())
        r = advisor("sync", "--json")
        assert r.code == 0, r.out
        [rep] = r.json()["calendars"]
        assert (rep["status"], rep["copied"], rep["updated"], rep["deleted"]) == ("ok", 0, 0, 0)
        noop = fake.log[log0:]
        assert [(m, p) for m, p in noop if m != "GET"] == []
        assert sum(fake.grants.values()) == grants0  # the cached access token serves
        noops.append(noop)
    graph = [[p for _m, p in noop if p.startswith("/v1.0/")] for noop in noops]
    with capsys.disabled():
        for i, noop in enumerate(noops, 2):
            print(f"\nMicrosoft sync #{i} (nothing to do): {len(noop)} requests, {len(graph[i - 2])} of them Graph: "
                  f"{[p.split('?')[0].rsplit('/', 1)[-1][:24] for _m, p in noop]}")
    assert len(graph[0]) <= 1 + 2 and len(graph[1]) == 1
    # the rest: at most MSAL's authority discovery (once per process), never a token request
    assert all(len(noop) - len(g) <= 1 for noop, g in zip(noops, graph))
    assert {k: len(v) for k, v in fake.copies().items()} == {a1["id"]: 1, a2["id"]: 1}

    # another client's events: busy and tentative block, showAs free and cancelled do not, all-day blocks the day
    work = fake.work_calendar
    fake.add_event(work, at(2030, 3, 4, 9), at(2030, 3, 4, 10), "Dentist")                          # Mon 10-11 Oslo
    fake.add_event(work, at(2030, 3, 4, 14), at(2030, 3, 4, 15), "Focus", show_as="free")           # Mon 15-16
    fake.add_event(work, at(2030, 3, 5, 13), at(2030, 3, 5, 14), "Gone", cancelled=True)            # Tue 14-15
    fake.add_event(work, date(2030, 3, 6), date(2030, 3, 7), "Conference", all_day=True)            # all Wednesday
    fake.add_event(work, at(2030, 3, 7, 10), at(2030, 3, 7, 11), "Maybe", show_as="tentative")      # Thu 11-12
    r = advisor("sync", "--json")
    assert r.code == 0 and r.json()["calendars"][0]["status"] == "ok", r.out
    got = week_slots(advisor)
    assert got.get("2030-03-02") is None and got.get("2030-03-03") is None  # weekend
    assert got["2030-03-04"] == [t for t in HOURS if t not in ("10:00", "10:30", "13:00")]  # busy, a1
    assert got["2030-03-05"] == [t for t in HOURS if t not in ("09:00", "09:30")]  # a2 only (cancelled is free)
    assert "2030-03-06" not in got  # all-day
    assert got["2030-03-07"] == [t for t in HOURS if t not in ("11:00", "11:30")]  # tentative blocks

    # move and cancel reach the copies on the next sync
    assert advisor("appointments", "move", a2["id"], "--start", "2030-03-05T14:00").code == 0
    assert advisor("appointments", "cancel", a1["id"]).code == 0
    r = advisor("sync", "--json")
    assert r.code == 0, r.out
    rep = r.json()["calendars"][0]
    assert (rep["copied"], rep["updated"], rep["deleted"]) == (0, 1, 1)
    assert fake.copies() == {a2["id"]: [(at(2030, 3, 5, 13), at(2030, 3, 5, 14))]}
    assert [e["deleted"] for e in fake.events.values() if e["props"].get(microsoft.MARKER_PROP) == a1["id"]] == [True]
    got = week_slots(advisor)
    assert got["2030-03-04"] == [t for t in HOURS if t not in ("10:00", "10:30")]
    assert got["2030-03-05"] == [t for t in HOURS if t not in ("14:00", "14:30")]
    assert not fake.violations

    # no token anywhere under ENGAGE_HOME in clear text (nor in the database); the cache key only in the
    # explicit secrets file; the encrypted cache (0600) opens with that key and holds the current refresh token
    tokens = all_tokens(fake)
    assert tokens and files_holding(home, *tokens) == []
    dbs = [p for p in home.rglob("*") if p.is_file() and ".db" in p.name]
    assert dbs and all(t.encode() not in p.read_bytes() for p in dbs for t in tokens)
    key = json.loads((home / "secrets.json").read_text())["secrets"][secret_name("default", cal["id"], "cache_key")]
    assert files_holding(home, key) == ["secrets.json"]
    cache = home / "profiles" / "default" / "state" / f"{cal['id']}.msal-cache"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert fake.issued_refresh_tokens[-1] in microsoft._decrypt(key, cache.read_bytes())


# --- 2. a revoked grant ------------------------------------------------------------------------------------------

def test_revoked_grant_needs_relink_and_the_ics_calendar_still_syncs(advisor, fake, tmp_path):
    mcal = linked_microsoft(advisor, fake, "--copy")
    assert mcal["copy_appointments"] is True
    feed = tmp_path / "feed.ics"
    feed.write_text("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//EN\r\nBEGIN:VEVENT\r\nUID:f1\r\n"
                    "DTSTAMP:20300101T000000Z\r\nDTSTART:20300307T090000Z\r\nDTEND:20300307T100000Z\r\n"
                    "SUMMARY:Feed\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    assert advisor("link", "ics", str(feed)).code == 0
    ics_id = next(c["id"] for c in advisor("calendars", "list", "--json").json() if c["provider"] == "ics")
    advisor("appointments", "add", "--start", "2030-03-04T13:00", "--title", "Review")
    secrets = all_tokens(fake)
    fake.revoke()

    r = advisor("sync")
    assert r.code == 3
    assert "engage link microsoft" in r.err and "Traceback" not in r.err
    assert not any(s in r.out + r.err for s in secrets)
    r = advisor("sync", "--json")
    assert r.code == 3
    by_id = {c["id"]: c for c in r.json()["calendars"]}
    assert by_id[mcal["id"]]["status"] == "relink" and "engage link microsoft" in by_id[mcal["id"]]["error"]
    assert by_id[ics_id]["status"] == "ok" and by_id[ics_id]["error"] is None
    assert not any(s in r.out + r.err for s in secrets)
    listed = {c["id"]: c for c in advisor("calendars", "list", "--json").json()}
    assert listed[mcal["id"]]["status"] == "relink" and "engage link microsoft" in listed[mcal["id"]]["error"]
    assert listed[ics_id]["status"] == "ok"
    human = advisor("calendars", "list")
    assert "relink" in human.out and not any(s in human.out + human.err for s in secrets)
    assert fake.copies() == {}  # nothing was written with a revoked grant
    assert "10:00" not in week_slots(advisor).get("2030-03-07", [])  # the ICS busy time still counts
    assert not fake.violations


# --- 3. the real Secret Service -------------------------------------------------------------------------------

def _keyring_unavailable() -> str | None:
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return "no D-Bus session (DBUS_SESSION_BUS_ADDRESS is unset): run the tests with tests/run.sh"
    from engagecli.errors import SecretStoreError
    from engagecli.secrets import KeyringStore

    try:
        KeyringStore().get("engage-tests/probe")
    except SecretStoreError as exc:
        return f"the keyring probe failed: {exc}"
    return None


@pytest.mark.keyring
def test_keyring_link_then_sync_in_a_new_process(advisor, fake, capsys, monkeypatch, home):
    reason = _keyring_unavailable()
    if reason:
        if os.environ.get("ENGAGE_TEST_REQUIRE_KEYRING"):
            pytest.fail(f"tests/run.sh started a Secret Service but {reason}")
        pytest.skip(reason)
    from engagecli.secrets import KeyringStore

    monkeypatch.delenv("ENGAGE_SECRETS")
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    cal = linked_microsoft(advisor, fake, "--copy")
    name = secret_name("default", cal["id"], "cache_key")
    keyring = KeyringStore()
    try:
        key = keyring.get(name)
        assert key
        cache = home / "profiles" / "default" / "state" / f"{cal['id']}.msal-cache"
        assert fake.issued_refresh_tokens[-1] in microsoft._decrypt(key, cache.read_bytes())
        appt = advisor("appointments", "add", "--start", "2030-03-04T13:00", "--title", "Review", "--json").json()
        graph0 = len(fake.graph_requests())
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "engagecli", "sync", "--json"], env=dict(os.environ),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        with capsys.disabled():
            print(f"\nMicrosoft sync in a new process: {time.monotonic() - started:.2f} s")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        [rep] = json.loads(proc.stdout)["calendars"]
        assert (rep["id"], rep["status"], rep["copied"]) == (cal["id"], "ok", 1)
        assert len(fake.graph_requests()) > graph0  # the child opened the cache with the keyring's key
        assert list(fake.copies()) == [appt["id"]]
        tokens = all_tokens(fake)
        assert not any(s in proc.stdout + proc.stderr for s in tokens + [key])
        assert not (home / "secrets.json").exists()
        assert files_holding(home, key, *tokens) == []
        r = advisor("calendars", "unlink", cal["id"], "--yes", "--keep-copies")
        assert r.code == 0, r.err
        assert keyring.get(name) is None
        assert not cache.exists()
        assert list((home / "profiles" / "default" / "state").glob(f"{cal['id']}*")) == []
        assert list(fake.copies()) == [appt["id"]]  # kept
    finally:
        keyring.delete(name)
