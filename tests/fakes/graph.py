"""A local HTTPS fake of the Microsoft identity platform (v2.0 endpoints) and the Microsoft Graph calendar API,
on tests/fakes/https.HttpsServer, for the REAL msal and requests.

Identity (authority = <url>/<tenant>):
    GET  /<tenant>/v2.0/.well-known/openid-configuration
    POST /<tenant>/oauth2/v2.0/devicecode       (interval from `device_interval`, 0 by default: msal polls at once)
    POST /<tenant>/oauth2/v2.0/token            device_code (authorization_pending `device_pending` times, then
                                                tokens; `device_mode` "decline"/"expire"), refresh_token (rotates;
                                                revoked -> invalid_grant), authorization_code (PKCE S256 checked)
    Token answers carry client_info (base64url JSON uid/utid) and an unsigned id_token.
    `authorize(auth_url)` plays the user in a browser: it returns the form fields to POST to the redirect URI.

Graph (root <url>/v1.0; every request needs a live access token, else 401):
    GET    /me/calendars
    GET    /me/calendars/{id}/calendarView/delta   ?startDateTime&endDateTime | $skiptoken | $deltatoken; pages of
           min(page_size, odata.maxpagesize); @odata.nextLink / @odata.deltaLink; changes as full events or
           {"id", "@removed": {"reason": "deleted"}}; an expired/unknown delta token -> 410 SyncStateNotFound;
           $expand on delta -> 400 (as Graph); occurrences of a series come sparse (id/type/start/end/seriesMasterId)
    GET    /me/calendars/{id}/events  $filter=singleValueExtendedProperties/Any(ep: ep/id eq '..' and ep/value eq '..'
           | ne null), $expand=singleValueExtendedProperties($filter=id eq '..'), $select, $top (+ nextLink)
    POST   /me/calendars/{id}/events  transactionId: same event again -> the existing one; used by another or a
           deleted event -> 400 ErrorDuplicateTransactionId
    GET/PATCH/DELETE /me/events/{id}  PATCH honours If-Match (412 ErrorIrresolvableConflict); 404 ErrorItemNotFound
    POST   /$batch  {"requests": [{"id", "method", "url" (relative, e.g. "/me/events/{id}"), "headers", "body"}]}
           -> 200 {"responses": [{"id", "status", "headers", "body"}]} in a shuffled order. At most 20 items and
           unique ids (else 400 for the whole batch); an item with a body needs a Content-Type header (else that
           item answers 400); each item goes through the same handlers as a single request, with ITS headers
           (Prefer, If-Match). The batch counts as one request in `log`; its items go to `batch_log`.
    Requests without Prefer outlook.timezone="UTC" and IdType="ImmutableId" are refused (400 FakeNeedsPrefer); in
    a batch this applies to each item (the Prefer of the batch request itself is ignored, as by Graph).

Test controls: add_event / add_series / edit_event / delete_event (another client), copies(), revoke(),
invalidate_access_tokens(), expire_delta_tokens(), fail_next(n, status, retry_after) (whole requests),
fail_items(n, status, retry_after, method=, contains=) (items of batches), `index_lag` (True: $filter listings do
not see events yet, like Exchange's lagging index), counters `log` (method, path), `batch_log` (one list of
(method, url) per batch) and `grants` (grant type -> count).
`page_loops` ({"calendars" | "events" | "delta": "repeat" | "endless"}) makes a listing never end: "repeat" answers
a next page with the same @odata.nextLink again, "endless" with a fresh one every time. `deny_reads` (an error code
such as "ErrorAccessDenied", or None) answers every GET 403 with that code (as when the calendar is unshared).
"""

from __future__ import annotations

import base64
import collections
import hashlib
import itertools
import json
import random
import re
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from fakes.https import HttpsServer

