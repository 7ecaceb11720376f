"""A local HTTPS fake of Google's OAuth endpoints and the Calendar v3 REST API, for the real google-auth,
google-auth-oauthlib and requests to talk to.

    fake = GoogleFake(tmp_path).start()
    monkeypatch.setenv(...) for each of fake.env()        # CA bundle + ENGAGE_GOOGLE_* endpoints
    fake.add_client("cid", "csecret"); rt = fake.issue_refresh_token("cid")
    ...; fake.stop()

OAuth: GET /o/oauth2/auth (auto-consents -- or denies, or grants fewer scopes -- and redirects 302 to the loopback
redirect_uri with state, code and scope), POST /token (authorization_code with PKCE S256 check and single-use
codes; refresh_token; client auth by HTTP Basic or form fields). `revoke()` makes refresh tokens (and the access
tokens issued from them) invalid: the token endpoint then answers invalid_grant, the API 401.
`expire_access_tokens()` makes the API answer 401 once so clients must refresh.

Calendar v3 under /calendar/v3: users/me/calendarList (paged), calendars/{id}/events list (singleEvents required,
small pages with pageToken, nextSyncToken on the last page only, syncToken incremental with cancelled stubs,
410 fullSyncRequired for an unknown/old token, 400 when a syncToken comes with timeMin/timeMax/...),
insert (client-chosen base32hex id, 409 on an existing id -- deleted ones too), get (deleted events too, as
status=cancelled), patch/update (If-Match -> 412, new etag each write, nested dicts merged on patch),
delete (410 when already deleted). Writes to a reader calendar answer 403.

Batch: POST /batch/calendar/v3 takes multipart/mixed (at most 1000 parts, each `Content-Type: application/http`
holding an inner request with a path-only target, its headers and body; the outer Authorization applies to parts
without their own), serves every part through the same handlers as single requests (auth per part: an expired
token answers 401 in the parts, the batch itself 200) and answers multipart/mixed with one
`Content-ID: <response-ID>` part per request part, in order: an HTTP status line, headers and body.

Fault injection: `fail_next(count, status, retry_after=None, reason=None)` makes the next `count` API
requests (not OAuth; a batch is one request) answer `status`. `fail_parts({part index: status}, retry_after=None,
reason=None)` makes those parts of the next batch answer `status` (each call queues one batch).
`api_requests` counts API requests (a batch counts once); `log` keeps (method, path, query) of them;
`batch_parts` keeps (method, path, query) of every part served and `batches` the number of parts of each batch.
`page_loops` ({"calendarList" | "events": "repeat" | "endless"}) makes a listing never end: "repeat" answers a
page token with the same page and the same nextPageToken again, "endless" with a fresh token every time.
"""

from __future__ import annotations

import base64
import email.message
import hashlib
import http.client
import io
import itertools
import json
import re
import secrets
import threading
from datetime import date, datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from fakes.https import HttpsServer

UTC = timezone.utc
EVENT_ID = re.compile(r"^[a-v0-9]{5,1024}$")
DEFAULT_SCOPES = [
    "https://www.googleapis.com/auth/calendar.events",
    "https://www.googleapis.com/auth/calendar.calendarlist.readonly",
]
SYNC_FORBIDDEN = ("timeMin", "timeMax", "orderBy", "q", "updatedMin", "iCalUID", "privateExtendedProperty",
                  "sharedExtendedProperty")


def _error(code: int, reason: str, message: str, domain: str = "global") -> dict:
    return {"error": {"errors": [{"domain": domain, "reason": reason, "message": message}], "code": code,
                      "message": message}}


def _instant(when: dict) -> datetime:
    if when.get("dateTime"):
        value = datetime.fromisoformat(when["dateTime"].replace("Z", "+00:00"))
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.combine(date.fromisoformat(when["date"]), datetime.min.time(), UTC)


