"""Per-profile settings: the synced window and the default slot length."""

from __future__ import annotations

from engagecli.env import DEFAULT_SETTINGS
from engagecli.errors import UsageError

LIMITS = {"sync.window_past_days": (0, 3650), "sync.window_future_days": (1, 3650), "slots.duration_minutes": (1, 1440)}


def show(env) -> dict[str, str]:
    return {key: env.setting(key) for key in DEFAULT_SETTINGS}


def set_setting(env, key: str, value: str) -> int:
    if key not in DEFAULT_SETTINGS:
        raise UsageError(f"unknown setting {key!r}", hint="one of: " + ", ".join(DEFAULT_SETTINGS))
    lo, hi = LIMITS[key]
    if not value.isascii() or not value.isdigit() or not lo <= int(value) <= hi:
        raise UsageError(f"{key} must be a whole number from {lo} to {hi}")
    env.store.set_setting(key, str(int(value)))
    return int(value)
