"""Google Calendar (v3, plain REST over google-auth's AuthorizedSession) and its OAuth link flow.

Imported only when a Google calendar is used; google.* / google_auth_oauthlib / requests are imported inside
functions so that even importing this module stays cheap.

Scopes: `calendar.events` (read busy time and write our copies) + `calendar.calendarlist.readonly` (list the
calendars to pick one and learn the account's address from the primary calendar's id). Narrower options were
rejected: `calendar.events.owned` only covers calendars the user *owns*, so an advisor could not link a team
calendar shared with them; `calendar.app.created` only sees calendars the app created, so it cannot read the
advisor's real busy time. `calendar.events.readonly` cannot write copies.

Endpoints: ENGAGE_GOOGLE_AUTH_URL, ENGAGE_GOOGLE_TOKEN_URL and ENGAGE_GOOGLE_API_URL (the root; Calendar lives
under calendar/v3/, batch at batch/calendar/v3) override the real ones; tests point them at a local fake.

Pulls: events.list with singleEvents=true. A full pull (no cursor) lists the window (timeMin/timeMax) and streams
page by page: `PullResult.items` is a generator and `PullResult.cursor` (Google's nextSyncToken, sent on the last
page only) is known once the items were consumed -- read it after iterating (reading it earlier raises).
An incremental pull (syncToken; no timeMin/timeMax allowed then) is read completely before it returns, so a
410 Gone on any page still turns into a clean full pull. Events that moved out of the window on an incremental
pull are reported as deleted. Every page loop (calendarList, events.list full and incremental) is bounded: a page
token seen twice, or more than MAX_PAGES (10,000) pages, is a ProviderError ("kept sending more pages"). Note: a
sync token remembers the window it was started with; instances that enter
the rolling window only because time passed (no edit) are seen on the next full pull.

Copies: the event id is derived from the appointment id ("eng0" + base32hex of its bytes, lower-case, no
padding; a hash when the appointment id is long), so inserting twice answers 409 and we patch instead -- also
when the id belongs to a deleted event (Google keeps deleted ids taken): the patch sets status=confirmed.
Updates PATCH with If-Match; a 412 (someone edited our copy) refetches and overwrites: engage owns its copies.

Batches (put_copies, `batch_size` = 50 of Google's 1000 calls per batch): one POST of multipart/mixed to
batch/calendar/v3 under the API root (built by hand: googleapiclient's batch ignores api_endpoint), each part
`Content-Type: application/http` + `Content-ID: <itemN+tag>` holding an inner request line with the path only,
headers and the JSON body; the answer is multipart/mixed with `Content-ID: <response-itemN+tag>` parts, each an
HTTP status line, headers and body, matched back by Content-ID (by position when a part has none). Every part
resolves like put_copy: 2xx is done; an insert's 409 becomes a patch of our id in the next round (adopting a copy
left by a crash); an update's 404/410 becomes an insert; an update's 412 is refetched and overwritten with single
requests. Parts answering 429/5xx/403 rateLimitExceeded (or missing from the answer) are sent again in a new
batch after a backoff that honours their Retry-After, up to `tries` times per part; a part still failing then is
that item's ProviderError ("kept answering 503"), not Unreachable: the server answered the batch, the other items
went through and must be recorded. Parts answering 401 refresh the access token once and are sent again (a
second 401 needs a relink). A failure of the whole batch request goes through the same retries, refresh and
error mapping as any single call (Unreachable / RelinkNeeded raise). Other 4xx are that item's ProviderError.
"""

from __future__ import annotations

import base64
import email.message
import hashlib
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from urllib.parse import parse_qs, quote, urlsplit

from engagecli.core.models import Occurrence
from engagecli.errors import EngageError, ProviderError, RelinkNeeded, Unreachable, UsageError
from engagecli.providers import http
from engagecli.providers.base import (
    MARKER_KEY,
    CopyRef,
    CopySpec,
    LinkResult,
    PullResult,
    RemoteCalendar,
    RemoteItem,
    iter_chunks,
    secret_name,
)

UTC = timezone.utc

AUTH_URL = "https://accounts.google.com/o/oauth2/auth"
TOKEN_URL = "https://oauth2.googleapis.com/token"
API_URL = "https://www.googleapis.com"
SCOPES = [
    "https://www.googleapis.com/auth/calendar.events",
    "https://www.googleapis.com/auth/calendar.calendarlist.readonly",
]
ENV_CLIENT_SECRETS = "ENGAGE_GOOGLE_CLIENT_SECRETS"
ENV_AUTH_URL = "ENGAGE_GOOGLE_AUTH_URL"
ENV_TOKEN_URL = "ENGAGE_GOOGLE_TOKEN_URL"
ENV_API_URL = "ENGAGE_GOOGLE_API_URL"

WHAT = "Google Calendar"
PAGE_SIZE = 2500  # events.list maxResults upper bound; pages may come back shorter
MAX_PAGES = 10_000  # pages of one listing before we give up on a server that never stops paging
BATCH_SIZE = 50  # calls per batch request we send (Google allows 1000; it advises small batches)
BATCH_LIMIT = 1000
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
RELINK_GRANT_ERRORS = frozenset({"invalid_grant"})
RELINK_CLIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client", "deleted_client"})
COPY_ID_PREFIX = "eng0"
LINK_TIMEOUT_SECONDS = 600
BASE32HEX = set("abcdefghijklmnopqrstuv0123456789")

