"""The ICS provider: a read-only work calendar from an .ics file or an http(s)/webcal URL.

- Source: `cal.options["source"]` when present, else `cal.remote_id` (what `probe()` returned at link time: an
  absolute file path, or the URL with webcal:// turned into https://).
- The advisor's addresses for the "declined" rule: `cal.options["me"]` (a string or a list) and `cal.account`
  when it looks like an email address. The advisor's zone is `ctx.timezone` (all-day and floating times).
- pull_changes reads the whole source and parses ALL of it before returning (a list, not a generator), so a
  broken file never leaves half a calendar in the store. The cursor is a sha256 over the content, the zone,
  the addresses and the window widened to whole UTC days (so syncs within a day can see "unchanged");
  the widened window means a few occurrences up to a day outside the asked window may come back (harmless).
  An unchanged cursor returns PullResult(items=[], full=False, cursor=same): nothing to apply.
- Errors: a missing/unreadable file -> UsageError naming the path; network errors, timeouts, 429 and 5xx
  (after one retry) -> Unreachable; other 4xx and anything that is not iCalendar -> ProviderError. Messages
  name the file, or only the scheme and host of a URL: secret ICS addresses carry a key in their path.
- put_copy/delete_copy refuse with UsageError: an ICS calendar is read-only.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from urllib.parse import unquote, urlsplit

from engagecli.errors import ProviderError, RelinkNeeded, Unreachable, UsageError
from engagecli.providers.base import CopyRef, CopySpec, PullResult, RemoteCalendar, RemoteItem, secret_name

UTC = timezone.utc
TIMEOUT = (10, 60)  # connect, read seconds
MAX_BYTES = 200 * 1024 * 1024  # refuse absurd downloads rather than exhaust memory


def is_url(source: str) -> bool:
    return bool(re.match(r"(?i)^(https?|webcal)://", source.strip()))


def normalize_source(source: str) -> str:
    """What we store as remote_id: an https:// URL for webcal://, an absolute path for a file."""
    source = source.strip()
    if not source:
        raise UsageError("no calendar file or address given", hint="engage link ics PATH_OR_URL")
    if re.match(r"(?i)^webcal://", source):
        return "https://" + source[len("webcal://") :]
    if is_url(source):
        try:
            host = urlsplit(source).hostname
        except ValueError:
            host = None
        if not host:
            raise UsageError(f"{source.split('://')[0]}:// address without a valid host", hint="e.g. https://example.com/cal.ics")
        return source
    if source.lower().startswith("file://"):
        source = unquote(urlsplit(source).path)
    return str(Path(os.path.expanduser(source)).resolve())


def describe(source: str) -> str:
    """A name for messages: the path, or scheme://host of a URL (never its path or query: they may be secret)."""
    if is_url(source):
        parts = urlsplit(source)
        return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")
    return source


def fetch(source: str) -> bytes:
    """The bytes of a calendar file or URL (see the module docstring for the errors)."""
    return _fetch_url(source) if is_url(source) else _read_file(source)


def _read_file(path: str) -> bytes:
    hint = "check the path, or link the calendar again: engage link ics PATH"
    p = Path(path)
    try:
        if p.is_dir():
            raise UsageError(f"calendar file {path} is a folder, not an .ics file", hint=hint)
        with p.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise UsageError(f"calendar file {path} was not found", hint=hint) from None
    except PermissionError:
        raise UsageError(f"calendar file {path} cannot be read (permission denied)", hint=hint) from None
    except OSError as exc:
        raise UsageError(f"calendar file {path} cannot be read ({exc.strerror or type(exc).__name__})", hint=hint) from None
    if len(data) > MAX_BYTES:
        raise ProviderError(f"calendar file {path} is larger than {MAX_BYTES // (1024 * 1024)} MB")
    return data


def _fetch_url(url: str) -> bytes:
    import requests

    from engagecli.providers.http import new_session, request

    url = normalize_source(url)
    name = describe(url)
    session = new_session()
    try:
        # one retry for connection errors, timeouts, 429 and 5xx (backoff honours Retry-After)
        response = request(
            session, "GET", url, what=f"calendar server {name}", tries=2, timeout=TIMEOUT,
            headers={"Accept": "text/calendar, */*;q=0.5"}, stream=True,
        )
        status = response.status_code
        if status == 429 or status >= 500:
            raise Unreachable(f"calendar server {name} answered {status}", hint="try again later: engage sync")
        if status >= 400:
            what = "refused access" if status in (401, 403) else "does not have this calendar"
            raise ProviderError(
                f"calendar server {name} {what} (HTTP {status})",
                hint="check the address (a secret address may have been reset) and link it again: engage link ics URL",
            )
        chunks, size = [], 0
        for chunk in response.iter_content(1024 * 1024):
            size += len(chunk)
            if size > MAX_BYTES:
                raise ProviderError(f"calendar at {name} is larger than {MAX_BYTES // (1024 * 1024)} MB")
            chunks.append(chunk)
        return b"".join(chunks)
    except (requests.ConnectionError, requests.Timeout):
        raise Unreachable(f"calendar server {name} could not be reached", hint="check the network; engage sync retries") from None
    except requests.RequestException as exc:
        raise ProviderError(f"could not fetch the calendar from {name} ({type(exc).__name__})") from None
    finally:
        session.close()


_CALNAME = re.compile(r"(?im)^X-WR-CALNAME(?:;[^:\r\n]*)?:(.*(?:\r?\n[ \t].*)*)")


