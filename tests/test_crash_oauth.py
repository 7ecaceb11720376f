"""The crash test of the CalDAV suite for the OAuth providers: `engage sync` (a real subprocess with the real
google-auth / msal / requests) is SIGKILLed at random points while it copies 60 new appointments into a Google
or Microsoft work calendar (the HTTPS fakes run in this test process); after one more sync the work calendar
holds exactly one copy per appointment and the store is intact.

Where the kills land: the fake's request handler is wrapped (in this process only; tests/fakes untouched) so
that it kills the sync process while it serves that process's k-th write (POST/PATCH/PUT/DELETE, or a batch
holding one; token requests excluded), either before the write is applied and answered or after it was
answered (the client may or may not have read the answer and committed): exactly the window between a remote
write and our commit. Other rounds kill at the k-th request of any kind (token, pull, lookups) or on a random
timer started by the process's first request; every request is slowed by DELAY. A batch is one request."""

from __future__ import annotations

import io
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from engagecli.providers import microsoft
from engagecli.providers.base import MARKER_KEY

UTC = timezone.utc
N = 60
DELAY = 0.02  # seconds added to every request the fake serves
ACCOUNT = "advisor@example.com"
GOOGLE_CLIENT_ID = "crash-client.apps.googleusercontent.com"
GOOGLE_CLIENT_SECRET = "GOCSPX-crash-client-secret-9d2e"


WRITE_IN_BATCH = re.compile(rb'"method" *: *"(POST|PATCH|PUT|DELETE)"|^(POST|PATCH|PUT|DELETE) /', re.MULTILINE)


class Killer:
    """Wraps a fake's `_Handler._dispatch`: a small delay per request, and a SIGKILL of the armed process
    - "write": while the fake serves that process's `target`-th write (a batch counts when it holds a write),
      `before` it is applied and answered or after;
    - "request": when its `target`-th request (of any kind: token, pull, lookups, writes) comes in;
    - "timer": `delay` seconds after its first request."""

    def __init__(self, is_write):
        self.is_write = is_write  # (method, path, body) -> bool
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.mode, self.target, self.before, self.delay = "write", 0, True, 0.0
        self.requests = self.writes = 0
        self.writes_at_kill: int | None = None

    def arm(self, proc, mode: str, *, target: int = 0, before: bool = True, delay: float = 0.0) -> None:
        with self.lock:
            self.proc, self.mode, self.target, self.before, self.delay = proc, mode, target, before, delay
            self.requests = self.writes = 0
            self.writes_at_kill = None

    def disarm(self) -> None:
        with self.lock:
            self.proc = None

    def kill(self, proc) -> None:
        with self.lock:
            if self.proc is not proc or self.writes_at_kill is not None:
                return
            self.writes_at_kill = self.writes
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def install(self, monkeypatch, handler_class) -> None:
        original = handler_class._dispatch
        killer = self

        def _dispatch(handler, method):
            time.sleep(DELAY)
            length = int(handler.headers.get("Content-Length") or 0)
            body = handler.rfile.read(length) if length else b""
            rfile, handler.rfile = handler.rfile, io.BytesIO(body)  # the fake reads the body from here
            fire = None
            with killer.lock:
                proc = killer.proc
                if proc is not None and killer.writes_at_kill is None:
                    killer.requests += 1
                    write = killer.is_write(method, handler.path, body)
                    killer.writes += write
                    if killer.mode == "timer" and killer.requests == 1:
                        threading.Timer(killer.delay, killer.kill, (proc,)).start()
                    elif killer.mode == "request" and killer.requests == killer.target:
                        fire = proc
                    elif killer.mode == "write" and write and killer.writes == killer.target:
                        fire = proc
            if fire is not None and killer.before:
                killer.kill(fire)  # the request is in; the client dies before it can read the answer
            try:
                return original(handler, method)
            except OSError:  # answering a killed client: broken pipe / reset
                pass
            finally:
                handler.rfile = rfile
                if fire is not None and not killer.before:
                    killer.kill(fire)  # answered: the client may or may not have read it (and committed)

        monkeypatch.setattr(handler_class, "_dispatch", _dispatch)


def is_write(token_path: str):
    def check(method: str, path: str, body: bytes) -> bool:
        if method == "GET" or token_path in path:
            return False
        if "batch" in path:
            return bool(WRITE_IN_BATCH.search(body))
        return True

    return check


def add_appointments(home) -> list[str]:
    from engagecli.core.models import Appointment
    from engagecli.store import Store

    store = Store.open(home / "profiles" / "default" / "engage.db")
    base = datetime(2030, 3, 4, 8, 0, tzinfo=UTC)
    ids = []
    with store.transaction():
        for i in range(N):
            start = base + timedelta(hours=i)
            ids.append(f"crash{i:03d}")
            store.add_appointment(Appointment(ids[-1], start, start + timedelta(minutes=30), "Europe/Oslo",
                                              f"Appointment {i}"), base)
    store.close()
    return ids


