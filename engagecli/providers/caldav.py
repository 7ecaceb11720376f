"""CalDAV: a thin WebDAV/CalDAV client on requests (iCloud, Fastmail, Nextcloud, Radicale, DavMail, ...).

Why not the `caldav` package: caldav 3.x pulls niquests + urllib3-future, which replaces urllib3 for every program
in the environment, and caldav 1.x gives poor control over conditional requests (If-None-Match / If-Match) and
over paging. What we need is a handful of requests and three XML shapes, so we speak them ourselves:

- Discovery (`discover`/`link`): PROPFIND the given URL for current-user-principal / calendar-home-set /
  resourcetype; when the URL tells us nothing, follow RFC 6764 `/.well-known/caldav`. Redirects of reads are
  followed by hand (requests would turn a redirected PROPFIND into one without a body), and only within the same
  server (same scheme, host and port, or the https upgrade of the same host): the password never goes to another
  host, nor over http once https was used. A redirect elsewhere is a ProviderError naming the target host.
- A URL with user:password@ in it: the user name and password are used when none were given, and the URL is kept
  (database, options, remote ids, messages) without them; `origin` is scheme://host[:port] only.
  Then a Depth: 1 PROPFIND on the calendar home lists the collections whose resourcetype is calendar and whose
  supported-calendar-component-set allows VEVENT (absent = everything), with displayname and read-only
  (current-user-privilege-set without write). A URL that is itself a calendar comes
  back marked primary, so `engage link caldav <calendar-url>` picks it without asking.
- Pulling: RFC 6578 `sync-collection` REPORT. Without a cursor we ask with an empty token (a full listing plus
  a token; RFC 6578 requires servers to accept it); with a cursor we ask for the changes since its token. Pages
  (a 507 for the collection itself in the multistatus) are followed with the new token until the server stops
  truncating (or the token stops changing). The report asks for getetag only; the changed resources are then
  fetched with `calendar-multiget` in chunks of 100 hrefs, lazily, inside the generator of PullResult.items,
  so memory stays flat with big calendars. Members reported 404 are deleted. An invalid token (403/409/410, or
  a DAV:valid-sync-token precondition) means a full pull. A server without sync-collection gets a
  `calendar-query` in the window (and cursor None: every pull is then full).
  Each resource is expanded by engagecli.core.ical.expand (the busy rule, recurrence, zones); the RemoteItem key
  is the resource's href (a normalised, percent-encoded path); appointment_id is our X-ENGAGE-APPOINTMENT-ID.
- Windows: sync-collection is not windowed, but occurrences are stored for a window. The cursor therefore
  remembers the window of the last full pull; an incremental pull whose window reaches outside it (the rolling
  window moved on) becomes a full pull, so recurring events that had no occurrence in the old window are never
  missed. Give pull_changes a day-aligned window and that costs one full pull per day.
- Copies: PUT to a deterministic href `<collection>/engage-<appointment id>.ics` (UID engage-<id>@engage), with
  `If-None-Match: *` for a create and `If-Match: <etag>` for an update. A 412 on create means the copy is already
  there (we crashed before recording it): we fetch its etag and update it. A 412 on update means someone else
  changed our copy: engage owns copies, so we fetch the new etag and overwrite. Both loops are bounded. Retried
  PUTs are therefore harmless: creating twice never makes two events. DELETE without a condition; 404 is fine.
  SEQUENCE: 0 on create; on update, minutes since 2020-01-01 (monotonic without reading the old event first).
- Errors: 401 (and 403 on discovery/reads) -> RelinkNeeded; connection errors, timeouts, 5xx and 429 after the
  retries of engagecli.providers.http.request (Retry-After honoured) -> Unreachable; malformed XML/iCalendar ->
  ProviderError. Messages name the host and the user name only: never a password or an event's content.

requests and icalendar are imported inside functions: `engage --help` never loads this module's dependencies
(and `engage link` only pays for them when it links a CalDAV calendar).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterator
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

from engagecli.errors import ProviderError, RelinkNeeded, Unreachable
from engagecli.providers import http
from engagecli.providers.base import (
    MARKER_ICAL_PROP,
    CopyRef,
    CopySpec,
    LinkResult,
    PullResult,
    RemoteCalendar,
    RemoteItem,
    secret_name,
)

UTC = timezone.utc
DAV = "DAV:"
CAL = "urn:ietf:params:xml:ns:caldav"
MULTIGET_CHUNK = 100
MAX_PAGES = 1000  # sync-collection pages followed before we give up on a server that never stops truncating
MAX_WRITE_ATTEMPTS = 4  # conditional PUT attempts (412 -> refetch etag -> again)
_SEQUENCE_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_MARKER_LINE = re.compile(r"^" + re.escape(MARKER_ICAL_PROP) + r"(?:;[^:\r\n]*)?:([^\r\n]*)", re.M | re.I)


def _q(tag: str, ns: str = DAV) -> str:
    return f"{{{ns}}}{tag}"


# --- XML ------------------------------------------------------------------------------------------------------

@dataclass
class DavResponse:
    """One <D:response> of a multistatus: its href, its own status (deleted members, truncation) and the props
    of its 200 propstat."""

    href: str
    status: int | None = None
    props: dict = field(default_factory=dict)  # clark name -> Element


def _status_code(text: str | None) -> int | None:
    parts = (text or "").split()
    if len(parts) >= 2 and parts[1].isdigit():
        return int(parts[1])
    return None


def parse_multistatus(content: bytes, what: str) -> tuple[list[DavResponse], str | None]:
    """The responses and the top-level sync-token of a 207 multistatus body."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(content)
    except ET.ParseError:
        raise ProviderError(f"{what} sent a malformed WebDAV answer (not XML)",
                            hint="check the server address; run `engage doctor`") from None
    if root.tag != _q("multistatus"):
        raise ProviderError(f"{what} sent an unexpected WebDAV answer (no multistatus)",
                            hint="check the server address; run `engage doctor`")
    out: list[DavResponse] = []
    for resp in root.findall(_q("response")):
        hrefs = resp.findall(_q("href"))
        if not hrefs or not (hrefs[0].text or "").strip():
            continue
        item = DavResponse((hrefs[0].text or "").strip(), _status_code(resp.findtext(_q("status"))))
        for propstat in resp.findall(_q("propstat")):
            code = _status_code(propstat.findtext(_q("status")))
            prop = propstat.find(_q("prop"))
            if prop is None:
                continue
            if code == 200:
                for child in prop:
                    item.props[child.tag] = child
        out.append(item)
        for extra in hrefs[1:]:  # a response may list several hrefs sharing one status
            if (extra.text or "").strip():
                out.append(DavResponse(extra.text.strip(), item.status))
    token = root.findtext(_q("sync-token"))
    return out, (token.strip() if token else None)


