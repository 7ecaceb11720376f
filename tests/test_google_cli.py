"""The Google product loop through the CLI against the local HTTPS fake (tests/fakes/google.py), with the REAL
google-auth, google-auth-oauthlib and requests: link (pasted address and loopback browser) → switches → sync →
slots; copies exactly once, no-op syncs write nothing, a revoked grant asks for `engage link google` while other
calendars keep syncing, tokens stay out of every file but the secret store, and a real Secret Service round trip
into a new process."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import webbrowser
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests

from conftest import Result
from engagecli.providers.base import MARKER_KEY, secret_name
from fakes.google import GoogleFake

UTC = timezone.utc
ACCOUNT = "advisor@example.com"
CLIENT_ID = "e2e-client.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-e2e-client-secret-4c1f"
CUSTOMER = "Sam Customerson"
CUSTOMER_EMAIL = "sam.customerson@example.net"


@pytest.fixture
def fake(tmp_path, monkeypatch):
    f = GoogleFake(tmp_path).start()
    for key, value in f.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ENGAGE_GOOGLE_CLIENT_SECRETS", raising=False)
    f.add_client(CLIENT_ID, CLIENT_SECRET)
    yield f
    f.stop()


@pytest.fixture
def client_file(fake, tmp_path):
    path = tmp_path / "client_secret_e2e.json"
    path.write_text(json.dumps(fake.client_json(CLIENT_ID, CLIENT_SECRET)))
    return str(path)


# --- the "user" at the terminal and in the browser ------------------------------------------------------------

class PastingUser(io.TextIOBase):
    """Standard input for `engage link google --no-browser`: when engage reads the answer, the user takes the
    consent URL from what engage printed on stderr so far (a line of its own), opens it (the fake consents and
    redirects to the loopback address, which does not load) and pastes the address the browser ended on.
    `tamper` may change the pasted address."""

    def __init__(self, capsys, tamper=None):
        self.capsys = capsys
        self.tamper = tamper
        self.out = ""
        self.err = ""
        self.consent_urls: list[str] = []

    def isatty(self):
        return False

    def readable(self):
        return True

    def readline(self, size=-1):
        out, err = self.capsys.readouterr()
        self.out += out
        self.err += err
        self.consent_urls = [line for line in self.err.splitlines() if line.startswith("https://")]
        assert len(self.consent_urls) == 1, self.err  # the URL, unwrapped, on a line of its own
        response = requests.get(self.consent_urls[0], allow_redirects=False, timeout=10)
        assert response.status_code == 302, response.text
        pasted = response.headers["Location"]
        if self.tamper:
            pasted = self.tamper(pasted)
        return pasted + "\n"

    def read(self, size=-1):
        return self.readline()


def run_cli(capsys, monkeypatch, args, stdin) -> Result:
    """Like the `engage` fixture, with a live object on standard input."""
    from engagecli.cli import run

    monkeypatch.setattr(sys, "stdin", stdin)
    capsys.readouterr()
    old = os.umask(0o077)
    try:
        code = run(list(args))
    finally:
        os.umask(old)
    out, err = capsys.readouterr()
    if isinstance(stdin, PastingUser):
        out, err = stdin.out + out, stdin.err + err
    return Result(code, out, err)


def link_google(capsys, monkeypatch, client_file, *extra, tamper=None) -> Result:
    args = ["link", "google", "--no-browser"] + (["--client-secrets", client_file] if client_file else []) + list(extra)
    return run_cli(capsys, monkeypatch, args, PastingUser(capsys, tamper))


def linked_google(engage, capsys, monkeypatch, client_file, *extra) -> dict:
    r = link_google(capsys, monkeypatch, client_file, *extra)
    assert r.code == 0, r.err
    return next(c for c in engage("calendars", "list", "--json").json() if c["provider"] == "google")


# --- reading the fake -------------------------------------------------------------------------------------------

def copies_on(fake, cal_id=ACCOUNT) -> dict[str, list[dict]]:
    """Live (not cancelled) events carrying our private marker, by appointment id."""
    out: dict[str, list[dict]] = {}
    for ev in fake.events(cal_id):
        appt = ((ev.get("extendedProperties") or {}).get("private") or {}).get(MARKER_KEY)
        if appt:
            out.setdefault(appt, []).append(ev)
    return out


def utc(when: dict) -> datetime:
    return datetime.fromisoformat(when["dateTime"].replace("Z", "+00:00")).astimezone(UTC)


def other_event(fake, start, end, **extra):
    """Another client (the advisor's phone) writes an event into the work calendar."""
    body = {"summary": "Private thing", **extra}
    if len(start) == 10:  # a date: an all-day event
        body.update(start={"date": start}, end={"date": end})
    else:
        body.update(start={"dateTime": start, "timeZone": "Europe/Oslo"}, end={"dateTime": end, "timeZone": "Europe/Oslo"})
    return fake.put_event(ACCOUNT, body)["id"]


def week_slots(engage) -> dict[str, list[str]]:
    r = engage("slots", "--week", "--json")
    assert r.code == 0, r.err
    out: dict[str, list[str]] = {}
    for s in r.json()["slots"]:
        out.setdefault(s["start"][:10], []).append(s["start"][11:16])
    return out


HOURS = [f"{h:02d}:{m:02d}" for h in (9, 10, 11, 13, 14, 15, 16) for m in (0, 30)]


def files_holding(root, *needles: str) -> list[str]:
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if any(n.encode() in data for n in needles if n):
            hits.append(str(path.relative_to(root)))
    return hits


# --- 1. the whole loop -------------------------------------------------------------------------------------------

def test_link_copy_sync_slots_end_to_end(advisor, fake, client_file, capsys, monkeypatch, home):
    r = link_google(capsys, monkeypatch, client_file)
    assert r.code == 0, r.err
    assert "Traceback" not in r.err
    auth = fake.authorize_requests[-1]
    assert auth["redirect_uri"].startswith("http://127.0.0.1:") and auth["code_challenge_method"] == "S256"
    assert fake.token_requests.count("authorization_code") == 1
    [rt] = list(fake.refresh_tokens)
    assert rt not in r.out + r.err and CLIENT_SECRET not in r.out + r.err
    cals = advisor("calendars", "list", "--json").json()
    assert len(cals) == 1
    cal = cals[0]
    assert (cal["provider"], cal["account"], cal["status"]) == ("google", ACCOUNT, "ok")
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

    copies = copies_on(fake)
    assert {k: len(v) for k, v in copies.items()} == {a1["id"]: 1, a2["id"]: 1}
    ev1, ev2 = copies[a1["id"]][0], copies[a2["id"]][0]
    # exact UTC instants: Oslo is UTC+1 in early March
    assert (utc(ev1["start"]), utc(ev1["end"])) == (datetime(2030, 3, 4, 12, tzinfo=UTC), datetime(2030, 3, 4, 12, 30, tzinfo=UTC))
    assert (utc(ev2["start"]), utc(ev2["end"])) == (datetime(2030, 3, 5, 8, tzinfo=UTC), datetime(2030, 3, 5, 9, tzinfo=UTC))
    for ev in (ev1, ev2):
        text = json.dumps(ev)
        assert CUSTOMER not in text and CUSTOMER_EMAIL not in text and "Customerson" not in text
        assert ev.get("transparency", "opaque") == "opaque" and ev["status"] == "confirmed"

    # a second sync copies nothing and writes nothing
    api0, tok0, log0 = fake.api_requests, len(fake.token_requests), len(fake.log)
    r = advisor("sync", "--json")
    assert r.code == 0, r.out
    [rep] = r.json()["calendars"]
    assert (rep["status"], rep["copied"], rep["updated"], rep["deleted"]) == ("ok", 0, 0, 0)
    noop = fake.log[log0:]
    assert [m for m, _p, _q in noop if m != "GET"] == []
    noop_api, noop_token = fake.api_requests - api0, len(fake.token_requests) - tok0
    with capsys.disabled():
        print(f"\nno-op sync: {noop_api} API requests + {noop_token} token requests: "
              f"{[(m, p.rsplit('/', 1)[-1], sorted(q)) for m, p, q in noop]}")
    assert noop_api <= 2 and noop_token <= 1
    assert {k: len(v) for k, v in copies_on(fake).items()} == {a1["id"]: 1, a2["id"]: 1}

    # another client's events: opaque blocks, transparent and cancelled do not, all-day blocks the whole day
    other_event(fake, "2030-03-04T09:00:00Z", "2030-03-04T10:00:00Z")                       # Mon 10:00-11:00 Oslo
    other_event(fake, "2030-03-04T14:00:00Z", "2030-03-04T15:00:00Z", transparency="transparent")  # Mon 15-16
    other_event(fake, "2030-03-05T13:00:00Z", "2030-03-05T14:00:00Z", status="cancelled")  # Tue 14-15
    other_event(fake, "2030-03-06", "2030-03-07", summary="Conference")                     # all of Wednesday
    r = advisor("sync", "--json")
    assert r.code == 0 and r.json()["calendars"][0]["status"] == "ok", r.out
    got = week_slots(advisor)
    assert got.get("2030-03-02") is None and got.get("2030-03-03") is None  # weekend
    assert got["2030-03-04"] == [t for t in HOURS if t not in ("10:00", "10:30", "13:00")]  # opaque, a1
    assert got["2030-03-05"] == [t for t in HOURS if t not in ("09:00", "09:30")]  # a2 only (cancelled is free)
    assert "2030-03-06" not in got  # all-day
    assert got["2030-03-07"] == HOURS

    # move and cancel reach the copies on the next sync
    assert advisor("appointments", "move", a2["id"], "--start", "2030-03-05T14:00").code == 0
    assert advisor("appointments", "cancel", a1["id"]).code == 0
    r = advisor("sync", "--json")
    assert r.code == 0, r.out
    rep = r.json()["calendars"][0]
    assert (rep["copied"], rep["updated"], rep["deleted"]) == (0, 1, 1)
    copies = copies_on(fake)
    assert list(copies) == [a2["id"]] and len(copies[a2["id"]]) == 1
    moved = copies[a2["id"]][0]
    assert (utc(moved["start"]), utc(moved["end"])) == (datetime(2030, 3, 5, 13, tzinfo=UTC), datetime(2030, 3, 5, 14, tzinfo=UTC))
    gone = [e for e in fake.events(ACCOUNT, include_cancelled=True)
            if ((e.get("extendedProperties") or {}).get("private") or {}).get(MARKER_KEY) == a1["id"]]
    assert [e["status"] for e in gone] == ["cancelled"]
    got = week_slots(advisor)
    assert got["2030-03-04"] == [t for t in HOURS if t not in ("10:00", "10:30")]
    assert got["2030-03-05"] == [t for t in HOURS if t not in ("14:00", "14:30")]

    # the refresh token (and client secret, access tokens) live in the explicit secrets file only
    assert files_holding(home, rt) == ["secrets.json"]
    assert files_holding(home, CLIENT_SECRET) == ["secrets.json"]
    assert files_holding(home, *fake.access_tokens) == []
    dbs = list(home.rglob("*.db"))
    assert dbs and all(rt.encode() not in p.read_bytes() for p in dbs)
    secrets_doc = json.loads((home / "secrets.json").read_text())["secrets"]
    assert secrets_doc[secret_name("default", cal["id"], "refresh_token")] == rt


# --- 2. the loopback browser flow -----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_link_with_the_browser_on_a_fixed_port(advisor, fake, client_file, monkeypatch):
    visits: list[requests.Response] = []
    opened: list[str] = []

    class Browser:
        def open(self, url, new=0, autoraise=True):
            opened.append(url)

            def visit():  # the user signs in; the fake redirects to engage's loopback server
                visits.append(requests.get(url, timeout=10))

            threading.Thread(target=visit, daemon=True).start()
            return True

    monkeypatch.setattr(webbrowser, "get", lambda using=None: Browser())
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: Browser().open(url))
    port = _free_port()
    r = advisor("link", "google", "--client-secrets", client_file, "--port", str(port),
                "--calendar", "Team", "--copy")
    assert r.code == 0, r.err
    assert len(opened) == 1 and opened[0].startswith(fake.auth_url + "?")
    assert opened[0] in r.err.splitlines()  # also printed, on a line of its own
    assert fake.authorize_requests[-1]["redirect_uri"] == f"http://127.0.0.1:{port}/"
    assert visits and visits[0].status_code == 200 and "linked" in visits[0].text
    [cal] = advisor("calendars", "list", "--json").json()
    assert (cal["provider"], cal["account"], cal["name"], cal["status"]) == ("google", ACCOUNT, "Team", "ok")
    assert cal["copy_appointments"] is True
    a = advisor("appointments", "add", "--start", "2030-03-04T15:00", "--title", "Review", "--json").json()
    r = advisor("sync", "--json")
    assert r.code == 0 and r.json()["calendars"][0]["copied"] == 1, r.out
    assert list(copies_on(fake, "team@group.calendar.google.com")) == [a["id"]]
    assert copies_on(fake) == {}