def calendar_name(data: bytes, source: str) -> str:
    """X-WR-CALNAME from the calendar's header, else the file name (or the URL's last path part, or host)."""
    head = data[:65536].decode("utf-8", "replace")
    cut = head.upper().find("BEGIN:VEVENT")
    if cut >= 0:
        head = head[:cut]
    m = _CALNAME.search(head)
    if m:
        name = re.sub(r"\r?\n[ \t]", "", m.group(1)).strip()
        name = name.replace("\\,", ",").replace("\\;", ";").replace("\\n", " ").replace("\\N", " ").replace("\\\\", "\\")
        if name:
            return name
    if is_url(source):
        # the path of a calendar address often IS its secret (Google's "secret address", Nextcloud's public
        # token): name it after the host only
        return urlsplit(source).hostname or "calendar"
    stem = Path(source).stem
    return stem or Path(source).name or "calendar"


def _check_looks_like_ical(data: bytes, source: str) -> None:
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n").upper()
    if not head.startswith(b"BEGIN:VCALENDAR") or b"END:VCALENDAR" not in data[-4096:].upper():
        raise ProviderError(
            f"{describe(source)} is not a valid iCalendar file",
            hint="give the path or address of an .ics file (it starts with BEGIN:VCALENDAR)",
        )


_PROBE_WINDOW = (datetime(2000, 1, 3, tzinfo=UTC), datetime(2000, 1, 4, tzinfo=UTC))


def probe(source: str) -> RemoteCalendar:
    """Validate a path/URL for `engage link ics` up front: it can be read, it is one VCALENDAR, and every event's
    dates and recurrence rules can be read (a full parse; the parsed calendar is remembered, so the first pull
    that `link` runs next does not parse it again). Returns the calendar to link (remote_id = normalised source)."""
    from engagecli.core.ical import expand

    norm = normalize_source(source)
    data = fetch(norm)
    _check_looks_like_ical(data, norm)
    try:
        expand(data, *_PROBE_WINDOW, "UTC")  # builds every series: broken dates and rules show up here
    except ProviderError as exc:
        raise _not_valid(norm, exc) from None
    return RemoteCalendar(norm, calendar_name(data, norm), primary=True, read_only=True)


def _not_valid(source: str, exc: ProviderError) -> ProviderError:
    reason = getattr(exc, "reason", None)
    return ProviderError(f"{describe(source)} is not a valid iCalendar file" + (f" ({reason})" if reason else ""),
                         hint=exc.hint)


def _day_floor(t: datetime) -> datetime:
    t = t.astimezone(UTC)
    return datetime.combine(t.date(), time(), tzinfo=UTC)


def _day_ceil(t: datetime) -> datetime:
    f = _day_floor(t)
    return f if f == t.astimezone(UTC) else f + timedelta(days=1)


class Provider:
    name = "ics"
    can_read_busy = True
    can_copy = False
    supports_incremental = False

    def __init__(self, source: str, timezone: str = "UTC", me: set[str] | None = None):
        self.source = normalize_source(source)
        self.timezone = timezone
        self.me = {m.strip().lower() for m in (me or ()) if m and m.strip()}

    @classmethod
    def from_calendar(cls, cal, ctx) -> "Provider":
        options = cal.options or {}
        source = options.get("source") or cal.remote_id
        if "url" in options.get("secret_kinds", ()):  # a feed address lives in the secret store, never the database
            source = ctx.secrets.get(secret_name(ctx.profile, cal.id, "url"))
            if not source:
                raise RelinkNeeded(f"the address of calendar {cal.id} is not in the secret store",
                                   hint="run `engage link ics URL` again")
        me: set[str] = set()
        extra = options.get("me")
        if isinstance(extra, str):
            me.add(extra)
        elif extra:
            me.update(str(x) for x in extra)
        if cal.account and "@" in str(cal.account):
            me.add(str(cal.account))
        return cls(source, ctx.timezone, me)

    def list_calendars(self) -> list[RemoteCalendar]:
        data = fetch(self.source)
        return [RemoteCalendar(self.source, calendar_name(data, self.source), primary=True, read_only=True)]

    def _cursor(self, data: bytes, lo: datetime, hi: datetime) -> str:
        h = hashlib.sha256(data)
        h.update(f"\n{lo.isoformat()}|{hi.isoformat()}|{self.timezone}|{','.join(sorted(self.me))}".encode())
        return "sha256:" + h.hexdigest()

    def pull_changes(self, cursor: str | None, window: tuple[datetime, datetime]) -> PullResult:
        from engagecli.core.ical import expand

        lo, hi = _day_floor(window[0]), _day_ceil(window[1])
        data = fetch(self.source)
        new_cursor = self._cursor(data, lo, hi)
        if cursor is not None and cursor == new_cursor:
            return PullResult(items=[], deleted=[], full=False, cursor=new_cursor)
        try:
            groups = expand(data, lo, hi, self.timezone, self.me)
        except ProviderError as exc:
            raise _not_valid(self.source, exc) from None
        items = [RemoteItem(key=uid, occurrences=occ, appointment_id=appt) for uid, occ, appt in groups]
        return PullResult(items=items, deleted=[], full=True, cursor=new_cursor)

    def put_copy(self, spec: CopySpec, existing: CopyRef | None) -> CopyRef:
        raise UsageError(
            "an ICS calendar is read-only: engage cannot copy appointments into it",
            hint="turn copying off for it: engage calendars set ID --no-copy",
        )

    def delete_copy(self, ref: CopyRef) -> None:
        raise UsageError(
            "an ICS calendar is read-only: engage cannot delete events in it",
            hint="turn copying off for it: engage calendars set ID --no-copy",
        )
