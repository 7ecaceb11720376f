"""Where engage keeps secrets: CalDAV passwords, OAuth refresh tokens, the MSAL cache key.

Two stores behind one small interface (`SecretStore`):

- `KeyringStore` (default, `ENGAGE_SECRETS` unset or `keyring`): the OS store through `keyring`
  (Secret Service on Linux, Keychain on macOS, Credential Locker on Windows), service name "engage",
  one entry per name such as "default/cal_ab12/password". An unusable backend (none found, the null
  backend, no D-Bus session under cron/SSH/containers, a locked keyring nobody can unlock) raises
  `SecretStoreError` with one line that says what to do. It never falls back to a file by itself.
  The backend is looked at lazily, on the first get/set/delete, not when the store is made.
- `FileStore` (`ENGAGE_SECRETS=file`, an explicit opt-in): one JSON file `<home>/secrets.json`,
  0600 from the moment it exists, in a 0700 folder, replaced atomically. No other file holds a secret.

`redact()` hides tokens, passwords and codes in text meant for debug output and logs.

`keyring` (and `secretstorage`) are imported inside functions only: importing them costs ~100 ms and
most commands never touch a secret.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from engagecli.errors import SecretStoreError, UsageError

SERVICE = "engage"
FILE_NAME = "secrets.json"
LOCK_NAME = "secrets.lock"  # empty; only ever locked, never holds a secret
_FILE_FORMAT = 1

_FILE_HINT = "or opt in to ENGAGE_SECRETS=file: a 0600 file under ENGAGE_HOME, less safe"
_SESSION_HINT = (
    "run engage inside your desktop session, or start a D-Bus session and unlock gnome-keyring in it, " + _FILE_HINT
)


class SecretStore:
    """A place for secrets, addressed by name ("<profile>/<calendar id>/<what>")."""

    def get(self, name: str) -> str | None:
        raise NotImplementedError

    def set(self, name: str, value: str) -> None:
        raise NotImplementedError

    def delete(self, name: str) -> None:
        """Forget `name`; forgetting a name that holds nothing is fine."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for humans: which store this is and how safe it is."""
        raise NotImplementedError


def open_secrets(home: Path, environ: Mapping[str, str]) -> SecretStore:
    """The store `ENGAGE_SECRETS` asks for. Cheap: nothing is imported or probed yet."""
    choice = (environ.get("ENGAGE_SECRETS") or "keyring").strip().lower()
    if choice == "keyring":
        return KeyringStore()
    if choice == "file":
        return FileStore(Path(home))
    raise UsageError(
        f"ENGAGE_SECRETS={environ.get('ENGAGE_SECRETS')!r} is not a secret store",
        hint="use ENGAGE_SECRETS=keyring, the default, or ENGAGE_SECRETS=file",
    )


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or name != name.strip() or "\n" in name:
        raise ValueError(f"bad secret name {name!r}")


def _check_value(value: str) -> None:
    if not isinstance(value, str):
        raise TypeError("a secret value must be a str")


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clean(exc: BaseException, *secrets: str) -> str:
    """A short, one-line, redacted description of `exc` that cannot contain `secrets`."""
    text = str(exc)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _one_line(redact(text))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------------------------- keyring


