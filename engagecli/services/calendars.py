"""Link, list, switch and unlink work calendars."""

from __future__ import annotations

import secrets as _random
from dataclasses import dataclass

from engagecli.core.models import CalendarInfo
from engagecli.core.timeutil import isoformat
from engagecli.errors import ProviderError, SyncBusy, UsageError
from engagecli.fsutil import write_private
from engagecli.providers.base import LinkResult, RemoteCalendar, secret_name
from engagecli.services.profile import require_account
from engagecli.services.sync import delete_copies, sync_one
from engagecli.sync.engine import CalendarReport
from engagecli.sync.lock import sync_lock


def new_calendar_id(provider: str) -> str:
    return f"{provider}-{_random.token_hex(2)}"


def choose(env, calendars: list[RemoteCalendar], wanted: str | None, ask=None) -> RemoteCalendar:
    """--calendar matches an id/href exactly or a display name (case-insensitive); without it: a choice on a
    terminal, else the primary/default calendar."""
    if not calendars:
        raise UsageError("the account has no calendars to link")
    if wanted:
        hits = [c for c in calendars if c.remote_id == wanted] or [c for c in calendars if c.name.casefold() == wanted.casefold()]
        if len(hits) == 1:
            return hits[0]
        names = ", ".join(repr(c.name) for c in calendars)
        raise UsageError(f"{'no' if not hits else 'more than one'} calendar matches {wanted!r}", hint=f"calendars: {names}")
    primary = next((c for c in calendars if c.primary), calendars[0])
    if len(calendars) == 1 or ask is None or not env.interactive:
        return primary
    lines = [f"  {i}. {c.name}{' (primary)' if c.primary else ''}{' (read-only)' if c.read_only else ''}"
             for i, c in enumerate(calendars, 1)]
    env.err("Calendars:\n" + "\n".join(lines))
    answer = ask(f"Which calendar? [{calendars.index(primary) + 1}]").strip()
    if not answer:
        return primary
    if answer.isdigit() and 1 <= int(answer) <= len(calendars):
        return calendars[int(answer) - 1]
    return choose(env, calendars, answer)


def link(env, provider: str, result: LinkResult, *, calendar: str | None = None, copy: bool = False,
         name: str | None = None, ask=None) -> tuple[CalendarInfo, CalendarReport]:
    require_account(env)
    chosen = choose(env, result.calendars, calendar, ask)
    if copy and chosen.read_only:
        raise UsageError(f"{chosen.name!r} is read-only: it can be used for availability, not for copies",
                         hint="link it without --copy")
    for cal in env.store.list_calendars():
        if cal.provider == provider and cal.remote_id == chosen.remote_id:
            raise UsageError(f"that calendar is already linked as {cal.id}", hint="see `engage calendars list`")
    cal_id = new_calendar_id(provider)
    options = dict(result.options, secret_kinds=sorted(result.secrets))
    info = CalendarInfo(id=cal_id, provider=provider, account=result.account, name=name or chosen.name,
                        remote_id=chosen.remote_id, copy_appointments=copy, use_for_availability=True,
                        read_only=chosen.read_only, options=options)
    stored: list[str] = []
    try:
        for kind, value in result.secrets.items():
            env.secrets.set(secret_name(env.profile, cal_id, kind), value)
            stored.append(kind)
        for suffix, content in result.state_files.items():
            write_private(env.state_dir / f"{cal_id}{suffix}", content)
        env.store.add_calendar(info, env.now())
    except BaseException:
        for kind in stored:
            env.secrets.delete(secret_name(env.profile, cal_id, kind))
        for leftover in env.state_dir.glob(f"{cal_id}*"):
            leftover.unlink(missing_ok=True)
        raise
    try:
        with sync_lock(env.lock_path):
            report = sync_one(env, env.store.get_calendar(cal_id))
    except SyncBusy:
        return env.store.get_calendar(cal_id), CalendarReport(
            cal_id, status="error", error="a sync was running, so it is not fetched yet; run `engage sync`")
    if report.status != "ok" and provider == "ics":
        # nothing to sign in again for a file or feed: refuse to link one that does not read
        env.store.remove_calendar(cal_id)
        raise ProviderError(report.error or "the calendar could not be read")
    return env.store.get_calendar(cal_id), report