CLIENT_HINT = (
    "create one in Google Cloud Console: enable the Google Calendar API, then APIs & Services > Credentials > "
    "Create credentials > OAuth client ID > Application type 'Desktop app', download the JSON and pass it with "
    f"--client-secrets FILE (or set {ENV_CLIENT_SECRETS})"
)


# --- small helpers -------------------------------------------------------------------------------------------

def _env(environ, name: str, default: str | None = None) -> str | None:
    value = (environ or {}).get(name)
    return value.strip() if value and value.strip() else default


def copy_event_id(appointment_id: str) -> str:
    """Our event id for the copy of `appointment_id`: only base32hex characters (a-v, 0-9), 5..1024 long."""
    raw = appointment_id.encode("utf-8")
    encoded = base64.b32hexencode(raw).decode("ascii").rstrip("=").lower()
    if len(COPY_ID_PREFIX) + len(encoded) > 1024:
        digest = base64.b32hexencode(hashlib.sha256(raw).digest()).decode("ascii").rstrip("=").lower()
        return COPY_ID_PREFIX + "h" + digest
    return COPY_ID_PREFIX + encoded


def _rfc3339(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:  # Google always sends an offset; be lenient anyway
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _error_reasons(response) -> tuple[set[str], str]:
    """The `reason`s and the message of a Google JSON error answer (both empty when it is not one)."""
    try:
        body = response.json()
    except ValueError:
        return set(), ""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return set(), ""
    reasons = {e.get("reason") for e in error.get("errors") or [] if isinstance(e, dict) and e.get("reason")}
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("reason"):
            reasons.add(detail["reason"])
    if error.get("status"):
        reasons.add(error["status"])
    return reasons, str(error.get("message") or "")[:200]


def _is_rate_limited(response) -> bool:
    if response.status_code != 403:
        return False
    reasons, _ = _error_reasons(response)
    return bool(reasons & RATE_LIMIT_REASONS) or "RATE_LIMIT_EXCEEDED" in reasons


def _window_key(window: tuple[datetime, datetime]) -> str:
    return f"{int(window[0].timestamp())}-{int(window[1].timestamp())}"


class _StreamedPull(PullResult):
    """A full pull whose items stream page by page; `cursor` (the nextSyncToken of the last page) exists only
    once the items were consumed."""

    def __init__(self, items_factory):
        self._done = False
        self._cursor_value = None
        super().__init__(items=items_factory(self), deleted=[], full=True, cursor=None)

    @property
    def cursor(self):  # type: ignore[override]
        if not self._done:
            raise ProviderError("internal: the Google pull's cursor was read before its items were consumed",
                                hint="iterate PullResult.items first, then read PullResult.cursor")
        return self._cursor_value

    @cursor.setter
    def cursor(self, value):
        self._cursor_value = value

    def __repr__(self) -> str:
        return f"<streamed Google pull, {'consumed' if self._done else 'not consumed yet'}>"


# --- batch wire format -----------------------------------------------------------------------------------------

class _PartResponse:
    """One inner HTTP response of a batch answer; quacks like requests.Response for the error helpers above."""

    def __init__(self, status_code: int, headers: dict, content: bytes):
        from requests.structures import CaseInsensitiveDict

        self.status_code = status_code
        self.headers = CaseInsensitiveDict(headers)
        self.content = content

    def json(self):
        return json.loads(self.content)

    def __repr__(self) -> str:
        return f"<batch part {self.status_code}>"


def _split_head(data: bytes) -> tuple[list[str], bytes]:
    """Header lines (up to the first empty line) and what follows it."""
    m = re.search(rb"\r?\n\r?\n", data)
    head, rest = (data, b"") if m is None else (data[:m.start()], data[m.end():])
    lines: list[str] = []
    for line in head.decode("latin-1").splitlines():
        if line[:1] in (" ", "\t") and lines:  # folded header
            lines[-1] += " " + line.strip()
        elif line.strip():
            lines.append(line)
    return lines, rest


def _header_dict(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out


def _batch_request(parts: list[tuple[str, str, str, dict, bytes]]) -> tuple[str, bytes]:
    """(content type, body) of a batch request; parts are (content id, method, path, headers, body)."""
    boundary = "batch_engage_" + secrets.token_hex(12)
    out: list[bytes] = []
    for content_id, method, path, headers, body in parts:
        inner = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()),
                 f"Content-Length: {len(body)}"]
        out.append((f"--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
                    f"Content-ID: <{content_id}>\r\n\r\n" + "\r\n".join(inner) + "\r\n\r\n").encode("utf-8"))
        out.append(body + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode("ascii"))
    return f"multipart/mixed; boundary={boundary}", b"".join(out)


