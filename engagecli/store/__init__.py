"""The embedded store: one SQLite file per profile (WAL, foreign keys, migrations, 0600).

Everything that writes runs inside `transaction()` (BEGIN IMMEDIATE … COMMIT, rolled back on any error), so a
crash or a bad input never leaves half a change. Instants are stored as UTC epoch seconds next to the zone name
they were made in; busy occurrences are stored pre-expanded so `slots` and `calendar` are indexed range queries.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Iterable, Iterator

from engagecli.core.models import Account, Appointment, CalendarInfo, Occurrence, Overrides, WeeklyHours, Window
from engagecli.core.timeutil import from_epoch, to_epoch
from engagecli.errors import NotFound, StoreError
from engagecli.store.schema import MIGRATIONS

SCHEMA_VERSION = len(MIGRATIONS)


def _corrupt(path: Path, exc: Exception) -> StoreError:
    if "locked" in str(exc) or "busy" in str(exc):
        return StoreError(f"the database {path} is busy (another engage, e.g. a long sync, is writing)",
                          hint="try again in a moment")
    return StoreError(
        f"the database {path} cannot be read ({exc})",
        hint="restore it from a backup, or move it aside and run `engage` again to start afresh",
    )


class Store:
    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.path = path
        self._depth = 0

    # --- opening ------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path) -> "Store":
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        new = not path.exists()
        try:
            if new:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
                os.close(fd)
            conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA foreign_keys = ON")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":  # pragma: no cover - e.g. a network file system
                conn.execute("PRAGMA journal_mode = DELETE")
            conn.execute("PRAGMA synchronous = NORMAL")
            store = cls(conn, path)
            store._migrate()
        except sqlite3.DatabaseError as exc:
            raise _corrupt(path, exc) from None
        return store

    def close(self) -> None:
        self.conn.close()

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the database {self.path} was written by a newer engage (schema {version}, this one knows {SCHEMA_VERSION})",
                hint="upgrade engage",
            )
        for number in range(version, SCHEMA_VERSION):
            with self.transaction():
                for statement in _statements(MIGRATIONS[number]):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {number + 1}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT; nested uses join the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise _corrupt(self.path, exc) from None
        self._depth = 1
        try:
            yield self.conn
        except BaseException:
            self._depth = 0
            self.conn.execute("ROLLBACK")
            raise
        else:
            self._depth = 0
            try:
                self.conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                raise _corrupt(self.path, exc) from None

    def check(self) -> str:
        """'ok' or what PRAGMA quick_check reports."""
        rows = self.conn.execute("PRAGMA quick_check").fetchall()
        return "ok" if rows == [("ok",)] else "; ".join(r[0] for r in rows[:3])

    # --- settings -----------------------------------------------------------------------------------------
    def get_setting(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_setting(self, key: str, value: str) -> None:
        with self.transaction() as c:
            c.execute("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                      (key, value))

    def all_settings(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM settings ORDER BY key"))

    # --- account ------------------------------------------------------------------------------------------
    def get_account(self) -> Account | None:
        row = self.conn.execute("SELECT name, email, timezone, phone FROM account WHERE id = 1").fetchone()
        return Account(name=row[0], email=row[1], timezone=row[2], phone=row[3]) if row else None

    def save_account(self, account: Account) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO account (id, name, email, timezone, phone) VALUES (1, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email, "
                "timezone = excluded.timezone, phone = excluded.phone",
                (account.name, account.email, account.timezone, account.phone),
            )

    # --- weekly hours and overrides ---------------------------------------------------------------------
    def get_hours(self) -> WeeklyHours:
        hours: WeeklyHours = {}
        for weekday, s, e in self.conn.execute("SELECT weekday, start_min, end_min FROM hours ORDER BY weekday, start_min"):
            hours.setdefault(weekday, []).append(Window(s, e))
        return hours

    def set_hours(self, weekdays: Iterable[int], windows: list[Window]) -> None:
        """Replace the hours of `weekdays` with `windows` (an empty list: those days are off)."""
        with self.transaction() as c:
            for day in weekdays:
                c.execute("DELETE FROM hours WHERE weekday = ?", (day,))
                c.executemany("INSERT INTO hours (weekday, start_min, end_min) VALUES (?, ?, ?)",
                              [(day, w.start_min, w.end_min) for w in windows])

    def get_overrides(self, start: date | None = None, end: date | None = None) -> Overrides:
        sql, args = "SELECT day, start_min, end_min FROM overrides", []
        if start and end:
            sql += " WHERE day BETWEEN ? AND ?"
            args = [start.isoformat(), end.isoformat()]
        out: Overrides = {}
        for day, s, e in self.conn.execute(sql + " ORDER BY day, start_min", args):
            windows = out.setdefault(date.fromisoformat(day), [])
            if s is not None:
                windows.append(Window(s, e))
        return out

    def set_override(self, day: date, windows: list[Window] | None) -> None:
        """Windows for one date ([] = off); None removes the override (back to weekly hours)."""
        with self.transaction() as c:
            c.execute("DELETE FROM overrides WHERE day = ?", (day.isoformat(),))
            if windows is None:
                return
            if not windows:
                c.execute("INSERT INTO overrides (day, start_min, end_min) VALUES (?, NULL, NULL)", (day.isoformat(),))
            c.executemany("INSERT INTO overrides (day, start_min, end_min) VALUES (?, ?, ?)",
                          [(day.isoformat(), w.start_min, w.end_min) for w in windows])

    # --- appointments -------------------------------------------------------------------------------------
    _APPT = "id, start_utc, end_utc, timezone, title, customer_name, customer_email, status, updated_at"

    @staticmethod
    def _appt(row) -> Appointment:
        return Appointment(row[0], from_epoch(row[1]), from_epoch(row[2]), row[3], row[4], row[5], row[6], row[7],
                           from_epoch(row[8]))

    def add_appointment(self, a: Appointment, now: datetime) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO appointments (id, start_utc, end_utc, timezone, title, customer_name, customer_email, "
                "status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (a.id, to_epoch(a.start), to_epoch(a.end), a.timezone, a.title, a.customer_name, a.customer_email,
                 a.status, to_epoch(now), to_epoch(now)),
            )

    def get_appointment(self, appointment_id: str) -> Appointment:
        row = self.conn.execute(f"SELECT {self._APPT} FROM appointments WHERE id = ?", (appointment_id,)).fetchone()
        if row is None:
            raise NotFound(f"no appointment {appointment_id!r}", hint="`engage appointments list` shows the ids")
        return self._appt(row)

    def list_appointments(self, start: datetime | None = None, end: datetime | None = None,
                          include_cancelled: bool = False) -> list[Appointment]:
        sql, args = f"SELECT {self._APPT} FROM appointments WHERE 1 = 1", []
        if start is not None:
            sql += " AND end_utc > ?"
            args.append(to_epoch(start))
        if end is not None:
            sql += " AND start_utc < ?"
            args.append(to_epoch(end))
        if not include_cancelled:
            sql += " AND status = 'booked'"
        return [self._appt(r) for r in self.conn.execute(sql + " ORDER BY start_utc, id", args)]

    def update_appointment(self, appointment_id: str, now: datetime, **fields) -> None:
        allowed = {"start": "start_utc", "end": "end_utc", "status": "status", "title": "title", "timezone": "timezone"}
        sets, args = [], []
        for key, value in fields.items():
            sets.append(f"{allowed[key]} = ?")
            args.append(to_epoch(value) if isinstance(value, datetime) else value)
        with self.transaction() as c:
            cur = c.execute(f"UPDATE appointments SET {', '.join(sets)}, updated_at = ? WHERE id = ?",
                            [*args, to_epoch(now), appointment_id])
            if cur.rowcount == 0:
                raise NotFound(f"no appointment {appointment_id!r}", hint="`engage appointments list` shows the ids")

    def booked_between(self, lo: int, hi: int, exclude: str | None = None) -> list[tuple[int, int]]:
        return self.conn.execute(
            "SELECT start_utc, end_utc FROM appointments WHERE status = 'booked' AND start_utc < ? AND end_utc > ? "
            "AND id IS NOT ?", (hi, lo, exclude)).fetchall()

    # --- calendars ----------------------------------------------------------------------------------------
    _CAL = ("c.id, c.provider, c.account, c.name, c.remote_id, c.copy_appointments, c.use_for_availability, "
            "c.read_only, c.options, s.last_synced_at, s.status, s.error, s.cursor")

    @staticmethod
    def _cal(row) -> CalendarInfo:
        return CalendarInfo(
            id=row[0], provider=row[1], account=row[2], name=row[3], remote_id=row[4],
            copy_appointments=bool(row[5]), use_for_availability=bool(row[6]), read_only=bool(row[7]),
            options=json.loads(row[8] or "{}"), last_synced_at=from_epoch(row[9]) if row[9] is not None else None,
            status=row[10] or "never", error=row[11], cursor=row[12],
        )

    def list_calendars(self) -> list[CalendarInfo]:
        rows = self.conn.execute(
            f"SELECT {self._CAL} FROM calendars c LEFT JOIN calendar_state s ON s.calendar_id = c.id ORDER BY c.created_at, c.id")
        return [self._cal(r) for r in rows]

    def get_calendar(self, calendar_id: str) -> CalendarInfo:
        row = self.conn.execute(
            f"SELECT {self._CAL} FROM calendars c LEFT JOIN calendar_state s ON s.calendar_id = c.id WHERE c.id = ?",
            (calendar_id,)).fetchone()
        if row is None:
            raise NotFound(f"no calendar {calendar_id!r}", hint="`engage calendars list` shows the ids")
        return self._cal(row)

    def add_calendar(self, cal: CalendarInfo, now: datetime) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO calendars (id, provider, account, name, remote_id, copy_appointments, use_for_availability, "
                "read_only, options, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (cal.id, cal.provider, cal.account, cal.name, cal.remote_id, int(cal.copy_appointments),
                 int(cal.use_for_availability), int(cal.read_only), json.dumps(cal.options, sort_keys=True), to_epoch(now)),
            )
            c.execute("INSERT INTO calendar_state (calendar_id, status) VALUES (?, 'never')", (cal.id,))

    def set_switches(self, calendar_id: str, *, copy: bool | None = None, availability: bool | None = None) -> None:
        with self.transaction() as c:
            self.get_calendar(calendar_id)
            if copy is not None:
                c.execute("UPDATE calendars SET copy_appointments = ? WHERE id = ?", (int(copy), calendar_id))
            if availability is not None:
                c.execute("UPDATE calendars SET use_for_availability = ? WHERE id = ?", (int(availability), calendar_id))

    def set_calendar_options(self, calendar_id: str, options: dict) -> None:
        with self.transaction() as c:
            c.execute("UPDATE calendars SET options = ? WHERE id = ?", (json.dumps(options, sort_keys=True), calendar_id))

    def remove_calendar(self, calendar_id: str) -> None:
        with self.transaction() as c:
            self.get_calendar(calendar_id)
            c.execute("DELETE FROM calendars WHERE id = ?", (calendar_id,))

    def record_sync(self, calendar_id: str, *, status: str, now: datetime, error: str | None = None) -> None:
        """Record the outcome of a sync attempt."""
        with self.transaction() as c:
            ts = to_epoch(now)
            if status == "ok":
                c.execute("UPDATE calendar_state SET status = 'ok', error = NULL, last_synced_at = ?, last_attempt_at = ? "
                          "WHERE calendar_id = ?", (ts, ts, calendar_id))
            else:
                c.execute("UPDATE calendar_state SET status = ?, error = ?, last_attempt_at = ? WHERE calendar_id = ?",
                          (status, error, ts, calendar_id))

    def set_cursor(self, calendar_id: str, cursor: str | None, window: tuple[datetime, datetime] | None = None) -> None:
        """The cursor after a pull, and the window whose busy times that pull brought in."""
        with self.transaction() as c:
            c.execute("UPDATE calendar_state SET cursor = ? WHERE calendar_id = ?", (cursor, calendar_id))
            if window is not None:
                c.execute("UPDATE calendar_state SET window_start = ?, window_end = ? WHERE calendar_id = ?",
                          (to_epoch(window[0]), to_epoch(window[1]), calendar_id))

    def clear_cursors(self) -> None:
        """Forget every cursor: the next sync pulls everything again (e.g. after the time zone changed)."""
        with self.transaction() as c:
            c.execute("UPDATE calendar_state SET cursor = NULL")

    def known_until(self) -> datetime | None:
        """The end of the shortest fetched window among calendars used for availability (None: none fetched)."""
        row = self.conn.execute(
            "SELECT MIN(s.window_end) FROM calendar_state s JOIN calendars c ON c.id = s.calendar_id "
            "WHERE c.use_for_availability = 1 AND s.window_end IS NOT NULL").fetchone()
        return from_epoch(row[0]) if row and row[0] is not None else None

    def appointment_status(self, appointment_id: str) -> str | None:
        row = self.conn.execute("SELECT status FROM appointments WHERE id = ?", (appointment_id,)).fetchone()
        return row[0] if row else None

    # --- busy occurrences ---------------------------------------------------------------------------------
    def replace_item(self, calendar_id: str, key: str, occurrences: Iterable[Occurrence]) -> int:
        """Replace the stored occurrences of one remote item; returns how many were stored."""
        c = self.conn
        c.execute("DELETE FROM busy WHERE calendar_id = ? AND item_key = ?", (calendar_id, key))
        rows = [(calendar_id, key, to_epoch(o.start), to_epoch(o.end), int(o.busy), int(o.all_day), o.summary, o.reason)
                for o in occurrences if o.end > o.start]
        c.executemany("INSERT INTO busy (calendar_id, item_key, start_utc, end_utc, busy, all_day, summary, reason) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def delete_items(self, calendar_id: str, keys: Iterable[str]) -> None:
        self.conn.executemany("DELETE FROM busy WHERE calendar_id = ? AND item_key = ?", [(calendar_id, k) for k in keys])

    def clear_busy(self, calendar_id: str) -> None:
        self.conn.execute("DELETE FROM busy WHERE calendar_id = ?", (calendar_id,))

    def _longest(self) -> int:
        row = self.conn.execute("SELECT MAX(end_utc - start_utc) FROM busy").fetchone()
        return row[0] or 0

    def busy_between(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """Busy blocks overlapping [lo, hi) from calendars used for availability (an indexed range query)."""
        return self.conn.execute(
            "SELECT b.start_utc, b.end_utc FROM busy b JOIN calendars c ON c.id = b.calendar_id "
            "WHERE c.use_for_availability = 1 AND b.busy = 1 AND b.start_utc < ? AND b.start_utc >= ? AND b.end_utc > ?",
            (hi, lo - self._longest(), lo)).fetchall()

    def occurrences_between(self, lo: int, hi: int) -> list[tuple]:
        """(calendar_id, calendar name, use_for_availability, Occurrence) for the advisor's own agenda."""
        rows = self.conn.execute(
            "SELECT b.calendar_id, c.name, c.use_for_availability, b.start_utc, b.end_utc, b.busy, b.all_day, b.summary, "
            "b.reason FROM busy b JOIN calendars c ON c.id = b.calendar_id "
            "WHERE b.start_utc < ? AND b.start_utc >= ? AND b.end_utc > ? ORDER BY b.start_utc, b.end_utc",
            (hi, lo - self._longest(), lo))
        return [(r[0], r[1], bool(r[2]), Occurrence(from_epoch(r[3]), from_epoch(r[4]), bool(r[5]), bool(r[6]), r[7], r[8]))
                for r in rows]

    def count_busy(self, calendar_id: str | None = None) -> int:
        if calendar_id is None:
            return self.conn.execute("SELECT COUNT(*) FROM busy").fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM busy WHERE calendar_id = ?", (calendar_id,)).fetchone()[0]

    # --- copies -------------------------------------------------------------------------------------------
    def copies(self, calendar_id: str) -> dict[str, tuple[str, str | None, str | None]]:
        """appointment id -> (remote id, etag, content hash) of what we last pushed to `calendar_id`."""
        return {r[0]: (r[1], r[2], r[3]) for r in self.conn.execute(
            "SELECT appointment_id, remote_id, etag, content_hash FROM copies WHERE calendar_id = ?", (calendar_id,))}

    def save_copy(self, calendar_id: str, appointment_id: str, remote_id: str, etag: str | None,
                  content_hash: str | None, now: datetime) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO copies (calendar_id, appointment_id, remote_id, etag, content_hash, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (calendar_id, appointment_id) DO UPDATE SET "
                "remote_id = excluded.remote_id, etag = excluded.etag, content_hash = excluded.content_hash, "
                "updated_at = excluded.updated_at",
                (calendar_id, appointment_id, remote_id, etag, content_hash, to_epoch(now)))

    def forget_copy(self, calendar_id: str, appointment_id: str) -> None:
        with self.transaction() as c:
            c.execute("DELETE FROM copies WHERE calendar_id = ? AND appointment_id = ?", (calendar_id, appointment_id))

    def invalidate_copy(self, calendar_id: str, appointment_id: str) -> None:
        """Mark a copy as needing a push (it was edited remotely)."""
        with self.transaction() as c:
            c.execute("UPDATE copies SET content_hash = NULL WHERE calendar_id = ? AND appointment_id = ?",
                      (calendar_id, appointment_id))


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
