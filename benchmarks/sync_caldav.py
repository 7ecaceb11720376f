"""Sync throughput against a real Radicale (issue: sync engine + CalDAV). Prints:
- the time to copy 1,000 new appointments, and per copy;
- HTTP requests for a no-op sync (nothing changed anywhere) and for a sync after one remote change.

    .venv/bin/python benchmarks/sync_caldav.py [--appointments 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
UTC = timezone.utc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--appointments", type=int, default=1000)
    args = parser.parse_args()

    import requests

    from engagecli.core.models import Appointment
    from engagecli.env import Env
    from engagecli.providers import caldav
    from engagecli.services import calendars, profile
    from engagecli.services.sync import sync
    from fakes.radicale import PASSWORD, USERNAME, RadicaleServer

    calls = {"n": 0}
    original = requests.Session.request

    def counting(self, *a, **kw):
        calls["n"] += 1
        return original(self, *a, **kw)

    with tempfile.TemporaryDirectory() as tmp, RadicaleServer(Path(tmp) / "radicale") as srv:
        os.umask(0o077)
        env = Env.from_environ({"ENGAGE_HOME": str(Path(tmp) / "home"), "ENGAGE_SECRETS": "file"})
        profile.set_account(env, name="Bench", email="bench@example.com", timezone="Europe/Oslo")
        cal_url = srv.new_calendar("bench")
        cal, _ = calendars.link(env, "caldav", caldav.link(cal_url, USERNAME, PASSWORD, None), copy=True)
        now = env.now()
        with env.store.transaction():
            for i in range(args.appointments):
                start = (now + timedelta(days=1, hours=i)).replace(minute=0, second=0, microsecond=0)
                env.store.add_appointment(Appointment(f"bench{i:05d}", start, start + timedelta(minutes=30),
                                                      "Europe/Oslo", f"Appointment {i}"), now)
        requests.Session.request = counting
        t = time.perf_counter()
        report = sync(env)[0]
        elapsed = time.perf_counter() - t
        first_calls = calls["n"]
        assert report.status == "ok" and report.copied == args.appointments, report
        calls["n"] = 0
        sync(env)  # our new copies come back once in the incremental pull (recognised by marker, not busy)
        echo = calls["n"]
        calls["n"] = 0
        sync(env)
        noop = calls["n"]
        srv.put_event(cal_url, "other", "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:o\r\n"
                      "DTSTAMP:20300101T000000Z\r\nDTSTART:20300304T090000Z\r\nDTEND:20300304T100000Z\r\n"
                      "END:VEVENT\r\nEND:VCALENDAR\r\n")
        calls["n"] = 0
        sync(env)
        one_change = calls["n"]
    print(f"copy {args.appointments} new appointments: {elapsed:.1f} s ({elapsed / args.appointments * 1000:.1f} ms "
          f"per copy, {first_calls} HTTP requests)")
    print(f"next sync (our copies come back once): {echo} HTTP requests; no-op sync: {noop}; "
          f"sync after one remote change: {one_change}")


if __name__ == "__main__":
    main()
