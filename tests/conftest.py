"""Shared fixtures: a hermetic ENGAGE_HOME with a frozen clock, and `engage(...)` that runs the real CLI
entry point in-process (same code path as the console script: one error handler, exit codes)."""

from __future__ import annotations

import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

FIXTURES = Path(__file__).parent / "fixtures"
NOW = "2030-03-01T08:00:00+00:00"  # a Friday; the next week starts Monday 2030-03-04


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("ENGAGE_HOME", str(path))
    monkeypatch.setenv("ENGAGE_NOW", NOW)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("ENGAGE_SECRETS", "file")
    monkeypatch.delenv("ENGAGE_PROFILE", raising=False)
    return path


@pytest.fixture
def engage(home, monkeypatch, capsys):
    from engagecli.cli import run

    def call(*args: str, input: str = "") -> Result:
        monkeypatch.setattr(sys, "stdin", io.StringIO(input))
        capsys.readouterr()
        old = os.umask(0o077)
        try:
            code = run(list(args))
        finally:
            os.umask(old)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return call


@pytest.fixture
def advisor(engage):
    """An advisor in Europe/Oslo working Mon-Fri 09:00-12:00 and 13:00-17:00."""
    assert engage("account", "set", "--name", "Ann Advisor", "--email", "ann@example.com", "--timezone", "Europe/Oslo").code == 0
    assert engage("availability", "set", "mon-fri", "09:00-12:00", "13:00-17:00").code == 0
    return engage