def _text(el) -> str | None:
    return (el.text or "").strip() if el is not None and el.text else None


def _href_in(el) -> str | None:
    if el is None:
        return None
    inner = el.find(_q("href"))
    return _text(inner)


def _xml_escape(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


PROPFIND_DISCOVERY = f"""<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="{DAV}" xmlns:C="{CAL}">
  <D:prop><D:current-user-principal/><D:resourcetype/><D:displayname/><C:calendar-home-set/>
    <C:supported-calendar-component-set/><D:current-user-privilege-set/></D:prop>
</D:propfind>"""

PROPFIND_GETETAG = f"""<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="{DAV}"><D:prop><D:getetag/></D:prop></D:propfind>"""


def _sync_body(token: str) -> str:
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<D:sync-collection xmlns:D="{DAV}">'
            f"<D:sync-token>{_xml_escape(token)}</D:sync-token><D:sync-level>1</D:sync-level>"
            "<D:prop><D:getetag/></D:prop></D:sync-collection>")


def _multiget_body(hrefs: list[str]) -> str:
    refs = "".join(f"<D:href>{_xml_escape(h)}</D:href>" for h in hrefs)
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<C:calendar-multiget xmlns:D="{DAV}" xmlns:C="{CAL}">'
            f"<D:prop><D:getetag/><C:calendar-data/></D:prop>{refs}</C:calendar-multiget>")