def _batch_answer(response) -> list[tuple[str | None, _PartResponse]]:
    """The parts of a batch answer: (the request's content id, or None when the part has none; the response)."""
    bad = ProviderError(f"{WHAT} answered a batch request with something that is not a batch answer",
                        hint="run `engage sync` again")
    ctype = email.message.Message()
    ctype["Content-Type"] = response.headers.get("Content-Type") or ""
    boundary = ctype.get_param("boundary")
    if ctype.get_content_type() != "multipart/mixed" or not isinstance(boundary, str) or not boundary:
        raise bad
    pieces = re.split(rb"\r?\n--" + re.escape(boundary.encode("latin-1")), b"\r\n" + (response.content or b""))
    out: list[tuple[str | None, _PartResponse]] = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):  # the close delimiter
            break
        piece = piece.partition(b"\n")[2]  # the rest of the delimiter line (transport padding)
        part_head, inner = _split_head(piece)
        content_id = _header_dict(part_head).get("content-id", "").strip().strip("<>").strip() or None
        if content_id and content_id.startswith("response-"):
            content_id = content_id[len("response-"):]
        inner_head, body = _split_head(inner)
        if not inner_head or not inner_head[0].startswith("HTTP/"):
            raise bad
        try:
            status = int(inner_head[0].split()[1])
        except (IndexError, ValueError):
            raise bad from None
        out.append((content_id, _PartResponse(status, _header_dict(inner_head[1:]), body)))
    return out


@dataclass
class _Job:
    """One copy inside put_copies: what to send for it next.

    kind: "update" (PATCH the recorded copy, If-Match its etag), "insert" (POST with our id), "adopt" (PATCH our
    id without a condition after the insert answered 409)."""

    index: int
    spec: CopySpec
    kind: str
    event_id: str
    etag: str | None = None
    failures: int = 0


# --- the API client --------------------------------------------------------------------------------------------

class GoogleApi:
    """Plain REST calls to Calendar v3 through an AuthorizedSession: retries, error mapping, no token in messages."""

    def __init__(self, credentials, api_url: str, account: str, *, sleep=time.sleep):
        from google.auth.transport.requests import AuthorizedSession

        from engagecli import __version__

        self.session = AuthorizedSession(credentials, refresh_timeout=60)
        self.session.headers["User-Agent"] = f"engage/{__version__}"
        self.base = api_url.rstrip("/") + "/calendar/v3"
        self.batch_url = api_url.rstrip("/") + "/batch/calendar/v3"
        self.account = account or "this Google account"
        self.sleep = sleep
        self.tries = 5

    def url(self, *parts: str) -> str:
        return self.base + "/" + "/".join(quote(p, safe="") for p in parts)

    def send(self, method: str, url: str, *, ok=(200,), allow=(), **kwargs):
        """One API call with retries. Returns the response when its status is in `ok` or `allow`;
        raises RelinkNeeded / Unreachable / ProviderError otherwise."""
        import google.auth.exceptions as gexc


        try:
            response = http.request(self.session, method, url, what=WHAT, tries=self.tries,
                                    should_retry=_is_rate_limited, sleep=self.sleep, **kwargs)
        except gexc.RefreshError as exc:
            raise self._refresh_error(exc) from None
        except gexc.TransportError:
            raise Unreachable(f"{WHAT}'s sign-in server could not be reached",
                              hint="check the network and run `engage sync` again") from None
        status = response.status_code
        if status in ok or status in allow:
            return response
        raise self._status_error(response)

    def refresh(self) -> None:
        """Get a new access token now (batch parts answering 401: the session only refreshes on a whole 401)."""
        import google.auth.exceptions as gexc
        from google.auth.transport.requests import Request

        try:
            self.session.credentials.refresh(getattr(self.session, "_auth_request", None) or Request())
        except gexc.RefreshError as exc:
            raise self._refresh_error(exc) from None
        except gexc.TransportError:
            raise Unreachable(f"{WHAT}'s sign-in server could not be reached",
                              hint="check the network and run `engage sync` again") from None

    def _refresh_error(self, exc) -> EngageError:
        data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
        code = str(data.get("error") or "")
        if not code and exc.args and isinstance(exc.args[0], str):
            code = exc.args[0].split(":", 1)[0].strip()
        if code in RELINK_GRANT_ERRORS:
            return RelinkNeeded(f"Google refused the stored grant for {self.account}; run `engage link google` again")
        if code in RELINK_CLIENT_ERRORS:
            return RelinkNeeded(f"Google no longer accepts the OAuth client used for {self.account} ({code}); "
                                "run `engage link google --client-secrets FILE` again with a valid Desktop-app client")
        if getattr(exc, "retryable", False) or not code:
            return Unreachable(f"{WHAT}'s sign-in server failed to refresh the access for {self.account}",
                               hint="run `engage sync` again later")
        return RelinkNeeded(f"Google refused to refresh the access for {self.account} ({code}); "
                            "run `engage link google` again")

    def _status_error(self, response) -> EngageError:
        status = response.status_code
        reasons, message = _error_reasons(response)
        if status == 401:
            return RelinkNeeded(f"Google rejected the credentials for {self.account}; run `engage link google` again")
        if status == 403 and reasons & {"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"}:
            return RelinkNeeded(f"the Google grant for {self.account} lacks calendar access; run "
                                "`engage link google` again and allow every calendar permission asked for")
        if status == 429 or status >= 500 or _is_rate_limited(response):
            return Unreachable(f"{WHAT} kept answering {status} after {self.tries} tries",
                               hint="run `engage sync` again later")
        detail = ", ".join(sorted(reasons)) or message or "no detail"
        hint = None
        if status == 403:
            hint = "check that the calendar is yours or shared with you with permission to make changes"
        elif status == 404:
            hint = "the calendar may have been deleted or unshared; run `engage calendars list` and link again"
        return ProviderError(f"{WHAT} answered {status} ({detail})", hint=hint)

    def get_json(self, url: str, params: dict | None = None) -> dict:
        response = self.send("GET", url, params=params)
        try:
            return response.json()
        except ValueError:
            raise ProviderError(f"{WHAT} sent an answer that is not JSON") from None

    def calendar_list(self) -> list[dict]:
        out: list[dict] = []
        params: dict = {"maxResults": 250}
        pages = http.PageGuard(WHAT, MAX_PAGES, "listing the calendars")
        while True:
            page = self.get_json(self.url("users", "me", "calendarList"), params)
            out.extend(page.get("items") or [])
            token = page.get("nextPageToken")
            if not token:
                return out
            params = {"maxResults": 250, "pageToken": pages.next(token)}


