"""Small rendering helpers for human output (plain text, aligned columns, optional colour) and JSON.

Hot commands (`slots`, `calendars list`) render with these rather than rich, to keep start-up cheap."""

from __future__ import annotations

import json
from datetime import datetime

STYLES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "blue": "34", "cyan": "36"}


def style(env, text: str, *names: str) -> str:
    if not env.color or not names:
        return text
    return "\x1b[" + ";".join(STYLES[n] for n in names) + "m" + text + "\x1b[0m"


def print_json(env, data) -> None:
    env.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    fmt = lambda row: "  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(headers), fmt(["-" * w for w in widths]), *[fmt(r) for r in rows]])


def ago(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "never"
    seconds = int((now - then).total_seconds())
    if seconds < 0:
        return "just now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"
