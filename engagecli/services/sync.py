"""`engage sync` and what link/unlink need from the sync engine: providers built from the store + secrets."""

from __future__ import annotations

from engagecli.providers import open_provider
from engagecli.providers.base import ProviderContext
from engagecli.services.planner import sync_window
from engagecli.services.profile import require_account
from engagecli.sync.engine import CalendarReport, remove_copies, sync_calendar
from engagecli.sync.lock import sync_lock


def provider_context(env) -> ProviderContext:
    account = env.store.get_account()
    return ProviderContext(timezone=account.timezone if account else "UTC", secrets=env.secrets, environ=env.environ,
                           profile=env.profile, state_dir=env.state_dir)


def sync(env, calendar_id: str | None = None, progress=None) -> list[CalendarReport]:
    require_account(env)
    calendars = [env.store.get_calendar(calendar_id)] if calendar_id else env.store.list_calendars()
    reports: list[CalendarReport] = []
    with sync_lock(env.lock_path):
        ctx = provider_context(env)
        for cal in calendars:
            if progress:
                progress(cal)
            reports.append(sync_one(env, cal, ctx))
    return reports


def sync_one(env, cal, ctx=None) -> CalendarReport:
    from engagecli.errors import EngageError

    ctx = ctx or provider_context(env)
    now = env.now()
    try:
        provider = open_provider(cal, ctx)
    except EngageError as exc:
        from engagecli.errors import RelinkNeeded

        status = "relink" if isinstance(exc, RelinkNeeded) else "error"
        env.store.record_sync(cal.id, status=status, now=now, error=str(exc))
        return CalendarReport(cal.id, status=status, error=str(exc))
    return sync_calendar(env.store, provider, cal, now=now, window=sync_window(env))


def delete_copies(env, cal) -> int:
    with sync_lock(env.lock_path):
        return remove_copies(env.store, open_provider(cal, provider_context(env)), cal)


def exit_code(reports: list[CalendarReport]) -> int:
    """0 when every calendar synced, 3 when any needs linking again, otherwise 5 when any failed."""
    from engagecli.errors import ExitCode

    if any(r.status == "relink" for r in reports):
        return ExitCode.RELINK
    if any(r.status != "ok" for r in reports):
        return ExitCode.PARTIAL
    return ExitCode.OK