def crash_and_recover(home, killer, remote_copies, capsys, label: str) -> None:
    """Kill `engage sync --quiet` subprocesses at random points, then sync once more: exactly N copies."""
    ids = add_appointments(home)
    rng = random.Random(f"engage-crash-{label}")
    env = dict(os.environ)
    started = time.monotonic()
    kills: list[str] = []
    mid_sync = 0
    rounds = [("write", dict(target=rng.randint(1, 2), before=rng.random() < 0.5)),
              ("timer", dict(delay=rng.uniform(0.02, 0.5))),
              ("write", dict(target=rng.randint(1, 2), before=rng.random() < 0.5)),
              ("request", dict(target=rng.randint(1, 4))),
              ("write", dict(target=1, before=rng.random() < 0.5))]
    for mode, how in rounds:
        copies_before = sum(len(v) for v in remote_copies().values())
        proc = subprocess.Popen([sys.executable, "-m", "engagecli", "sync", "--quiet"], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        killer.arm(proc, mode, **how)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"`engage sync` hung ({label})")
        finally:
            killer.disarm()
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        copies_now = sum(len(v) for v in remote_copies().values())
        what = f"{mode} {how}".replace("'", "")
        if proc.returncode == -signal.SIGKILL:
            assert killer.writes_at_kill is not None
            kills.append(f"{what}: killed after {killer.requests} requests, {killer.writes_at_kill} writes; "
                         f"copies {copies_before} -> {copies_now}")
            if killer.writes_at_kill >= 1:
                mid_sync += 1  # it was writing copies when it died
        else:
            assert proc.returncode == 0, err
            assert "Traceback" not in err, err
            kills.append(f"{what}: finished, copies {copies_before} -> {copies_now}")
    assert mid_sync >= 1, kills  # the test must actually have interrupted a sync while it copied
    r = subprocess.run([sys.executable, "-m", "engagecli", "sync", "--json"], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    [rep] = json.loads(r.stdout)["calendars"]
    assert rep["status"] == "ok" and rep["error"] is None, rep
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(f"\n{label} crash test, {elapsed:.1f} s; {mid_sync} kills while copying; rounds:\n  "
              + "\n  ".join(kills))

    copies = remote_copies()
    assert sorted(copies) == ids
    assert all(len(v) == 1 for v in copies.values()), {k: len(v) for k, v in copies.items() if len(v) != 1}
    con = sqlite3.connect(home / "profiles" / "default" / "engage.db")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT COUNT(*) FROM copies").fetchone()[0] == N
        mapped = {appt: remote for appt, remote in con.execute("SELECT appointment_id, remote_id FROM copies")}
    finally:
        con.close()
    assert mapped == {appt: refs[0] for appt, refs in copies.items()}  # each row points at the one live copy


# --- Google ------------------------------------------------------------------------------------------------------

def google_copies(fake):
    def copies() -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for ev in fake.events(ACCOUNT):
            appt = ((ev.get("extendedProperties") or {}).get("private") or {}).get(MARKER_KEY)
            if appt:
                out.setdefault(appt, []).append(ev["id"])
        return out

    return copies


class PastingUser(io.TextIOBase):
    """Standard input for `engage link google --no-browser`: opens the consent URL engage printed and pastes
    the loopback address the fake redirected to."""

    def __init__(self, capsys):
        self.capsys = capsys
        self.err = ""

    def isatty(self):
        return False

    def readable(self):
        return True

    def readline(self, size=-1):
        self.err += self.capsys.readouterr().err
        [url] = [line for line in self.err.splitlines() if line.startswith("https://")]
        response = requests.get(url, allow_redirects=False, timeout=10)
        assert response.status_code == 302, response.text
        return response.headers["Location"] + "\n"


@pytest.mark.slow
def test_sigkill_during_google_sync_never_duplicates(advisor, tmp_path, monkeypatch, capsys, home):
    from engagecli.cli import run
    from fakes import google as google_fake

    folder = tmp_path / "google"
    folder.mkdir()
    fake = google_fake.GoogleFake(folder).start()
    try:
        for key, value in fake.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("ENGAGE_GOOGLE_CLIENT_SECRETS", raising=False)
        client_file = tmp_path / "client_secret_crash.json"
        client_file.write_text(json.dumps(fake.client_json(GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET)))
        monkeypatch.setattr(sys, "stdin", PastingUser(capsys))
        old = os.umask(0o077)
        try:
            code = run(["link", "google", "--no-browser", "--client-secrets", str(client_file)])
        finally:
            os.umask(old)
        assert code == 0, capsys.readouterr().err
        [cal] = advisor("calendars", "list", "--json").json()
        assert (cal["provider"], cal["status"]) == ("google", "ok")
        assert advisor("calendars", "set", cal["id"], "--copy").code == 0

        killer = Killer(is_write("/token"))
        killer.install(monkeypatch, google_fake._Handler)
        crash_and_recover(home, killer, google_copies(fake), capsys, "Google")
    finally:
        fake.stop()


# --- Microsoft ---------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_sigkill_during_microsoft_sync_never_duplicates(advisor, tmp_path, monkeypatch, capsys, home):
    from fakes import graph as graph_fake

    folder = tmp_path / "graph"
    folder.mkdir()
    fake = graph_fake.GraphFake(folder).start()
    try:
        for key, value in fake.env().items():
            monkeypatch.setenv(key, value)
        r = advisor("link", "microsoft", "--client-id", fake.client_id)
        assert r.code == 0, r.err
        [cal] = advisor("calendars", "list", "--json").json()
        assert (cal["provider"], cal["status"]) == ("microsoft", "ok")
        assert advisor("calendars", "set", cal["id"], "--copy").code == 0

        def copies() -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            for ev in fake.live(fake.work_calendar):
                appt = ev["props"].get(microsoft.MARKER_PROP)
                if appt:
                    out.setdefault(appt, []).append(ev["id"])
            return out

        killer = Killer(is_write("/oauth2/"))
        killer.install(monkeypatch, graph_fake._Handler)
        crash_and_recover(home, killer, copies, capsys, "Microsoft")
        assert not fake.violations
    finally:
        fake.stop()
