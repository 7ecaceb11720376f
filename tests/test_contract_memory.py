"""The contract suite against the in-memory reference provider."""

from __future__ import annotations

import pytest

from contract import ProviderContract
from engagecli.providers.memory import MemoryEvent, MemoryServer, Provider


class MemoryHarness:
    def __init__(self):
        self.server = MemoryServer()
        self.n = 0

    def provider(self):
        return Provider(self.server)

    def add_event(self, start, end, summary="Busy", transparent=False, cancelled=False):
        self.n += 1
        key = f"ev{self.n}"
        if not cancelled:
            self.server.write(key, MemoryEvent(start, end, summary, transparent))
        return key

    def delete_event(self, key):
        self.server.write(key, None)

    def remote_copies(self):
        out: dict = {}
        for ev in self.server.events.values():
            if ev.appointment_id:
                out.setdefault(ev.appointment_id, []).append((ev.start, ev.end))
        return out

    def bad_cursor(self, cursor):
        return "not-a-cursor"


class TestMemoryContract(ProviderContract):
    @pytest.fixture
    def harness(self):
        return MemoryHarness()