def _calendars_from_list(entries: list[dict]) -> list[RemoteCalendar]:
    cals = []
    for e in entries:
        if not e.get("id") or e.get("deleted"):
            continue
        name = e.get("summaryOverride") or e.get("summary") or e["id"]
        cals.append(RemoteCalendar(e["id"], name, primary=bool(e.get("primary")),
                                   read_only=e.get("accessRole") in ("reader", "freeBusyReader")))
    cals.sort(key=lambda c: (not c.primary, c.name.lower()))
    return cals


def _account_from(entries: list[dict], token: dict | None) -> str:
    for e in entries:
        if e.get("primary") and e.get("id"):
            return e["id"]
    id_token = (token or {}).get("id_token")
    if id_token:
        try:
            payload = id_token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            if claims.get("email"):
                return claims["email"]
        except (IndexError, ValueError):
            pass
    return "Google account"


# --- link ------------------------------------------------------------------------------------------------------

def _load_client_config(path: str, environ) -> dict:
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}", hint="pass the OAuth client JSON you downloaded; " + CLIENT_HINT) from None
    except (OSError, ValueError):
        raise UsageError(f"{path} is not a Google OAuth client JSON file", hint=CLIENT_HINT) from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a Google OAuth client JSON file", hint=CLIENT_HINT)
    if "installed" not in data:
        kind = "a Web application client" if "web" in data else "not an OAuth client file"
        raise UsageError(f"{path} is {kind}; engage needs a 'Desktop app' OAuth client", hint=CLIENT_HINT)
    conf = dict(data["installed"])
    if not conf.get("client_id") or not conf.get("client_secret"):
        raise UsageError(f"{path} lacks client_id or client_secret", hint=CLIENT_HINT)
    conf["auth_uri"] = _env(environ, ENV_AUTH_URL) or conf.get("auth_uri") or AUTH_URL
    conf["token_uri"] = _env(environ, ENV_TOKEN_URL) or conf.get("token_uri") or TOKEN_URL
    conf.setdefault("redirect_uris", ["http://localhost"])
    return {"installed": conf}


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _oauth_error(exc) -> EngageError:
    code = getattr(exc, "error", None) or type(exc).__name__
    if code == "mismatching_state":
        return UsageError("the sign-in answer does not belong to this sign-in attempt (state mismatch)",
                          hint="run `engage link google` again")
    if code == "insecure_transport":
        return UsageError("Google sign-in endpoints must use https",
                          hint=f"check {ENV_AUTH_URL} and {ENV_TOKEN_URL}")
    if code == "access_denied":
        return UsageError("Google sign-in was cancelled or access was denied",
                          hint="run `engage link google` again and allow calendar access")
    if code == "invalid_grant":
        return UsageError("Google did not accept the sign-in code (invalid_grant): it expired or was already used",
                          hint="run `engage link google` again")
    if code in ("invalid_client", "unauthorized_client"):
        return UsageError(f"Google rejected the OAuth client ({code})", hint=CLIENT_HINT)
    return UsageError(f"Google sign-in failed ({code})", hint="run `engage link google` again")


def _browser_flow(flow, ui, port: int | None) -> None:
    import webbrowser

    from google_auth_oauthlib.flow import WSGITimeoutError

    try:
        webbrowser.get()
    except webbrowser.Error:
        raise UsageError("no web browser found to sign in to Google",
                         hint="run `engage link google --no-browser` and open the address on any device "
                              "(or forward a fixed --port over SSH)") from None

    original = flow.authorization_url

    def authorization_url(**kwargs):  # show the URL too, in case the browser does not come up
        url, state = original(**kwargs)
        ui.say("Opening your browser to sign in to Google. If it does not open, visit this address:")
        ui.say(url)
        return url, state

    flow.authorization_url = authorization_url
    try:
        flow.run_local_server(
            host="127.0.0.1", port=port or 0, open_browser=True, authorization_prompt_message=None,
            success_message="engage is now linked to your Google Calendar. You may close this window.",
            timeout_seconds=LINK_TIMEOUT_SECONDS, prompt="consent",
        )
    except WSGITimeoutError:
        raise UsageError("timed out waiting for the Google sign-in to finish in the browser",
                         hint="run `engage link google` again (or use --no-browser)") from None
    except OSError as exc:
        if port:
            raise UsageError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror or exc})",
                             hint="choose another --port, or leave it out") from None
        raise


