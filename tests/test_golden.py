"""Golden files for human output: what an advisor reads. Regenerate after an intended change with
ENGAGE_UPDATE_GOLDEN=1 and review the diff."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from test_cli import write_ics

GOLDEN = Path(__file__).parent / "golden"


def check(name: str, text: str, cal_id: str | None = None) -> None:
    if cal_id:
        text = text.replace(cal_id, "ics-XXXX")
    text = re.sub(r"\[[a-z2-9]{8}\]", "[APPOINTMENT-ID]", text)
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("ENGAGE_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"no golden file {path.name}: run with ENGAGE_UPDATE_GOLDEN=1"
    assert text == path.read_text()


@pytest.fixture
def linked(advisor, tmp_path):
    advisor("link", "ics", str(write_ics(tmp_path)))
    advisor("appointments", "add", "--start", "2030-03-04T13:00", "--title", "Review", "--customer-name", "Sam")
    return advisor, advisor("calendars", "list", "--json").json()[0]["id"]


def test_slots_text(linked):
    advisor, cal = linked
    check("slots", advisor("slots", "--start", "2030-03-04", "--days", "2").out, cal)


def test_slots_text_on_the_fall_back_day(advisor):
    advisor("availability", "set", "sun", "00:00-04:00")
    check("slots_fall_back", advisor("slots", "--start", "2030-10-27", "--days", "1", "--duration", "60").out)


def test_agenda_text(linked):
    advisor, cal = linked
    check("agenda", advisor("calendar", "--start", "2030-03-04", "--days", "2").out, cal)


def test_calendars_list_text(linked):
    advisor, cal = linked
    check("calendars_list", advisor("calendars", "list").out, cal)


def test_availability_and_appointments_text(linked):
    advisor, cal = linked
    check("availability", advisor("availability", "show").out)
    out = advisor("appointments", "list").out
    check("appointments", re.sub(r"^[a-z2-9]{8} ", "APPT-ID  ", out, flags=re.M))