class KeyringStore(SecretStore):
    """The OS keyring through `keyring`. `backend` is for tests; by default keyring chooses
    (honouring PYTHON_KEYRING_BACKEND and keyringrc.cfg)."""

    def __init__(self, service: str = SERVICE, backend: object | None = None):
        self.service = service
        self._backend = backend
        self._ready = False

    # The first use checks the backend once; later calls go straight to it.
    def _keyring(self):
        if self._backend is None:
            import keyring

            self._backend = keyring.get_keyring()
        if not self._ready:
            _check_backend(self._backend)
            self._ready = True
        return self._backend

    def get(self, name: str) -> str | None:
        _check_name(name)
        backend = self._keyring()
        try:
            return backend.get_password(self.service, name)
        except Exception as exc:
            raise self._failed("read", name, exc) from None

    def set(self, name: str, value: str) -> None:
        _check_name(name)
        _check_value(value)
        backend = self._keyring()
        try:
            backend.set_password(self.service, name, value)
        except Exception as exc:
            raise self._failed("store", name, exc, value) from None

    def delete(self, name: str) -> None:
        _check_name(name)
        backend = self._keyring()
        from keyring.errors import PasswordDeleteError

        try:
            backend.delete_password(self.service, name)
        except PasswordDeleteError:
            return  # nothing stored under that name
        except Exception as exc:
            raise self._failed("delete", name, exc) from None

    def describe(self) -> str:
        if self._backend is None:
            import keyring

            self._backend = keyring.get_keyring()
        reason = _unusable_reason(self._backend)
        if reason:
            return f"OS keyring (unusable: {reason})"
        return f"OS keyring ({_backend_label(self._backend)})"

    def _failed(self, verb: str, name: str, exc: BaseException, *secrets: str) -> SecretStoreError:
        from keyring.errors import KeyringLocked

        if isinstance(exc, KeyringLocked):
            return SecretStoreError(
                f"could not {verb} secret {name!r}: the OS keyring is locked",
                hint=f"unlock it from your desktop session, {_FILE_HINT}",
            )
        return SecretStoreError(
            f"could not {verb} secret {name!r} in the OS keyring ({_backend_label(self._backend)}): "
            f"{_clean(exc, *secrets)}",
            hint=f"check that the keyring is running and unlocked, {_FILE_HINT}",
        )


def _backend_label(backend: object) -> str:
    """'SecretService', 'macOS', 'Windows', 'kwallet', 'chainer(SecretService, ...)'."""
    mod = type(backend).__module__
    label = mod.rsplit(".", 1)[-1] if mod.startswith("keyring.backends.") else f"{mod}.{type(backend).__name__}"
    inner = getattr(backend, "backends", None)
    if label == "chainer" and inner is not None:
        return "chainer(" + ", ".join(_backend_label(b) for b in inner) + ")"
    return label


def _unusable_reason(backend: object) -> str | None:
    """Why this backend cannot hold a secret, or None when it looks usable."""
    from keyring.backends import chainer, fail, null

    if isinstance(backend, fail.Keyring):
        if sys.platform.startswith("linux") or "bsd" in sys.platform:
            if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
                return "no D-Bus session, as usual under cron, SSH or in a container"
            return "no Secret Service reachable on the D-Bus session"
        return "no keyring backend found"
    if isinstance(backend, null.Keyring):
        return "the null keyring is configured, and it stores nothing"
    if isinstance(backend, chainer.ChainerBackend):
        inner = list(getattr(backend, "backends", []))
        if not inner:
            return "no keyring backend found"
        reasons = [_unusable_reason(b) for b in inner]
        if all(reasons):
            return reasons[0]
    return None


def _check_backend(backend: object) -> None:
    reason = _unusable_reason(backend)
    if reason:
        raise SecretStoreError(
            f"no usable OS keyring: {reason}",
            hint=_SESSION_HINT,
        )
    for b in getattr(backend, "backends", None) or [backend]:
        if type(b).__module__ == "keyring.backends.SecretService":
            _probe_secret_service(b)


def _interactive() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):
        return False


def _probe_secret_service(backend: object) -> None:
    """Reach the Secret Service and look at its collection, without prompting.

    keyring only checks that the service answers; a locked collection would make it pop up an unlock
    prompt (and wait for it) on the first real call. Without a terminal (cron, sync in the background)
    nobody can answer that, so say so now. On a terminal, let keyring prompt as usual.
    """
    import secretstorage
    from secretstorage import exceptions as ssx

    hint = _SESSION_HINT
    try:
        conn = secretstorage.dbus_init()
    except Exception as exc:
        raise SecretStoreError(
            f"no usable OS keyring: the D-Bus session cannot be reached: {_clean(exc)}", hint=hint
        ) from None
    with contextlib.closing(conn):
        try:
            if not secretstorage.check_service_availability(conn):
                raise SecretStoreError(
                    "no usable OS keyring: no Secret Service such as gnome-keyring or KeePassXC on the D-Bus session",
                    hint=hint,
                )
            path = getattr(backend, "preferred_collection", None) or secretstorage.collection.DEFAULT_COLLECTION
            try:
                locked = secretstorage.Collection(conn, path).is_locked()
            except ssx.ItemNotFoundException:
                if _interactive():
                    return  # keyring will offer to create it
                raise SecretStoreError(
                    "no usable OS keyring: the Secret Service has no default keyring yet",
                    hint=f"create and unlock one in your desktop session, {_FILE_HINT}",
                ) from None
        except SecretStoreError:
            raise
        except Exception as exc:
            raise SecretStoreError(
                f"no usable OS keyring: the Secret Service did not answer: {_clean(exc)}", hint=hint
            ) from None
    if locked and not _interactive():
        raise SecretStoreError(
            "the OS keyring is locked and there is no terminal to unlock it from",
            hint=f"unlock it from your desktop session or with gnome-keyring-daemon --unlock, {_FILE_HINT}",
        )


