"""The sync algorithm, one plain function over a provider and the store (after vdirsyncer): no CLI, no HTTP.

Per calendar:
1. Pull: everything that changed since the stored cursor, applied to the busy cache in ONE transaction together
   with the new cursor — a failure half-way leaves the old cache and the old cursor, so the next sync redoes it.
   Our own copies (recognised by the provider from our marker) never become busy blocks; a copy the user deleted
   in the work calendar is forgotten so that step 2 creates it again (the appointment still exists: engage owns
   its copies); a copy edited there is overwritten in step 2.
2. Push (when "copy appointments" is on): every current and future booked appointment whose content differs from
   what was last pushed is written with provider.put_copy, which is idempotent (a remote id derived from the
   appointment id + conditional requests), and each mapping row is committed right after its write. A crash
   between the remote write and our commit therefore repeats the write next time and never makes a second event.
   Copies of cancelled (or deleted) appointments are deleted remotely, then forgotten; deleting twice is harmless.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime

from engagecli.core.models import Appointment, CalendarInfo
from engagecli.errors import EngageError, ProviderError, RelinkNeeded
from engagecli.providers.base import CopyRef, CopySpec, copy_description, iter_chunks


@dataclass
class CalendarReport:
    id: str
    status: str = "ok"  # ok | error | relink
    pulled: int = 0
    copied: int = 0
    updated: int = 0
    deleted: int = 0
    error: str | None = None

    def as_json(self) -> dict:
        return asdict(self)


def copy_spec(appt: Appointment) -> CopySpec:
    content = "\x1f".join([appt.start.isoformat(), appt.end.isoformat(), appt.timezone, appt.title,
                           copy_description(appt.id)])
    return CopySpec(appt.id, appt.start, appt.end, appt.timezone, appt.title, copy_description(appt.id),
                    hashlib.sha256(content.encode()).hexdigest()[:32])


def pull(store, provider, cal: CalendarInfo, window: tuple[datetime, datetime]) -> tuple[int, dict[str, tuple[str, str | None]]]:
    """Step 1. Returns (occurrences stored, our copies seen: appointment id -> (remote key, etag))."""
    result = provider.pull_changes(cal.cursor, window)
    mapping = store.copies(cal.id)
    by_remote = {remote_id: appt_id for appt_id, (remote_id, _etag, _h) in mapping.items()}
    ours: dict[str, tuple[str, str | None]] = {}
    stored = 0
    with store.transaction():
        if result.full:
            store.clear_busy(cal.id)
        for item in result.items:
            if item.appointment_id and store.appointment_status(item.appointment_id) is not None:
                ours[item.appointment_id] = (item.key, item.etag)
                if not result.full:
                    store.delete_items(cal.id, [item.key])
                continue
            # a marked event of an appointment this profile does not have is another engage's copy (a colleague
            # on a shared calendar, another profile): busy time like any other event, and never ours to touch
            stored += store.replace_item(cal.id, item.key, item.occurrences)
        if result.deleted:
            store.delete_items(cal.id, result.deleted)
        gone = {by_remote[key] for key in result.deleted if key in by_remote}
        if result.full:  # a full pull lists every copy inside the window: the others were deleted remotely
            lo, hi = window
            in_window = {a.id for a in store.list_appointments(lo, hi, include_cancelled=True)}
            gone |= {appt_id for appt_id in mapping if appt_id in in_window and appt_id not in ours}
        for appt_id in gone:
            store.forget_copy(cal.id, appt_id)
        for appt_id, (_key, etag) in ours.items():
            known = mapping.get(appt_id)
            if known and appt_id not in gone and etag and known[1] and etag != known[1]:
                store.invalidate_copy(cal.id, appt_id)  # edited in the work calendar: push ours again
        store.set_cursor(cal.id, result.cursor, window)
    return stored, ours


def push(store, provider, cal: CalendarInfo, now: datetime, ours: dict[str, tuple[str, str | None]],
         report: CalendarReport) -> list[str]:
    """Step 2. Returns the errors of single copies that failed (the others went through)."""
    failures: list[str] = []
    mapping = store.copies(cal.id)
    desired = {a.id: a for a in store.list_appointments(start=now)}
    work = []
    for appt_id, appt in desired.items():
        spec = copy_spec(appt)
        known = mapping.get(appt_id)
        if known and known[2] == spec.content_hash:
            continue
        work.append((spec, CopyRef(known[0], known[1]) if known else None))
    put_many = getattr(provider, "put_copies", None)
    size = max(1, int(getattr(provider, "batch_size", 1))) if put_many else 1
    for chunk in iter_chunks(work, size):
        if len(chunk) > 1:
            results = put_many(chunk)
        else:
            results = []
            for spec, existing in chunk:
                try:
                    results.append(provider.put_copy(spec, existing))
                except ProviderError as exc:
                    results.append(exc)
        for (spec, existing), result in zip(chunk, results):
            if isinstance(result, Exception):
                failures.append(f"appointment {spec.appointment_id}: {result}")
                continue
            store.save_copy(cal.id, spec.appointment_id, result.remote_id, result.etag, spec.content_hash, now)
            if existing:
                report.updated += 1
            else:
                report.copied += 1
    # copies of appointments that are cancelled or gone: the mapping, plus orphans the pull saw (a crash
    # between a remote create and our commit, followed by a cancel)
    doomed: dict[str, CopyRef] = {}
    for appt_id, (remote_id, etag, _h) in mapping.items():
        if appt_id not in desired and _cancelled_or_gone(store, appt_id):
            doomed[appt_id] = CopyRef(remote_id, etag)
    for appt_id, (key, etag) in ours.items():  # only appointments of this store: pull() left foreign copies alone
        if appt_id not in desired and appt_id not in doomed and appt_id not in mapping and _cancelled_or_gone(store, appt_id):
            doomed[appt_id] = CopyRef(key, etag)
    for appt_id, ref in doomed.items():
        try:
            provider.delete_copy(ref)
        except ProviderError as exc:
            failures.append(f"appointment {appt_id}: {exc}")
            continue
        store.forget_copy(cal.id, appt_id)
        report.deleted += 1
    return failures


def _cancelled_or_gone(store, appt_id: str) -> bool:
    return store.appointment_status(appt_id) in (None, "cancelled")


def remove_copies(store, provider, cal: CalendarInfo) -> int:
    """Delete every copy we made in `cal` (turning copies off with --remove-copies, or unlinking)."""
    removed = 0
    for appt_id, (remote_id, etag, _h) in store.copies(cal.id).items():
        provider.delete_copy(CopyRef(remote_id, etag))
        store.forget_copy(cal.id, appt_id)
        removed += 1
    return removed


def sync_calendar(store, provider, cal: CalendarInfo, *, now: datetime, window: tuple[datetime, datetime]) -> CalendarReport:
    """Pull then push one calendar; never raises for provider trouble: the report says what happened and the
    calendar's status/error/last_synced_at are recorded."""
    report = CalendarReport(cal.id)
    try:
        if provider.can_read_busy:
            report.pulled, ours = pull(store, provider, cal, window)
        else:
            ours = {}
        failures: list[str] = []
        if cal.copy_appointments and provider.can_copy:
            failures = push(store, provider, cal, now, ours, report)
        if failures:
            report.status = "error"
            report.error = f"{len(failures)} cop{'y' if len(failures) == 1 else 'ies'} failed: {failures[0]}"
    except RelinkNeeded as exc:
        report.status, report.error = "relink", str(exc)
    except EngageError as exc:
        report.status, report.error = "error", str(exc)
    except Exception as exc:  # noqa: BLE001 - one failing calendar never stops the others
        report.status, report.error = "error", f"unexpected {type(exc).__name__} while syncing (run `engage doctor`)"
    if report.status == "ok":
        store.record_sync(cal.id, status="ok", now=now)
    else:
        store.record_sync(cal.id, status=report.status, now=now, error=report.error)
    return report