def _merge(target: dict, patch: dict) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def _answer(status: int, body=None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    out = dict(headers or {})
    if body is not None:
        out.setdefault("Content-Type", "application/json; charset=UTF-8")
    return status, out, data


def _head_and_body(data: bytes) -> tuple[bytes, bytes]:
    """Split at the first empty line (CRLF or bare LF); header lines come back CRLF-joined."""
    m = re.search(rb"\r?\n\r?\n", data)
    head, body = (data, b"") if m is None else (data[:m.start()], data[m.end():])
    return b"\r\n".join(head.splitlines()), body


def _multipart_parts(body: bytes, boundary: str) -> list[bytes] | None:
    """The bodies of a multipart entity (None when it has no close delimiter)."""
    pieces = re.split(rb"(?:^|\r?\n)--" + re.escape(boundary.encode("latin-1")), body)
    parts = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            return parts
        parts.append(piece.partition(b"\n")[2])
    return None


class GoogleFake:
    def __init__(self, folder, *, page_size: int = 3, account: str = "advisor@example.com"):
        self.https = HttpsServer(_Handler, Path(folder))
        self.https.httpd.fake = self
        # poll often so that stop() (shutdown) returns at once instead of after the default 0.5 s
        self.https.thread = threading.Thread(target=self.https.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                             daemon=True)
        self.lock = threading.RLock()
        self.page_size = page_size
        self.account = account
        self.clients: dict[str, str] = {}
        self.codes: dict[str, dict] = {}
        self.refresh_tokens: dict[str, dict] = {}
        self.access_tokens: dict[str, str] = {}  # access token -> refresh token it came from
        self.calendars: dict[str, dict] = {}
        self.seq = 0
        self.epoch = 1
        self._ids = itertools.count(1)
        self.page_tokens: dict[str, list] = {}
        self.faults: list[tuple[int, str | None, str | None]] = []
        self.api_requests = 0
        self.token_requests: list[str] = []  # grant types, in order
        self.log: list[tuple[str, str, dict]] = []
        self.part_faults: list[dict[int, tuple[int, str | None, str | None]]] = []
        self.batch_parts: list[tuple[str, str, dict]] = []
        self.batches: list[int] = []
        self.authorize_requests: list[dict] = []
        self.consent = "allow"  # allow | deny
        self.granted_scopes: list[str] | None = None  # None: grant what was asked
        self.page_loops: dict[str, str] = {}  # listing ("calendarList" | "events") -> "repeat" | "endless"
        self.add_calendar(account, account, primary=True)
        self.add_calendar("team@group.calendar.google.com", "Team", role="writer")
        self.add_calendar("en.norwegian#holiday@group.v.calendar.google.com", "Holidays in Norway", role="reader")

    # lifecycle / endpoints ---------------------------------------------------------------------------------------
    def start(self) -> "GoogleFake":
        self.https.start()
        return self

    def stop(self) -> None:
        self.https.stop()

    @property
    def url(self) -> str:
        return self.https.url

    @property
    def auth_url(self) -> str:
        return self.url + "/o/oauth2/auth"

    @property
    def token_url(self) -> str:
        return self.url + "/token"

    def env(self) -> dict[str, str]:
        return {**self.https.ca_env(), "ENGAGE_GOOGLE_AUTH_URL": self.auth_url,
                "ENGAGE_GOOGLE_TOKEN_URL": self.token_url, "ENGAGE_GOOGLE_API_URL": self.url}

    def client_json(self, client_id: str = "cid.apps.googleusercontent.com", secret: str = "csecret") -> dict:
        """A Desktop-app client secrets file as Google's console hands it out (real Google endpoints in it)."""
        self.add_client(client_id, secret)
        return {"installed": {"client_id": client_id, "project_id": "engage-test",
                              "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                              "token_uri": "https://oauth2.googleapis.com/token",
                              "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
                              "client_secret": secret, "redirect_uris": ["http://localhost"]}}

    # OAuth state ---------------------------------------------------------------------------------------------------
    def add_client(self, client_id: str, secret: str) -> None:
        self.clients[client_id] = secret

    def issue_refresh_token(self, client_id: str, scopes=None) -> str:
        with self.lock:
            rt = "1//rt-" + secrets.token_urlsafe(16)
            self.refresh_tokens[rt] = {"client_id": client_id, "scope": list(scopes or DEFAULT_SCOPES),
                                       "revoked": False}
            return rt

    def revoke(self, refresh_token: str | None = None) -> None:
        with self.lock:
            for rt, info in self.refresh_tokens.items():
                if refresh_token in (None, rt):
                    info["revoked"] = True

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.access_tokens.clear()

    def fail_next(self, count: int, status: int, *, retry_after: str | None = None, reason: str | None = None):
        with self.lock:
            self.faults.extend([(status, retry_after, reason)] * count)

    def fail_parts(self, statuses: dict[int, int], *, retry_after: str | None = None,
                   reason: str | None = None) -> None:
        """The next batch request answers `status` for each of its parts `index` (0-based) in `statuses`."""
        with self.lock:
            self.part_faults.append({i: (status, retry_after, reason) for i, status in statuses.items()})

    # calendar state ----------------------------------------------------------------------------------------------
    def add_calendar(self, cal_id: str, summary: str, *, primary: bool = False, role: str = "owner") -> None:
        self.calendars[cal_id] = {"meta": {"kind": "calendar#calendarListEntry", "id": cal_id, "summary": summary,
                                           "timeZone": "Europe/Oslo", "accessRole": role,
                                           **({"primary": True} if primary else {})},
                                  "events": {}}

    def _stamp(self, event: dict) -> None:
        self.seq += 1
        event["_seq"] = self.seq
        event["etag"] = f'"{3180000000000000 + self.seq}"'
        event["updated"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def put_event(self, cal_id: str, event: dict) -> dict:
        """Another client writes `event` (Calendar v3 JSON; id optional) into the calendar."""
        with self.lock:
            event = json.loads(json.dumps(event))
            event.setdefault("id", self._new_id())
            event.setdefault("status", "confirmed")
            event.setdefault("kind", "calendar#event")
            event.setdefault("iCalUID", event["id"] + "@google.com")
            self._stamp(event)
            self.calendars[cal_id]["events"][event["id"]] = event
            return self.public(event)

    def delete_event(self, cal_id: str, event_id: str) -> None:
        """Another client deletes the event: it stays, as status=cancelled, and its id stays taken."""
        with self.lock:
            event = self.calendars[cal_id]["events"][event_id]
            event["status"] = "cancelled"
            self._stamp(event)

    def events(self, cal_id: str, *, include_cancelled: bool = False) -> list[dict]:
        with self.lock:
            return [self.public(e) for e in self.calendars[cal_id]["events"].values()
                    if include_cancelled or e.get("status") != "cancelled"]

    def invalidate_sync_tokens(self) -> None:
        with self.lock:
            self.epoch += 1

    def _new_id(self) -> str:
        return "ev" + format(next(self._ids), "05d")

    @staticmethod
    def public(event: dict) -> dict:
        return {k: v for k, v in json.loads(json.dumps(event)).items() if not k.startswith("_")}


class _Handler(BaseHTTPRequestHandler):
    server_version = "GoogleFake/1"

    def log_message(self, *args):  # quiet
        pass

    @property
    def fake(self) -> GoogleFake:
        return self.server.fake

    # plumbing ------------------------------------------------------------------------------------------------------
    def _send(self, status: int, body=None, headers: dict | None = None, content_type: str | None = None) -> None:
        data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", content_type or ("application/json; charset=UTF-8"
                                                              if not isinstance(body, bytes)
                                                              else "text/html; charset=UTF-8"))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self):
        try:
            return json.loads(self._body() or b"{}")
        except ValueError:
            return None

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        path = parts.path
        if path == "/o/oauth2/auth" and method == "GET":
            return self._authorize(query)
        if path == "/token" and method == "POST":
            return self._token()
        if path == "/batch/calendar/v3":
            fault = self._enter(method, path, query)
            if fault is not None:
                return self._fault(fault)
            if method != "POST":
                return self._send(405, _error(405, "httpMethodNotAllowed", "Batch requests are POSTs."))
            return self._batch()
        if not path.startswith("/calendar/v3/"):
            return self._send(404, _error(404, "notFound", "Not Found"))
        self._calendar_api(method, path, query)

    def _enter(self, method: str, path: str, query: dict):
        """Count one API request; the fault to answer instead, if one is queued."""
        fake = self.fake
        with fake.lock:
            fake.api_requests += 1
            fake.log.append((method, path, query))
            return fake.faults.pop(0) if fake.faults else None

    def _fault(self, fault) -> None:
        self._body()
        status, retry_after, reason = fault
        headers = {"Retry-After": retry_after} if retry_after else {}
        reason = reason or {429: "rateLimitExceeded", 400: "badRequest", 401: "authError"}.get(status, "backendError")
        domain = "usageLimits" if "Limit" in reason else "global"
        return self._send(status, _error(status, reason, f"injected {status}", domain), headers)

    def _calendar_api(self, method: str, path: str, query: dict) -> None:
        fake = self.fake
        fault = self._enter(method, path, query)
        if fault is not None:
            return self._fault(fault)
        auth = self.headers.get("Authorization") or ""
        with fake.lock:
            rt = fake.access_tokens.get(auth[len("Bearer "):]) if auth.startswith("Bearer ") else None
            ok = rt is not None and not fake.refresh_tokens.get(rt, {}).get("revoked", True)
        if not ok:
            self._body()
            return self._send(401, {"error": {"code": 401, "status": "UNAUTHENTICATED",
                                              "message": "Request had invalid authentication credentials.",
                                              "errors": [{"domain": "global", "reason": "authError",
                                                          "message": "Invalid Credentials"}]}},
                              {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
        segs = [unquote(s) for s in path[len("/calendar/v3/"):].split("/")]
        with fake.lock:
            if segs == ["users", "me", "calendarList"] and method == "GET":
                return self._calendar_list(query)
            if len(segs) >= 3 and segs[0] == "calendars" and segs[2] == "events":
                cal = fake.calendars.get(segs[1])
                if cal is None:
                    return self._send(404, _error(404, "notFound", "Not Found"))
                if len(segs) == 3 and method == "GET":
                    return self._list(cal, query)
                if len(segs) == 3 and method == "POST":
                    return self._insert(cal)
                if len(segs) == 4:
                    return self._one(cal, segs[3], method)
        return self._send(404, _error(404, "notFound", "Not Found"))

    # Batch ---------------------------------------------------------------------------------------------------------
    def _batch(self) -> None:
        fake = self.fake
        body = self._body()
        ctype = email.message.Message()
        ctype["Content-Type"] = self.headers.get("Content-Type") or ""
        boundary = ctype.get_param("boundary")
        if ctype.get_content_type() != "multipart/mixed" or not isinstance(boundary, str) or not boundary:
            return self._send(400, _error(400, "badContent", "A batch must be multipart/mixed with a boundary."))
        parts = _multipart_parts(body, boundary)
        if parts is None or not parts:
            return self._send(400, _error(400, "badContent", "Malformed multipart body."))
        if len(parts) > 1000:
            return self._send(400, _error(400, "batchSizeTooLarge", "A batch may hold at most 1000 calls."))
        with fake.lock:
            faults = fake.part_faults.pop(0) if fake.part_faults else {}
            fake.batches.append(len(parts))
        out_boundary = "batch_" + secrets.token_urlsafe(12)
        out = []
        for index, raw in enumerate(parts):
            part_head, inner = _head_and_body(raw)
            part_headers = http.client.parse_headers(io.BytesIO(part_head + b"\r\n\r\n"))
            content_id = (part_headers.get("Content-ID") or "").strip()
            status, headers, data = self._serve_part(part_headers, inner, faults.get(index), index)
            try:
                phrase = HTTPStatus(status).phrase
            except ValueError:
                phrase = "Unknown"
            lines = [f"--{out_boundary}", "Content-Type: application/http"]
            if content_id:
                lines.append(f"Content-ID: <response-{content_id.strip('<>')}>")
            lines += ["", f"HTTP/1.1 {status} {phrase}", *(f"{k}: {v}" for k, v in headers.items()),
                      f"Content-Length: {len(data)}", "", ""]
            out.append("\r\n".join(lines).encode() + data + b"\r\n")
        out.append(f"--{out_boundary}--\r\n".encode())
        self._send(200, b"".join(out), content_type=f"multipart/mixed; boundary={out_boundary}")

    def _serve_part(self, part_headers, inner: bytes, fault, index: int) -> tuple[int, dict, bytes]:
        if (part_headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/http":
            return _answer(400, _error(400, "badContent", "Each batch part must be application/http."))
        head, body = _head_and_body(inner)
        lines = head.decode("latin-1").split("\r\n") if head else []
        request_line = (lines[0] if lines else "").split()
        if len(request_line) < 2 or not request_line[1].startswith("/"):
            return _answer(400, _error(400, "invalid", "A batched request needs a method and a path-only URL."))
        headers = http.client.parse_headers(io.BytesIO("\r\n".join(lines[1:]).encode("latin-1") + b"\r\n\r\n"))
        if headers.get("Authorization") is None and self.headers.get("Authorization"):
            headers["Authorization"] = self.headers["Authorization"]
        if headers.get("Content-Length") is not None:
            body = body[:int(headers["Content-Length"])]
        method, target = request_line[0].upper(), request_line[1]
        parts = urlsplit(target)
        if not parts.path.startswith("/calendar/v3/"):
            return _answer(404, _error(404, "notFound", "Not Found"))
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        handler = _PartHandler(self, index, target, headers, body, fault)
        handler._calendar_api(method, parts.path, query)
        return handler.answer or _answer(500, _error(500, "backendError", "no answer"))

    # OAuth ---------------------------------------------------------------------------------------------------------
    def _authorize(self, q: dict) -> None:
        fake = self.fake
        fake.authorize_requests.append(dict(q))
        redirect = q.get("redirect_uri", "")
        if q.get("client_id") not in fake.clients:
            return self._send(401, b"<h1>Error 401: invalid_client</h1>")
        if not re.match(r"^http://(127\.0\.0\.1|localhost)(:\d+)?/?", redirect):
            return self._send(400, b"<h1>Error 400: redirect_uri_mismatch</h1>")
        if q.get("response_type") != "code" or not q.get("code_challenge") or q.get("code_challenge_method") != "S256":
            return self._send(400, b"<h1>Error 400: invalid_request (PKCE S256 required)</h1>")
        asked = q.get("scope", "").split()
        if fake.consent == "deny":
            params = {"error": "access_denied", "state": q.get("state", "")}
        else:
            granted = [s for s in asked if fake.granted_scopes is None or s in fake.granted_scopes]
            code = "4/fake-" + secrets.token_urlsafe(12)
            with fake.lock:
                fake.codes[code] = {"client_id": q["client_id"], "redirect_uri": redirect,
                                    "challenge": q["code_challenge"], "scope": granted}
            params = {"state": q.get("state", ""), "code": code, "scope": " ".join(granted)}
        sep = "&" if "?" in redirect else "?"
        self._send(302, None, {"Location": redirect + sep + urlencode(params)})

    def _client_auth(self, form: dict) -> str | None:
        fake = self.fake
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Basic "):
            decoded = base64.b64decode(auth[6:]).decode()
            cid, _, sec = decoded.partition(":")
            from urllib.parse import unquote_plus

            client_id, secret = unquote_plus(cid), unquote_plus(sec)
        if client_id in fake.clients and fake.clients[client_id] == secret:
            return client_id
        return None

    def _token(self) -> None:
        fake = self.fake
        form = {k: v[-1] for k, v in parse_qs(self._body().decode()).items()}
        grant = form.get("grant_type")
        fake.token_requests.append(grant or "")
        client_id = self._client_auth(form)
        if client_id is None:
            return self._send(401, {"error": "invalid_client", "error_description": "The OAuth client was not found."})
        with fake.lock:
            if grant == "authorization_code":
                info = fake.codes.pop(form.get("code", ""), None)
                if info is None or info["client_id"] != client_id:
                    return self._send(400, {"error": "invalid_grant", "error_description": "Malformed auth code."})
                if form.get("redirect_uri") != info["redirect_uri"]:
                    return self._send(400, {"error": "redirect_uri_mismatch", "error_description": "Bad Request"})
                verifier = form.get("code_verifier", "")
                digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
                if not verifier or digest != info["challenge"]:
                    return self._send(400, {"error": "invalid_grant", "error_description": "Invalid code verifier."})
                rt = fake.issue_refresh_token(client_id, info["scope"])
                at = "ya29.at-" + secrets.token_urlsafe(16)
                fake.access_tokens[at] = rt
                return self._send(200, {"access_token": at, "expires_in": 3599, "refresh_token": rt,
                                        "scope": " ".join(info["scope"]), "token_type": "Bearer"})
            if grant == "refresh_token":
                rt = form.get("refresh_token", "")
                info = fake.refresh_tokens.get(rt)
                if info is None or info["revoked"] or info["client_id"] != client_id:
                    return self._send(400, {"error": "invalid_grant",
                                            "error_description": "Token has been expired or revoked."})
                at = "ya29.at-" + secrets.token_urlsafe(16)
                fake.access_tokens[at] = rt
                return self._send(200, {"access_token": at, "expires_in": 3599, "scope": " ".join(info["scope"]),
                                        "token_type": "Bearer"})
        return self._send(400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."})

    # Calendar --------------------------------------------------------------------------------------------------------
    def _paged(self, key: str, items: list, extra: dict, query: dict, last: dict, listing: str = "events") -> None:
        """Serve `items` (or the rest of a page token's list) in small pages."""
        fake = self.fake
        loop = fake.page_loops.get(listing)
        if query.get("pageToken"):
            tokens = fake.page_tokens
            items = tokens.get(query["pageToken"]) if loop else tokens.pop(query["pageToken"], None)
            if items is None:
                return self._send(400, _error(400, "invalid", "Invalid page token."))
            last = items[0]
            items = items[1:]
        size = min(fake.page_size, int(query.get("maxResults") or 250))
        page, rest = items[:size], items[size:]
        body = {**extra, key: page}
        if loop == "repeat" and query.get("pageToken"):
            body["nextPageToken"] = query["pageToken"]  # the same token (and page) again, forever
        elif rest or loop:
            token = "pt-" + secrets.token_urlsafe(8)
            fake.page_tokens[token] = [last, *(rest or page)]
            body["nextPageToken"] = token
        else:
            body.update(last)
        self._send(200, body)

    def _calendar_list(self, query: dict) -> None:
        entries = [dict(c["meta"]) for c in self.fake.calendars.values()]
        self._paged("items", entries, {"kind": "calendar#calendarList", "etag": '"p1"'}, query, {}, "calendarList")

    def _list(self, cal: dict, q: dict) -> None:
        fake = self.fake
        if q.get("pageToken"):
            return self._paged("items", [], {}, q, {}, "events")
        if q.get("singleEvents") != "true":
            return self._send(400, _error(400, "badRequest", "this fake only serves singleEvents=true"))
        events = sorted(cal["events"].values(), key=lambda e: (_instant(e["start"]), e["id"]))
        if "syncToken" in q:
            bad = [p for p in SYNC_FORBIDDEN if p in q]
            if bad or q.get("showDeleted") == "false":
                return self._send(400, _error(400, "invalid", f"Invalid parameters with syncToken: {bad}"))
            m = re.fullmatch(r"s(\d+)\.(\d+)", q["syncToken"])
            if not m or int(m.group(1)) != fake.epoch or int(m.group(2)) > fake.seq:
                return self._send(410, _error(410, "fullSyncRequired",
                                              "Sync token is no longer valid, a full sync is required.",
                                              domain="calendar"))
            since = int(m.group(2))
            out = []
            for e in events:
                if e["_seq"] <= since:
                    continue
                if e.get("status") == "cancelled":  # deleted events may come back as bare stubs
                    out.append({"kind": "calendar#event", "etag": e["etag"], "id": e["id"], "status": "cancelled"})
                else:
                    out.append(GoogleFake.public(e))
        else:
            lo = datetime.fromisoformat(q["timeMin"].replace("Z", "+00:00")) if q.get("timeMin") else None
            hi = datetime.fromisoformat(q["timeMax"].replace("Z", "+00:00")) if q.get("timeMax") else None
            out = []
            for e in events:
                if e.get("status") == "cancelled" and q.get("showDeleted") != "true":
                    continue
                if lo is not None and _instant(e["end"]) <= lo:
                    continue
                if hi is not None and _instant(e["start"]) >= hi:
                    continue
                out.append(GoogleFake.public(e))
        extra = {"kind": "calendar#events", "etag": f'"l{fake.seq}"', "summary": cal["meta"]["summary"],
                 "timeZone": "Europe/Oslo", "accessRole": cal["meta"]["accessRole"]}
        self._paged("items", out, extra, q, {"nextSyncToken": f"s{fake.epoch}.{fake.seq}"})

    def _writable(self, cal: dict) -> bool:
        if cal["meta"]["accessRole"] in ("owner", "writer"):
            return True
        self._body()
        self._send(403, _error(403, "requiredAccessLevel", "You need to have writer access to this calendar."))
        return False

    def _insert(self, cal: dict) -> None:
        fake = self.fake
        if not self._writable(cal):
            return
        body = self._json_body()
        if not isinstance(body, dict) or "start" not in body or "end" not in body:
            return self._send(400, _error(400, "required", "Missing start or end time."))
        event_id = body.get("id")
        if event_id is not None and not EVENT_ID.match(event_id):
            return self._send(400, _error(400, "invalid", "Invalid resource id value."))
        if event_id in cal["events"]:
            return self._send(409, _error(409, "duplicate", "The requested identifier already exists."))
        event = fake.put_event(cal["meta"]["id"], body)
        self._send(200, event)

    def _one(self, cal: dict, event_id: str, method: str) -> None:
        fake = self.fake
        event = cal["events"].get(event_id)
        if method == "GET":
            if event is None:
                return self._send(404, _error(404, "notFound", "Not Found"))
            return self._send(200, GoogleFake.public(event))
        if not self._writable(cal):
            return
        body = self._json_body() if method in ("PATCH", "PUT") else None
        if event is None:
            return self._send(404, _error(404, "notFound", "Not Found"))
        if_match = self.headers.get("If-Match")
        if if_match and if_match != "*" and if_match != event["etag"]:
            return self._send(412, _error(412, "conditionNotMet", "Precondition Failed"))
        if method == "DELETE":
            if event.get("status") == "cancelled":
                return self._send(410, _error(410, "deleted", "Resource has been deleted"))
            fake.delete_event(cal["meta"]["id"], event_id)
            return self._send(204)
        if not isinstance(body, dict):
            return self._send(400, _error(400, "parseError", "Parse Error"))
        body.pop("id", None)
        if method == "PATCH":
            _merge(event, json.loads(json.dumps(body)))
        else:
            keep = {k: event[k] for k in ("id", "kind", "iCalUID", "_seq", "etag", "created") if k in event}
            event.clear()
            event.update(keep)
            event.update(json.loads(json.dumps(body)))
            event.setdefault("status", "confirmed")
        fake._stamp(event)
        self._send(200, GoogleFake.public(event))


class _PartHandler(_Handler):
    """Serves one inner request of a batch through the very handlers of single requests: not a socket handler,
    it captures the answer instead of writing it."""

    def __init__(self, outer: _Handler, index: int, target: str, headers, body: bytes, fault):
        self.server = outer.server
        self.index = index
        self.path = target
        self.headers = headers
        self.data = body
        self.part_fault = fault
        self.answer: tuple[int, dict, bytes] | None = None

    def _body(self) -> bytes:
        return self.data

    def _send(self, status: int, body=None, headers: dict | None = None, content_type: str | None = None) -> None:
        if self.answer is None:
            status, out, data = _answer(status, body, headers)
            if content_type:
                out["Content-Type"] = content_type
            self.answer = (status, out, data)

    def _enter(self, method: str, path: str, query: dict):
        with self.fake.lock:
            self.fake.batch_parts.append((method, path, query))
        return self.part_fault