def _query_body(lo: datetime, hi: datetime) -> str:
    fmt = "%Y%m%dT%H%M%SZ"
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<C:calendar-query xmlns:D="{DAV}" xmlns:C="{CAL}">'
            '<D:prop><D:getetag/></D:prop><C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
            f'<C:time-range start="{lo.astimezone(UTC).strftime(fmt)}" end="{hi.astimezone(UTC).strftime(fmt)}"/>'
            "</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>")


# --- hrefs ----------------------------------------------------------------------------------------------------

def norm_path(href: str, base: str) -> str:
    """The canonical, percent-encoded path of `href` (absolute URL or path) resolved against `base`."""
    path = urlsplit(urljoin(base, href)).path or "/"
    return quote(unquote(path), safe="/@:!$&'()*+,;=~")


def copy_name(appointment_id: str) -> str:
    """The deterministic resource name of an appointment's copy (ids with odd characters are hashed)."""
    if _SAFE_ID.match(appointment_id):
        return f"engage-{appointment_id}.ics"
    import hashlib

    return f"engage-{hashlib.sha256(appointment_id.encode()).hexdigest()[:32]}.ics"


# --- URLs -----------------------------------------------------------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443}


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """`url` without any `user:password@` (scheme, host, port, path, query kept), and the user name and password
    that were in it (None when absent)."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return url, None, None
    user, colon, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=hostport)), unquote(user) or None, unquote(password) if colon else None


def _server_key(url: str) -> tuple[str, str, int | None]:
    """(scheme, lower-case host, port with the default filled in) of `url`; ValueError for a bad port."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


def _same_server(current: str, target: str) -> bool:
    """Whether a redirect from `current` to `target` stays on the same server: same scheme, host and port, or the
    https upgrade of the same host. Credentials are sent only then."""
    try:
        a, b = _server_key(current), _server_key(target)
    except ValueError:
        return False
    if not b[1] or b[0] not in _DEFAULT_PORTS:
        return False
    return a == b or (a[0] == "http" and b[0] == "https" and a[1] == b[1])


def _host_label(url: str) -> str:
    """host[:port] of `url` for a message: no user info, no path, nothing but host characters."""
    hostport = urlsplit(url).netloc.rpartition("@")[2]
    return re.sub(r"[^A-Za-z0-9.:\[\]_-]", "?", hostport)[:100] or "an unknown host"


# --- the client -----------------------------------------------------------------------------------------------

class _Counting:
    """A session stand-in for http.request that counts every attempt (retries included)."""

    def __init__(self, client: "DavClient"):
        self.client = client

    def request(self, *args, **kwargs):
        self.client.requests += 1
        return self.client.session.request(*args, **kwargs)


