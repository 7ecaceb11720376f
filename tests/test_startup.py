"""Start-up cost: what `engage --help`, `calendars list` and `slots --week` import. Timing lives in
benchmarks/; here we check the modules loaded, which is what makes start-up slow."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("icalendar", "recurring_ical_events", "requests", "google", "googleapiclient", "google_auth_oauthlib",
         "msal", "caldav", "keyring", "rich", "platformdirs", "dateutil", "urllib3", "cryptography", "radicale")

PROBE = """
import sys, json
from engagecli.cli import run
code = run(sys.argv[1:])
print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)), file=sys.stderr)
"""


def loaded(args, env):
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stderr.strip().splitlines()[-1]))


def test_help_imports_nothing_heavy(home):
    mods = loaded(["--help"], os.environ.copy())
    assert not mods & set(HEAVY), sorted(mods & set(HEAVY))
    assert "sqlite3" not in mods


def test_hot_commands_import_nothing_heavy(advisor, home):
    assert advisor("link", "ics", str(home.parent / "missing.ics")).code == 2  # nothing linked, fine
    for args in (["calendars", "list"], ["slots", "--week"], ["slots", "--week", "--json"], ["calendars", "list", "--json"]):
        mods = loaded(args, os.environ.copy())
        assert not mods & set(HEAVY), (args, sorted(mods & set(HEAVY)))


def test_core_imports_no_framework_or_provider():
    code = ("import sys, engagecli.core.models, engagecli.core.timeutil, engagecli.core.slots, engagecli.core.ical;"
            "print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))")
    mods = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())
    assert not mods & {"typer", "rich", "requests", "click", "sqlite3", "keyring", "icalendar", "recurring_ical_events"}
    assert "engagecli" in mods
    # core never imports a provider or the store
    src = subprocess.run([sys.executable, "-c", "import sys, engagecli.core.slots, engagecli.core.ical; "
                          "print(' '.join(m for m in sys.modules if m.startswith('engagecli')))"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert not [m for m in src if m.startswith(("engagecli.providers", "engagecli.store", "engagecli.commands"))]
