"""The sync engine over the in-memory reference provider and a real SQLite store: exactly-once copies under
crashes at any point, remote deletions and edits repaired, pulls transactional. hypothesis drives random
histories (after vdirsyncer's approach)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engagecli.core.models import Appointment, CalendarInfo
from engagecli.errors import Unreachable
from engagecli.providers.memory import MemoryEvent, MemoryServer, Provider
from engagecli.store import Store
from engagecli.sync.engine import sync_calendar

UTC = timezone.utc
NOW = datetime(2030, 3, 1, 8, 0, tzinfo=UTC)
WINDOW = (NOW - timedelta(days=90), NOW + timedelta(days=365))


class Crash(BaseException):
    """A process dying: not an Exception, so nothing in the engine catches it."""


class CrashingProvider(Provider):
    """Dies right AFTER the n-th remote write succeeded (the worst moment: the server has it, we don't)."""

    def __init__(self, server, crash_after: int | None):
        super().__init__(server)
        self.writes = 0
        self.crash_after = crash_after

    def _tick(self):
        self.writes += 1
        if self.crash_after is not None and self.writes == self.crash_after:
            raise Crash()

    def put_copy(self, spec, existing):
        ref = super().put_copy(spec, existing)
        self._tick()
        return ref

    def delete_copy(self, ref):
        super().delete_copy(ref)
        self._tick()


def make_store(tmp_path, name="e.db") -> tuple[Store, CalendarInfo]:
    store = Store.open(tmp_path / name)
    cal = CalendarInfo(id="mem-1", provider="memory", account="me", name="Work", remote_id="work", copy_appointments=True)
    store.add_calendar(cal, NOW)
    return store, cal


def book(store, appt_id, hours_from_now, minutes=30, title="Meeting"):
    start = NOW + timedelta(hours=hours_from_now)
    store.add_appointment(Appointment(appt_id, start, start + timedelta(minutes=minutes), "Europe/Oslo", title), NOW)


def run(store, server, crash_after=None):
    cal = store.get_calendar("mem-1")
    return sync_calendar(store, CrashingProvider(server, crash_after), cal, now=NOW, window=WINDOW)


def copies_on(server) -> dict[str, list[tuple]]:
    out: dict = {}
    for ev in server.events.values():
        if ev.appointment_id:
            out.setdefault(ev.appointment_id, []).append((ev.start, ev.end))
    return out


def expected(store) -> dict[str, list[tuple]]:
    return {a.id: [(a.start, a.end)] for a in store.list_appointments(start=NOW)}


def test_copies_exactly_once_and_follow_moves_and_cancels(tmp_path):
    store, _ = make_store(tmp_path)
    server = MemoryServer()
    for i in range(5):
        book(store, f"a{i}", 24 + i)
    report = run(store, server)
    assert (report.status, report.copied, report.updated, report.deleted) == ("ok", 5, 0, 0)
    assert copies_on(server) == expected(store)
    assert run(store, server).copied == 0  # a no-op sync writes nothing
    assert len(server.log) == 5
    store.update_appointment("a1", NOW, start=NOW + timedelta(days=3), end=NOW + timedelta(days=3, hours=1))
    store.update_appointment("a2", NOW, status="cancelled")
    report = run(store, server)
    assert (report.updated, report.deleted) == (1, 1)
    assert copies_on(server) == expected(store)


def test_past_appointments_are_not_copied(tmp_path):
    store, _ = make_store(tmp_path)
    book(store, "old", -48)
    server = MemoryServer()
    run(store, server)
    assert copies_on(server) == {}


def test_copies_never_become_busy_blocks(tmp_path):
    store, _ = make_store(tmp_path)
    server = MemoryServer()
    book(store, "a1", 24)
    server.write("other", MemoryEvent(NOW + timedelta(hours=30), NOW + timedelta(hours=31)))
    run(store, server)
    run(store, server)
    assert store.busy_between(0, 2**40) == [(int((NOW + timedelta(hours=30)).timestamp()),
                                              int((NOW + timedelta(hours=31)).timestamp()))]


def test_copy_deleted_in_work_calendar_is_recreated(tmp_path):
    store, _ = make_store(tmp_path)
    server = MemoryServer()
    book(store, "a1", 24)
    run(store, server)
    key = next(iter(server.events))
    server.write(key, None)  # the advisor deleted the copy in Outlook/Google
    report = run(store, server)
    assert report.copied == 1 and copies_on(server) == expected(store)


def test_copy_edited_in_work_calendar_is_put_back(tmp_path):
    store, _ = make_store(tmp_path)
    server = MemoryServer()
    book(store, "a1", 24)
    run(store, server)
    key = next(iter(server.events))
    ev = server.events[key]
    server.write(key, MemoryEvent(ev.start + timedelta(hours=5), ev.end + timedelta(hours=5), "moved", appointment_id="a1"))
    run(store, server)
    assert copies_on(server) == expected(store)


def test_failed_pull_keeps_cache_and_cursor(tmp_path):
    store, _ = make_store(tmp_path)
    server = MemoryServer()
    server.write("e1", MemoryEvent(NOW + timedelta(hours=1), NOW + timedelta(hours=2)))
    run(store, server)
    before = (store.busy_between(0, 2**40), store.get_calendar("mem-1").cursor)

    class Broken(Provider):
        def pull_changes(self, cursor, window):
            result = super().pull_changes(None, window)
            good = list(result.items)

            def items():
                yield from good
                raise Unreachable("the server went away")

            result.items = items()
            return result

    server.write("e2", MemoryEvent(NOW + timedelta(hours=3), NOW + timedelta(hours=4)))
    report = sync_calendar(store, Broken(server), store.get_calendar("mem-1"), now=NOW, window=WINDOW)
    assert report.status == "error" and "went away" in report.error
    assert (store.busy_between(0, 2**40), store.get_calendar("mem-1").cursor) == before
    cal = store.get_calendar("mem-1")
    assert cal.status == "error" and cal.last_synced_at == NOW


def test_orphan_copy_of_cancelled_appointment_is_removed(tmp_path):
    """Crash after the remote create, before our commit; then the appointment is cancelled."""
    store, _ = make_store(tmp_path)
    server = MemoryServer()
    book(store, "a1", 24)
    with pytest.raises(Crash):
        run(store, server, crash_after=1)
    assert store.copies("mem-1") == {}  # we never recorded it
    store.update_appointment("a1", NOW, status="cancelled")
    run(store, server)
    assert copies_on(server) == {}


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("book"), st.integers(1, 200)),
        st.tuples(st.just("move"), st.integers(0, 30), st.integers(1, 200)),
        st.tuples(st.just("cancel"), st.integers(0, 30)),
        st.tuples(st.just("remote_delete"), st.integers(0, 30)),
        st.tuples(st.just("sync"), st.one_of(st.none(), st.integers(1, 6))),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(OPS)
