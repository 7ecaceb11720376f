"""Provider registry: a name maps to a module path, imported on first use only.

`engage --help`, `calendars list` and `slots` never import a provider (tests/test_startup.py checks it).
Each provider module exposes `Provider` (a class implementing engagecli.providers.base.Provider with a
`from_calendar(cal: CalendarInfo, ctx: ProviderContext)` classmethod).
"""

from __future__ import annotations

import importlib

REGISTRY: dict[str, str] = {
    "memory": "engagecli.providers.memory",
    "ics": "engagecli.providers.ics",
    "caldav": "engagecli.providers.caldav",
    "google": "engagecli.providers.google",
    "microsoft": "engagecli.providers.microsoft",
}


def load(name: str):
    """The provider module for `name` (imported now, on first use)."""
    from engagecli.errors import UsageError

    try:
        path = REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown provider {name!r}", hint="one of: " + ", ".join(sorted(REGISTRY))) from None
    return importlib.import_module(path)


def open_provider(cal, ctx):
    """A ready Provider for the linked calendar `cal` (engagecli.core.models.CalendarInfo)."""
    return load(cal.provider).Provider.from_calendar(cal, ctx)
