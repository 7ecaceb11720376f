"""The one Provider protocol every work-calendar backend implements, and the data it speaks.

A provider knows one remote calendar (chosen at link time) and nothing about the store: the sync engine
(engagecli.sync.engine) drives it. Providers never print; they raise engagecli.errors exceptions:
RelinkNeeded (grant revoked/expired, bad password), Unreachable (network, timeouts, 5xx/429 after retries),
ProviderError (an answer we cannot use). Messages never contain tokens, passwords or event details.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Iterator, Protocol, runtime_checkable

from engagecli.core.models import Occurrence


@dataclass(frozen=True)
class RemoteCalendar:
    remote_id: str  # provider's id / href of the calendar
    name: str
    primary: bool = False
    read_only: bool = False


@dataclass
class RemoteItem:
    """One remote resource and all its occurrences inside the pull window (replaces what we had for `key`).

    `key` is the provider's stable id of the resource (an event id, a CalDAV href, an ICS UID).
    `appointment_id` is set when the resource is one of OUR copies (recognised by our marker, never by title):
    the engine never stores those as busy time. `etag` is the server's version tag where it has one.
    """

    key: str
    occurrences: list[Occurrence] = field(default_factory=list)
    appointment_id: str | None = None
    etag: str | None = None


@dataclass
class PullResult:
    """What changed since `cursor`.

    full=True: `items` is everything in the window; every stored item not in it is gone.
    full=False: `items` are upserts and `deleted` the keys removed since the cursor.
    `items` may be a generator (large calendars stream; memory stays flat). `cursor` is the new cursor to store
    once every item was applied (None if the provider has no incremental sync).
    """

    items: Iterable[RemoteItem]
    deleted: list[str] = field(default_factory=list)
    full: bool = True
    cursor: str | None = None


@dataclass(frozen=True)
class CopySpec:
    """What a copy of an appointment looks like in the work calendar: a timed event at its exact start/end.

    `content_hash` identifies this content; the engine compares it with what it last pushed.
    """

    appointment_id: str
    start: datetime  # UTC
    end: datetime  # UTC
    timezone: str
    title: str
    description: str
    content_hash: str


@dataclass(frozen=True)
class CopyRef:
    """Where a copy lives remotely: the provider's id/href and the etag it had after our last write."""

    remote_id: str
    etag: str | None = None


@runtime_checkable
class Provider(Protocol):
    name: str
    can_read_busy: bool
    can_copy: bool
    supports_incremental: bool

    def list_calendars(self) -> list[RemoteCalendar]:
        """Calendars the linked account can see (for `link` to pick one)."""
        ...

    def pull_changes(self, cursor: str | None, window: tuple[datetime, datetime]) -> PullResult:
        """Events of the linked calendar within `window` (UTC) changed since `cursor` (None: everything).

        An invalid or expired cursor is handled inside: the provider falls back to a full pull (full=True).
        """
        ...

    def put_copy(self, spec: CopySpec, existing: CopyRef | None) -> CopyRef:
        """Create or update the copy of one appointment, idempotently.

        The remote id is derived from spec.appointment_id, so creating twice never makes two events: a create
        that finds the copy already there (crash after the server wrote it) updates it instead. `existing` is
        what the engine last recorded (None when it never recorded one).
        """
        ...

    def delete_copy(self, ref: CopyRef) -> None:
        """Delete a copy; a copy that is already gone is not an error."""
        ...

    # Optional, for providers with batch requests (Google batch, Graph $batch):
    #   batch_size: int
    #   def put_copies(self, work: list[tuple[CopySpec, CopyRef | None]]) -> list[CopyRef | ProviderError]
    # the same as put_copy for each item, in order, in as few requests as the API allows; a failed item is its
    # ProviderError in the result list (the engine records it and goes on); RelinkNeeded / Unreachable raise.


def copy_description(appointment_id: str) -> str:
    """The body of a copied event: no customer detail beyond what the advisor typed as title."""
    return f"Appointment booked with engage (id {appointment_id}). Change it with engage, not here."


# Our marker, per provider: CalDAV/ICS property, Google private extended property, Graph extended property.
MARKER_ICAL_PROP = "X-ENGAGE-APPOINTMENT-ID"
MARKER_KEY = "engage_appointment_id"


def iter_chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass
class ProviderContext:
    """What a provider may use: the advisor's zone (all-day and floating times), the secret store, the
    environment (endpoint overrides such as ENGAGE_GOOGLE_API_URL), and a private folder for caches."""

    timezone: str
    secrets: object  # engagecli.secrets.SecretStore
    environ: dict
    profile: str = "default"
    state_dir: object = None  # pathlib.Path, 0700


def secret_name(profile: str, calendar_id: str, kind: str) -> str:
    """The secret store key of one secret of one linked calendar, e.g. 'default/cal-3f2a/password'."""
    return f"{profile}/{calendar_id}/{kind}"


class LinkUI(Protocol):
    """How a link flow talks to the user: `say` prints one line (to stderr, flushed), `ask` reads one line
    (raises engagecli.errors.UsageError when there is no terminal/stdin to ask)."""

    def say(self, text: str) -> None: ...

    def ask(self, prompt: str) -> str: ...


@dataclass
class LinkResult:
    """What a provider's link flow returns to `engage link`.

    The command picks one of `calendars`, gives it a calendar id, stores each of `secrets` (kind -> value)
    under secret_name(profile, calendar_id, kind), `options` (non-secret: username, client id, endpoints
    used) in the calendar's options and `state_files` in the profile's state folder; the provider's
    from_calendar() reads them back.
    """

    account: str
    calendars: list[RemoteCalendar]
    secrets: dict[str, str] = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    # private files for the provider's state folder, written 0600 as "<calendar id><suffix>" (an encrypted
    # token cache whose key is one of `secrets`): suffix -> content
    state_files: dict[str, bytes] = field(default_factory=dict)