def test_random_histories_with_crashes_end_with_exactly_one_copy_each(tmp_path_factory, ops):
    tmp = tmp_path_factory.mktemp("h")
    store, _ = make_store(tmp)
    server = MemoryServer()
    n = 0
    for op in ops:
        ids = [a.id for a in store.list_appointments(include_cancelled=False)]
        if op[0] == "book":
            book(store, f"a{n}", op[1])
            n += 1
        elif op[0] == "move" and ids:
            start = NOW + timedelta(hours=op[2])
            store.update_appointment(ids[op[1] % len(ids)], NOW, start=start, end=start + timedelta(minutes=30))
        elif op[0] == "cancel" and ids:
            store.update_appointment(ids[op[1] % len(ids)], NOW, status="cancelled")
        elif op[0] == "remote_delete" and server.events:
            keys = sorted(server.events)
            server.write(keys[op[1] % len(keys)], None)
        elif op[0] == "sync":
            try:
                run(store, server, crash_after=op[1])
            except Crash:
                pass
    run(store, server)  # the next good sync repairs everything
    assert copies_on(server) == expected(store)
    run(store, server)
    assert copies_on(server) == expected(store)
    store.close()


def test_batching_provider_copies_in_batches(tmp_path):
    from engagecli.providers.memory import BatchProvider

    store, _ = make_store(tmp_path)
    server = MemoryServer()
    for i in range(7):
        book(store, f"a{i}", 24 + i)
    provider = BatchProvider(server)
    report = sync_calendar(store, provider, store.get_calendar("mem-1"), now=NOW, window=WINDOW)
    assert report.copied == 7 and provider.batches == 2  # 3 + 3 in batches, the last one alone
    assert copies_on(server) == expected(store)


def test_another_engage_copies_in_a_shared_calendar_are_busy_and_left_alone(tmp_path):
    """Two engage profiles (or colleagues) copy into one shared work calendar: neither deletes the other's
    copies, and each sees the other's appointments as busy time."""
    server = MemoryServer()
    store_a, _ = make_store(tmp_path, "a.db")
    store_b, _ = make_store(tmp_path, "b.db")
    book(store_b, "bbbbbbbb", 30)
    run(store_b, server)
    book(store_a, "aaaaaaaa", 24)
    report = run(store_a, server)
    assert report.deleted == 0
    assert set(copies_on(server)) == {"aaaaaaaa", "bbbbbbbb"}
    start = int((NOW + timedelta(hours=30)).timestamp())
    assert store_a.busy_between(start, start + 60) == [(start, start + 1800)]
    assert run(store_b, server).copied == 0 and run(store_a, server).deleted == 0
