"""Env: everything a command touches outside itself — clock, paths, streams, settings, the store and the
secret store. Built once per invocation from the process environment and passed in, never global, so every
test is hermetic (it sets ENGAGE_HOME and, for a frozen clock, ENGAGE_NOW)."""

from __future__ import annotations

import io
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Callable, TextIO

from engagecli.errors import UsageError

PROFILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

# settings (engage settings set KEY VALUE) and their defaults
DEFAULT_SETTINGS = {
    "sync.window_past_days": "90",
    "sync.window_future_days": "365",
    "slots.duration_minutes": "30",
}


def default_home(environ) -> Path:
    if environ.get("ENGAGE_HOME"):
        return Path(environ["ENGAGE_HOME"]).expanduser()
    import platformdirs  # only when no ENGAGE_HOME: it costs start-up time

    return Path(platformdirs.user_data_dir("engage", appauthor=False))


def _parse_now(value: str) -> Callable[[], datetime]:
    from engagecli.core.timeutil import UTC

    try:
        frozen = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"bad ENGAGE_NOW {value!r}", hint="use an ISO 8601 instant with offset") from None
    if frozen.tzinfo is None:
        raise UsageError("ENGAGE_NOW needs an offset, e.g. 2030-03-04T08:00:00+00:00")
    return lambda: frozen.astimezone(UTC)


@dataclass
class Env:
    home: Path
    profile: str = "default"
    environ: dict = field(default_factory=dict)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: TextIO = field(default_factory=lambda: sys.stdin if sys.stdin is not None else io.StringIO())
    clock: Callable[[], datetime] | None = None

    @classmethod
    def from_environ(cls, environ=None, profile: str | None = None, **streams) -> "Env":
        environ = dict(os.environ if environ is None else environ)
        profile = profile or environ.get("ENGAGE_PROFILE") or "default"
        if not PROFILE_RE.fullmatch(profile):
            raise UsageError(f"bad profile name {profile!r}", hint="use letters, digits, '.', '_' or '-'")
        clock = _parse_now(environ["ENGAGE_NOW"]) if environ.get("ENGAGE_NOW") else None
        return cls(home=default_home(environ), profile=profile, environ=environ, clock=clock, **streams)

    # --- time ---------------------------------------------------------------------------------------------
    def now(self) -> datetime:
        if self.clock is not None:
            return self.clock()
        from engagecli.core.timeutil import utcnow

        return utcnow()

    # --- paths (folders 0700, files 0600: the CLI runs with umask 077) -----------------------------------
    @property
    def profile_dir(self) -> Path:
        return self.home / "profiles" / self.profile

    @property
    def db_path(self) -> Path:
        return self.profile_dir / "engage.db"

    @property
    def state_dir(self) -> Path:
        path = self.profile_dir / "state"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    @property
    def lock_path(self) -> Path:
        return self.profile_dir / "sync.lock"

    def profiles(self) -> list[str]:
        base = self.home / "profiles"
        return sorted(p.name for p in base.iterdir() if (p / "engage.db").exists()) if base.exists() else []

    def for_profiles(self) -> list["Env"]:
        """One Env for each profile under ENGAGE_HOME (admins: `--all-profiles`)."""
        from dataclasses import replace

        return [replace(self, profile=name) if name != self.profile else self for name in self.profiles()]

    # --- services -----------------------------------------------------------------------------------------
    @cached_property
    def store(self):
        from engagecli.errors import StoreError
        from engagecli.store import Store

        try:
            self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.profile_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StoreError(f"cannot use {self.home} for engage's data ({exc.strerror})",
                             hint="set ENGAGE_HOME to a folder you can write") from None
        return Store.open(self.db_path)

    @cached_property
    def secrets(self):
        from engagecli.secrets import open_secrets

        return open_secrets(self.home, self.environ)

    def setting(self, key: str) -> str:
        return self.store.get_setting(key, DEFAULT_SETTINGS.get(key))

    def int_setting(self, key: str) -> int:
        value = self.setting(key)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise UsageError(f"setting {key} is {value!r}, not a whole number",
                             hint=f"engage settings set {key} {DEFAULT_SETTINGS.get(key, 'N')}") from None

    # --- output -------------------------------------------------------------------------------------------
    @property
    def color(self) -> bool:
        if self.environ.get("NO_COLOR"):
            return False
        return bool(getattr(self.stdout, "isatty", lambda: False)())

    @property
    def interactive(self) -> bool:
        return bool(getattr(self.stdin, "isatty", lambda: False)()) and bool(getattr(self.stderr, "isatty", lambda: False)())

    def out(self, text: str = "") -> None:
        self.stdout.write(text + "\n")

    def err(self, text: str = "") -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()