def ics_link_result(source: str) -> LinkResult:
    """Validate an ICS path or URL up front (it must parse) and describe it for link().

    A feed address is a secret (whoever has it reads the calendar): it goes to the secret store, and the
    database keeps only scheme://host/… plus a hash of it, which is enough to refuse linking it twice."""
    import hashlib
    from urllib.parse import urlsplit

    from engagecli.providers import load

    ics = load("ics")
    remote = ics.probe(source)  # normalises (webcal:// -> https://, absolute paths) and parses the whole file
    if not ics.is_url(remote.remote_id):
        return LinkResult(account="file", calendars=[remote])
    url = remote.remote_id
    parts = urlsplit(url)
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    shown = f"{parts.scheme}://{parts.hostname}/…#{digest}"
    return LinkResult(account=parts.hostname or "web", secrets={"url": url},
                      calendars=[RemoteCalendar(shown, remote.name, primary=True, read_only=True)])


def set_switches(env, calendar_id: str, *, copy: bool | None, availability: bool | None,
                 keep_copies: bool | None = None) -> tuple[CalendarInfo, int]:
    """Returns the calendar and how many copies were removed (turning copy off with --remove-copies)."""
    cal = env.store.get_calendar(calendar_id)
    if copy is None and availability is None:
        raise UsageError("nothing to change", hint="add --copy/--no-copy and/or --availability/--no-availability")
    if copy and cal.read_only:
        raise UsageError(f"calendar {cal.id} ({cal.provider}) is read-only: it can be used for availability, not for copies")
    removed = 0
    if copy is False and cal.copy_appointments and env.store.copies(cal.id):
        if keep_copies is None:
            raise UsageError(f"calendar {cal.id} holds {len(env.store.copies(cal.id))} copies of appointments",
                             hint="add --keep-copies or --remove-copies")
        if not keep_copies:
            removed = delete_copies(env, cal)
    env.store.set_switches(calendar_id, copy=copy, availability=availability)
    return env.store.get_calendar(calendar_id), removed


def unlink(env, calendar_id: str, *, keep_copies: bool | None) -> int:
    cal = env.store.get_calendar(calendar_id)
    copies = env.store.copies(cal.id)
    removed = 0
    if copies:
        if keep_copies is None:
            raise UsageError(f"calendar {cal.id} holds {len(copies)} copies of appointments",
                             hint="add --keep-copies or --remove-copies")
        if not keep_copies:
            removed = delete_copies(env, cal)
    env.store.remove_calendar(cal.id)
    for kind in cal.options.get("secret_kinds", []):
        try:
            env.secrets.delete(secret_name(env.profile, cal.id, kind))
        except Exception:  # noqa: BLE001 - the calendar is gone either way; doctor reports leftovers
            pass
    for leftover in env.state_dir.glob(f"{cal.id}*"):
        leftover.unlink(missing_ok=True)
    return removed


@dataclass
class CalendarRow:
    cal: CalendarInfo

    def as_json(self, tz=None) -> dict:
        c = self.cal
        return {"id": c.id, "provider": c.provider, "account": c.account, "name": c.name,
                "copy_appointments": c.copy_appointments, "use_for_availability": c.use_for_availability,
                "last_synced_at": isoformat(c.last_synced_at) if c.last_synced_at else None,
                "status": c.status, "error": c.error, "read_only": c.read_only}


def get_calendar(env, calendar_id: str) -> CalendarInfo:
    return env.store.get_calendar(calendar_id)


def copies_made(env, calendar_id: str) -> int:
    return len(env.store.copies(calendar_id))


def list_calendars(env) -> list[CalendarRow]:
    return [CalendarRow(c) for c in env.store.list_calendars()]
