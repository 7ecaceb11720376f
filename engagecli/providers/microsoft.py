"""Microsoft 365 / Exchange Online work calendars through Microsoft Graph, signed in with MSAL.

Linking (`link()`)
    A public client (`--client-id` or ENGAGE_MS_CLIENT_ID) signs in with the device code flow (default: the
    verification URL and the user code are printed, then we poll until the sign-in is done or the code
    expires) or, with `browser=True`, with MSAL's interactive flow (a loopback redirect). Scope:
    Calendars.ReadWrite (MSAL adds openid/profile/offline_access). Endpoints: ENGAGE_MS_AUTHORITY (default
    https://login.microsoftonline.com/common; `tenant` replaces the last path segment) and ENGAGE_GRAPH_URL
    (default https://graph.microsoft.com/v1.0). A non-Microsoft authority host gets instance_discovery=False.

Where the sign-in lives (MSAL's SerializableTokenCache is larger than Windows Credential Manager allows)
    - the secret store holds one small random key: LinkResult.secrets == {"cache_key": <Fernet key>}
      (the link command stores it under secret_name(profile, calendar id, "cache_key"));
    - the cache itself is Fernet-encrypted (AES-128-CBC + HMAC-SHA256) in a 0600 file
      `<ProviderContext.state_dir>/<calendar id>.msal-cache` (or an absolute `options["cache_path"]`), written
      atomically and rewritten whenever MSAL changed it (refresh-token rotation). Unlinking removes
      `<state_dir>/<calendar id>*`, so the file goes with the calendar; `forget(cal, ctx)` does it explicitly.
    link() runs before the calendar id exists, so it hands the encrypted cache over as
    LinkResult.state_files == {".msal-cache": <ciphertext>}; the link command writes it (0600) as
    `<state_dir>/<calendar id>.msal-cache`. No token, encrypted or not, ever goes into the database.
    options: {"client_id", "authority", "graph_url", "home_account_id", "username"}.

Reading (`pull_changes`)
    /me/calendars/{id}/calendarView/delta over the window snapped outwards to whole UTC days (a delta token is
    bound to its window: a different window means one full pull). Pages are followed (@odata.nextLink) and
    streamed; the cursor is JSON {"v", "window", "delta": @odata.deltaLink}. 410 (SyncStateNotFound) or 400
    on the delta link means a full pull. Prefer: outlook.timezone="UTC", IdType="ImmutableId",
    odata.maxpagesize. Every page loop (delta, the calendar list, $filter listings) is bounded: a next link seen
    twice, or more than MAX_PAGES (10,000) pages, is a ProviderError ("kept sending more pages"). A 403 on a read
    (calendar list, delta, GET event, listings) with ErrorAccessDenied / Authorization_RequestDenied /
    accessDenied means the calendar is no longer shared with the account: RelinkNeeded. A 403 on a write stays a
    ProviderError (a read-only calendar). When `items` is a generator, `deleted` and `cursor` are complete once it is exhausted.
    Busy rule: showAs free -> not busy ("free"); responseStatus declined -> not busy ("declined");
    isCancelled or @removed -> gone; all-day events cover whole local dates in the advisor's zone.
    Occurrences of a series arrive sparse in delta (id/start/end only): their showAs etc. come from the series
    master (one GET per master per pull).
    Our copies: calendarView/delta does not support $expand, so the marker (a singleValueExtendedProperty
    MARKER_PROP holding the appointment id) is read by one $filter listing of our copies on a full pull and by a
    GET per changed candidate event (one with a transactionId) on an incremental pull.

Copies (`put_copy` / `delete_copy`)
    Without `existing`, first look our copy up by $filter on the marker (crash safety), else POST to the
    calendar with a deterministic transactionId (a UUID5 of appointment id + content hash) and the marker;
    ErrorDuplicateTransactionId (the id made another, e.g. since deleted, event) -> one POST with a fresh id.
    With `existing`, PATCH with If-Match; 412 -> refetch and overwrite; 404 -> create again. DELETE: 404 fine.
    Times are sent in UTC with timeZone "UTC", showAs busy, no attendees. 429 (Retry-After) and 5xx are retried
    by engagecli.providers.http.

Many copies (`put_copies`, JSON batching: POST {graph}/$batch, at most BATCH_SIZE = 20 items)
    The engine hands over chunks of up to 20 (spec, existing). Items carry relative URLs, their own Prefer header
    and, with a body, Content-Type; answers come in any order and are matched by id. Per chunk:
    1. lookup batch (only for items without `existing`): one GET $filter-on-the-marker item per appointment,
       exactly the request put_copy makes (only the documented single-value filter form; no `or` over ids);
    2. write batch: POST (transactionId + marker) for items with no copy found, PATCH with If-Match for items
       with `existing` or exactly one copy found.
    So 20 new copies cost 2 requests (put_copy: 40), 20 updates 1 (put_copy: 20). The lookup batch is complete
    before any POST is sent, so crash safety is the same as put_copy's: what a crash left on the server is found
    by its marker and updated. Where the lookup cannot see it (Exchange's filter index lags behind a write),
    we rely on Graph answering a repeated POST with the same transactionId (appointment id + content hash)
    with the existing event, as put_copy does; a retried item is always sent with the same transactionId.
    Items answered 429/500/502/503/504 (Graph runs at most 4 items of a batch against a mailbox at a time and
    may throttle the rest: MailboxConcurrency) are sent again, just those, in a new batch after the largest
    Retry-After among them (else exponential backoff), BATCH_TRIES batches in all; still refused -> Unreachable
    is raised (as put_copy would: the items written so far are found by marker next time). Items answered
    401, 404/410 or 412 on a PATCH, or ErrorDuplicateTransactionId, and items whose lookup found duplicates
    (an old crash), go through the single-request path for that item. Any other 4xx -> that item's
    ProviderError; a 404 on a POST (calendar gone) raises RelinkNeeded. A 401 on the batch itself: one forced
    token refresh, then RelinkNeeded (as for every request).

Tokens: acquire_token_silent_with_error with the cached account; None / invalid_grant / interaction_required
-> RelinkNeeded. MSAL may serve a cached access token after revocation, so a Graph 401 forces one refresh
(force_refresh=True) and a second 401 means RelinkNeeded. Messages never carry tokens or event details.

msal, requests and cryptography are imported inside functions only.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

from engagecli.core.models import Occurrence
from engagecli.errors import EngageError, ProviderError, RelinkNeeded, Unreachable, UsageError
from engagecli.providers import http
from engagecli.fsutil import write_private
from engagecli.providers.base import (
    CopyRef,
    CopySpec,
    LinkResult,
    PullResult,
    RemoteCalendar,
    RemoteItem,
    secret_name,
)

UTC = timezone.utc
DEFAULT_AUTHORITY = "https://login.microsoftonline.com/common"
DEFAULT_GRAPH_URL = "https://graph.microsoft.com/v1.0"
SCOPES = ["Calendars.ReadWrite"]
CACHE_KEY_KIND = "cache_key"
# Our marker: a named string MAPI property in a property set (GUID) of our own.
MARKER_GUID = "{8f2d6c1e-4b7a-4e59-9c3d-5a1e7b2f90c4}"
MARKER_PROP = f"String {MARKER_GUID} Name EngageAppointmentId"
TRANSACTION_NAMESPACE = uuid.UUID("3c8e1f0a-9b4d-5e2f-8a71-6d0c4b9e2a15")
PAGE_SIZE = 50
MAX_PAGES = 10_000  # pages of one listing before we give up on a server that never stops paging
ACCESS_DENIED_CODES = frozenset({"erroraccessdenied", "authorization_requestdenied", "accessdenied"})
BATCH_SIZE = 20  # Graph's limit of requests in one $batch
BATCH_TRIES = 5  # batches per chunk of items answered 429/5xx, the first one included
PREFER = 'outlook.timezone="UTC", IdType="ImmutableId"'
MICROSOFT_AUTHORITY_HOSTS = frozenset({
    "login.microsoftonline.com", "login.microsoft.com", "login.windows.net", "login.microsoftonline.us",
    "login.partner.microsoftonline.cn", "login.chinacloudapi.cn", "login-us.microsoftonline.com",
})
RELINK_ERRORS = frozenset({
    "invalid_grant", "interaction_required", "consent_required", "login_required", "invalid_client",
    "unauthorized_client",
})
RELINK_HINT = "run `engage link microsoft` again"
CLIENT_HINT = (
    "register a public client: Microsoft Entra admin center > App registrations > New registration; "
    "Authentication > allow public client flows; API permissions > Microsoft Graph > delegated "
    "Calendars.ReadWrite; then pass its Application (client) ID as --client-id or ENGAGE_MS_CLIENT_ID"
)


def _sleep(seconds: float) -> None:
    """Waits between retries (tests replace it to record the delays)."""
    time.sleep(seconds)


# --------------------------------------------------------------------------------------------- small helpers


def _code(text: object) -> str:
    """An error code from a server, safe to show (letters, digits, _ . -), or ''."""
    text = str(text or "")
    return text if re.fullmatch(r"[A-Za-z0-9_.\-]{1,80}", text) else ""


def _graph_code(resp) -> str:
    try:
        body = resp.json()
    except ValueError:
        return ""
    err = body.get("error") if isinstance(body, dict) else None
    return _code(err.get("code")) if isinstance(err, dict) else ""


def _json(resp) -> dict:
    """The JSON object of a successful Graph answer, or a ProviderError."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ProviderError(f"Microsoft Graph answered HTTP {resp.status_code} with something that is not JSON",
                            hint="try again later")
    return body


