"""The provider contract: one suite every provider passes (memory, ICS read side, CalDAV on Radicale, the
Google fake, the Graph fake).

A provider's test module subclasses `ProviderContract` and supplies a `harness` fixture: an object with
- `provider()`: a NEW provider instance for the linked calendar (as a fresh `engage` process would build it),
- `add_event(start, end, summary="Busy", transparent=False, cancelled=False) -> str`: another client writes an
   event into the remote calendar; returns its provider key (as RemoteItem.key will report it),
- `delete_event(key)`: another client deletes it,
- `remote_copies() -> dict[str, tuple[datetime, datetime]]`: appointment id -> (start, end) of every event on the
   server that carries our marker, counted (a duplicate shows up as a list longer than one: return
   dict[str, list[tuple]]),
- `bad_cursor(cursor) -> str`: a cursor the server will reject (expired/invalid sync token),
and the class attribute `read_only` (True for ICS: copy tests then check that put_copy refuses).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pytest

from engagecli.errors import UsageError
from engagecli.providers.base import CopySpec, Provider

UTC = timezone.utc
T0 = datetime(2030, 3, 4, 8, 0, tzinfo=UTC)  # a Monday
WINDOW = (datetime(2030, 1, 1, tzinfo=UTC), datetime(2031, 1, 1, tzinfo=UTC))


def spec(appointment_id: str, start: datetime, minutes: int = 30, title: str = "Customer meeting") -> CopySpec:
    end = start + timedelta(minutes=minutes)
    h = hashlib.sha256(f"{start}{end}{title}".encode()).hexdigest()[:16]
    return CopySpec(appointment_id, start, end, "Europe/Oslo", title, f"engage appointment {appointment_id}", h)


def pull_all(provider, cursor=None):
    result = provider.pull_changes(cursor, WINDOW)
    items = list(result.items)
    return result, {item.key: item for item in items}


def busy_spans(items: dict) -> dict:
    return {k: [(o.start, o.end, o.busy) for o in it.occurrences] for k, it in items.items() if not it.appointment_id}


class ProviderContract:
    read_only = False

    def test_implements_protocol(self, harness):
        p = harness.provider()
        assert isinstance(p, Provider)
        assert p.can_read_busy is True
        assert p.can_copy is (not self.read_only)

    def test_list_calendars(self, harness):
        cals = harness.provider().list_calendars()
        assert cals and all(c.remote_id and c.name for c in cals)

    def test_full_pull_applies_busy_rule(self, harness):
        busy = harness.add_event(T0, T0 + timedelta(hours=1), summary="Planning")
        free = harness.add_event(T0 + timedelta(hours=2), T0 + timedelta(hours=3), summary="Note", transparent=True)
        harness.add_event(T0 + timedelta(hours=4), T0 + timedelta(hours=5), summary="Gone", cancelled=True)
        result, items = pull_all(harness.provider())
        assert result.full is True
        spans = busy_spans(items)
        assert spans[busy] == [(T0, T0 + timedelta(hours=1), True)]
        assert spans[free] == [(T0 + timedelta(hours=2), T0 + timedelta(hours=3), False)]
        starts = {o.start for it in items.values() for o in it.occurrences if o.busy}
        assert T0 + timedelta(hours=4) not in starts  # the cancelled event blocks nothing

    def test_incremental_pull_sees_additions_and_deletions(self, harness):
        first = harness.add_event(T0, T0 + timedelta(hours=1))
        p = harness.provider()
        result, _ = pull_all(p)
        cursor = result.cursor
        second = harness.add_event(T0 + timedelta(days=1), T0 + timedelta(days=1, hours=1))
        harness.delete_event(first)
        result2, items2 = pull_all(harness.provider(), cursor)
        if result2.full:
            assert set(busy_spans(items2)) == {second}
        else:
            assert p.supports_incremental
            assert second in items2
            assert first in result2.deleted
        # nothing new: an incremental pull is empty (or a full pull with the same content)
        result3, items3 = pull_all(harness.provider(), result2.cursor)
        if not result3.full:
            assert not items3 and not result3.deleted
        else:
            assert set(busy_spans(items3)) == {second}

    def test_invalid_cursor_falls_back_to_full_pull(self, harness):
        key = harness.add_event(T0, T0 + timedelta(hours=1))
        result, _ = pull_all(harness.provider())
        bad = harness.bad_cursor(result.cursor)
        result2, items2 = pull_all(harness.provider(), bad)
        assert result2.full is True
        assert key in items2

    # copies -------------------------------------------------------------------------------------------------
    def test_copy_create_update_delete(self, harness):
        p = harness.provider()
        if self.read_only:
            with pytest.raises(UsageError):
                p.put_copy(spec("a1", T0), None)
            return
        ref = p.put_copy(spec("a1", T0), None)
        assert harness.remote_copies() == {"a1": [(T0, T0 + timedelta(minutes=30))]}
        moved = T0 + timedelta(hours=3)
        ref2 = harness.provider().put_copy(spec("a1", moved, 45), ref)
        assert harness.remote_copies() == {"a1": [(moved, moved + timedelta(minutes=45))]}
        harness.provider().delete_copy(ref2)
        assert harness.remote_copies() == {}
        harness.provider().delete_copy(ref2)  # already gone: fine

    def test_copy_is_idempotent_without_a_mapping(self, harness):
        if self.read_only:
            pytest.skip("read-only provider")
        p = harness.provider()
        p.put_copy(spec("a2", T0), None)
        # a crash lost our mapping: the next sync creates again, and must not make a second event
        ref = harness.provider().put_copy(spec("a2", T0 + timedelta(hours=1)), None)
        assert harness.remote_copies() == {"a2": [(T0 + timedelta(hours=1), T0 + timedelta(hours=1, minutes=30))]}
        assert ref.remote_id

    def test_copies_come_back_marked_not_as_busy(self, harness):
        if self.read_only:
            pytest.skip("read-only provider")
        harness.provider().put_copy(spec("a3", T0), None)
        _, items = pull_all(harness.provider())
        ours = [it for it in items.values() if it.appointment_id == "a3"]
        assert len(ours) == 1
        assert not busy_spans({k: v for k, v in items.items() if v.appointment_id})

    def test_deleted_copy_is_reported_so_it_can_be_recreated(self, harness):
        if self.read_only:
            pytest.skip("read-only provider")
        p = harness.provider()
        ref = p.put_copy(spec("a4", T0), None)
        result, _ = pull_all(p)
        harness.delete_event(ref.remote_id)
        result2, items2 = pull_all(harness.provider(), result.cursor)
        if result2.full:
            assert all(it.appointment_id != "a4" for it in items2.values())
        else:
            assert ref.remote_id in result2.deleted
        ref2 = harness.provider().put_copy(spec("a4", T0), None)
        assert harness.remote_copies() == {"a4": [(T0, T0 + timedelta(minutes=30))]}
        assert ref2.remote_id
