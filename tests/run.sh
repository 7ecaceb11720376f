#!/usr/bin/env bash
# Run the test suite (the README's test command): bash tests/run.sh [pytest args...]
#
# When dbus-run-session and gnome-keyring-daemon exist, pytest runs inside a private D-Bus session with
# its own, freshly unlocked gnome-keyring (Secret Service), kept in a temporary folder: the keyring tests
# run against the real thing and never touch your own keyring. Otherwise pytest runs plainly and the
# tests marked `keyring` skip (Debian: apt-get install gnome-keyring dbus dbus-x11 libsecret-1-0).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

if [ -x .venv/bin/python ]; then
    py=(.venv/bin/python)
elif command -v python >/dev/null 2>&1; then
    py=(python)
else
    py=(python3)
fi

if command -v dbus-run-session >/dev/null 2>&1 && command -v gnome-keyring-daemon >/dev/null 2>&1; then
    keyring_dir=$(mktemp -d "${TMPDIR:-/tmp}/engage-keyring.XXXXXX") || exit 2
    trap 'rm -rf "$keyring_dir"' EXIT
    mkdir -m 700 "$keyring_dir/data" "$keyring_dir/run"
    # The daemon keeps its keyrings (XDG_DATA_HOME) and control socket (XDG_RUNTIME_DIR) in the
    # temporary folder; pytest keeps the caller's environment. ENGAGE_TEST_REQUIRE_KEYRING turns a
    # keyring test that cannot reach the Secret Service into a failure instead of a skip.
    # dbus-daemon's "Failed to set fd limit" (root in a container) is noise: filter it out.
    # (stdout goes straight to fd 3, the caller's stdout; only stderr passes through grep.)
    {
        dbus-run-session -- sh -c '
            dir=$1; shift
            echo pw | XDG_DATA_HOME="$dir/data" XDG_RUNTIME_DIR="$dir/run" \
                gnome-keyring-daemon --unlock --components=secrets >/dev/null
            ENGAGE_TEST_REQUIRE_KEYRING=1; export ENGAGE_TEST_REQUIRE_KEYRING
            exec "$@"
        ' sh "$keyring_dir" "${py[@]}" -m pytest "$@" 2>&1 1>&3 3>&- |
            grep -v --line-buffered 'Failed to set fd limit' >&2
        rc=${PIPESTATUS[0]}
    } 3>&1
else
    echo "tests/run.sh: no dbus-run-session/gnome-keyring-daemon: tests marked 'keyring' will skip" >&2
    "${py[@]}" -m pytest "$@"
    rc=$?
fi

if [ "$rc" -eq 5 ]; then
    echo "tests/run.sh: pytest collected no tests: that is a failure" >&2
fi
exit "$rc"
