"""The SQLite store: range queries against a brute-force filter, transactions, schema versions."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engagecli.core.models import CalendarInfo, Occurrence
from engagecli.core.timeutil import from_epoch
from engagecli.store import SCHEMA_VERSION, Store

NOW = datetime(2030, 3, 1, tzinfo=timezone.utc)
BASE = 1_900_000_000

spans = st.lists(st.tuples(st.integers(0, 400_000), st.integers(1, 90_000), st.booleans(), st.booleans()), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spans, st.integers(0, 500_000), st.integers(1, 200_000))
def test_busy_between_matches_a_brute_force_filter(tmp_path_factory, rows, lo, length):
    store = Store.open(tmp_path_factory.mktemp("s") / "e.db")
    store.add_calendar(CalendarInfo("a", "ics", "f", "A", "x"), NOW)
    store.add_calendar(CalendarInfo("b", "ics", "f", "B", "y", use_for_availability=False), NOW)
    with store.transaction():
        for i, (start, dur, busy, in_a) in enumerate(rows):
            occ = Occurrence(from_epoch(BASE + start), from_epoch(BASE + start + dur), busy=busy)
            store.replace_item("a" if in_a else "b", f"k{i}", [occ])
    lo, hi = BASE + lo, BASE + lo + length
    expected = sorted((BASE + s, BASE + s + d) for s, d, busy, in_a in rows
                      if busy and in_a and BASE + s < hi and BASE + s + d > lo)
    assert sorted(store.busy_between(lo, hi)) == expected
    store.close()


def test_transactions_roll_back_on_error(tmp_path):
    store = Store.open(tmp_path / "e.db")
    store.add_calendar(CalendarInfo("a", "ics", "f", "A", "x"), NOW)
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.replace_item("a", "k", [Occurrence(NOW, from_epoch(int(NOW.timestamp()) + 60))])
            store.set_cursor("a", "new")
            raise RuntimeError("crash in the middle")
    assert store.count_busy() == 0 and store.get_calendar("a").cursor is None


def test_new_store_is_at_the_current_schema_and_reopens(tmp_path):
    store = Store.open(tmp_path / "e.db")
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    store.close()
    again = Store.open(tmp_path / "e.db")
    assert again.check() == "ok"
