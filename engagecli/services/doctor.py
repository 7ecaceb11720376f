"""`engage doctor`: every check returns (ok, one line). Nothing here prints a secret."""

from __future__ import annotations

import stat


def run_checks(env, *, offline: bool = False):
    from engagecli.core.timeutil import zone
    from engagecli.errors import EngageError

    import sqlite3

    # the database
    try:
        result = env.store.check()
        yield result == "ok", f"database {env.db_path}: {result}"
        if result != "ok":
            return
    except (EngageError, sqlite3.DatabaseError) as exc:
        yield False, f"database {env.db_path}: {exc}"
        return
    for path, want in ((env.home, 0o700), (env.profile_dir, 0o700), (env.db_path, 0o600)):
        mode = stat.S_IMODE(path.stat().st_mode)
        yield mode & 0o077 == 0, f"permissions {oct(mode)} on {path}" + ("" if mode & 0o077 == 0 else f" (want {oct(want)})")
    account = env.store.get_account()
    if account is None:
        yield False, "no account: run `engage account set --timezone ZONE`"
    else:
        try:
            zone(account.timezone)
            yield True, f"time zone {account.timezone}; now {env.now().astimezone(zone(account.timezone)):%Y-%m-%d %H:%M %Z}"
        except EngageError as exc:
            yield False, str(exc)
    # the secret store (only matters once a calendar holds a secret)
    needs_secrets = any(c.options.get("secret_kinds") for c in env.store.list_calendars())
    try:
        description = env.secrets.describe()
        env.secrets.get(f"{env.profile}/doctor-probe")
        yield True, f"secret store: {description}"
    except EngageError as exc:
        yield not needs_secrets, f"secret store: {exc}"
    from engagecli.providers import open_provider
    from engagecli.providers.base import secret_name
    from engagecli.services.sync import provider_context

    for cal in env.store.list_calendars():
        when = cal.last_synced_at.isoformat(timespec="seconds") if cal.last_synced_at else "never"
        ok = cal.status == "ok"
        yield ok, f"calendar {cal.id} ({cal.provider}): {cal.status}, last synced {when}" + (f": {cal.error}" if cal.error else "")
        kinds = cal.options.get("secret_kinds", [])
        try:
            missing = [k for k in kinds if env.secrets.get(secret_name(env.profile, cal.id, k)) is None]
        except EngageError as exc:
            yield False, f"calendar {cal.id}: its secrets cannot be read: {exc}"
            continue
        if missing:
            yield False, f"calendar {cal.id}: no stored {', '.join(missing)} (run `engage link {cal.provider}` again)"
        elif kinds:
            yield True, f"calendar {cal.id}: {', '.join(kinds)} present in the secret store"
        if offline:
            continue
        try:
            open_provider(cal, provider_context(env)).list_calendars()
            yield True, f"calendar {cal.id}: reachable, signed in"
        except EngageError as exc:
            yield False, f"calendar {cal.id}: {exc}"