def _paste_flow(flow, ui, port: int | None) -> None:
    flow.redirect_uri = f"http://127.0.0.1:{port or _free_port()}/"
    url, state = flow.authorization_url(prompt="consent")
    ui.say("Open this address in a browser (on any device), sign in and allow access:")
    ui.say(url)
    ui.say(f"The browser then ends on an address starting with {flow.redirect_uri} that may not load; "
           "copy that whole address from the address bar.")
    pasted = (ui.ask("Address the browser ended on:") or "").strip()
    parts = urlsplit(pasted)
    query = parse_qs(parts.query)
    if parts.scheme not in ("http", "https") or not (query.get("code") or query.get("error")):
        raise UsageError("that is not the address the browser ended on (it has no code=... in it)",
                         hint="run `engage link google --no-browser` again and paste the whole address")
    if query.get("state", [None])[0] != state:
        raise UsageError("the pasted address does not belong to this sign-in (state mismatch)",
                         hint="run `engage link google --no-browser` again and paste the address from that attempt")
    if query.get("error"):
        error = query["error"][0]
        if error == "access_denied":
            raise UsageError("Google sign-in was cancelled or access was denied",
                             hint="run `engage link google` again and allow calendar access")
        raise UsageError(f"Google sign-in failed ({error})", hint="run `engage link google` again")
    # oauthlib insists on https even for the loopback redirect (run_local_server does the same rewrite)
    if pasted.startswith("http://"):
        pasted = "https://" + pasted[len("http://"):]
    flow.fetch_token(authorization_response=pasted)


def link(ui, *, client_secrets: str | None = None, no_browser: bool = False, port: int | None = None,
         environ=None) -> LinkResult:
    """Sign in to Google (browser on a loopback redirect, or --no-browser: paste the final address back),
    then list the account's calendars. Returns the refresh token and client secret as secrets."""
    environ = os.environ if environ is None else environ
    path = client_secrets or _env(environ, ENV_CLIENT_SECRETS)
    if not path:
        raise UsageError("no Google OAuth client given", hint=CLIENT_HINT)
    config = _load_client_config(path, environ)
    conf = config["installed"]
    if port is not None and not (0 < int(port) < 65536):
        raise UsageError(f"bad port {port}", hint="use a number between 1 and 65535 (above 1024 needs no privileges)")

    import requests
    from google_auth_oauthlib.flow import InstalledAppFlow
    from oauthlib.oauth2.rfc6749.errors import OAuth2Error

    flow = InstalledAppFlow.from_client_config(config, scopes=SCOPES)
    # Google may grant fewer scopes than asked (granular consent): check below instead of letting oauthlib raise.
    saved = os.environ.get("OAUTHLIB_RELAX_TOKEN_SCOPE")
    os.environ["OAUTHLIB_RELAX_TOKEN_SCOPE"] = "1"
    try:
        if no_browser:
            _paste_flow(flow, ui, port)
        else:
            _browser_flow(flow, ui, port)
    except OAuth2Error as exc:
        raise _oauth_error(exc) from None
    except Warning as exc:  # oauthlib's scope-changed warning when relaxing is not honoured
        raise UsageError(f"Google sign-in failed ({exc})", hint="run `engage link google` again") from None
    except (requests.ConnectionError, requests.Timeout):
        raise Unreachable("Google's sign-in server could not be reached",
                          hint="check the network and run `engage link google` again") from None
    finally:
        if saved is None:
            os.environ.pop("OAUTHLIB_RELAX_TOKEN_SCOPE", None)
        else:
            os.environ["OAUTHLIB_RELAX_TOKEN_SCOPE"] = saved

    token = dict(flow.oauth2session.token or {})
    granted = token.get("scope")
    if isinstance(granted, str):
        granted = granted.split()
    if granted is not None and not set(SCOPES) <= set(granted):
        raise UsageError("Google did not grant all the calendar permissions engage asked for",
                         hint="run `engage link google` again and tick every calendar permission")
    refresh_token = token.get("refresh_token")
    if not refresh_token:
        raise ProviderError("Google returned no refresh token",
                            hint="remove engage at https://myaccount.google.com/permissions and run "
                                 "`engage link google` again")

    from google.oauth2.credentials import Credentials

    api_url = _env(environ, ENV_API_URL, API_URL)
    creds = Credentials(token=token.get("access_token"), refresh_token=refresh_token, token_uri=conf["token_uri"],
                        client_id=conf["client_id"], client_secret=conf["client_secret"], scopes=SCOPES)
    entries = GoogleApi(creds, api_url, "the new Google account").calendar_list()
    account = _account_from(entries, token)
    calendars = _calendars_from_list(entries)
    if not calendars:
        raise ProviderError(f"the Google account {account} has no calendars engage can see")
    return LinkResult(
        account=account,
        calendars=calendars,
        secrets={"refresh_token": refresh_token, "client_secret": conf["client_secret"]},
        options={"client_id": conf["client_id"], "token_uri": conf["token_uri"], "auth_uri": conf["auth_uri"],
                 "api_url": api_url, "scopes": list(SCOPES)},
    )


# --- the provider ----------------------------------------------------------------------------------------------

