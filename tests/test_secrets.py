"""The secret store: the real Secret Service (gnome-keyring under dbus-run-session, see tests/run.sh),
the no-keyring path, the explicit file store, and redaction.

Tests marked `keyring` need a reachable Secret Service; they skip with the reason when there is none,
and fail instead when tests/run.sh promised one (ENGAGE_TEST_REQUIRE_KEYRING=1).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from engagecli.errors import SecretStoreError, UsageError
from engagecli.secrets import FILE_NAME, FileStore, KeyringStore, SecretStore, open_secrets, redact

SECRET = "s3cr3t-Value/with+odd=chars-ÆØÅ"


def _run_python(code: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess:
    """`python -c code` in a NEW process (the venv's interpreter), no terminal on stdin."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


# --------------------------------------------------------------------------------------------- choosing


def test_open_secrets_picks_the_store(tmp_path):
    assert isinstance(open_secrets(tmp_path, {}), KeyringStore)
    assert isinstance(open_secrets(tmp_path, {"ENGAGE_SECRETS": "keyring"}), KeyringStore)
    assert isinstance(open_secrets(tmp_path, {"ENGAGE_SECRETS": ""}), KeyringStore)
    store = open_secrets(tmp_path, {"ENGAGE_SECRETS": "file"})
    assert isinstance(store, FileStore) and isinstance(store, SecretStore)
    assert store.path == tmp_path / "secrets.json"
    with pytest.raises(UsageError) as err:
        open_secrets(tmp_path, {"ENGAGE_SECRETS": "plaintext"})
    assert "ENGAGE_SECRETS" in str(err.value) and "file" in str(err.value)
    assert err.value.exit_code == 2


def test_opening_the_store_imports_no_keyring(tmp_path):
    # keyring costs ~100 ms to import: neither importing the module nor opening the store may pay it.
    proc = _run_python(
        f"""
        import os, sys, pathlib
        from engagecli.secrets import open_secrets
        store = open_secrets(pathlib.Path({str(tmp_path)!r}), {{}})
        print("keyring" in sys.modules, "secretstorage" in sys.modules)
        """,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


# ----------------------------------------------------------------------------------- no usable keyring


def _env_without_session(tmp_path: Path, bus: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DBUS_SESSION_BUS_ADDRESS", "PYTHON_KEYRING_BACKEND")}
    # No keyringrc.cfg of the user's and no systemd user bus to fall back to.
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "run").mkdir(mode=0o700, exist_ok=True)
    env.update(XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_RUNTIME_DIR=str(tmp_path / "run"))
    if bus is not None:
        env["DBUS_SESSION_BUS_ADDRESS"] = bus
    return env


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="D-Bus/Secret Service is the Linux keyring")
@pytest.mark.parametrize("bus", ["unset", "missing socket", "dead socket"])
def test_no_dbus_session_is_a_clear_error_not_a_plaintext_fallback(tmp_path, bus):
    home = tmp_path / "home"
    address = None
    if bus == "missing socket":
        address = f"unix:path={tmp_path}/no-such-bus"
    elif bus == "dead socket":
        # A socket file nobody listens on any more (a session that ended): connect() is refused.
        path = str(tmp_path / "dead-bus")
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        s.close()
        address = f"unix:path={path}"
    proc = _run_python(
        f"""
        import os, sys, pathlib
        from engagecli.secrets import open_secrets
        from engagecli.errors import SecretStoreError
        store = open_secrets(pathlib.Path({str(home)!r}), os.environ)
        print(store.describe(), file=sys.stderr)
        for op in (lambda: store.set("default/cal_ab12/password", {SECRET!r}),
                   lambda: store.get("default/cal_ab12/password")):
            try:
                op()
            except SecretStoreError as exc:
                print(exc)
            else:
                sys.exit("no error")
        sys.exit(7)
        """,
        env=_env_without_session(tmp_path, address),
    )
    assert proc.returncode == 7, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[0] == lines[1]  # one line, the same for get and set
    message = lines[0]
    assert "no usable OS keyring" in message
    assert "D-Bus" in message
    assert "desktop session" in message and "gnome-keyring" in message
    assert "ENGAGE_SECRETS=file" in message and "less safe" in message
    assert SECRET not in proc.stdout + proc.stderr
    assert "unusable" in proc.stderr  # describe() says so too, without raising
    assert not home.exists() or not _files_under(home)  # nothing written in plaintext instead


def test_unusable_backends_are_refused_lazily():
    from keyring.backends import chainer, fail, null

    class EmptyChainer(chainer.ChainerBackend):
        backends = []  # a chainer that found nothing to chain

    for backend in (fail.Keyring(), null.Keyring(), EmptyChainer()):
        store = KeyringStore(backend=backend)  # constructing is fine ...
        assert "unusable" in store.describe()
        for op in (lambda: store.get("a/b"), lambda: store.set("a/b", SECRET), lambda: store.delete("a/b")):
            with pytest.raises(SecretStoreError) as err:  # ... using is not
                op()
            assert "ENGAGE_SECRETS=file" in str(err.value) and "\n" not in str(err.value)


class _Exploding:
    """A backend whose errors quote the secret, to prove our messages never do."""

    def __init__(self):
        self.seen = {}

    def set_password(self, service, name, value):
        raise RuntimeError(f"backend choked on {value!r} for {service}/{name}")

    def get_password(self, service, name):
        raise RuntimeError("Authorization: Bearer ya29.leaked\ntrace line 2")

    def delete_password(self, service, name):
        from keyring.errors import PasswordDeleteError

        raise PasswordDeleteError("No such password!")


def test_backend_errors_never_carry_the_secret():
    store = KeyringStore(backend=_Exploding())
    with pytest.raises(SecretStoreError) as err:
        store.set("default/cal_ab12/password", SECRET)
    text = str(err.value)
    assert SECRET not in text and "default/cal_ab12/password" in text and "\n" not in text
    with pytest.raises(SecretStoreError) as err:
        store.get("default/cal_ab12/password")
    assert "ya29.leaked" not in str(err.value) and "\n" not in str(err.value)
    store.delete("default/cal_ab12/password")  # deleting what is not there is fine


# ------------------------------------------------------------------------------ the real Secret Service


def _keyring_unavailable() -> str | None:
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return (
            "no D-Bus session (DBUS_SESSION_BUS_ADDRESS is unset): run the tests with tests/run.sh, "
            "with gnome-keyring and dbus installed"
        )
    try:
        KeyringStore().get("engage-tests/probe")
    except SecretStoreError as exc:
        return f"the keyring probe failed: {exc}"
    return None


@pytest.fixture(scope="session")
def keyring_reason() -> str | None:
    return _keyring_unavailable()


@pytest.fixture
def real_keyring(keyring_reason, tmp_path):
    """A KeyringStore on the real Secret Service, and a unique name prefix cleaned up afterwards."""
    if keyring_reason:
        if os.environ.get("ENGAGE_TEST_REQUIRE_KEYRING"):
            pytest.fail(f"tests/run.sh started a Secret Service but {keyring_reason}")
        pytest.skip(keyring_reason)
    store = open_secrets(tmp_path, {})
    prefix = f"engage-tests-{uuid.uuid4().hex[:12]}"
    names: list[str] = []

    def name(what: str) -> str:
        names.append(f"{prefix}/{what}")
        return names[-1]

    yield store, name
    for n in names:
        store.delete(n)


@pytest.mark.keyring
def test_keyring_round_trip(real_keyring, tmp_path):
    store, name = real_keyring
    pw = name("cal_ab12/password")
    assert isinstance(store, KeyringStore)
    assert store.describe() == "OS keyring (SecretService)"
    assert store.get(pw) is None
    store.set(pw, SECRET)
    assert store.get(pw) == SECRET
    store.set(pw, SECRET + "2")  # overwrite, not a second entry
    assert store.get(pw) == SECRET + "2"
    other = name("cal_cd34/refresh_token")
    store.set(other, "1//0g-refresh")
    assert store.get(pw) == SECRET + "2" and store.get(other) == "1//0g-refresh"
    store.delete(pw)
    assert store.get(pw) is None and store.get(other) == "1//0g-refresh"
    store.delete(pw)  # again: fine
    store.delete(name("never/set"))
    assert not _files_under(tmp_path)  # the keyring store writes nothing under ENGAGE_HOME


@pytest.mark.keyring
def test_keyring_entries_are_in_the_secret_service_under_engage(real_keyring):
    import secretstorage

    store, name = real_keyring
    pw = name("cal_ab12/password")
    store.set(pw, SECRET)
    conn = secretstorage.dbus_init()
    try:
        items = list(secretstorage.search_items(conn, {"service": "engage", "username": pw}))
        assert len(items) == 1
        assert items[0].get_secret().decode() == SECRET
    finally:
        conn.close()


@pytest.mark.keyring
def test_keyring_value_survives_into_a_new_process(real_keyring, tmp_path):
    store, name = real_keyring
    mine, theirs = name("cal_ab12/password"), name("cal_cd34/refresh_token")
    store.set(mine, SECRET)
    code = f"""
        import os, pathlib, sys
        from engagecli.secrets import open_secrets
        store = open_secrets(pathlib.Path({str(tmp_path)!r}), os.environ)
        print(store.get({mine!r}) == {SECRET!r})
        store.set({theirs!r}, "from-the-child")
        store.delete({mine!r})
        """
    env = {k: v for k, v in os.environ.items() if k not in ("ENGAGE_SECRETS", "PYTHON_KEYRING_BACKEND")}
    proc = _run_python(code, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"
    assert SECRET not in proc.stdout + proc.stderr
    fresh = open_secrets(tmp_path, {})
    assert fresh.get(theirs) == "from-the-child"
    assert fresh.get(mine) is None


KEYRING_TOOLS = shutil.which("dbus-run-session") and shutil.which("gnome-keyring-daemon")


@pytest.mark.keyring
@pytest.mark.skipif(not KEYRING_TOOLS, reason="needs dbus-run-session and gnome-keyring-daemon")
def test_locked_keyring_without_a_terminal_is_a_clear_error(tmp_path):
    # A private session with its own gnome-keyring, so locking it cannot disturb the other tests.
    (tmp_path / "data").mkdir(mode=0o700)
    (tmp_path / "run").mkdir(mode=0o700)
    child = textwrap.dedent(
        f"""
        import os, pathlib, sys
        import secretstorage
        from engagecli.secrets import open_secrets
        from engagecli.errors import SecretStoreError
        store = open_secrets(pathlib.Path({str(tmp_path / "home")!r}), os.environ)
        store.set("default/cal_ab12/password", {SECRET!r})
        conn = secretstorage.dbus_init()
        secretstorage.get_default_collection(conn).lock()
        conn.close()
        try:
            open_secrets(pathlib.Path({str(tmp_path / "home")!r}), os.environ).get("default/cal_ab12/password")
        except SecretStoreError as exc:
            print(exc)
            sys.exit(7)
        sys.exit("read a locked keyring without asking")
        """
    )
    script = (
        'echo pw | XDG_DATA_HOME="$1/data" XDG_RUNTIME_DIR="$1/run" '
        "gnome-keyring-daemon --unlock --components=secrets >/dev/null; "
        'exec "$2" -c "$3"'
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DBUS_SESSION_BUS_ADDRESS", "PYTHON_KEYRING_BACKEND")}
    proc = subprocess.run(
        ["dbus-run-session", "--", "sh", "-c", script, "sh", str(tmp_path), sys.executable, child],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 7, proc.stdout + proc.stderr
    message = proc.stdout.strip()
    assert "\n" not in message and "locked" in message and "ENGAGE_SECRETS=file" in message
    assert SECRET not in proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------ file store


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask():
    old = os.umask(0)  # the store must not rely on the umask for its permissions
    try:
        yield
    finally:
        os.umask(old)


def test_file_store_round_trip_and_permissions(tmp_path, loose_umask):
    home = tmp_path / "engage-home"
    store = open_secrets(home, {"ENGAGE_SECRETS": "file"})
    assert "less safe" in store.describe() and FILE_NAME in store.describe()
    assert store.get("default/cal_ab12/password") is None
    store.delete("default/cal_ab12/password")
    assert not (home / FILE_NAME).exists()  # deleting nothing writes nothing
    store.set("default/cal_ab12/password", SECRET)
    store.set("default/cal_cd34/refresh_token", "1//0g")
    assert _mode(home) == 0o700
    assert _mode(home / FILE_NAME) == 0o600
    again = open_secrets(home, {"ENGAGE_SECRETS": "file"})
    assert again.get("default/cal_ab12/password") == SECRET
    again.delete("default/cal_ab12/password")
    again.delete("default/cal_ab12/password")
    assert store.get("default/cal_ab12/password") is None
    assert store.get("default/cal_cd34/refresh_token") == "1//0g"
    assert _mode(home / FILE_NAME) == 0o600
    assert json.loads((home / FILE_NAME).read_text())["secrets"] == {"default/cal_cd34/refresh_token": "1//0g"}


def test_file_store_tightens_an_existing_home_and_file(tmp_path, loose_umask):
    home = tmp_path / "engage-home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    store = FileStore(home)
    store.set("a/b", SECRET)
    assert _mode(home) == 0o700
    os.chmod(home / FILE_NAME, 0o644)
    assert store.get("a/b") == SECRET
    assert _mode(home / FILE_NAME) == 0o600


def test_file_store_secret_is_in_no_other_file(tmp_path, loose_umask):
    home = tmp_path / "engage-home"
    (home / "data").mkdir(parents=True)
    (home / "config.toml").write_text("profile = 'default'\n")
    store = FileStore(home)
    for i in range(5):
        store.set(f"default/cal_{i}/password", f"{SECRET}-{i}")
    store.delete("default/cal_0/password")
    forms = [SECRET.encode(), json.dumps(SECRET)[1:-1].encode(), SECRET.encode("unicode_escape")]
    holders = [p for p in _files_under(tmp_path) if any(f in p.read_bytes() for f in forms)]
    assert holders == [home / FILE_NAME]
    for p in _files_under(home):  # every file the store made is private
        if p.name != "config.toml":
            assert _mode(p) == 0o600, p


def test_file_store_write_is_atomic(tmp_path, monkeypatch):
    home = tmp_path / "engage-home"
    store = FileStore(home)
    store.set("a/old", "old-value")
    before = (home / FILE_NAME).read_bytes()

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("engagecli.secrets.os.replace", crash)
    with pytest.raises(SecretStoreError) as err:
        store.set("a/new", SECRET)
    assert SECRET not in str(err.value) and "No space left" in str(err.value)
    monkeypatch.undo()
    assert (home / FILE_NAME).read_bytes() == before  # the old file, whole
    assert sorted(p.name for p in home.iterdir()) == ["secrets.json", "secrets.lock"]  # no temp left
    assert store.get("a/new") is None and store.get("a/old") == "old-value"


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_file_store_survives_a_writer_killed_mid_write(tmp_path):
    home = tmp_path / "engage-home"
    store = FileStore(home)
    store.set("seed/x", "seed")
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import pathlib, sys
                from engagecli.secrets import FileStore
                store = FileStore(pathlib.Path({str(home)!r}))
                print("go", flush=True)
                i = 0
                while True:
                    i += 1
                    store.set(f"bulk/{{i % 50}}", {SECRET!r} * 200 + str(i))
                """
            ),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "go"
        time.sleep(0.3)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        writer.stdout.close()
    doc = json.loads((home / FILE_NAME).read_text())  # whole, valid JSON at any moment
    assert doc["secrets"]["seed/x"] == "seed"
    assert _mode(home / FILE_NAME) == 0o600
    store.set("after/kill", "v")  # the next writer clears any temp file the killed one left
    assert sorted(p.name for p in home.iterdir()) == ["secrets.json", "secrets.lock"]
    assert store.get("after/kill") == "v"


def test_file_store_concurrent_writers_lose_nothing(tmp_path):
    home = tmp_path / "engage-home"
    code = """
        import pathlib, sys
        from engagecli.secrets import FileStore
        store = FileStore(pathlib.Path(sys.argv[1]))
        for i in range(40):
            store.set(f"{sys.argv[2]}/{i}", "v" + str(i))
        """
    procs = [
        subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(home), who], stdin=subprocess.DEVNULL)
        for who in ("cron", "link", "other")
    ]
    assert [p.wait(60) for p in procs] == [0, 0, 0]
    assert len(json.loads((home / FILE_NAME).read_text())["secrets"]) == 120


def test_damaged_file_is_an_error_that_quotes_nothing(tmp_path):
    home = tmp_path / "engage-home"
    home.mkdir(mode=0o700)
    (home / FILE_NAME).write_text('{"version": 1, "secrets": {"a/b": "' + SECRET)
    os.chmod(home / FILE_NAME, 0o600)
    with pytest.raises(SecretStoreError) as err:
        FileStore(home).get("a/b")
    assert "damaged" in str(err.value) and SECRET not in str(err.value)


# ---------------------------------------------------------------------------------------------- redact


@pytest.mark.parametrize(
    "text, secret, kept",
    [
        ("GET /?state=st4te&code=4/0AbCdEf-gh_ij&scope=cal HTTP/1.1", "4/0AbCdEf-gh_ij", "state=st4te"),
        ("Authorization: Bearer ya29.a0AfH6SMB-xyz\r\nHost: x", "ya29.a0AfH6SMB-xyz", "Host: x"),
        ("{'Authorization': 'Bearer ya29.tok', 'Accept': 'application/json'}", "ya29.tok", "'Accept'"),
        ("authorization: Basic Ym9iOmh1bnRlcjI=", "Ym9iOmh1bnRlcjI", "authorization"),
        ("send: b'... bearer eyJ0eXAi.eyJzdWIi.c2ln ...'", "eyJ0eXAi.eyJzdWIi.c2ln", "send"),
        ('{"access_token": "ya29.acc", "expires_in": 3599, "token_type": "Bearer"}', "ya29.acc", '"expires_in": 3599'),
        ('{"refresh_token":"1//0gRefresh","scope":"cal"}', "1//0gRefresh", '"scope":"cal"'),
        ("grant_type=refresh_token&refresh_token=1%2F%2F0gRT&client_id=cid", "1%2F%2F0gRT", "client_id=cid"),
        ("client_id=cid&client_secret=GOCSPX-abc123&code=4%2F0Ab", "GOCSPX-abc123", "client_id=cid"),
        ("client_id=cid&client_secret=GOCSPX-abc123&code=4%2F0Ab", "4%2F0Ab", "client_id=cid"),
        ("{'password': 'hunter2', 'user': 'bob'}", "hunter2", "'user': 'bob'"),
        ("caldav password: hunter2 for bob", "hunter2", "for bob"),
        ("https://bob:hunter2@cal.example.com/dav/", "hunter2", "bob:"),
        ('{"error": {"code": "InvalidAuthenticationToken", "message": "expired"}}', None, "InvalidAuthenticationToken"),
        ("device flow: user_code=ABCD-EFGH verification_uri=https://microsoft.com/devicelogin", None, "ABCD-EFGH"),
    ],
)
def test_redact(text, secret, kept):
    out = redact(text)
    if secret is not None:
        assert secret not in out and "***" in out
    else:
        assert out == text
    assert kept in out
    assert redact(out) == out  # redacting twice changes nothing


def test_redact_leaves_plain_text_alone():
    text = "synced 3 calendars in 1.2 s; next sync token stored; status code 200"
    assert redact(text) == text
    assert redact("") == ""