# --- 3. a revoked grant ------------------------------------------------------------------------------------------

def test_revoked_grant_needs_relink_and_the_ics_calendar_still_syncs(advisor, fake, client_file, capsys,
                                                                   monkeypatch, tmp_path):
    gcal = linked_google(advisor, capsys, monkeypatch, client_file, "--copy")
    feed = tmp_path / "feed.ics"
    feed.write_text("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//EN\r\nBEGIN:VEVENT\r\nUID:f1\r\n"
                    "DTSTAMP:20300101T000000Z\r\nDTSTART:20300307T090000Z\r\nDTEND:20300307T100000Z\r\n"
                    "SUMMARY:Feed\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    assert advisor("link", "ics", str(feed)).code == 0
    ics_id = next(c["id"] for c in advisor("calendars", "list", "--json").json() if c["provider"] == "ics")
    advisor("appointments", "add", "--start", "2030-03-04T13:00", "--title", "Review")
    [rt] = list(fake.refresh_tokens)
    fake.revoke()
    secrets = [rt, CLIENT_SECRET, *fake.access_tokens]

    r = advisor("sync")
    assert r.code == 3
    assert "engage link google" in r.err and "Traceback" not in r.err
    assert not any(s in r.out + r.err for s in secrets)
    r = advisor("sync", "--json")
    assert r.code == 3
    by_id = {c["id"]: c for c in r.json()["calendars"]}
    assert by_id[gcal["id"]]["status"] == "relink" and "engage link google" in by_id[gcal["id"]]["error"]
    assert by_id[ics_id]["status"] == "ok" and by_id[ics_id]["error"] is None
    assert not any(s in r.out + r.err for s in secrets)
    listed = {c["id"]: c for c in advisor("calendars", "list", "--json").json()}
    assert listed[gcal["id"]]["status"] == "relink" and "engage link google" in listed[gcal["id"]]["error"]
    assert listed[ics_id]["status"] == "ok"
    human = advisor("calendars", "list")
    assert "relink" in human.out and not any(s in human.out + human.err for s in secrets)
    assert copies_on(fake) == {}  # nothing was written with a revoked grant
    # the ICS busy time still counts
    assert "10:00" not in week_slots(advisor).get("2030-03-07", [])


# --- 4. clear one-line errors --------------------------------------------------------------------------------

def _one_line_error(r: Result) -> str:
    # (after a prompt answered from a pipe, the message follows the prompt on its line: no echoed newline)
    lines = [line[line.index("engage: "):] for line in r.err.splitlines() if "engage: " in line]
    assert len(lines) == 1, r.err
    assert "Traceback" not in r.err and r.err.endswith(lines[0] + "\n")  # the last thing said, one line
    return lines[0]


def test_missing_client_secrets_explains_the_desktop_app_client(advisor, fake, home, capsys, monkeypatch):
    r = advisor("link", "google", "--no-browser")
    assert r.code == 2
    line = _one_line_error(r)
    assert "Desktop app" in line and "--client-secrets" in line and "Credentials" in line
    assert fake.authorize_requests == [] and fake.token_requests == []
    r = advisor("link", "google", "--no-browser", "--client-secrets", str(home.parent / "nope.json"))
    assert r.code == 2 and "Desktop app" in _one_line_error(r)
    assert advisor("calendars", "list", "--json").json() == []


def test_state_mismatch_in_the_pasted_address_is_refused(advisor, fake, client_file, capsys, monkeypatch, home):
    def tampered(url):
        parts = urlsplit(url)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        q["state"] = "someone-elses-state"
        return urlunsplit(parts._replace(query=urlencode(q)))

    r = link_google(capsys, monkeypatch, client_file, tamper=tampered)
    assert r.code == 2, r.err
    line = _one_line_error(r)
    assert "state" in line and "engage link google" in line
    assert "authorization_code" not in fake.token_requests  # the code was never exchanged
    assert advisor("calendars", "list", "--json").json() == []
    assert not (home / "secrets.json").exists() or json.loads((home / "secrets.json").read_text())["secrets"] == {}


# --- 5. the real Secret Service -------------------------------------------------------------------------------

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
def test_keyring_link_then_sync_in_a_new_process(advisor, fake, client_file, capsys, monkeypatch, home):
    reason = _keyring_unavailable()
    if reason:
        if os.environ.get("ENGAGE_TEST_REQUIRE_KEYRING"):
            pytest.fail(f"tests/run.sh started a Secret Service but {reason}")
        pytest.skip(reason)
    from engagecli.secrets import KeyringStore

    monkeypatch.delenv("ENGAGE_SECRETS")
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    cal = linked_google(advisor, capsys, monkeypatch, client_file, "--copy")
    names = [secret_name("default", cal["id"], kind) for kind in ("refresh_token", "client_secret")]
    keyring = KeyringStore()
    try:
        [rt] = list(fake.refresh_tokens)
        assert keyring.get(names[0]) == rt and keyring.get(names[1]) == CLIENT_SECRET
        appt = advisor("appointments", "add", "--start", "2030-03-04T13:00", "--title", "Review", "--json").json()
        refreshes = fake.token_requests.count("refresh_token")
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "engagecli", "sync", "--json"], env=dict(os.environ),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        with capsys.disabled():
            print(f"\nsync in a new process: {time.monotonic() - started:.2f} s")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        [rep] = json.loads(proc.stdout)["calendars"]
        assert (rep["id"], rep["status"], rep["copied"]) == (cal["id"], "ok", 1)
        assert fake.token_requests.count("refresh_token") == refreshes + 1  # the child refreshed with the keyring's token
        assert list(copies_on(fake)) == [appt["id"]]
        assert not any(s in proc.stdout + proc.stderr for s in (rt, CLIENT_SECRET))
        assert not (home / "secrets.json").exists()
        assert files_holding(home, rt, CLIENT_SECRET) == []
        r = advisor("calendars", "unlink", cal["id"], "--yes", "--keep-copies")
        assert r.code == 0, r.err
        assert [keyring.get(n) for n in names] == [None, None]
        assert list(copies_on(fake)) == [appt["id"]]  # kept
    finally:
        for n in names:
            keyring.delete(n)
