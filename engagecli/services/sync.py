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
    log_reports(env, reports)
    return reports


def log_reports(env, reports: list[CalendarReport]) -> None:
    """One JSON line per calendar per sync in $ENGAGE_HOME/logs/sync.log (0600): what cron did, for `tail`.
    Only ids, counts and the (already token-free) error, redacted once more."""
    import json

    from engagecli.secrets import redact

    folder = env.home / "logs"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = env.now().isoformat(timespec="seconds")
    lines = []
    for r in reports:
        entry = {"at": now, "profile": env.profile, **r.as_json()}
        if entry["error"]:
            entry["error"] = redact(entry["error"])
        lines.append(json.dumps(entry) + "\n")
    import os

    fd = os.open(folder / "sync.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as f:
        f.writelines(lines)


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
