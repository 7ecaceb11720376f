"""`engage demo`: a ready example profile on the embedded default (SQLite + the bundled sample calendar)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import date, timedelta
from importlib import resources

from engagecli.core.timeutil import zone

DEMO_PROFILE = "demo"
SAMPLE_WEEK = date(2030, 1, 7)  # the Monday the bundled sample calendar is written around
DEMO_TZ = "Europe/Oslo"
# (weekday, time, minutes, title, customer): fit the sample calendar's free time
DEMO_APPOINTMENTS = [
    (1, "11:00", 45, "Mortgage review", "Sam Customer"),
    (3, "15:00", 30, "Pension planning", "Alex Example"),
]


def run_demo(env):
    from engagecli.core.ical import shift_dates
    from engagecli.services import appointments, calendars, planner, profile

    demo_env = replace(env, profile=DEMO_PROFILE)
    demo_env.__dict__.pop("store", None)
    demo_env.__dict__.pop("secrets", None)
    if demo_env.profile_dir.exists():
        shutil.rmtree(demo_env.profile_dir)
    profile.set_account(demo_env, name="Demo Advisor", email="advisor@example.com", timezone=DEMO_TZ)
    profile.set_hours(demo_env, "mon-fri", ["09:00-17:00"])
    today = demo_env.now().astimezone(zone(DEMO_TZ)).date()
    monday = today + timedelta(days=7 - today.weekday())
    sample = resources.files("engagecli.data").joinpath("sample.ics").read_text(encoding="utf-8")
    path = demo_env.profile_dir / "sample-work-calendar.ics"
    path.write_text(shift_dates(sample, (monday - SAMPLE_WEEK).days), encoding="utf-8")
    calendars.link(demo_env, "ics", calendars.ics_link_result(str(path)), name="Sample work calendar")
    for weekday, hhmm, minutes, title, customer in DEMO_APPOINTMENTS:
        day = monday + timedelta(days=weekday)
        appointments.add(demo_env, start=f"{day.isoformat()}T{hhmm}", duration=minutes, title=title,
                         customer_name=customer)
    slots = planner.free_slots(demo_env, start=monday.isoformat(), week=True)
    period, entries = planner.agenda(demo_env, start=monday.isoformat(), days=5)
    return demo_env, slots, period, entries