class DavClient:
    """One session against one server: auth, retries, status -> error mapping. No calendar logic."""

    def __init__(self, url: str, username: str, password: str, *, tries: int = 5, sleep=time.sleep, session=None):
        url, url_user, url_password = split_userinfo(url)  # user:password@ is never kept nor shown
        username = username or url_user or ""
        password = password or url_password or ""
        self.url = url
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018  (raises ValueError for a bad port)
            bad = parts.scheme not in ("http", "https") or not parts.hostname
        except ValueError:
            bad = True
        if bad:
            from engagecli.errors import UsageError

            shown = f": {url!r}" if "@" not in url else ""  # maybe a password that urlsplit did not recognise
            raise UsageError(f"not a CalDAV address{shown}", hint="give an http(s):// URL of the server")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.hostname or parts.netloc
        self.username = username
        self.tries = tries
        self.sleep = sleep
        self.session = session or http.new_session()
        self.session.auth = (username, password)
        self._password = password
        self.requests = 0  # how many HTTP requests were sent (tests and benchmarks read it)

    @property
    def what(self) -> str:
        return f"the CalDAV server at {self.host}"

    def relink(self) -> RelinkNeeded:
        return RelinkNeeded(f"{self.what} refused the password for {self.username}",
                            hint=f"run `engage link caldav {self.origin}/ --username {self.username}` again")

    def abs(self, href: str) -> str:
        return urljoin(self.origin + "/", href)

    def send(self, method: str, url: str, *, body: str | bytes | None = None, headers: dict | None = None,
             ok=(200, 201, 204, 207), allow: tuple = (), forbidden_is_relink: bool = True):
        """Send one request (with retries; reads follow up to 5 redirects, method and body kept). Returns the
        response when its status is in `ok` or `allow`; raises RelinkNeeded/Unreachable/ProviderError otherwise."""
        hdrs = dict(headers or {})
        if body is not None and "Content-Type" not in hdrs:
            hdrs["Content-Type"] = "application/xml; charset=utf-8"
        data = body.encode("utf-8") if isinstance(body, str) else body
        for _ in range(6):
            response = self._request(method, url, data, hdrs)
            if response.status_code == 401 and self._maybe_digest(response):
                response = self._request(method, url, data, hdrs)
            code = response.status_code
            location = response.headers.get("Location")
            redirect = code in (301, 302, 303, 307, 308) and code not in allow and location
            if redirect and method in ("PROPFIND", "REPORT"):
                target = urljoin(url, location)
                if not _same_server(url, target):  # the password goes to this server only, never over http
                    raise ProviderError(
                        f"{self.what} redirected engage to {_host_label(target)}; engage follows redirects only "
                        "within the same server", hint="if that server is right, link it with its own address")
                url = split_userinfo(target)[0]
                continue
            break
        if code in ok or code in allow:
            return response
        if code == 401 or (code == 403 and forbidden_is_relink):
            raise self.relink()
        if code in http.RETRY_STATUSES:
            raise Unreachable(f"{self.what} answered HTTP {code} after {self.tries} tries",
                              hint="try `engage sync` again later")
        raise ProviderError(f"{self.what} answered HTTP {code} to {method}",
                            hint="check the calendar address; run `engage doctor`")

    def _request(self, method, url, data, headers):
        return http.request(_Counting(self), method, url, what=self.what, tries=self.tries, sleep=self.sleep,
                            data=data, headers=headers, allow_redirects=False)

    def _maybe_digest(self, response) -> bool:
        """Switch to Digest auth once when the server asks only for it."""
        challenge = response.headers.get("WWW-Authenticate", "").lower()
        if "digest" in challenge and "basic" not in challenge and isinstance(self.session.auth, tuple):
            from requests.auth import HTTPDigestAuth

            self.session.auth = HTTPDigestAuth(self.username, self._password)
            return True
        return False

    def propfind(self, url: str, body: str, depth: str, *, allow=()) -> tuple[object, list[DavResponse]]:
        r = self.send("PROPFIND", url, body=body, headers={"Depth": depth}, ok=(207,), allow=allow)
        if r.status_code != 207:
            return r, []
        return r, parse_multistatus(r.content, self.what)[0]


# --- discovery ------------------------------------------------------------------------------------------------

def _is_calendar(props: dict) -> bool:
    rt = props.get(_q("resourcetype"))
    return rt is not None and rt.find(_q("calendar", CAL)) is not None


def _supports_vevent(props: dict) -> bool:
    comps = props.get(_q("supported-calendar-component-set", CAL))
    if comps is None or len(comps) == 0:
        return True  # absent: any component type
    return any((c.get("name") or "").upper() == "VEVENT" for c in comps)


