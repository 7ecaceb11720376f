"""An in-memory provider: the reference implementation of the protocol, used by the contract tests and by
tests of the sync engine. `MemoryServer` is the "remote calendar"; several Provider instances may share one."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime

from engagecli.core.models import Occurrence
from engagecli.errors import ProviderError, UsageError
from engagecli.providers.base import CopyRef, CopySpec, PullResult, RemoteCalendar, RemoteItem


@dataclass
class MemoryEvent:
    start: datetime
    end: datetime
    summary: str = "Busy"
    transparent: bool = False
    appointment_id: str | None = None
    etag: str = "1"


@dataclass
class MemoryServer:
    events: dict[str, MemoryEvent] = field(default_factory=dict)
    log: list[tuple[int, str, str | None]] = field(default_factory=list)  # (version, key, None=deleted)
    version: int = 0
    _etags: itertools.count = field(default_factory=lambda: itertools.count(2))

    def write(self, key: str, event: MemoryEvent | None) -> None:
        self.version += 1
        if event is None:
            self.events.pop(key, None)
        else:
            event.etag = str(next(self._etags))
            self.events[key] = event
        self.log.append((self.version, key, None if event is None else event.etag))


SERVERS: dict[str, MemoryServer] = {}


class Provider:
    name = "memory"
    can_read_busy = True
    can_copy = True
    supports_incremental = True

    def __init__(self, server: MemoryServer, calendar_id: str = "work"):
        self.server = server
        self.calendar_id = calendar_id

    @classmethod
    def from_calendar(cls, cal, ctx) -> "Provider":
        return cls(SERVERS.setdefault(cal.remote_id, MemoryServer()), cal.remote_id)

    def list_calendars(self) -> list[RemoteCalendar]:
        return [RemoteCalendar(self.calendar_id, "Work", primary=True)]

    def _item(self, key: str, ev: MemoryEvent) -> RemoteItem:
        occ = Occurrence(ev.start, ev.end, busy=not ev.transparent, summary=ev.summary,
                         reason="free" if ev.transparent else None)
        return RemoteItem(key, [occ], appointment_id=ev.appointment_id, etag=ev.etag)

    def pull_changes(self, cursor: str | None, window: tuple[datetime, datetime]) -> PullResult:
        lo, hi = window
        if cursor is not None:
            try:
                since = int(cursor)
            except ValueError:
                since = -1
            if 0 <= since <= self.server.version:
                changed = {key for v, key, _ in self.server.log if v > since}
                items = [self._item(k, self.server.events[k]) for k in sorted(changed) if k in self.server.events
                         and self.server.events[k].end > lo and self.server.events[k].start < hi]
                deleted = sorted(k for k in changed if k not in self.server.events)
                return PullResult(items, deleted, full=False, cursor=str(self.server.version))
        items = [self._item(k, ev) for k, ev in sorted(self.server.events.items()) if ev.end > lo and ev.start < hi]
        return PullResult(items, [], full=True, cursor=str(self.server.version))

    @staticmethod
    def copy_key(appointment_id: str) -> str:
        return f"engage-{appointment_id}"

    def put_copy(self, spec: CopySpec, existing: CopyRef | None) -> CopyRef:
        if spec.end <= spec.start:
            raise UsageError("a copy must end after it starts")
        key = existing.remote_id if existing else self.copy_key(spec.appointment_id)
        current = self.server.events.get(key)
        if current is not None and current.appointment_id not in (None, spec.appointment_id):
            raise ProviderError(f"remote id {key} belongs to another appointment")
        self.server.write(key, MemoryEvent(spec.start, spec.end, spec.title, appointment_id=spec.appointment_id))
        return CopyRef(key, self.server.events[key].etag)

    def delete_copy(self, ref: CopyRef) -> None:
        if ref.remote_id in self.server.events:
            self.server.write(ref.remote_id, None)


class BatchProvider(Provider):
    """The memory provider with the optional batch method: every `batch_size` copies cost one "request"."""

    batch_size = 3

    def __init__(self, server: MemoryServer, calendar_id: str = "work"):
        super().__init__(server, calendar_id)
        self.batches = 0

    def put_copies(self, work):
        self.batches += 1
        out = []
        for spec, existing in work:
            try:
                out.append(self.put_copy(spec, existing))
            except ProviderError as exc:
                out.append(exc)
        return out