# ------------------------------------------------------------------------------------------------ file


class FileStore(SecretStore):
    """All secrets in one JSON file, 0600, in a 0700 folder. Less safe than a keyring: anyone who can
    read the file (root, a backup) has the tokens. Chosen only with ENGAGE_SECRETS=file."""

    def __init__(self, home: Path):
        self.home = Path(home)
        self.path = self.home / FILE_NAME
        self._exclusive = False  # True while this process holds the writers' lock

    def get(self, name: str) -> str | None:
        _check_name(name)
        return self._read().get(name)

    def set(self, name: str, value: str) -> None:
        _check_name(name)
        _check_value(value)
        with self._locked():
            data = self._read()
            if data.get(name) == value:
                return
            data[name] = value
            self._write(data)

    def delete(self, name: str) -> None:
        _check_name(name)
        if not self.path.exists():
            return
        with self._locked():
            data = self._read()
            if name in data:
                del data[name]
                self._write(data)

    def describe(self) -> str:
        return f"file {_display(self.path)} (0600, less safe)"

    # -- helpers

    def _read(self) -> dict[str, str]:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise SecretStoreError(
                f"cannot read the secrets file {_display(self.path)}: {exc.strerror}",
                hint="check its owner and permissions: it should be yours, mode 0600",
            ) from None
        with os.fdopen(fd, "rb") as fh:
            _tighten(fh.fileno(), 0o600)
            raw = fh.read()
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            doc = None
        secrets = doc.get("secrets") if isinstance(doc, dict) else None
        if not isinstance(secrets, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in secrets.items()
        ):
            raise SecretStoreError(
                f"the secrets file {_display(self.path)} is damaged",
                hint="move it away, then link the calendars again with engage link",
            )
        return dict(secrets)

    def _ensure_home(self) -> None:
        try:
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = self.home.stat()
            if st.st_mode & 0o077 and (not hasattr(os, "getuid") or st.st_uid == os.getuid()):
                os.chmod(self.home, 0o700)
        except OSError as exc:
            raise SecretStoreError(
                f"cannot prepare the folder {_display(self.home)} for the secrets file: {exc.strerror}",
                hint="check ENGAGE_HOME and its permissions",
            ) from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time (a cron sync and an interactive link may both store tokens)."""
        self._ensure_home()
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; writes are still atomic
            yield
            return
        fd = os.open(self.home / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._exclusive = True
            yield
        finally:
            self._exclusive = False
            os.close(fd)  # releases the lock

    def _write(self, secrets: dict[str, str]) -> None:
        # A writer killed between mkstemp and os.replace leaves a temp file holding secrets; we hold the
        # lock, so any temp file here is such a leftover.
        for stale in self.home.glob(".secrets.*.tmp") if self._exclusive else ():
            with contextlib.suppress(OSError):
                stale.unlink()
        body = json.dumps(
            {"version": _FILE_FORMAT, "secrets": secrets}, indent=1, sort_keys=True, ensure_ascii=False
        ).encode("utf-8")
        # mkstemp creates the file 0600 (O_EXCL) in the same folder, so os.replace is atomic and the
        # secret is never readable by others, not even for a moment.
        fd, tmp = tempfile.mkstemp(dir=self.home, prefix=".secrets.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                _tighten(fh.fileno(), 0o600)
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise SecretStoreError(
                    f"cannot write the secrets file {_display(self.path)}: {exc.strerror}",
                    hint="check free space and the folder's permissions",
                ) from None
            raise
        _fsync_dir(self.home)


def _tighten(fd: int, mode: int) -> None:
    if not hasattr(os, "fchmod"):
        return
    st = os.fstat(fd)
    if st.st_mode & 0o777 & ~mode:
        with contextlib.suppress(OSError):
            os.fchmod(fd, mode)


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _display(path: Path) -> str:
    try:
        return "~/" + str(Path(path).relative_to(Path.home()))
    except (ValueError, RuntimeError):
        return str(path)


# ---------------------------------------------------------------------------------------------- redact

_MASK = "***"
# Keys whose values are secrets, in query strings, form bodies, JSON and dict reprs.
_JSON_KEYS = (
    r"access_token|refresh_token|id_token|client_secret|client_assertion|assertion|"
    r"device_code|code_verifier|password|passwd|pwd|secret|api_key|apikey"
)
# "code" only as code=... (OAuth redirects and token requests); in JSON, "code" is an error code.
_SECRET_KEYS = _JSON_KEYS + "|code"
# "Authorization: Bearer x", "'Authorization': 'Basic x'", "authorization=..." (header, dict repr, curl):
# everything after the scheme up to the end of the line or the closing quote.
_AUTH_HEADER = re.compile(
    r"""(?P<head>\b(?:proxy-)?authorization["']?\s*[:=]\s*["']?)"""
    r"""(?:(?P<scheme>bearer|basic|digest|negotiate|ntlm|token|mac)\s+)?"""
    r"""(?P<cred>[^\r\n"'}]+)""",
    re.IGNORECASE,
)
_BEARER = re.compile(r"\b(?P<scheme>bearer)\s+(?P<cred>[A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)
# "code=abc", "&refresh_token=abc" (query strings, form bodies, log lines)
_QUERY = re.compile(rf"(?<![\w-])(?P<key>{_SECRET_KEYS})=(?P<val>[^&\s\"'<>,;)}}\]]+)", re.IGNORECASE)
# '"refresh_token": "abc"', "'password': 'abc'", '"code":"abc"'
_QUOTED = re.compile(
    rf"""(?P<key>(?P<q>["'])(?:{_JSON_KEYS})(?P=q)\s*:\s*)(?P<val>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,}}\]]+)""",
    re.IGNORECASE,
)
# "password: abc" (unquoted key with a colon; not for "code", which is too common in ordinary text)
_COLON = re.compile(
    r"(?<![\w-])(?P<key>(?:access_token|refresh_token|id_token|client_secret|password|passwd)\s*:\s*)"
    r"(?P<val>[^\s\"',}\]]+)",
    re.IGNORECASE,
)
# https://user:password@host
_USERINFO = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@", re.IGNORECASE)


def _mask_quoted(m: re.Match) -> str:
    val = m.group("val")
    if val[:1] in "\"'" and len(val) >= 2:
        return m.group("key") + val[0] + _MASK + val[0]
    return m.group("key") + _MASK


def _mask_header(m: re.Match) -> str:
    scheme = m.group("scheme")
    return m.group("head") + (f"{scheme} " if scheme else "") + _MASK


def redact(text: str) -> str:
    """`text` with credentials replaced by ***: Authorization headers and bearer tokens, and the values of
    code, access_token, refresh_token, id_token, client_secret, password and the like, wherever they
    appear as key=value, "key": "value" or key: value; and passwords in URLs."""
    if not text:
        return text
    text = _AUTH_HEADER.sub(_mask_header, text)
    text = _BEARER.sub(lambda m: f"{m.group('scheme')} {_MASK}", text)
    text = _QUOTED.sub(_mask_quoted, text)
    text = _QUERY.sub(lambda m: f"{m.group('key')}={_MASK}", text)
    text = _COLON.sub(lambda m: m.group("key") + _MASK, text)
    text = _USERINFO.sub(lambda m: m.group("head") + _MASK + "@", text)
    return text