def _q(value: str) -> str:
    return quote(value, safe="")


def _odata_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _iso_z(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _graph_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000")


_FRACTION = re.compile(r"(\.\d{6})\d+")


def _parse_naive(text: str) -> datetime:
    """A Graph dateTime ('2030-03-04T08:00:00.0000000', maybe with Z/offset): 7 fractional digits allowed."""
    text = _FRACTION.sub(r"\1", str(text).strip())
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


def _zone_of(name: str | None):
    if not name or name.upper() in ("UTC", "ETC/UTC", "Z", "GMT"):
        return UTC
    from zoneinfo import ZoneInfo

    try:
        return ZoneInfo(name)
    except Exception:
        raise ProviderError(
            f"Microsoft Graph sent a time in zone {_code(name) or 'unknown'!r} instead of UTC",
            hint="report this; engage asks Graph for UTC times",
        ) from None


def _instant(dtz: dict) -> datetime:
    try:
        value = _parse_naive(dtz["dateTime"])
    except (KeyError, TypeError, ValueError):
        raise ProviderError("Microsoft Graph sent an event without a readable start or end") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=_zone_of(dtz.get("timeZone")))
    return value.astimezone(UTC)


def _all_day_date(dtz: dict, tz) -> date:
    """The local date an all-day boundary means: a floating midnight is that date; an instant (Graph converted
    the midnight of another zone) is rounded to the nearest local midnight in `tz`."""
    try:
        naive = _parse_naive(dtz["dateTime"])
    except (KeyError, TypeError, ValueError):
        raise ProviderError("Microsoft Graph sent an all-day event without a readable date") from None
    if naive.tzinfo is None and naive.hour == naive.minute == naive.second == 0 and not naive.microsecond:
        return naive.date()
    local = _instant(dtz).astimezone(tz)
    return (local + timedelta(hours=12)).date()


def _snap(window: tuple[datetime, datetime]) -> tuple[datetime, datetime]:
    """The window widened to whole UTC days, so a cursor stays usable all day."""
    lo, hi = (w.astimezone(UTC) for w in window)
    lo = lo.replace(hour=0, minute=0, second=0, microsecond=0)
    hi_floor = hi.replace(hour=0, minute=0, second=0, microsecond=0)
    return lo, hi_floor if hi_floor == hi else hi_floor + timedelta(days=1)


