"""Schema migrations. Each entry moves the database one version up; never edit a shipped entry, append one.

Config (what the user chose: account, hours, overrides, appointments, calendars and their switches) and state
(what sync learned: busy occurrences, cursors, copy mappings, last sync) live in separate tables; secrets never
live here (engagecli.secrets).
"""

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE account (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        name TEXT, email TEXT, phone TEXT,
        timezone TEXT NOT NULL
    );
    CREATE TABLE hours (
        weekday INTEGER NOT NULL CHECK (weekday BETWEEN 0 AND 6),
        start_min INTEGER NOT NULL, end_min INTEGER NOT NULL,
        PRIMARY KEY (weekday, start_min),
        CHECK (0 <= start_min AND start_min < end_min AND end_min <= 1440)
    );
    CREATE TABLE overrides (
        day TEXT NOT NULL,              -- YYYY-MM-DD, local date
        start_min INTEGER, end_min INTEGER  -- NULL: the day is off
    );
    CREATE INDEX overrides_day ON overrides (day);
    CREATE TABLE appointments (
        id TEXT PRIMARY KEY,
        start_utc INTEGER NOT NULL, end_utc INTEGER NOT NULL,
        timezone TEXT NOT NULL,
        title TEXT NOT NULL,
        customer_name TEXT, customer_email TEXT,
        status TEXT NOT NULL DEFAULT 'booked' CHECK (status IN ('booked', 'cancelled')),
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
        CHECK (start_utc < end_utc)
    );
    CREATE INDEX appointments_start ON appointments (start_utc);
    CREATE TABLE calendars (
        id TEXT PRIMARY KEY,
        provider TEXT NOT NULL, account TEXT NOT NULL, name TEXT NOT NULL,
        remote_id TEXT NOT NULL,
        copy_appointments INTEGER NOT NULL DEFAULT 0,
        use_for_availability INTEGER NOT NULL DEFAULT 1,
        read_only INTEGER NOT NULL DEFAULT 0,
        options TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL
    );
    CREATE TABLE calendar_state (
        calendar_id TEXT PRIMARY KEY REFERENCES calendars (id) ON DELETE CASCADE,
        cursor TEXT,
        last_synced_at INTEGER, last_attempt_at INTEGER,
        status TEXT NOT NULL DEFAULT 'never',
        error TEXT
    );
    CREATE TABLE busy (
        calendar_id TEXT NOT NULL REFERENCES calendars (id) ON DELETE CASCADE,
        item_key TEXT NOT NULL,
        start_utc INTEGER NOT NULL, end_utc INTEGER NOT NULL,
        busy INTEGER NOT NULL,
        all_day INTEGER NOT NULL DEFAULT 0,
        summary TEXT NOT NULL DEFAULT '',
        reason TEXT
    );
    CREATE INDEX busy_start ON busy (start_utc);
    CREATE INDEX busy_item ON busy (calendar_id, item_key);
    CREATE TABLE copies (
        calendar_id TEXT NOT NULL REFERENCES calendars (id) ON DELETE CASCADE,
        appointment_id TEXT NOT NULL,
        remote_id TEXT NOT NULL,
        etag TEXT,
        content_hash TEXT,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (calendar_id, appointment_id)
    );
    """,
    # 2: the window each calendar's busy times were fetched for (slots refuse to answer past it)
    """
    ALTER TABLE calendar_state ADD COLUMN window_start INTEGER;
    ALTER TABLE calendar_state ADD COLUMN window_end INTEGER;
    """,
]