def _read_only(props: dict) -> bool:
    privs = props.get(_q("current-user-privilege-set"))
    if privs is None:
        return False  # not reported: assume writable (a failed PUT says so later)
    names = {p.tag for priv in privs.findall(_q("privilege")) for p in priv}
    return not names & {_q("write"), _q("write-content"), _q("all"), _q("bind")}


def _calendar_of(client: DavClient, item: DavResponse) -> RemoteCalendar:
    url = client.abs(norm_path(item.href, client.url))
    name = _text(item.props.get(_q("displayname"))) or unquote(url.rstrip("/").rsplit("/", 1)[-1]) or url
    return RemoteCalendar(url, name, read_only=_read_only(item.props))


def _well_known(client: DavClient) -> list[DavResponse]:
    """RFC 6764: PROPFIND /.well-known/caldav (its redirects followed, the body kept)."""
    _, found = client.propfind(client.origin + "/.well-known/caldav", PROPFIND_DISCOVERY, "0",
                               allow=(400, 403, 404, 405, 501))
    return found


def discover(url: str, username: str, password: str, *, tries: int = 5, sleep=time.sleep) -> LinkResult:
    """The VEVENT calendars `username` can see, starting from a server root, a principal or a calendar URL."""
    client = DavClient(url, username, password, tries=tries, sleep=sleep)
    url, username, password = client.url, client.username, client._password  # without user:password@ in the URL
    start = url if url.endswith("/") else url + "/"
    _, found = client.propfind(start, PROPFIND_DISCOVERY, "0", allow=(400, 404, 405, 501))
    given: RemoteCalendar | None = None
    principal = home = None
    if found:
        props = found[0].props
        if _is_calendar(props) and _supports_vevent(props):
            given = _calendar_of(client, found[0])
        principal = _href_in(props.get(_q("current-user-principal")))
        home = _href_in(props.get(_q("calendar-home-set", CAL)))
    if not home and not principal and given is None:
        found = _well_known(client)
        if found:
            principal = _href_in(found[0].props.get(_q("current-user-principal")))
            home = _href_in(found[0].props.get(_q("calendar-home-set", CAL)))
    if not home and principal:
        _, found = client.propfind(client.abs(principal), PROPFIND_DISCOVERY, "0", allow=(404, 405))
        if found:
            home = _href_in(found[0].props.get(_q("calendar-home-set", CAL)))
    calendars: list[RemoteCalendar] = []
    if home:
        _, members = client.propfind(client.abs(home), PROPFIND_DISCOVERY, "1", allow=(404, 405))
        for item in members:
            if _is_calendar(item.props) and _supports_vevent(item.props):
                calendars.append(_calendar_of(client, item))
    if given is not None:
        calendars = [c for c in calendars if c.remote_id != given.remote_id]
        calendars.insert(0, RemoteCalendar(given.remote_id, given.name, primary=True, read_only=given.read_only))
    elif calendars:
        first = next((c for c in calendars if not c.read_only), calendars[0])
        calendars = [RemoteCalendar(c.remote_id, c.name, primary=c is first, read_only=c.read_only)
                     for c in calendars]
    if not calendars:
        raise ProviderError(f"found no event calendars for {username} at {client.host}",
                            hint="give the address of the server, your principal or a calendar collection")
    return LinkResult(account=f"{username}@{client.host}", calendars=calendars, secrets={"password": password},
                      options={"username": username, "server": url})


def link(url: str, username: str, password: str, ui=None, **kw) -> LinkResult:
    """`engage link caldav URL --username U`: discover the calendars; the command picks one and stores the
    password under secret_name(profile, calendar_id, "password")."""
    result = discover(url, username, password, **kw)
    if ui is not None:
        ui.say(f"Found {len(result.calendars)} calendar(s) for {result.account}.")
    return result


# --- the provider ---------------------------------------------------------------------------------------------

def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat()


