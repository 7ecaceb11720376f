"""Account (contact details, time zone) and availability (weekly hours, date overrides)."""

from __future__ import annotations

import re
from dataclasses import replace


from engagecli.core.models import Account, Window
from engagecli.core.timeutil import DAY_NAMES, parse_date, parse_days, parse_windows, zone
from engagecli.errors import UsageError

EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")


def require_account(env) -> Account:
    account = env.store.get_account()
    if account is None:
        raise UsageError("no account is set up for this profile",
                         hint="run `engage account set --name N --email E --timezone Europe/Oslo` (or `engage demo`)")
    return account


def set_account(env, *, name=None, email=None, timezone=None, phone=None) -> Account:
    """Change only the fields given; validate them. The first call must name a time zone."""
    current = env.store.get_account()
    if name is not None and not name.strip():
        raise UsageError("the name must not be empty")
    if email is not None and not EMAIL_RE.fullmatch(email.strip()):
        raise UsageError(f"{email!r} does not look like an email address")
    if timezone is not None:
        zone(timezone)
    if phone is not None and not re.fullmatch(r"\+?[0-9 ()./-]{3,30}", phone.strip()):
        raise UsageError(f"{phone!r} does not look like a phone number")
    if current is None and timezone is None:
        raise UsageError("a new account needs a time zone", hint="add --timezone Europe/Oslo (an IANA name)")
    base = current or Account(timezone=timezone)
    changes = {k: v.strip() for k, v in dict(name=name, email=email, timezone=timezone, phone=phone).items() if v is not None}
    account = replace(base, **changes)
    with env.store.transaction():
        env.store.save_account(account)
        if current is not None and current.timezone != account.timezone:
            env.store.clear_cursors()  # all-day and floating times move with the zone: the next sync pulls afresh
    return account


def set_hours(env, days: str, ranges: list[str]) -> dict[int, list[Window]]:
    """`availability set mon-fri 09:00-12:00 13:00-17:00`; `availability set sat off` clears a day."""
    require_account(env)
    weekdays = parse_days(days)
    if not ranges:
        raise UsageError("give time ranges (e.g. 09:00-17:00) or 'off'")
    windows = [] if ranges == ["off"] else parse_windows(ranges)
    env.store.set_hours(weekdays, windows)
    return env.store.get_hours()


def set_override(env, day: str, ranges: list[str], *, off: bool = False, clear: bool = False) -> list[Window] | None:
    require_account(env)
    when = parse_date(day)
    if sum([off, clear, bool(ranges)]) != 1:
        raise UsageError("give either time ranges, --off or --clear", hint="e.g. `engage availability override 2030-12-24 --off`")
    windows = None if clear else ([] if off else parse_windows(ranges))
    env.store.set_override(when, windows)
    return windows


def availability(env) -> dict:
    account = require_account(env)
    hours = env.store.get_hours()
    today = env.now().astimezone(zone(account.timezone)).date()
    overrides = {d: w for d, w in env.store.get_overrides().items() if d >= today}
    return {
        "timezone": account.timezone,
        "weekly": {DAY_NAMES[d]: [w.label() for w in hours.get(d, [])] for d in range(7)},
        "overrides": {d.isoformat(): [w.label() for w in ws] for d, ws in sorted(overrides.items())},
    }


def account_dict(account: Account) -> dict:
    return {"name": account.name, "email": account.email, "phone": account.phone, "timezone": account.timezone}