def _transaction_id(appointment_id: str, content_hash: str, salt: str = "") -> str:
    return str(uuid.uuid5(TRANSACTION_NAMESPACE, f"{appointment_id}\n{content_hash}\n{salt}"))


def _marker_value(props) -> str | None:
    for prop in props or []:
        if isinstance(prop, dict) and str(prop.get("id", "")).lower() == MARKER_PROP.lower():
            value = prop.get("value")
            return value if isinstance(value, str) and value else None
    return None


class _ItemResponse:
    """One answer inside a $batch reply, shaped like a requests.Response for _json/_graph_code/_failure."""

    def __init__(self, item: dict):
        try:
            self.status_code = int(item.get("status"))
        except (TypeError, ValueError):
            self.status_code = 0
        headers = item.get("headers")
        self.headers = {str(k).lower(): str(v) for k, v in headers.items()} if isinstance(headers, dict) else {}
        self._body = item.get("body")

    def json(self):
        body = self._body
        if isinstance(body, str):  # a non-JSON content type comes base64-encoded
            try:
                return json.loads(body)
            except ValueError:
                import base64

                try:
                    return json.loads(base64.b64decode(body, validate=True))
                except (ValueError, TypeError):
                    raise ValueError("not JSON") from None
        if body is None:
            raise ValueError("no body")
        return body

    def retry_after(self) -> float | None:
        return http.retry_after_seconds(self.headers.get("retry-after"))


# --------------------------------------------------------------------------------------------- token cache file


def _fernet(key: str):
    from cryptography.fernet import Fernet

    return Fernet(key.encode("ascii"))


def _new_cache_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode("ascii")


def _encrypt(key: str, text: str) -> bytes:
    return _fernet(key).encrypt(text.encode("utf-8"))


def _decrypt(key: str, blob: bytes) -> str | None:
    from cryptography.fernet import InvalidToken

    try:
        return _fernet(key).decrypt(blob.strip()).decode("utf-8")
    except (InvalidToken, ValueError, TypeError):
        return None


CACHE_SUFFIX = ".msal-cache"


def _cache_path(options: dict, state_dir, calendar_id: str) -> Path:
    if options.get("cache_path"):
        return Path(options["cache_path"])
    if state_dir is None:
        raise ProviderError("no state folder to keep the Microsoft sign-in in")
    return Path(state_dir) / f"{calendar_id}{CACHE_SUFFIX}"


def forget(cal, ctx) -> None:
    """Remove the encrypted token cache of `cal` (on unlink). The command deletes the secret itself."""
    try:
        _cache_path(cal.options or {}, ctx.state_dir, cal.id).unlink()
    except (FileNotFoundError, ProviderError):
        pass


# --------------------------------------------------------------------------------------------- MSAL


def _authority(environ, tenant: str | None) -> str:
    base = (environ.get("ENGAGE_MS_AUTHORITY") or DEFAULT_AUTHORITY).strip().rstrip("/")
    parts = urlsplit(base)
    if parts.scheme != "https" or not parts.netloc:
        raise UsageError(f"ENGAGE_MS_AUTHORITY={base!r} is not an https address",
                         hint="e.g. https://login.microsoftonline.com/common")
    if tenant:
        tenant = tenant.strip().strip("/")
        if not re.fullmatch(r"[A-Za-z0-9._\-]{1,100}", tenant):
            raise UsageError(f"bad tenant {tenant!r}", hint="use a tenant id (GUID), a domain such as "
                             "contoso.onmicrosoft.com, or organizations/common/consumers")
        return f"https://{parts.netloc}/{tenant}"
    if parts.path in ("", "/"):
        return f"https://{parts.netloc}/common"
    return base


def _graph_url(environ) -> str:
    url = (environ.get("ENGAGE_GRAPH_URL") or DEFAULT_GRAPH_URL).strip().rstrip("/")
    if urlsplit(url).scheme != "https":
        raise UsageError(f"ENGAGE_GRAPH_URL={url!r} is not an https address",
                         hint="e.g. https://graph.microsoft.com/v1.0")
    return url


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _msal_call(fn, *args, **kwargs):
    """Call into MSAL, turning transport failures into our errors (never with a token in the message)."""
    import requests

    try:
        return fn(*args, **kwargs)
    except (requests.ConnectionError, requests.Timeout):
        raise Unreachable("Microsoft sign-in could not be reached",
                          hint="check the network and try again") from None
    except (requests.RequestException, ValueError, KeyError, RuntimeError) as exc:
        raise ProviderError(f"Microsoft sign-in answered something unexpected ({type(exc).__name__})",
                            hint="try again later") from None


def _new_app(client_id: str, authority: str, cache):
    import msal

    kwargs = {}
    if _host(authority) not in MICROSOFT_AUTHORITY_HOSTS:
        kwargs["instance_discovery"] = False  # else msal asks login.microsoftonline.com about this host
    return _msal_call(msal.PublicClientApplication, client_id, authority=authority, token_cache=cache, **kwargs)


def _sign_in_error(error: str | None) -> EngageError:
    err = _code(error) or "unknown_error"
    if err in ("invalid_client", "unauthorized_client", "invalid_request", "invalid_scope"):
        return UsageError(f"Microsoft refused the sign-in request ({err})",
                          hint="check the client id; " + CLIENT_HINT)
    return EngageError(f"the Microsoft sign-in failed ({err})", hint=RELINK_HINT)