def encode_cursor(token: str, window: tuple[datetime, datetime]) -> str:
    return json.dumps({"v": 1, "token": token, "window": [_iso(window[0]), _iso(window[1])]}, separators=(",", ":"))


def decode_cursor(cursor: str | None) -> tuple[str | None, tuple[datetime, datetime] | None]:
    try:
        data = json.loads(cursor or "")
        lo, hi = (datetime.fromisoformat(x) for x in data["window"])
        return str(data["token"]), (lo, hi)
    except (ValueError, KeyError, TypeError):
        return None, None


class InvalidToken(Exception):
    """Internal: the server rejected the sync token."""


class NoSyncCollection(Exception):
    """Internal: the server does not do sync-collection."""


class Provider:
    name = "caldav"
    can_read_busy = True
    can_copy = True
    supports_incremental = True

    def __init__(self, calendar_url: str, username: str, password: str, *, timezone_name: str = "UTC",
                 me: set[str] | None = None, server: str | None = None, tries: int = 5, sleep=time.sleep):
        calendar_url = calendar_url if calendar_url.endswith("/") else calendar_url + "/"
        self.client = DavClient(calendar_url, username, password, tries=tries, sleep=sleep)
        self.calendar_url = self.client.url  # without user:password@
        self.collection = norm_path(self.calendar_url, self.calendar_url)
        self.timezone = timezone_name
        self.me = {m.lower() for m in (me or set())}
        self.server = split_userinfo(server)[0] if server else self.calendar_url

    @classmethod
    def from_calendar(cls, cal, ctx, **kw) -> "Provider":
        options = cal.options or {}
        username = options.get("username") or ""
        password = ctx.secrets.get(secret_name(ctx.profile, cal.id, "password"))
        if not password:
            address = split_userinfo(options.get("server") or cal.remote_id)[0]
            raise RelinkNeeded(f"no password is stored for calendar {cal.id}",
                               hint=f"run `engage link caldav {address} --username {username}` again")
        me = options.get("me") or []
        me = {me} if isinstance(me, str) else set(me)
        if not me and "@" in username:
            me = {username}
        return cls(cal.remote_id, username, password, timezone_name=ctx.timezone, me=me,
                   server=options.get("server"), **kw)

    @property
    def requests(self) -> int:
        return self.client.requests

    def list_calendars(self) -> list[RemoteCalendar]:
        return discover(self.server, self.client.username, self.client._password, tries=self.client.tries,
                        sleep=self.client.sleep).calendars

    # pulling -----------------------------------------------------------------------------------------------
    def pull_changes(self, cursor: str | None, window: tuple[datetime, datetime]) -> PullResult:
        token, old_window = decode_cursor(cursor)
        lo, hi = window
        if token and old_window and old_window[0] <= lo and hi <= old_window[1]:
            try:
                new_token, changed, deleted = self._sync(token)
            except (InvalidToken, NoSyncCollection):
                pass  # a full pull below
            else:
                return PullResult(self._items(changed, window, full=False, deleted=deleted), deleted, full=False,
                                  cursor=encode_cursor(new_token, old_window))
        # a full pull
        try:
            new_token, present, _ = self._sync("")
        except (InvalidToken, NoSyncCollection):
            present = self._query(window)
            return PullResult(self._items(present, window, full=True, deleted=[]), [], full=True, cursor=None)
        return PullResult(self._items(present, window, full=True, deleted=[]), [], full=True,
                          cursor=encode_cursor(new_token, window))

    def _member(self, href: str) -> str | None:
        """The key of a member resource of our collection, or None (the collection itself, sub-collections)."""
        path = norm_path(href, self.calendar_url)
        if path.endswith("/") or not path.startswith(self.collection):
            return None
        return path

    def _sync(self, token: str) -> tuple[str, list[str], list[str]]:
        """Follow sync-collection pages from `token`: (new token, changed hrefs, deleted hrefs)."""
        changed: dict[str, None] = {}
        deleted: dict[str, None] = {}
        for _ in range(MAX_PAGES):
            r = self.client.send("REPORT", self.calendar_url, body=_sync_body(token), headers={"Depth": "0"},
                                 ok=(207,), allow=(400, 403, 404, 405, 409, 410, 412, 415, 501),
                                 forbidden_is_relink=False)
            if r.status_code != 207:
                text = r.text if len(r.content) < 100_000 else ""
                if token and (r.status_code in (403, 409, 410) or "valid-sync-token" in text):
                    raise InvalidToken()
                if r.status_code == 403:
                    raise self.client.relink()
                raise NoSyncCollection()
            responses, new_token = parse_multistatus(r.content, self.client.what)
            truncated = False
            for item in responses:
                path = norm_path(item.href, self.calendar_url)
                if path.rstrip("/") == self.collection.rstrip("/"):
                    truncated = truncated or item.status == 507
                    continue
                key = self._member(item.href)
                if key is None:
                    continue
                if item.status == 404:
                    changed.pop(key, None)
                    deleted[key] = None
                else:
                    deleted.pop(key, None)
                    changed[key] = None
            if not new_token:
                raise ProviderError(f"{self.client.what} sent no sync-token", hint="run `engage doctor`")
            if not truncated or new_token == token:
                return new_token, list(changed), list(deleted)
            token = new_token
        raise ProviderError(f"{self.client.what} kept truncating its change list", hint="run `engage sync` again")

    def _query(self, window: tuple[datetime, datetime]) -> list[str]:
        """Fallback without sync-collection: the hrefs of events that have occurrences in the window."""
        r = self.client.send("REPORT", self.calendar_url, body=_query_body(*window), headers={"Depth": "1"},
                             ok=(207,))
        hrefs = []
        for item in parse_multistatus(r.content, self.client.what)[0]:
            key = self._member(item.href)
            if key is not None and item.status in (None, 200):
                hrefs.append(key)
        return hrefs

    def _items(self, hrefs: list[str], window, *, full: bool, deleted: list[str]) -> Iterator[RemoteItem]:
        """Fetch `hrefs` with calendar-multiget, 100 at a time, and expand them (lazily)."""
        lo, hi = window
        for start in range(0, len(hrefs), MULTIGET_CHUNK):
            chunk = hrefs[start:start + MULTIGET_CHUNK]
            r = self.client.send("REPORT", self.calendar_url, body=_multiget_body(chunk), headers={"Depth": "1"},
                                 ok=(207,))
            seen = set()
            for item in parse_multistatus(r.content, self.client.what)[0]:
                key = self._member(item.href)
                if key is None or key in seen:
                    continue
                seen.add(key)
                data_el = item.props.get(_q("calendar-data", CAL))
                if item.status == 404 or (data_el is None and item.status not in (None, 200)):
                    if not full and key not in deleted:
                        deleted.append(key)  # gone since the report (the next pull reports it too)
                    continue
                if data_el is None or not (data_el.text or "").strip():
                    continue
                etag = _text(item.props.get(_q("getetag")))
                yield from self._expand(key, data_el.text, etag, lo, hi, full)

    def _expand(self, key: str, data: str, etag: str | None, lo, hi, full: bool) -> Iterator[RemoteItem]:
        from engagecli.core import ical

        try:
            groups = ical.expand(data, lo, hi, self.timezone, self.me or None)
        except ProviderError as exc:
            raise ProviderError(f"{self.client.what}: resource {key}: {exc.message}", hint=exc.hint) from None
        occurrences = [o for _, occs, _ in groups for o in occs]
        occurrences.sort(key=lambda o: (o.start, o.end))
        appointment_id = next((a for _, _, a in groups if a), None)
        if appointment_id is None:
            m = _MARKER_LINE.search(data)  # our copy, but outside the window (expand reports only what's inside)
            appointment_id = m.group(1).strip() if m and m.group(1).strip() else None
        if full and not occurrences and appointment_id is None:
            return  # nothing in the window: a full pull lists only what is
        yield RemoteItem(key, occurrences, appointment_id=appointment_id, etag=etag)

    # copies ------------------------------------------------------------------------------------------------
    def copy_href(self, appointment_id: str) -> str:
        return self.collection + copy_name(appointment_id)

    def _copy_ics(self, spec: CopySpec, sequence: int) -> bytes:
        import icalendar

        cal = icalendar.Calendar()
        cal.add("PRODID", "-//engage//engage//EN")
        cal.add("VERSION", "2.0")
        ev = icalendar.Event()
        ev.add("UID", f"engage-{spec.appointment_id}@engage")
        ev.add("DTSTAMP", datetime.now(UTC).replace(microsecond=0))
        ev.add("DTSTART", spec.start.astimezone(UTC))
        ev.add("DTEND", spec.end.astimezone(UTC))
        ev.add("SUMMARY", spec.title)
        ev.add("DESCRIPTION", spec.description)
        ev.add("TRANSP", "OPAQUE")
        ev.add("SEQUENCE", sequence)
        ev.add(MARKER_ICAL_PROP, spec.appointment_id)
        cal.add_component(ev)
        return cal.to_ical()

    def _etag(self, url: str) -> str | None:
        """The current etag of `url`, or None when it does not exist."""
        r, found = self.client.propfind(url, PROPFIND_GETETAG, "0", allow=(404, 410))
        if r.status_code in (404, 410):
            return None
        for item in found:
            etag = _text(item.props.get(_q("getetag")))
            if etag:
                return etag
        return None

    def put_copy(self, spec: CopySpec, existing: CopyRef | None) -> CopyRef:
        if spec.end <= spec.start:
            from engagecli.errors import UsageError

            raise UsageError("a copy must end after it starts")
        href = norm_path(existing.remote_id, self.calendar_url) if existing else self.copy_href(spec.appointment_id)
        url = self.client.abs(href)
        etag = existing.etag if existing else None
        if existing is not None and etag is None:
            etag = self._etag(url)
        creating = etag is None
        for _ in range(MAX_WRITE_ATTEMPTS):
            sequence = 0 if creating else max(1, int((datetime.now(UTC) - _SEQUENCE_EPOCH).total_seconds() // 60))
            headers = {"Content-Type": "text/calendar; charset=utf-8"}
            if etag is None:
                headers["If-None-Match"] = "*"
            else:
                headers["If-Match"] = etag
            r = self.client.send("PUT", url, body=self._copy_ics(spec, sequence), headers=headers, ok=(200, 201, 204),
                                 allow=(403, 404, 412), forbidden_is_relink=False)
            if r.status_code == 403:
                raise self._no_write()
            if r.status_code in (200, 201, 204):
                new_etag = r.headers.get("ETag")
                if not new_etag or new_etag.startswith("W/"):
                    new_etag = self._etag(url) or new_etag
                return CopyRef(href, new_etag)
            # 412: already there (create) or changed by someone else (update); 404: gone (If-Match on nothing)
            etag = None if r.status_code == 404 else self._etag(url)
            creating = False
        raise ProviderError(f"{self.client.what} kept changing the copy of appointment {spec.appointment_id}",
                            hint="run `engage sync` again")

    def delete_copy(self, ref: CopyRef) -> None:
        url = self.client.abs(norm_path(ref.remote_id, self.calendar_url))
        r = self.client.send("DELETE", url, ok=(200, 202, 204), allow=(403, 404, 410), forbidden_is_relink=False)
        if r.status_code == 403:
            raise self._no_write()

    def _no_write(self) -> ProviderError:
        return ProviderError(f"{self.client.what} does not let {self.client.username} change this calendar",
                             hint="turn copying off with `engage calendars set ID --no-copy`, or pick a writable "
                                  "calendar with `engage link caldav` again")