class Provider:
    name = "google"
    can_read_busy = True
    can_copy = True
    supports_incremental = True
    batch_size = BATCH_SIZE

    def __init__(self, api: GoogleApi, calendar_id: str, tz: str, *, read_only: bool = False):
        self.api = api
        self.calendar_id = calendar_id
        self.tz = tz
        self.read_only = read_only
        if read_only:
            self.can_copy = False

    @classmethod
    def from_calendar(cls, cal, ctx) -> "Provider":
        from google.oauth2.credentials import Credentials

        options = cal.options or {}
        environ = ctx.environ if ctx.environ is not None else os.environ
        account = cal.account or "this Google account"
        refresh_token = ctx.secrets.get(secret_name(ctx.profile, cal.id, "refresh_token"))
        if not refresh_token:
            raise RelinkNeeded(f"no stored Google grant for {account}; run `engage link google` again")
        client_secret = ctx.secrets.get(secret_name(ctx.profile, cal.id, "client_secret"))
        client_id = options.get("client_id")
        if not client_id:
            raise RelinkNeeded(f"the Google OAuth client for {account} is not recorded; run `engage link google` again")
        creds = Credentials(
            token=None, refresh_token=refresh_token,
            token_uri=_env(environ, ENV_TOKEN_URL) or options.get("token_uri") or TOKEN_URL,
            client_id=client_id, client_secret=client_secret, scopes=list(options.get("scopes") or SCOPES),
        )
        api_url = _env(environ, ENV_API_URL) or options.get("api_url") or API_URL
        return cls(GoogleApi(creds, api_url, account), cal.remote_id, ctx.timezone,
                   read_only=bool(getattr(cal, "read_only", False)))

    # reading ---------------------------------------------------------------------------------------------------
    def list_calendars(self) -> list[RemoteCalendar]:
        return _calendars_from_list(self.api.calendar_list())

    def _events_url(self, *rest: str) -> str:
        return self.api.url("calendars", self.calendar_id, "events", *rest)

    def _page(self, params: dict) -> dict | None:
        """One events.list page; None when Google answered 410 Gone (sync token no longer valid)."""
        response = self.api.send("GET", self._events_url(), params=params, allow=(410,))
        if response.status_code == 410:
            return None
        try:
            return response.json()
        except ValueError:
            raise ProviderError(f"{WHAT} sent an answer that is not JSON") from None

    def pull_changes(self, cursor: str | None, window: tuple[datetime, datetime]) -> PullResult:
        # The cursor is "<window>|<syncToken>": a sync token keeps the time bounds of the listing that made it,
        # so when the (day-aligned) window moves, one full listing picks up what entered it.
        prefix = _window_key(window) + "|"
        if cursor and cursor.startswith(prefix):
            result = self._incremental(cursor[len(prefix):], window)
            if result is not None:
                result.cursor = prefix + result.cursor if result.cursor else None
                return result
        return self._full(window, prefix)

    def _incremental(self, cursor: str, window) -> PullResult | None:
        # Same parameters as the full pull minus the time bounds (Google: anything else "should be the same as for
        # the initial synchronization"); deleted events always come back with a syncToken, so no showDeleted.
        params: dict = {"singleEvents": "true", "maxResults": PAGE_SIZE, "syncToken": cursor}
        items: list[RemoteItem] = []
        deleted: list[str] = []
        pages = http.PageGuard(WHAT, MAX_PAGES, "listing the changes of the calendar")
        while True:
            page = self._page(params)
            if page is None:
                return None  # 410: full resync
            for event in page.get("items") or []:
                item = self._item(event)
                if item is None or not self._in_window(item, window):
                    if event.get("id"):
                        deleted.append(event["id"])
                else:
                    items.append(item)
            token = page.get("nextPageToken")
            if not token:
                return PullResult(items, deleted, full=False, cursor=page.get("nextSyncToken"))
            params = {"singleEvents": "true", "maxResults": PAGE_SIZE, "syncToken": cursor,
                      "pageToken": pages.next(token)}

    def _full(self, window, prefix: str = "") -> PullResult:
        base = {"singleEvents": "true", "maxResults": PAGE_SIZE,
                "timeMin": _rfc3339(window[0]), "timeMax": _rfc3339(window[1])}
        first = self._page(base)  # fetched now: sign-in and network errors surface from pull_changes itself
        if first is None:
            raise ProviderError(f"{WHAT} answered 410 to a listing without a sync token",
                                hint="run `engage sync` again")

        def stream(result: _StreamedPull):
            page = first
            pages = http.PageGuard(WHAT, MAX_PAGES, "listing the calendar")
            while True:
                for event in page.get("items") or []:
                    item = self._item(event)
                    if item is not None:
                        yield item
                token = page.get("nextPageToken")
                if not token:
                    sync_token = page.get("nextSyncToken")
                    result.cursor = prefix + sync_token if sync_token else None
                    result._done = True
                    return
                page = self._page({**base, "pageToken": pages.next(token)})
                if page is None:
                    raise ProviderError(f"{WHAT} expired the listing while it was being read",
                                        hint="run `engage sync` again")

        return _StreamedPull(stream)

    @staticmethod
    def _in_window(item: RemoteItem, window) -> bool:
        lo, hi = window
        return any(o.end > lo and o.start < hi for o in item.occurrences)

    def _item(self, event: dict) -> RemoteItem | None:
        """The busy rule for one event; None for a cancelled (deleted) one."""
        key = event.get("id")
        if not key or event.get("status") == "cancelled":
            return None
        start, end, all_day = self._span(event)
        if start is None:
            return None
        busy, reason = True, None
        if event.get("transparency") == "transparent":
            busy, reason = False, "free"
        elif any(a.get("self") and a.get("responseStatus") == "declined" for a in event.get("attendees") or []):
            busy, reason = False, "declined"
        private = (event.get("extendedProperties") or {}).get("private") or {}
        occ = Occurrence(start, end, busy=busy, all_day=all_day, summary=event.get("summary") or "", reason=reason)
        return RemoteItem(key, [occ], appointment_id=private.get(MARKER_KEY) or None, etag=event.get("etag"))

    def _span(self, event: dict):
        from engagecli.core.timeutil import all_day_span, zone

        s, e = event.get("start") or {}, event.get("end") or {}
        try:
            if s.get("dateTime"):
                start = _parse_datetime(s["dateTime"])
                end = _parse_datetime(e["dateTime"]) if e.get("dateTime") else start
                return start, max(start, end), False
            if s.get("date"):  # all-day: the end date is exclusive
                last = date.fromisoformat(e["date"]) if e.get("date") else None
                return (*all_day_span(date.fromisoformat(s["date"]), last, zone(self.tz)), True)
        except (KeyError, ValueError):
            raise ProviderError(f"{WHAT} sent an event with unreadable times (id {event.get('id')})") from None
        return None, None, False

    # writing ---------------------------------------------------------------------------------------------------
    def _check_writable(self, spec: CopySpec | None = None) -> None:
        if self.read_only:
            raise UsageError("this Google calendar is read-only for engage; it cannot hold copies",
                             hint="run `engage calendars set ID --no-copy`, or link a calendar you can edit")
        if spec is not None and spec.end <= spec.start:
            raise UsageError("a copy must end after it starts")

    def _body(self, spec: CopySpec) -> dict:
        return {
            "summary": spec.title,
            "description": spec.description,
            "start": {"dateTime": _rfc3339(spec.start), "timeZone": spec.timezone},
            "end": {"dateTime": _rfc3339(spec.end), "timeZone": spec.timezone},
            "status": "confirmed",
            "transparency": "opaque",
            "extendedProperties": {"private": {MARKER_KEY: spec.appointment_id,
                                               "engage_content_hash": spec.content_hash}},
        }

    def _ref(self, response, fallback_id: str) -> CopyRef:
        try:
            data = response.json()
        except ValueError:
            data = {}
        return CopyRef(data.get("id") or fallback_id, data.get("etag"))

    def _patch(self, event_id: str, spec: CopySpec, etag: str | None, *, stale: bool = False) -> CopyRef | None:
        """PATCH our copy (If-Match `etag` when known); refetches and overwrites on 412 (`stale`: refetch first,
        a 412 was already seen). None when it is gone."""
        body = self._body(spec)
        for _ in range(3):
            if stale:
                current = self.api.send("GET", self._events_url(event_id), allow=(404, 410))
                if current.status_code in (404, 410):
                    return None
                try:
                    data = current.json()
                except ValueError:
                    raise ProviderError(f"{WHAT} sent an answer that is not JSON") from None
                owner = ((data.get("extendedProperties") or {}).get("private") or {}).get(MARKER_KEY)
                if owner not in (None, spec.appointment_id):
                    raise ProviderError(f"Google event {event_id} belongs to another appointment")
                etag = data.get("etag")
            headers = {"If-Match": etag} if etag else {}
            response = self.api.send("PATCH", self._events_url(event_id), json=body, headers=headers,
                                     allow=(404, 410, 412))
            if response.status_code in (404, 410):
                return None
            if response.status_code != 412:
                return self._ref(response, event_id)
            stale = True
        raise ProviderError(f"{WHAT} kept changing the copy of appointment {spec.appointment_id} while engage "
                            "updated it", hint="run `engage sync` again")

    def _create(self, spec: CopySpec) -> CopyRef:
        event_id = copy_event_id(spec.appointment_id)
        body = {"id": event_id, **self._body(spec)}
        response = self.api.send("POST", self._events_url(), json=body, allow=(409,))
        if response.status_code != 409:
            return self._ref(response, event_id)
        # the id is taken: our earlier insert landed (and we crashed before recording it), or the copy was deleted
        # (deleted ids stay taken). Either way it is ours: bring it back to what the appointment says.
        ref = self._patch(event_id, spec, None)
        if ref is None:
            raise self._lost(spec)
        return ref

    @staticmethod
    def _lost(spec: CopySpec) -> ProviderError:
        return ProviderError(f"{WHAT} says the copy of appointment {spec.appointment_id} exists but cannot find it",
                             hint="run `engage sync` again")

    def put_copy(self, spec: CopySpec, existing: CopyRef | None) -> CopyRef:
        self._check_writable(spec)
        if existing is not None:
            ref = self._patch(existing.remote_id, spec, existing.etag)
            if ref is not None:
                return ref
        return self._create(spec)

    # batches ---------------------------------------------------------------------------------------------------
    def put_copies(self, work: list[tuple[CopySpec, CopyRef | None]]) -> list[CopyRef | ProviderError]:
        """put_copy for every item, in order, in batch requests of at most `batch_size` calls (see the module
        docstring for how each part is resolved and retried). RelinkNeeded / Unreachable raise."""
        self._check_writable()
        results: list[CopyRef | ProviderError | None] = [None] * len(work)
        jobs: list[_Job] = []
        for index, (spec, existing) in enumerate(work):
            if spec.end <= spec.start:
                results[index] = ProviderError(f"the copy of appointment {spec.appointment_id} must end after it "
                                               "starts")
            elif existing is not None:
                jobs.append(_Job(index, spec, "update", existing.remote_id, existing.etag))
            else:
                jobs.append(_Job(index, spec, "insert", copy_event_id(spec.appointment_id)))
        size = max(1, min(int(self.batch_size), BATCH_LIMIT))
        for chunk in iter_chunks(jobs, size):
            self._run_batch(chunk, results)
        return results  # type: ignore[return-value]

    def _part_request(self, job: _Job) -> tuple[str, str, dict, bytes]:
        """(method, path, headers, body) of the call for `job` inside a batch: the path only, no scheme/host."""
        headers = {"Content-Type": "application/json; charset=UTF-8"}
        if job.kind == "insert":
            method, url, body = "POST", self._events_url(), {"id": job.event_id, **self._body(job.spec)}
        else:
            method, url, body = "PATCH", self._events_url(job.event_id), self._body(job.spec)
            if job.kind == "update" and job.etag:
                headers["If-Match"] = job.etag
        return method, urlsplit(url).path, headers, json.dumps(body).encode("utf-8")

    def _send_batch(self, jobs: list[_Job]) -> dict[int, _PartResponse]:
        """One batch request carrying the next call of every job; job index -> its part of the answer (a job
        missing from the answer has no entry)."""
        tag = secrets.token_hex(6)
        by_content_id = {}
        parts = []
        for n, job in enumerate(jobs):
            content_id = f"item{n}+{tag}"
            by_content_id[content_id] = job
            parts.append((content_id, *self._part_request(job)))
        content_type, payload = _batch_request(parts)
        response = self.api.send("POST", self.api.batch_url, data=payload, headers={"Content-Type": content_type})
        answers: dict[int, _PartResponse] = {}
        for position, (content_id, part) in enumerate(_batch_answer(response)):
            job = by_content_id.get(content_id) if content_id else (jobs[position] if position < len(jobs) else None)
            if job is not None:
                answers[job.index] = part
        return answers

    def _run_batch(self, jobs: list[_Job], results: list) -> None:

        tries = self.api.tries
        pending = list(jobs)
        refreshed = False
        waits = 0
        # each round settles, re-kinds (409 -> adopt, 404 -> insert) or retries every pending job; a job changes
        # kind at most twice, so the bound below is never reached in practice
        for _round in range(tries + 4):
            if not pending:
                return
            answers = self._send_batch(pending)
            again: list[_Job] = []
            stale: list[_Job] = []
            retry_after: float | None = None
            must_wait = unauthorized = False
            for job in pending:
                part = answers.get(job.index)
                status = part.status_code if part is not None else 503
                if part is not None and 200 <= status < 300:
                    results[job.index] = self._ref(part, job.event_id)
                elif status == 401:
                    unauthorized = True
                    again.append(job)
                elif part is None or status in http.RETRY_STATUSES or _is_rate_limited(part):
                    job.failures += 1
                    if job.failures >= tries:
                        answer = f"answering {status}" if part is not None else "leaving it out of its answers"
                        results[job.index] = ProviderError(
                            f"{WHAT} kept {answer} to the copy of appointment {job.spec.appointment_id} "
                            f"after {tries} tries", hint="run `engage sync` again later")
                        continue
                    wait = http.retry_after_seconds(part.headers.get("Retry-After")) if part is not None else None
                    if wait is not None:
                        retry_after = max(retry_after or 0.0, wait)
                    must_wait = True
                    again.append(job)
                elif job.kind == "insert" and status == 409:
                    job.kind, job.etag = "adopt", None  # already there (a crash after our insert, or deleted)
                    again.append(job)
                elif job.kind == "update" and status in (404, 410):
                    job.kind, job.event_id, job.etag = "insert", copy_event_id(job.spec.appointment_id), None
                    again.append(job)
                elif job.kind == "update" and status == 412:
                    stale.append(job)
                elif job.kind == "adopt" and status in (404, 410):
                    results[job.index] = self._lost(job.spec)
                else:
                    error = self.api._status_error(part)
                    if not isinstance(error, ProviderError):
                        raise error  # RelinkNeeded (e.g. 403 insufficientPermissions)
                    results[job.index] = error
            for job in stale:  # someone edited our copy: refetch and overwrite, one request at a time
                try:
                    results[job.index] = self._patch(job.event_id, job.spec, None, stale=True) or self._create(job.spec)
                except ProviderError as exc:
                    results[job.index] = exc
            if unauthorized:
                if refreshed:
                    raise RelinkNeeded(f"Google rejected the credentials for {self.api.account}; "
                                       "run `engage link google` again")
                self.api.refresh()
                refreshed = True
            if must_wait:
                waits += 1
                self.api.sleep(http.backoff_delay(waits, retry_after))
            pending = again
        for job in pending:
            results[job.index] = ProviderError(f"{WHAT} did not settle the copy of appointment "
                                               f"{job.spec.appointment_id}", hint="run `engage sync` again")

    def delete_copy(self, ref: CopyRef) -> None:
        self._check_writable()
        self.api.send("DELETE", self._events_url(ref.remote_id), ok=(200, 204), allow=(404, 410))
