"""Start-up and import benchmarks (issue: foundation). Prints medians and ratios measured in one run.

    .venv/bin/python benchmarks/startup.py [--runs 21]

1. `engage --help` and `engage slots --week` (over a store of 20,000 busy occurrences) against `python -c pass`.
2. Importing a 20,000-event .ics (engage's core.ical.expand: parse + expand + busy rule) against plain
   recurring-ical-events expansion of the same file.
Targets: --help <= 100 ms, slots <= 1.5x --help, import <= 1.2x the raw expansion.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
UTC = timezone.utc


def median_ms(cmd: list[str], env: dict, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def make_store(home: Path, n: int) -> None:
    """A profile with an account, hours and `n` busy occurrences spread over the synced window."""
    from engagecli.core.models import Account, CalendarInfo, Occurrence, Window
    from engagecli.store import Store

    store = Store.open(home / "profiles" / "default" / "engage.db")
    store.save_account(Account("Bench", "bench@example.com", "Europe/Oslo"))
    store.set_hours(range(5), [Window(9 * 60, 12 * 60), Window(13 * 60, 17 * 60)])
    now = datetime.now(UTC)
    store.add_calendar(CalendarInfo("ics-bench", "ics", "file", "Bench", "/dev/null"), now)
    rng = random.Random(7)
    with store.transaction():
        for i in range(n):
            start = now + timedelta(days=rng.uniform(-90, 365))
            start = start.replace(minute=rng.choice([0, 15, 30, 45]), second=0, microsecond=0)
            end = start + timedelta(minutes=rng.choice([15, 30, 60, 90]))
            store.replace_item("ics-bench", f"ev{i}", [Occurrence(start, end, summary=f"Event {i}")])
    store.record_sync("ics-bench", status="ok", now=now)
    store.close()


def make_ics(n: int, recurring_every: int = 20) -> str:
    """`n` VEVENTs in Europe/Oslo over a year, every `recurring_every`-th a weekly series with an EXDATE."""
    rng = random.Random(11)
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//engage bench//EN"]
    base = datetime(2030, 1, 1, 8, 0)
    for i in range(n):
        start = base + timedelta(days=rng.randrange(365), minutes=15 * rng.randrange(40))
        end = start + timedelta(minutes=30 * rng.randrange(1, 5))
        lines += ["BEGIN:VEVENT", f"UID:bench-{i}@engage", "DTSTAMP:20300101T000000Z",
                  f"DTSTART;TZID=Europe/Oslo:{start:%Y%m%dT%H%M%S}", f"DTEND;TZID=Europe/Oslo:{end:%Y%m%dT%H%M%S}",
                  f"SUMMARY:Event {i}"]
        if i % recurring_every == 0:
            lines += ["RRULE:FREQ=WEEKLY;COUNT=10", f"EXDATE;TZID=Europe/Oslo:{start + timedelta(weeks=2):%Y%m%dT%H%M%S}"]
        if i % 50 == 1:
            lines.append("TRANSP:TRANSPARENT")
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return "\r\n".join(lines) + "\r\n"


def bench_import(n: int, repeat: int) -> tuple[float, float]:
    import icalendar
    import recurring_ical_events

    from engagecli.core.ical import clear_cache, expand

    data = make_ics(n).encode()
    lo, hi = datetime(2029, 12, 1, tzinfo=UTC), datetime(2031, 3, 1, tzinfo=UTC)
    raw, ours = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        list(recurring_ical_events.of(icalendar.Calendar.from_ical(data)).between(lo, hi))
        raw.append(time.perf_counter() - t)
        clear_cache()  # expand() remembers the last parse (link's probe + first pull); measure a cold import
        t = time.perf_counter()
        expand(data, lo, hi, "Europe/Oslo")
        ours.append(time.perf_counter() - t)
    return statistics.median(raw) * 1000, statistics.median(ours) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    import compileall

    import engagecli

    # what an install does; with PYTHONDONTWRITEBYTECODE set (as on these machines) an editable checkout would
    # otherwise be compiled from source at every start
    compileall.compile_dir(os.path.dirname(engagecli.__file__), quiet=1)
    engage = [str(Path(sys.executable).with_name("engage"))]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        make_store(home, args.events)
        env = dict(os.environ, ENGAGE_HOME=str(home), NO_COLOR="1")
        env.pop("ENGAGE_NOW", None)
        subprocess.run(engage + ["slots", "--week"], env=env, check=True, stdout=subprocess.DEVNULL)  # warm pyc
        base = median_ms([sys.executable, "-c", "pass"], env, args.runs)
        help_ = median_ms(engage + ["--help"], env, args.runs)
        slots = median_ms(engage + ["slots", "--week"], env, args.runs)
        cal_list = median_ms(engage + ["calendars", "list"], env, args.runs)
        slots_json = median_ms(engage + ["slots", "--week", "--json"], env, args.runs)
    raw, ours = bench_import(args.events, 3)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; medians of {args.runs} runs")
    typer_ms = median_ms([sys.executable, "-c", "import typer"], env, args.runs)
    print(f"python -c pass                 {base:7.1f} ms")
    print(f"python -c 'import typer'       {typer_ms:7.1f} ms   (the floor for any typer CLI)")
    print(f"engage --help                  {help_:7.1f} ms   {help_ / base:4.2f}x python   (target <= 100 ms)")
    print(f"engage slots --week ({args.events} busy) {slots:7.1f} ms   {slots / help_:4.2f}x --help   (target <= 1.5x)")
    print(f"engage slots --week --json     {slots_json:7.1f} ms   {slots_json / help_:4.2f}x --help")
    print(f"engage calendars list          {cal_list:7.1f} ms   {cal_list / help_:4.2f}x --help")
    print(f"import {args.events}-event .ics: raw recurring-ical-events {raw:.0f} ms, engage {ours:.0f} ms, "
          f"{ours / raw:4.2f}x   (target <= 1.2x)")


if __name__ == "__main__":
    main()