def _device_code_sign_in(app, ui) -> dict:
    flow = _msal_call(app.initiate_device_flow, scopes=SCOPES)
    if "user_code" not in flow:
        raise _sign_in_error(flow.get("error"))
    uri = flow.get("verification_uri") or flow.get("verification_url") or "https://microsoft.com/devicelogin"
    minutes = max(1, int(flow.get("expires_in") or 900) // 60)
    ui.say(f"To sign in to Microsoft, open {uri} in a browser")
    ui.say(f"and enter the code {flow['user_code']} (valid for {minutes} minutes). Waiting for the sign-in...")
    result = _msal_call(app.acquire_token_by_device_flow, flow)
    if "access_token" in result:
        return result
    err = result.get("error")
    if err in ("expired_token", "code_expired", "authorization_pending", "slow_down"):
        raise EngageError("the sign-in code expired before the sign-in was finished",
                          hint="run `engage link microsoft` again and enter the new code in time")
    if err in ("authorization_declined", "access_denied"):
        raise EngageError("the Microsoft sign-in was declined", hint="run `engage link microsoft` again and accept")
    raise _sign_in_error(err)


def _browser_sign_in(app, ui) -> dict:
    ui.say("Opening a browser for the Microsoft sign-in; finish it there (waiting up to 5 minutes)...")
    result = _msal_call(app.acquire_token_interactive, SCOPES, prompt="select_account", timeout=300)
    if result and "access_token" in result:
        return result
    err = (result or {}).get("error")
    if err in ("access_denied", "authorization_declined"):
        raise EngageError("the Microsoft sign-in was declined", hint="run `engage link microsoft` again and accept")
    if not err or err == "timeout":
        raise EngageError("the Microsoft sign-in in the browser was not finished",
                          hint="run `engage link microsoft` again, or use the device code (default)")
    raise _sign_in_error(err)


# --------------------------------------------------------------------------------------------- Graph client


class _Graph:
    """Authorised Graph requests: retries (providers.http), one forced token refresh on 401."""

    def __init__(self, base_url: str, token_for, relink_error, session=None, account: str = "the Microsoft account"):
        self.base_url = base_url.rstrip("/")
        self.token_for = token_for  # (force: bool) -> access token
        self.relink_error = relink_error  # () -> RelinkNeeded
        self.session = session or http.new_session()
        self.account = account  # named in messages

    def url(self, path: str) -> str:
        return path if path.startswith("https://") else self.base_url + path

    def own(self, url) -> bool:
        """Whether `url` (a next/delta link, a stored cursor) is on our Graph server: tokens go nowhere else."""
        if not isinstance(url, str):
            return False
        a, b = urlsplit(url), urlsplit(self.base_url)
        return a.scheme == "https" and a.netloc.lower() == b.netloc.lower()

    def send(self, method: str, path: str, *, params=None, json_body=None, headers=None, prefer=PREFER):
        url = self.url(path)
        if not self.own(url):
            raise ProviderError("Microsoft Graph pointed to another server; refusing to send the sign-in there")
        for attempt in (0, 1):
            token = self.token_for(attempt == 1)
            h = {"Authorization": f"Bearer {token}", "Accept": "application/json", "Prefer": prefer}
            h.update(headers or {})
            resp = http.request(self.session, method, url, what="Microsoft Graph", params=params, json=json_body,
                                headers=h, sleep=_sleep)
            if resp.status_code != 401:
                return resp
        raise self.relink_error()

    def get_all(self, path: str, params=None, doing: str = "reading from Microsoft Graph"):
        """Every item of a collection, following @odata.nextLink (bounded: see _Pages)."""
        resp = self.send("GET", path, params=params)
        pages = http.PageGuard("Microsoft Graph", MAX_PAGES, doing)
        while True:
            if resp.status_code != 200:
                raise _read_failure(resp, doing, self.account)
            body = _json(resp)
            yield from body.get("value", [])
            nxt = body.get("@odata.nextLink")
            if not nxt:
                return
            if not self.own(nxt):
                raise ProviderError("Microsoft Graph sent a next page on another server")
            resp = self.send("GET", pages.next(nxt))

    def calendars(self) -> list[RemoteCalendar]:
        out = []
        params = {"$select": "id,name,isDefaultCalendar,canEdit", "$top": "100"}
        for cal in self.get_all("/me/calendars", params, "listing the calendars"):
            if not cal.get("id"):
                continue
            out.append(RemoteCalendar(cal["id"], cal.get("name") or "Calendar",
                                      primary=bool(cal.get("isDefaultCalendar")),
                                      read_only=cal.get("canEdit") is False))
        return out


def _failure(resp, doing: str) -> EngageError:
    status = resp.status_code
    code = _graph_code(resp)
    detail = f"HTTP {status}" + (f", {code}" if code else "")
    if status == 429 or status >= 500:
        return Unreachable(f"Microsoft Graph stayed busy or unavailable ({detail}) while {doing}",
                           hint="run `engage sync` again later")
    if status == 403:
        return ProviderError(f"Microsoft Graph refused {doing} ({detail})",
                             hint="check that the account may edit this calendar, or " + RELINK_HINT)
    return ProviderError(f"Microsoft Graph answered {detail} while {doing}")


def _read_failure(resp, doing: str, account: str) -> EngageError:
    """_failure for a read: a 403 access-denied there means the calendar (or the grant) is gone for the account,
    not a read-only calendar: link again."""
    if resp.status_code == 403 and _graph_code(resp).lower() in ACCESS_DENIED_CODES:
        return RelinkNeeded(f"Microsoft refused access to the calendar for {account}; {RELINK_HINT}")
    return _failure(resp, doing)


# --------------------------------------------------------------------------------------------- link


def link(ui, *, client_id: str | None = None, tenant: str | None = None, browser: bool = False,
         environ=None) -> LinkResult:
    """Sign in to Microsoft and list the account's calendars (see the module docstring for what is stored:
    secrets {"cache_key"}, the encrypted token cache as state_files[".msal-cache"])."""
    environ = os.environ if environ is None else environ
    client_id = (client_id or environ.get("ENGAGE_MS_CLIENT_ID") or "").strip()
    if not client_id:
        raise UsageError("no Microsoft client id: pass --client-id ID or set ENGAGE_MS_CLIENT_ID", hint=CLIENT_HINT)
    authority = _authority(environ, tenant)
    graph_url = _graph_url(environ)

    import msal

    cache = msal.SerializableTokenCache()
    app = _new_app(client_id, authority, cache)
    result = _browser_sign_in(app, ui) if browser else _device_code_sign_in(app, ui)

    claims = result.get("id_token_claims") or {}
    accounts = app.get_accounts()
    account = next((a for a in accounts if claims.get("oid") and a.get("local_account_id") == claims.get("oid")),
                   None) or (accounts[0] if accounts else None)
    if account is None:
        raise ProviderError("Microsoft signed in but returned no account", hint=RELINK_HINT)
    username = claims.get("preferred_username") or account.get("username") or claims.get("email") or "Microsoft account"

    token = result["access_token"]

    def relink():
        return RelinkNeeded(f"Microsoft refused the new sign-in for {username}; {RELINK_HINT}")

    calendars = _Graph(graph_url, lambda force: token, relink, account=username).calendars()
    if not calendars:
        raise ProviderError(f"the Microsoft account {username} has no calendars")

    key = _new_cache_key()
    blob = _encrypt(key, cache.serialize())
    options = {
        "client_id": client_id,
        "authority": authority,
        "graph_url": graph_url,
        "home_account_id": account["home_account_id"],
        "username": username,
    }
    return LinkResult(account=username, calendars=calendars, secrets={CACHE_KEY_KIND: key}, options=options,
                      state_files={CACHE_SUFFIX: blob})


# --------------------------------------------------------------------------------------------- provider


class Provider:
    name = "microsoft"
    can_read_busy = True
    can_copy = True
    supports_incremental = True
    batch_size = BATCH_SIZE

    def __init__(self, *, remote_id: str, account: str, client_id: str, authority: str, graph_url: str,
                 home_account_id: str, cache_path: Path, cache_key: str, timezone: str = "UTC", session=None):
        self.remote_id = remote_id
        self.account = account
        self.client_id = client_id
        self.authority = authority
        self.home_account_id = home_account_id
        self.cache_path = Path(cache_path)
        self.cache_key = cache_key
        self.timezone = timezone
        self.graph = _Graph(graph_url, self._access_token, self._relink, session, account=account)
        self._app = None
        self._cache = None
        self._token: str | None = None
        self._token_until = 0.0

    @classmethod
    def from_calendar(cls, cal, ctx) -> "Provider":
        opts = dict(cal.options or {})
        account = opts.get("username") or cal.account or "the Microsoft account"
        missing = [k for k in ("client_id", "authority", "home_account_id") if not opts.get(k)]
        if missing:
            raise RelinkNeeded(f"the Microsoft link of calendar {cal.id} is incomplete; {RELINK_HINT}")
        key = ctx.secrets.get(secret_name(ctx.profile, cal.id, CACHE_KEY_KIND))
        if not key:
            raise RelinkNeeded(f"the Microsoft sign-in for {account} is not on this machine; {RELINK_HINT}")
        path = _cache_path(opts, ctx.state_dir, cal.id)
        environ = ctx.environ or {}
        graph_url = opts.get("graph_url") or _graph_url(environ)
        return cls(remote_id=cal.remote_id, account=account, client_id=opts["client_id"],
                   authority=opts["authority"], graph_url=graph_url, home_account_id=opts["home_account_id"],
                   cache_path=path, cache_key=key, timezone=ctx.timezone or "UTC")

    # tokens -----------------------------------------------------------------------------------------------
    def _relink(self) -> RelinkNeeded:
        return RelinkNeeded(f"Microsoft refused the stored sign-in for {self.account}; {RELINK_HINT}")

    def _load(self):
        if self._app is None:
            import msal

            try:
                blob = self.cache_path.read_bytes()
            except FileNotFoundError:
                raise RelinkNeeded(f"the Microsoft sign-in for {self.account} is not on this machine; "
                                   f"{RELINK_HINT}") from None
            text = _decrypt(self.cache_key, blob)
            if text is None:
                raise RelinkNeeded(f"the stored Microsoft sign-in for {self.account} cannot be read "
                                   f"(key and file do not match); {RELINK_HINT}")
            cache = msal.SerializableTokenCache()
            try:
                cache.deserialize(text)
            except ValueError:
                raise RelinkNeeded(f"the stored Microsoft sign-in for {self.account} is damaged; "
                                   f"{RELINK_HINT}") from None
            self._app = _new_app(self.client_id, self.authority, cache)
            self._cache = cache
        return self._app

    def _save(self) -> None:
        if self._cache is not None and self._cache.has_state_changed:
            write_private(self.cache_path, _encrypt(self.cache_key, self._cache.serialize()))
            self._cache.has_state_changed = False

    def _access_token(self, force: bool = False) -> str:
        if not force and self._token and time.time() < self._token_until:
            return self._token
        app = self._load()
        account = next((a for a in app.get_accounts() if a.get("home_account_id") == self.home_account_id), None)
        if account is None:
            raise self._relink()
        try:
            result = _msal_call(app.acquire_token_silent_with_error, SCOPES, account, force_refresh=force)
        finally:
            self._save()
        if not result or "access_token" not in result:
            err = (result or {}).get("error")
            self._token = None
            if result is None or err in RELINK_ERRORS:
                raise self._relink()
            if err in ("temporarily_unavailable", "server_error", "service_unavailable"):
                raise Unreachable(f"Microsoft sign-in is unavailable ({_code(err)})",
                                  hint="run `engage sync` again later")
            raise ProviderError(f"Microsoft sign-in answered {_code(err) or 'an error'}", hint=RELINK_HINT)
        self._token = result["access_token"]
        self._token_until = time.time() + max(0, int(result.get("expires_in") or 300) - 120)
        return self._token

    # calendars --------------------------------------------------------------------------------------------
    def list_calendars(self) -> list[RemoteCalendar]:
        return self.graph.calendars()

    def _calendar_path(self) -> str:
        return f"/me/calendars/{_q(self.remote_id)}"

    # reading ----------------------------------------------------------------------------------------------
    def pull_changes(self, cursor: str | None, window: tuple[datetime, datetime]) -> PullResult:
        lo, hi = _snap(window)
        wkey = [_iso_z(lo), _iso_z(hi)]
        state = None
        if cursor:
            try:
                state = json.loads(cursor)
            except ValueError:
                state = None
        first = None
        full = True
        if isinstance(state, dict) and state.get("window") == wkey and self.graph.own(state.get("delta")):
            first = self._delta_page(state["delta"], tolerate_expired=True)
            full = first is None
        if first is None:
            first = self._delta_page(f"{self._calendar_path()}/calendarView/delta",
                                     params={"startDateTime": wkey[0], "endDateTime": wkey[1]})
        result = PullResult(items=(), deleted=[], full=full, cursor=None)
        result.items = self._stream(first, result, wkey)
        return result

    def _delta_page(self, url: str, params=None, tolerate_expired: bool = False) -> dict | None:
        resp = self.graph.send("GET", url, params=params, prefer=f"{PREFER}, odata.maxpagesize={PAGE_SIZE}")
        if resp.status_code == 200:
            return _json(resp)
        if tolerate_expired and resp.status_code in (400, 404, 410):
            return None  # the delta token expired or was refused (SyncStateNotFound, resyncRequired): full pull
        if resp.status_code == 404:
            raise RelinkNeeded(f"the Microsoft calendar is gone or no longer shared with {self.account}; "
                               f"{RELINK_HINT}")
        raise _read_failure(resp, "reading the calendar", self.account)

    def _stream(self, page: dict, result: PullResult, wkey: list[str]):
        masters: dict[str, dict] = {}
        copies = self._list_copies() if result.full else None
        pages = http.PageGuard("Microsoft Graph", MAX_PAGES, "reading the calendar")
        while True:
            for ev in page.get("value", []):
                item = self._item(ev, result, copies, masters)
                if item is not None:
                    yield item
            nxt = page.get("@odata.nextLink")
            if nxt:
                if not self.graph.own(nxt):
                    raise ProviderError("Microsoft Graph sent a next page on another server")
                page = self._delta_page(pages.next(nxt))
                continue
            delta = page.get("@odata.deltaLink")
            result.cursor = json.dumps({"v": 1, "window": wkey, "delta": delta}) if delta else None
            return

    def _item(self, ev: dict, result: PullResult, copies, masters) -> RemoteItem | None:
        key = ev.get("id")
        if not key:
            return None
        if "@removed" in ev:
            if not result.full:
                result.deleted.append(key)
            return None
        kind = ev.get("type")
        if kind == "seriesMaster":
            return None  # calendarView lists occurrences, never the master
        info = ev
        if kind == "occurrence" and "showAs" not in ev and ev.get("seriesMasterId"):
            info = {**self._master(ev["seriesMasterId"], masters), **ev}
        if info.get("isCancelled"):
            if not result.full:
                result.deleted.append(key)
            return None
        all_day = bool(info.get("isAllDay"))
        if all_day:
            start, end = self._all_day_span(ev.get("start") or {}, ev.get("end") or {})
        else:
            start, end = _instant(ev.get("start") or {}), _instant(ev.get("end") or {})
        busy, reason = True, None
        if str(info.get("showAs") or "").lower() == "free":
            busy, reason = False, "free"
        elif str((info.get("responseStatus") or {}).get("response") or "").lower() == "declined":
            busy, reason = False, "declined"
        occ = Occurrence(start, end, busy=busy, all_day=all_day, summary=str(info.get("subject") or ""),
                         reason=reason)
        return RemoteItem(key, [occ], appointment_id=self._appointment_of(ev, copies), etag=ev.get("@odata.etag"))

    def _all_day_span(self, s: dict, e: dict) -> tuple[datetime, datetime]:
        from engagecli.core.timeutil import all_day_span, zone

        tz = zone(self.timezone)
        return all_day_span(_all_day_date(s, tz), _all_day_date(e, tz), tz)

    def _master(self, master_id: str, masters: dict) -> dict:
        if master_id not in masters:
            resp = self.graph.send("GET", f"/me/events/{_q(master_id)}",
                                   params={"$select": "showAs,isCancelled,responseStatus,isAllDay,subject"})
            if resp.status_code == 200:
                body = _json(resp)
                masters[master_id] = {k: body[k] for k in ("showAs", "isCancelled", "responseStatus", "isAllDay",
                                                          "subject") if k in body}
            elif resp.status_code == 404:
                masters[master_id] = {}
            else:
                raise _read_failure(resp, "reading a recurring event", self.account)
        return masters[master_id]

    def _appointment_of(self, ev: dict, copies) -> str | None:
        props = ev.get("singleValueExtendedProperties")
        if isinstance(props, list):
            return _marker_value(props)
        if ev.get("type") not in (None, "singleInstance"):
            return None  # our copies are single events
        if copies is not None:  # full pull: the listing knows our copies; later ones carry a transactionId
            if ev["id"] in copies:
                return copies[ev["id"]]
            if not ev.get("transactionId"):
                return None
        elif "transactionId" in ev and not ev["transactionId"]:
            return None  # incremental: only events created with a transactionId can be ours
        found = self._get_event(ev["id"], select="id")
        return _marker_value(found.get("singleValueExtendedProperties")) if found else None

    def _marker_params(self, **extra) -> dict:
        params = {"$expand": f"singleValueExtendedProperties($filter=id eq {_odata_string(MARKER_PROP)})"}
        params.update(extra)
        return params

    def _list_copies(self) -> dict[str, str]:
        flt = f"singleValueExtendedProperties/Any(ep: ep/id eq {_odata_string(MARKER_PROP)} and ep/value ne null)"
        params = self._marker_params(**{"$filter": flt, "$select": "id", "$top": "100"})
        out = {}
        for ev in self.graph.get_all(f"{self._calendar_path()}/events", params, "listing copied appointments"):
            value = _marker_value(ev.get("singleValueExtendedProperties"))
            if ev.get("id") and value:
                out[ev["id"]] = value
        return out

    def _get_event(self, event_id: str, select: str = "id") -> dict | None:
        resp = self.graph.send("GET", f"/me/events/{_q(event_id)}", params=self._marker_params(**{"$select": select}))
        if resp.status_code == 200:
            return _json(resp)
        if resp.status_code in (404, 410):
            return None
        raise _read_failure(resp, "reading an event", self.account)

    # copies -----------------------------------------------------------------------------------------------
    def _copy_body(self, spec: CopySpec) -> dict:
        return {
            "subject": spec.title,
            "body": {"contentType": "text", "content": spec.description},
            "start": {"dateTime": _graph_time(spec.start), "timeZone": "UTC"},
            "end": {"dateTime": _graph_time(spec.end), "timeZone": "UTC"},
            "isAllDay": False,
            "showAs": "busy",
            "singleValueExtendedProperties": [{"id": MARKER_PROP, "value": spec.appointment_id}],
        }

    @staticmethod
    def _find_params(appointment_id: str) -> dict:
        flt = (f"singleValueExtendedProperties/Any(ep: ep/id eq {_odata_string(MARKER_PROP)} "
               f"and ep/value eq {_odata_string(appointment_id)})")
        return {"$filter": flt, "$select": "id", "$top": "10"}

    def _find_copies(self, appointment_id: str) -> list[dict]:
        return [ev for ev in self.graph.get_all(f"{self._calendar_path()}/events", self._find_params(appointment_id),
                                                "looking up a copied appointment") if ev.get("id")]

    def put_copy(self, spec: CopySpec, existing: CopyRef | None) -> CopyRef:
        if spec.end <= spec.start:
            raise UsageError("a copy must end after it starts")
        body = self._copy_body(spec)
        if existing is not None:
            return self._update(existing.remote_id, existing.etag, body, spec)
        return self._adopt_or_create(body, spec)

    def _adopt_or_create(self, body: dict, spec: CopySpec, salt: str = "") -> CopyRef:
        found = self._find_copies(spec.appointment_id)
        if found:
            keep, extra = found[0], found[1:]
            for dup in extra:  # duplicates from an older crash: keep one
                self._delete(dup["id"])
            return self._update(keep["id"], keep.get("@odata.etag"), body, spec, adopt=False)
        return self._create(body, spec, salt)

    def _create(self, body: dict, spec: CopySpec, salt: str = "", again: bool = True) -> CopyRef:
        payload = dict(body, transactionId=_transaction_id(spec.appointment_id, spec.content_hash, salt))
        resp = self.graph.send("POST", f"{self._calendar_path()}/events", json_body=payload)
        if resp.status_code in (200, 201):
            ev = _json(resp)
            if not ev.get("id"):
                raise ProviderError("Microsoft Graph created a copy but did not say its id")
            return CopyRef(ev["id"], ev.get("@odata.etag"))
        if again and _graph_code(resp).lower() == "errorduplicatetransactionid":
            # that transactionId made another (since deleted or changed) event: make a new one
            return self._create(body, spec, f"{salt}\n{uuid.uuid4().hex}", again=False)
        if resp.status_code == 404:
            raise RelinkNeeded(f"the Microsoft calendar is gone or no longer shared with {self.account}; "
                               f"{RELINK_HINT}")
        raise _failure(resp, "copying an appointment")

    def _update(self, event_id: str, etag: str | None, body: dict, spec: CopySpec, adopt: bool = True,
                conflicts: int = 0) -> CopyRef:
        headers = {"If-Match": etag} if etag else {}
        resp = self.graph.send("PATCH", f"/me/events/{_q(event_id)}", json_body=body, headers=headers)
        if resp.status_code == 200:
            ev = _json(resp)
            return CopyRef(ev.get("id") or event_id, ev.get("@odata.etag"))
        if resp.status_code in (404, 410):  # deleted remotely: copy again (after a look for another copy)
            if adopt:
                return self._adopt_or_create(body, spec, salt=event_id)
            return self._create(body, spec, salt=event_id)
        if resp.status_code == 412 and conflicts < 2:  # changed remotely: ours wins
            current = self._get_event(event_id)
            if current is None:
                return self._create(body, spec, salt=event_id)
            owner = _marker_value(current.get("singleValueExtendedProperties"))
            if owner not in (None, spec.appointment_id):
                raise ProviderError(f"the remote event recorded for appointment {spec.appointment_id} "
                                    "belongs to another appointment")
            return self._update(event_id, current.get("@odata.etag"), body, spec, adopt, conflicts + 1)
        raise _failure(resp, "updating a copied appointment")

    def _delete(self, event_id: str) -> None:
        resp = self.graph.send("DELETE", f"/me/events/{_q(event_id)}")
        if resp.status_code in (200, 202, 204, 404, 410):
            return
        raise _failure(resp, "deleting a copied appointment")

    def delete_copy(self, ref: CopyRef) -> None:
        self._delete(ref.remote_id)

    # many copies: $batch --------------------------------------------------------------------------------------
    def put_copies(self, work: list[tuple[CopySpec, CopyRef | None]]) -> list:
        """put_copy for each item of `work` (at most BATCH_SIZE), in order, in one lookup batch (items without
        `existing`) and one write batch (see the module docstring). A failed item is its ProviderError (or
        UsageError for a spec that ends before it starts); RelinkNeeded / Unreachable raise."""
        if len(work) > BATCH_SIZE:
            out: list = []
            for i in range(0, len(work), BATCH_SIZE):
                out.extend(self.put_copies(work[i:i + BATCH_SIZE]))
            return out
        results: list = [None] * len(work)
        for i, (spec, _existing) in enumerate(work):
            if spec.end <= spec.start:
                results[i] = UsageError("a copy must end after it starts")
        try:
            self._put_batch(work, results)
        except ProviderError as exc:  # the batch as a whole was refused: every item not done yet failed with it
            results = [exc if r is None else r for r in results]
        return results

    def _put_batch(self, work: list, results: list) -> None:
        targets: dict[int, tuple[str, str | None]] = {}  # item -> (event id, etag) to PATCH; else POST
        fresh = []
        for i, (_spec, existing) in enumerate(work):
            if results[i] is not None:
                continue
            if existing is not None:
                targets[i] = (existing.remote_id, existing.etag)
            else:
                fresh.append(i)
        if fresh:  # crash safety: a copy of ours already there (found by marker) is updated, never made twice
            base = f"{self._calendar_path()}/events?"
            lookups = {str(i): {"method": "GET", "headers": {"Prefer": PREFER},
                                "url": base + urlencode(self._find_params(work[i][0].appointment_id),
                                                        quote_via=quote)} for i in fresh}
            answers = self._batch(lookups, "looking up copied appointments")
            for i in fresh:
                spec, existing = work[i]
                a = answers[str(i)]
                if a.status_code == 401:
                    results[i] = self._single(spec, existing)
                    continue
                if a.status_code != 200:
                    results[i] = self._item_error(a, "looking up a copied appointment", reader=self.account)
                    continue
                try:
                    body = a.json()
                    found = [ev for ev in body.get("value", []) if isinstance(ev, dict) and ev.get("id")]
                except (ValueError, AttributeError, TypeError):
                    results[i] = ProviderError("Microsoft Graph answered a lookup in a batch with something "
                                               "that is not JSON", hint="try again later")
                    continue
                if len(found) > 1 or body.get("@odata.nextLink"):
                    results[i] = self._single(spec, existing)  # duplicates from an old crash: put_copy merges them
                elif found:
                    targets[i] = (found[0]["id"], found[0].get("@odata.etag"))
        writes: dict[str, dict] = {}
        for i, (spec, _existing) in enumerate(work):
            if results[i] is not None:
                continue
            body = self._copy_body(spec)
            headers = {"Content-Type": "application/json", "Prefer": PREFER}
            if i in targets:
                event_id, etag = targets[i]
                if etag:
                    headers["If-Match"] = etag
                writes[str(i)] = {"method": "PATCH", "url": f"/me/events/{_q(event_id)}", "headers": headers,
                                  "body": body}
            else:
                body["transactionId"] = _transaction_id(spec.appointment_id, spec.content_hash)
                writes[str(i)] = {"method": "POST", "url": f"{self._calendar_path()}/events", "headers": headers,
                                  "body": body}
        if not writes:
            return
        answers = self._batch(writes, "copying appointments")
        for key, req in writes.items():
            i = int(key)
            spec, existing = work[i]
            a = answers[key]
            if a.status_code in (200, 201):
                try:
                    ev = a.json()
                    event_id = ev.get("id") or (targets[i][0] if i in targets else None)
                except (ValueError, AttributeError):
                    ev, event_id = {}, None
                if not event_id:
                    results[i] = ProviderError("Microsoft Graph wrote a copy in a batch but did not say its id")
                else:
                    results[i] = CopyRef(event_id, ev.get("@odata.etag"))
            elif req["method"] == "POST" and _graph_code(a).lower() == "errorduplicatetransactionid":
                # that transactionId made another (since deleted or changed) event: one new POST with a fresh id
                results[i] = self._single(spec, existing, lambda s=spec: self._create(
                    self._copy_body(s), s, f"\n{uuid.uuid4().hex}", again=False))
            elif req["method"] == "POST" and a.status_code == 404:
                raise RelinkNeeded(f"the Microsoft calendar is gone or no longer shared with {self.account}; "
                                   f"{RELINK_HINT}")
            elif a.status_code == 401 or (req["method"] == "PATCH" and a.status_code in (404, 410, 412)):
                results[i] = self._single(spec, existing)  # refresh / re-create / refetch-and-overwrite
            else:
                results[i] = self._item_error(a, "copying an appointment")

    def _single(self, spec: CopySpec, existing: CopyRef | None, call=None):
        """The single-request path for one item of a batch: its CopyRef or its ProviderError."""
        try:
            return call() if call else self.put_copy(spec, existing)
        except ProviderError as exc:
            return exc

    @staticmethod
    def _item_error(answer: "_ItemResponse", doing: str, reader: str | None = None) -> ProviderError:
        """The ProviderError of a failed batch item; raises Unreachable / RelinkNeeded. `reader`: the item was a
        read by that account (a 403 access-denied then needs a relink, as for single reads)."""
        if answer.status_code == 0:
            raise Unreachable(f"Microsoft Graph left a request of a batch unanswered while {doing}",
                              hint="run `engage sync` again later")
        err = _failure(answer, doing) if reader is None else _read_failure(answer, doing, reader)
        if not isinstance(err, ProviderError):
            raise err  # Unreachable: throttled or unavailable after every retry; RelinkNeeded
        return err

    def _batch(self, items: dict[str, dict], doing: str) -> dict[str, _ItemResponse]:
        """Send `items` (id -> {"method", "url", "headers", "body"}) as one $batch; items answered 429/5xx (or
        not at all) are sent again, only those, after the largest Retry-After among them, up to BATCH_TRIES
        batches. Returns id -> the last answer (status 0: never answered)."""
        pending = dict(items)
        answers: dict[str, _ItemResponse] = {}
        for attempt in range(1, BATCH_TRIES + 1):
            payload = {"requests": [dict(req, id=key) for key, req in pending.items()]}
            resp = self.graph.send("POST", "/$batch", json_body=payload)
            if resp.status_code != 200:
                raise _failure(resp, doing)
            got: dict[str, _ItemResponse] = {}
            for item in _json(resp).get("responses") or []:
                if isinstance(item, dict) and str(item.get("id")) in pending:
                    got[str(item["id"])] = _ItemResponse(item)
            for key in pending:
                answers[key] = got.get(key) or _ItemResponse({"status": 0})
            again = [key for key in pending if answers[key].status_code in http.RETRY_STATUSES | {0}]
            if not again or attempt == BATCH_TRIES:
                break
            waits = [w for w in (answers[key].retry_after() for key in again) if w is not None]
            _sleep(http.backoff_delay(attempt, max(waits) if waits else None))
            pending = {key: items[key] for key in again}
        return answers