UTC = timezone.utc
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _fmt(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000")


def _parse(text: str) -> datetime:
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class GraphFake(HttpsServer):
    def __init__(self, folder, *, client_id: str = "11111111-2222-3333-4444-555555555555", page_size: int = 2,
                 username: str = "advisor@example.com"):
        super().__init__(_Handler, folder)
        self.lock = threading.RLock()
        self.client_id = client_id
        self.page_size = page_size
        self.uid, self.utid = "00000000-0000-0000-aaaa-000000000001", "72f988bf-0000-0000-0000-000000000002"
        self.username = username
        # identity
        self.device_pending = 2
        self.device_mode = "approve"  # approve | decline | expire
        self.device_interval = 0
        self.device_codes: dict[str, dict] = {}
        self.user_codes: list[str] = []
        self.auth_codes: dict[str, dict] = {}
        self.access_tokens: set[str] = set()
        self.refresh_tokens: dict[str, bool] = {}  # token -> valid
        self.issued_refresh_tokens: list[str] = []
        self.grants: collections.Counter = collections.Counter()
        # graph
        self.calendars = {
            "AAMkAGcalWork-_0=": {"name": "Calendar", "isDefaultCalendar": True, "canEdit": True},
            "AAMkAGcalHolidays-_1=": {"name": "Holidays in Norway", "isDefaultCalendar": False, "canEdit": False},
        }
        self.events: dict[str, dict] = {}
        self.version = 0
        self.changes: list[tuple[int, str]] = []
        self.delta_tokens: dict[str, tuple] = {}
        self.skip_tokens: dict[str, dict] = {}
        self.transactions: dict[str, str] = {}  # transactionId -> event id
        self.faults: collections.deque = collections.deque()
        self.item_faults: list[dict] = []
        self.index_lag = False
        self.page_loops: dict[str, str] = {}  # listing ("calendars" | "events" | "delta") -> "repeat" | "endless"
        self.deny_reads: str | None = None  # an error code: every GET answers 403 with it
        self.log: list[tuple[str, str]] = []
        self.batch_log: list[list[tuple[str, str]]] = []
        self.shuffle = random.Random(7).shuffle
        self.violations: list[str] = []
        self._ids = itertools.count(1)
        # stop() returns at once (serve_forever polls for shutdown every 0.5 s by default)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    # endpoints -------------------------------------------------------------------------------------------------
    @property
    def authority(self) -> str:
        return f"{self.url}/common"

    @property
    def graph_url(self) -> str:
        return f"{self.url}/v1.0"

    def env(self) -> dict[str, str]:
        return {**self.ca_env(), "ENGAGE_MS_AUTHORITY": self.authority, "ENGAGE_GRAPH_URL": self.graph_url,
                "ENGAGE_MS_CLIENT_ID": self.client_id}

    @property
    def work_calendar(self) -> str:
        return next(k for k, v in self.calendars.items() if v["isDefaultCalendar"])

    # test controls ----------------------------------------------------------------------------------------------
    def _new_id(self) -> str:
        return f"AAMkAGevt{next(self._ids):04d}-{secrets.token_hex(4)}_x="

    def _touch(self, event_id: str) -> None:
        self.version += 1
        ev = self.events[event_id]
        ev["etag"] = f'W/"{secrets.token_hex(6)}"'
        ev["modified"] = datetime.now(UTC)
        self.changes.append((self.version, event_id))

    def add_event(self, calendar_id: str, start, end, subject: str = "Busy", *, show_as: str = "busy",
                  cancelled: bool = False, all_day: bool = False, response: str = "organizer",
                  props: dict | None = None, transaction_id: str | None = None) -> str:
        """Another client writes an event. For all_day, start/end are dates (end exclusive), stored floating."""
        if all_day:
            start = datetime.combine(start, datetime.min.time(), UTC)
            end = datetime.combine(end, datetime.min.time(), UTC)
        with self.lock:
            eid = self._new_id()
            self.events[eid] = {
                "id": eid, "calendar": calendar_id, "subject": subject, "start": start.astimezone(UTC),
                "end": end.astimezone(UTC), "showAs": show_as, "isCancelled": cancelled, "isAllDay": all_day,
                "response": response, "type": "singleInstance", "props": dict(props or {}),
                "transactionId": transaction_id, "deleted": False, "body": "",
                "created": datetime.now(UTC),
            }
            if transaction_id:
                self.transactions[transaction_id] = eid
            self._touch(eid)
            return eid

    def add_series(self, calendar_id: str, starts: list[datetime], minutes: int, subject: str = "Standup", *,
                   show_as: str = "busy") -> tuple[str, list[str]]:
        """A recurring series: a master (never listed by calendarView) and one occurrence per start."""
        with self.lock:
            master = self.add_event(calendar_id, starts[0], starts[0] + timedelta(minutes=minutes), subject,
                                    show_as=show_as)
            self.events[master]["type"] = "seriesMaster"
            occurrences = []
            for s in starts:
                oid = self.add_event(calendar_id, s, s + timedelta(minutes=minutes), subject, show_as=show_as)
                self.events[oid]["type"] = "occurrence"
                self.events[oid]["seriesMasterId"] = master
                occurrences.append(oid)
            return master, occurrences

    def edit_event(self, event_id: str, **fields) -> None:
        with self.lock:
            self.events[event_id].update(fields)
            self._touch(event_id)

    def delete_event(self, event_id: str) -> None:
        with self.lock:
            self.events[event_id]["deleted"] = True
            self._touch(event_id)

    def live(self, calendar_id: str | None = None) -> list[dict]:
        with self.lock:
            return [e for e in self.events.values() if not e["deleted"]
                    and (calendar_id is None or e["calendar"] == calendar_id)]

    def copies(self, calendar_id: str | None = None) -> dict[str, list[tuple[datetime, datetime]]]:
        """appointment id -> [(start, end)] of every live event carrying our marker."""
        out: dict = {}
        for ev in self.live(calendar_id):
            for pid, value in ev["props"].items():
                if "engageappointmentid" in pid.lower():
                    out.setdefault(value, []).append((ev["start"], ev["end"]))
        return out

    def revoke(self) -> None:
        """The user (or an admin) revoked the grant: every token stops working."""
        with self.lock:
            for rt in self.refresh_tokens:
                self.refresh_tokens[rt] = False
            self.access_tokens.clear()

    def invalidate_access_tokens(self) -> None:
        """Access tokens stop working while msal still thinks they are valid (refresh tokens still work)."""
        with self.lock:
            self.access_tokens.clear()

    def expire_delta_tokens(self) -> None:
        with self.lock:
            self.delta_tokens.clear()
            self.skip_tokens.clear()

    def fail_next(self, n: int, status: int = 429, retry_after: str | None = "1") -> None:
        """The next `n` Graph requests answer `status` (with Retry-After when given)."""
        with self.lock:
            for _ in range(n):
                self.faults.append((status, retry_after))

    def fail_items(self, n: int, status: int = 429, retry_after: str | None = "1", *, method: str | None = None,
                   contains: str = "") -> None:
        """The next `n` batch items with `method` whose url or body contains `contains` answer `status`."""
        with self.lock:
            self.item_faults.append({"left": n, "status": status, "retry_after": retry_after, "method": method,
                                     "contains": contains})

    def _item_fault(self, method: str, text: str):
        with self.lock:
            for f in self.item_faults:
                if f["left"] > 0 and f["method"] in (None, method) and f["contains"] in text:
                    f["left"] -= 1
                    return f["status"], f["retry_after"]
        return None

    def batch_requests(self) -> int:
        return len(self.graph_requests("POST", "/$batch"))

    def graph_requests(self, method: str | None = None, contains: str = "") -> list[tuple[str, str]]:
        return [(m, p) for m, p in self.log if p.startswith("/v1.0") and (method is None or m == method)
                and contains in unquote(p)]

    def authorize(self, auth_url: str) -> dict:
        """The user signs in in a browser: returns the form_post fields (code, state) for the redirect URI."""
        q = parse_qs(urlsplit(auth_url).query)
        assert q["client_id"][0] == self.client_id
        assert q.get("code_challenge_method", [""])[0] == "S256"
        code = "code-" + secrets.token_hex(8)
        with self.lock:
            self.auth_codes[code] = {"challenge": q["code_challenge"][0], "redirect_uri": q["redirect_uri"][0],
                                     "nonce": q.get("nonce", [None])[0]}
        return {"code": code, "state": q.get("state", [""])[0], "client_info": self._client_info()}

    # identity helpers -------------------------------------------------------------------------------------------
    def _client_info(self) -> str:
        return _b64url(json.dumps({"uid": self.uid, "utid": self.utid}).encode())

    def _id_token(self, nonce: str | None = None) -> str:
        now = int(time.time())
        header = _b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        claims = {"aud": self.client_id, "iss": f"{self.url}/{self.utid}/v2.0", "iat": now, "nbf": now,
                  "exp": now + 3600, "name": "Ada Advisor", "oid": self.uid, "preferred_username": self.username,
                  "sub": "subject-" + self.uid, "tid": self.utid, "ver": "2.0"}
        if nonce:
            claims["nonce"] = nonce
        return f"{header}.{_b64url(json.dumps(claims).encode())}."

    def _tokens(self, scope: str, nonce: str | None = None) -> dict:
        at, rt = "at-" + secrets.token_urlsafe(24), "rt-" + secrets.token_urlsafe(32)
        self.access_tokens.add(at)
        self.refresh_tokens[rt] = True
        self.issued_refresh_tokens.append(rt)
        reserved = {"openid", "profile", "offline_access"}
        granted = " ".join([s for s in scope.split() if s not in reserved] + ["openid", "profile"])
        return {"token_type": "Bearer", "scope": granted, "expires_in": 3600, "ext_expires_in": 3600,
                "access_token": at, "refresh_token": rt, "id_token": self._id_token(nonce),
                "client_info": self._client_info()}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeGraph/1"
    disable_nagle_algorithm = True
    wbufsize = 1 << 16  # one write per response (flushed by handle_one_request): no Nagle/delayed-ACK stalls

    def log_message(self, format, *args):  # quiet
        pass

    @property
    def fake(self) -> GraphFake:
        return self.server.fake

    # plumbing ------------------------------------------------------------------------------------------------
    _capture: list | None = None  # set while one item of a $batch is handled: answers go here, not on the wire

    def _send(self, status: int, body=None, headers: dict | None = None) -> None:
        if self._capture is not None:
            self._capture.append((status, body, dict(headers or {})))
            return
        data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json" if not isinstance(body, bytes) else "text/html")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, message: str = "", headers: dict | None = None) -> None:
        self._send(status, {"error": {"code": code, "message": message or code,
                                      "innerError": {"request-id": secrets.token_hex(8)}}}, headers)

    def _oauth_error(self, error: str, description: str = "") -> None:
        self._send(400, {"error": error, "error_description": description or error, "error_codes": [0]})

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _dispatch(self, method: str) -> None:
        body = self._body()
        split = urlsplit(self.path)
        path = split.path
        query = parse_qs(split.query, keep_blank_values=True)
        q = {k: v[0] for k, v in query.items()}
        with self.fake.lock:
            self.fake.log.append((method, self.path))
        try:
            if path.startswith("/v1.0/"):
                self._graph(method, unquote(path[len("/v1.0"):]), q, body)
            else:
                self._identity(method, path, q, body)
        except BrokenPipeError:
            pass

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # identity ------------------------------------------------------------------------------------------------
    def _identity(self, method: str, path: str, q: dict, body: bytes) -> None:
        fake = self.fake
        m = re.fullmatch(r"/([^/]+)/v2\.0/\.well-known/openid-configuration", path)
        if m and method == "GET":
            tenant, base = m.group(1), fake.url
            return self._send(200, {
                "issuer": f"{base}/{fake.utid}/v2.0",
                "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
                "end_session_endpoint": f"{base}/{tenant}/oauth2/v2.0/logout",
                "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                          "client_secret_basic"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "tenant_region_scope": None,
            })
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
        if re.fullmatch(r"/[^/]+/oauth2/v2\.0/devicecode", path) and method == "POST":
            if form.get("client_id") != fake.client_id:
                return self._oauth_error("unauthorized_client", "AADSTS700016: Application not found")
            device_code = secrets.token_urlsafe(24)
            user_code = f"{secrets.token_hex(2).upper()}-{secrets.token_hex(2).upper()}"
            with fake.lock:
                fake.device_codes[device_code] = {"polls": 0, "scope": form.get("scope", ""), "used": False}
                fake.user_codes.append(user_code)
            return self._send(200, {
                "device_code": device_code, "user_code": user_code,
                "verification_uri": f"{fake.url}/devicelogin", "expires_in": 900,
                "interval": fake.device_interval,
                "message": f"To sign in, use a web browser to open {fake.url}/devicelogin and enter {user_code}.",
            })
        if re.fullmatch(r"/[^/]+/oauth2/v2\.0/token", path) and method == "POST":
            return self._token(form)
        if re.fullmatch(r"/[^/]+/oauth2/v2\.0/authorize", path):
            return self._send(200, b"<html><body>fake sign-in page</body></html>")
        return self._send(404, {"error": "not_found"})

    def _token(self, form: dict) -> None:
        fake = self.fake
        grant = form.get("grant_type", "")
        with fake.lock:
            fake.grants[{"refresh_token": "refresh_token", "authorization_code": "authorization_code",
                         DEVICE_GRANT: "device_code"}.get(grant, grant)] += 1
            if form.get("client_id") != fake.client_id:
                return self._oauth_error("unauthorized_client", "AADSTS700016: Application not found")
            if grant == DEVICE_GRANT:
                entry = fake.device_codes.get(form.get("device_code", ""))
                if entry is None or entry["used"]:
                    return self._oauth_error("bad_verification_code")
                entry["polls"] += 1
                if fake.device_mode == "decline":
                    return self._oauth_error("authorization_declined", "AADSTS70000: The user declined")
                if fake.device_mode == "expire" and entry["polls"] > fake.device_pending:
                    return self._oauth_error("expired_token", "AADSTS70020: The provided value is expired")
                if entry["polls"] <= fake.device_pending or fake.device_mode == "expire":
                    return self._oauth_error("authorization_pending", "AADSTS70016: pending")
                entry["used"] = True
                return self._send(200, fake._tokens(entry["scope"]))
            if grant == "refresh_token":
                if not fake.refresh_tokens.get(form.get("refresh_token", "")):
                    return self._oauth_error("invalid_grant", "AADSTS50173: The provided grant has been revoked.")
                return self._send(200, fake._tokens(form.get("scope", "")))
            if grant == "authorization_code":
                entry = fake.auth_codes.pop(form.get("code", ""), None)
                verifier = form.get("code_verifier", "")
                if entry is None or _b64url(hashlib.sha256(verifier.encode()).digest()) != entry["challenge"]:
                    return self._oauth_error("invalid_grant", "AADSTS70000: bad code")
                return self._send(200, fake._tokens(form.get("scope", ""), entry["nonce"]))
        return self._oauth_error("unsupported_grant_type")

    # graph ---------------------------------------------------------------------------------------------------
    def _graph(self, method: str, path: str, q: dict, body: bytes) -> None:
        fake = self.fake
        with fake.lock:
            fault = fake.faults.popleft() if fake.faults else None
        if fault:
            status, retry_after = fault
            return self._error(status, "TooManyRequests" if status == 429 else "ServiceUnavailable",
                               "fault injected", {"Retry-After": retry_after} if retry_after else None)
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        with fake.lock:
            ok = token in fake.access_tokens
        if not ok:
            return self._error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.",
                               {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if path == "/$batch" and method == "POST":
            return self._batch(body)
        return self._route(method, path, q, body, self.headers)

    def _batch(self, raw: bytes) -> None:
        fake = self.fake
        try:
            reqs = json.loads(raw or b"{}")["requests"]
            assert isinstance(reqs, list)
        except (ValueError, KeyError, TypeError, AssertionError):
            return self._error(400, "BadRequest", "Invalid batch payload format.")
        if not 1 <= len(reqs) <= 20:
            return self._error(400, "BadRequest", "Number of batch requests must be between 1 and 20.")
        ids = [str(r.get("id", "")) if isinstance(r, dict) else "" for r in reqs]
        if "" in ids or len({i.lower() for i in ids}) != len(ids):
            return self._error(400, "BadRequest", "Batch request ids must be present and unique.")
        with fake.lock:
            fake.batch_log.append([(str(r.get("method", "")).upper(), str(r.get("url", ""))) for r in reqs])
        responses = [self._batch_item(r) for r in reqs]
        fake.shuffle(responses)
        return self._send(200, {"responses": responses})

    def _batch_item(self, req: dict) -> dict:
        method, url = str(req.get("method", "")).upper(), str(req.get("url", ""))
        headers = _ItemHeaders(req.get("headers") or {})
        has_body = "body" in req and req["body"] is not None
        body = json.dumps(req["body"]).encode() if has_body else b""
        self._capture = []
        try:
            fault = self.fake._item_fault(method, url + body.decode())
            if fault:
                status, retry_after = fault
                self._error(status, {429: "TooManyRequests", 503: "ServiceUnavailable"}.get(status, "BadRequest"),
                            "fault injected", {"Retry-After": retry_after} if retry_after else None)
            elif not url.startswith("/") or url.startswith("/v1.0/"):
                self._error(400, "BadRequest", "Batch items need a URL relative to the version, e.g. /me")
            elif has_body and "application/json" not in headers.get("Content-Type", ""):
                self._error(400, "BadRequest", "Content-Type header must be specified for a request with a body.")
            else:
                split = urlsplit(url)
                q = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
                self._route(method, unquote(split.path), q, body, headers)
            status, payload, out_headers = self._capture[0]
        finally:
            self._capture = None
        item = {"id": req["id"], "status": status, "headers": out_headers}
        if payload is not None:
            item["headers"]["Content-Type"] = "application/json"
            item["body"] = payload
        return item

    def _route(self, method: str, path: str, q: dict, body: bytes, headers) -> None:
        fake = self.fake
        prefer = headers.get("Prefer", "")
        if 'outlook.timezone="UTC"' not in prefer or 'IdType="ImmutableId"' not in prefer:
            fake.violations.append(f"{method} {path}: Prefer {prefer!r}")
            return self._error(400, "FakeNeedsPrefer", 'send Prefer: outlook.timezone="UTC", IdType="ImmutableId"')
        if method == "GET" and fake.deny_reads:
            return self._error(403, fake.deny_reads, "Access is denied. Check credentials and try again.")
        m = re.fullmatch(r"/me/calendars/([^/]+)(/.*)?", path)
        if path == "/me/calendars" and method == "GET":
            return self._list_calendars(q)
        if m and m.group(1) in fake.calendars:
            cal, rest = m.group(1), m.group(2) or ""
            if rest == "/calendarView/delta" and method == "GET":
                return self._delta(cal, q, prefer)
            if rest == "/events" and method == "GET":
                return self._list_events(cal, q)
            if rest == "/events" and method == "POST":
                return self._create(cal, json.loads(body or b"{}"))
        elif m:
            return self._error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        m = re.fullmatch(r"/me/events/([^/]+)", path)
        if m:
            eid = m.group(1)
            with fake.lock:
                ev = fake.events.get(eid)
                if ev is None or ev["deleted"]:
                    return self._error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
                if method == "GET":
                    return self._send(200, self._payload(ev, q))
                if method == "DELETE":
                    fake.delete_event(eid)
                    return self._send(204)
                if method == "PATCH":
                    match = headers.get("If-Match")
                    if match and match != ev["etag"]:
                        return self._error(412, "ErrorIrresolvableConflict",
                                           "The change key passed in the request does not match the current change key")
                    self._apply(ev, json.loads(body or b"{}"))
                    fake._touch(eid)
                    return self._send(200, self._payload(ev, {}))
        return self._error(400, "BadRequest", f"fake does not support {method} {path}")

    def _list_calendars(self, q: dict) -> None:
        fake = self.fake
        value = [{"id": cid, "name": c["name"], "isDefaultCalendar": c["isDefaultCalendar"], "canEdit": c["canEdit"],
                  "color": "auto", "owner": {"name": "Ada Advisor", "address": fake.username}}
                 for cid, c in fake.calendars.items()]
        body: dict = {"value": value}
        loop = fake.page_loops.get("calendars")
        if loop:
            token = q["$skiptoken"] if loop == "repeat" and q.get("$skiptoken") else secrets.token_urlsafe(8)
            body["@odata.nextLink"] = f"{fake.graph_url}/me/calendars?$skiptoken={token}"
        return self._send(200, body)

    def _payload(self, ev: dict, q: dict, *, sparse: bool = False) -> dict:
        if sparse:
            return {"@odata.type": "#microsoft.graph.event", "@odata.etag": ev["etag"], "id": ev["id"],
                    "seriesMasterId": ev.get("seriesMasterId"), "type": ev["type"],
                    "start": {"dateTime": _fmt(ev["start"]), "timeZone": "UTC"},
                    "end": {"dateTime": _fmt(ev["end"]), "timeZone": "UTC"}}
        out = {
            "@odata.etag": ev["etag"], "id": ev["id"],
            "createdDateTime": ev["created"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "lastModifiedDateTime": ev["modified"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "changeKey": ev["etag"][3:-1], "transactionId": ev["transactionId"], "subject": ev["subject"],
            "bodyPreview": ev.get("body", "")[:255], "isAllDay": ev["isAllDay"], "isCancelled": ev["isCancelled"],
            "showAs": ev["showAs"], "type": ev["type"], "seriesMasterId": ev.get("seriesMasterId"),
            "responseStatus": {"response": ev["response"], "time": "0001-01-01T00:00:00Z"},
            "start": {"dateTime": _fmt(ev["start"]), "timeZone": "UTC"},
            "end": {"dateTime": _fmt(ev["end"]), "timeZone": "UTC"},
        }
        select = q.get("$select")
        if select:
            keep = {s.strip() for s in select.split(",")} | {"id", "@odata.etag"}
            out = {k: v for k, v in out.items() if k in keep}
        expand = q.get("$expand", "")
        if expand:
            m = re.fullmatch(r"singleValueExtendedProperties\(\$filter=id eq '((?:[^']|'')*)'\)", expand)
            assert m, f"fake cannot expand {expand!r}"
            pid = m.group(1).replace("''", "'")
            props = [{"id": k, "value": v} for k, v in ev["props"].items() if k.lower() == pid.lower()]
            if props:
                out["singleValueExtendedProperties"] = props
        return out

    @staticmethod
    def _overlaps(ev: dict, window: tuple[datetime, datetime]) -> bool:
        return ev["end"] > window[0] and ev["start"] < window[1]

    def _page(self, cal: str, window, items: list[dict], version: int, size: int, skiptoken: str | None = None):
        fake = self.fake
        page, rest = items[:size], items[size:]
        body: dict = {"@odata.context": f"{fake.graph_url}/$metadata#Collection(event)", "value": page}
        base = f"{fake.graph_url}/me/calendars/{quote(cal, safe='')}/calendarView/delta"
        loop = fake.page_loops.get("delta")
        if loop == "repeat" and skiptoken:
            body["@odata.nextLink"] = f"{base}?$skiptoken={skiptoken}"  # the same link (and page) again, forever
        elif rest or loop:
            token = secrets.token_urlsafe(16)
            fake.skip_tokens[token] = {"cal": cal, "window": window, "version": version, "items": rest or page}
            body["@odata.nextLink"] = f"{base}?$skiptoken={token}"
        else:
            token = secrets.token_urlsafe(16)
            fake.delta_tokens[token] = (cal, window, version)
            body["@odata.deltaLink"] = f"{base}?$deltatoken={token}"
        return self._send(200, body)

    def _delta(self, cal: str, q: dict, prefer: str) -> None:
        fake = self.fake
        if "$expand" in q or "$filter" in q or "$select" in q:
            return self._error(400, "BadRequest", "Parsing OData Select and Expand failed")
        m = re.search(r"odata\.maxpagesize=(\d+)", prefer)
        size = min(fake.page_size, int(m.group(1))) if m else fake.page_size
        with fake.lock:
            if "$skiptoken" in q:
                tokens = fake.skip_tokens
                state = tokens.get(q["$skiptoken"]) if fake.page_loops.get("delta") else tokens.pop(q["$skiptoken"], None)
                if state is None:
                    return self._error(410, "SyncStateNotFound", "The sync state generation is not found.")
                return self._page(cal, state["window"], state["items"], state["version"], size, q["$skiptoken"])
            if "$deltatoken" in q:
                state = fake.delta_tokens.get(q["$deltatoken"])
                if state is None or state[0] != cal:
                    return self._error(410, "SyncStateNotFound", "The sync state generation is not found.")
                _, window, since = state
                changed = sorted({eid for v, eid in fake.changes if v > since}, key=lambda e: e)
                items = []
                for eid in changed:
                    ev = fake.events[eid]
                    if ev["calendar"] != cal or ev["type"] == "seriesMaster":
                        continue
                    if not ev["deleted"] and self._overlaps(ev, window):
                        items.append(self._payload(ev, {}, sparse=ev["type"] == "occurrence"))
                    else:
                        items.append({"@odata.type": "#microsoft.graph.event", "id": eid,
                                      "@removed": {"reason": "deleted"}})
                return self._page(cal, window, items, fake.version, size)
            try:
                window = (_parse(q["startDateTime"]), _parse(q["endDateTime"]))
            except (KeyError, ValueError):
                return self._error(400, "ErrorInvalidParameter", "startDateTime and endDateTime are required")
            evs = sorted((e for e in fake.live(cal) if e["type"] != "seriesMaster" and self._overlaps(e, window)),
                         key=lambda e: (e["start"], e["id"]))
            items = [self._payload(e, {}, sparse=e["type"] == "occurrence") for e in evs]
            return self._page(cal, window, items, fake.version, size)

    _FILTER = re.compile(r"singleValueExtendedProperties/any\(ep: ep/id eq '((?:[^']|'')*)' and ep/value "
                         r"(eq|ne) (?:'((?:[^']|'')*)'|null)\)", re.IGNORECASE)

    def _list_events(self, cal: str, q: dict) -> None:
        fake = self.fake
        with fake.lock:
            evs = [e for e in fake.live(cal) if e["type"] in ("singleInstance", "seriesMaster")]
            flt = q.get("$filter")
            if flt:
                m = self._FILTER.fullmatch(flt)
                if not m:
                    return self._error(400, "ErrorInvalidUrlQueryFilter", "fake cannot parse $filter")
                pid, op, value = m.group(1).replace("''", "'").lower(), m.group(2).lower(), m.group(3)
                value = value.replace("''", "'") if value is not None else None

                def keep(e):
                    got = next((v for k, v in e["props"].items() if k.lower() == pid), None)
                    return got == value if op == "eq" else got is not None

                evs = [e for e in evs if keep(e) and not fake.index_lag]
            evs.sort(key=lambda e: e["id"])
            top, skip = int(q.get("$top") or 10), int(q.get("$skip") or 0)
            page = [self._payload(e, q) for e in evs[skip:skip + top]]
            body: dict = {"value": page}
            loop = fake.page_loops.get("events")
            if skip + top < len(evs) or loop:
                params = dict(q) if loop == "repeat" and "$skip" in q else dict(q, **{"$skip": str(skip + top)})
                body["@odata.nextLink"] = (f"{fake.graph_url}/me/calendars/{quote(cal, safe='')}/events?"
                                           + urlencode(params, quote_via=quote))
            return self._send(200, body)

    def _apply(self, ev: dict, body: dict) -> None:
        for field in ("start", "end"):
            if field in body:
                tz = body[field].get("timeZone")
                assert tz == "UTC", f"fake expects UTC times, got {tz!r}"
                ev[field] = _parse(body[field]["dateTime"])
        for src, dst in (("subject", "subject"), ("showAs", "showAs"), ("isAllDay", "isAllDay")):
            if src in body:
                ev[dst] = body[src]
        if "body" in body:
            ev["body"] = (body["body"] or {}).get("content", "")
        for prop in body.get("singleValueExtendedProperties") or []:
            ev["props"][prop["id"]] = prop["value"]

    def _create(self, cal: str, body: dict) -> None:
        fake = self.fake
        with fake.lock:
            if not fake.calendars[cal]["canEdit"]:
                return self._error(403, "ErrorAccessDenied", "Access is denied.")
            txn = body.get("transactionId")
            if txn and txn in fake.transactions:
                ev = fake.events[fake.transactions[txn]]
                same = (not ev["deleted"] and ev["subject"] == body.get("subject")
                        and ev["start"] == _parse(body["start"]["dateTime"])
                        and ev["end"] == _parse(body["end"]["dateTime"]))
                if same:
                    return self._send(201, self._payload(ev, {}))
                return self._error(400, "ErrorDuplicateTransactionId", "Your request can't be completed. The "
                                   "TransactionId specified in the request has already been used to create a "
                                   "different event.")
            eid = fake.add_event(cal, datetime(2000, 1, 1, tzinfo=UTC), datetime(2000, 1, 1, tzinfo=UTC),
                                 transaction_id=txn)
            ev = fake.events[eid]
            self._apply(ev, body)
            fake._touch(eid)
            return self._send(201, self._payload(ev, {}))


class _ItemHeaders(dict):
    """The headers of one batch item, looked up case-insensitively like the request's own."""

    def __init__(self, headers: dict):
        super().__init__({str(k).lower(): str(v) for k, v in headers.items()})

    def get(self, key, default=None):
        return super().get(key.lower(), default)


__all__ = ["GraphFake"]
