"""Book, list, move and cancel appointments. A booking must fit the advisor's free time unless forced."""

from __future__ import annotations

import secrets as _random
from datetime import timedelta

from engagecli.core.models import Appointment
from engagecli.core.timeutil import isoformat, parse_instant, zone
from engagecli.errors import SlotTaken, UsageError
from engagecli.services.planner import conflicts
from engagecli.services.profile import EMAIL_RE, require_account

ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: ids are read aloud and typed


def new_id() -> str:
    return "".join(_random.choice(ID_ALPHABET) for _ in range(8))


def _check_duration(minutes: int) -> timedelta:
    if not 1 <= minutes <= 24 * 60:
        raise UsageError("--duration must be between 1 and 1440 minutes")
    return timedelta(minutes=minutes)


def _refuse_if_busy(env, start, end, *, force: bool, exclude: str | None = None) -> None:
    if force:
        return
    reasons = conflicts(env, start, end, exclude=exclude)
    if reasons:
        raise SlotTaken("that time is not free: " + "; ".join(reasons), hint="pick a time from `engage slots`, or add --force")


def add(env, *, start: str, duration: int, title: str, customer_name=None, customer_email=None,
        force: bool = False) -> Appointment:
    account = require_account(env)
    tz = zone(account.timezone)
    if not title.strip():
        raise UsageError("--title must not be empty")
    if customer_email is not None and not EMAIL_RE.fullmatch(customer_email.strip()):
        raise UsageError("--customer-email does not look like an email address")
    begin = parse_instant(start, tz)
    end = begin + _check_duration(duration)
    now = env.now()
    with env.store.transaction():  # check and book under one write lock: two bookings never take one slot
        _refuse_if_busy(env, begin, end, force=force)
        while True:
            appt = Appointment(new_id(), begin, end, tz.key, title.strip(), customer_name, customer_email, "booked", now)
            if env.store.appointment_status(appt.id) is None:  # 31^8 ids: a clash is rare, never twice
                env.store.add_appointment(appt, now)
                return appt


def listing(env, *, include_past_and_cancelled: bool = False) -> tuple[str, list[Appointment]]:
    """(the account's zone, upcoming booked appointments — or all of them)."""
    tz = require_account(env).timezone
    if include_past_and_cancelled:
        return tz, env.store.list_appointments(include_cancelled=True)
    return tz, env.store.list_appointments(env.now())


def cancel(env, appointment_id: str) -> Appointment:
    appt = env.store.get_appointment(appointment_id)
    if appt.status == "cancelled":
        return appt
    env.store.update_appointment(appointment_id, env.now(), status="cancelled")
    return env.store.get_appointment(appointment_id)


def move(env, appointment_id: str, *, start: str, duration: int | None = None, force: bool = False) -> Appointment:
    account = require_account(env)
    tz = zone(account.timezone)
    appt = env.store.get_appointment(appointment_id)
    if appt.status == "cancelled":
        raise UsageError(f"appointment {appointment_id} is cancelled", hint="book a new one with `engage appointments add`")
    begin = parse_instant(start, tz)
    length = _check_duration(duration) if duration is not None else appt.end - appt.start
    with env.store.transaction():
        _refuse_if_busy(env, begin, begin + length, force=force, exclude=appointment_id)
        env.store.update_appointment(appointment_id, env.now(), start=begin, end=begin + length)
    return env.store.get_appointment(appointment_id)


def to_json(appt: Appointment, tz_name: str) -> dict:
    tz = zone(tz_name)
    return {"id": appt.id, "start": isoformat(appt.start, tz), "end": isoformat(appt.end, tz), "title": appt.title,
            "customer_name": appt.customer_name, "customer_email": appt.customer_email, "status": appt.status,
            "timezone": appt.timezone}
