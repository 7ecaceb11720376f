"""Typed models shared by every layer. Instants are timezone-aware UTC datetimes; zones are IANA names."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True, order=True)
class Window:
    """A span of local wall-clock time within one day: minutes from midnight, end up to 1440 (24:00)."""

    start_min: int
    end_min: int

    def __post_init__(self) -> None:
        if not (0 <= self.start_min < self.end_min <= 1440):
            raise ValueError(f"bad window {self.start_min}-{self.end_min}")

    def label(self) -> str:
        return f"{self.start_min // 60:02d}:{self.start_min % 60:02d}-{self.end_min // 60:02d}:{self.end_min % 60:02d}"


# weekday (Monday=0 … Sunday=6) -> sorted, non-overlapping windows
WeeklyHours = dict[int, list[Window]]
# date -> windows for that date only; an empty list means "off"
Overrides = dict[date, list[Window]]


@dataclass(frozen=True)
class Account:
    name: str | None = None
    email: str | None = None
    timezone: str = "UTC"
    phone: str | None = None


@dataclass(frozen=True)
class Appointment:
    id: str
    start: datetime  # UTC
    end: datetime  # UTC
    timezone: str  # the zone it was booked in
    title: str
    customer_name: str | None = None
    customer_email: str | None = None
    status: str = "booked"  # booked | cancelled
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Occurrence:
    """One occurrence of a work-calendar event, after the busy rule.

    `busy` is False for events marked Free or declined (kept so the agenda can say why a time is free);
    cancelled events are dropped before they get here. `summary` is for the advisor's own agenda only and
    never reaches slot output.
    """

    start: datetime  # UTC
    end: datetime  # UTC
    busy: bool = True
    all_day: bool = False
    summary: str = ""
    reason: str | None = None  # why not busy: "free" | "declined"


@dataclass(frozen=True)
class Slot:
    start: datetime  # UTC
    end: datetime  # UTC


@dataclass
class Period:
    """Local dates [start, end] inclusive, in `tz`."""

    start: date
    end: date
    tz: str

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


@dataclass
class CalendarInfo:
    """A linked calendar as the store keeps it (config + state)."""

    id: str
    provider: str
    account: str
    name: str
    remote_id: str
    copy_appointments: bool = False
    use_for_availability: bool = True
    read_only: bool = False
    options: dict = field(default_factory=dict)
    last_synced_at: datetime | None = None
    status: str = "never"  # ok | never | error | relink
    error: str | None = None
    cursor: str | None = None
