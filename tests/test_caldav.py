"""The CalDAV provider against a REAL Radicale (tests/fakes/radicale.py): the shared contract, discovery, errors,
recurrence, paging, and faults injected by a small proxy in front of Radicale."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import tempfile
from pathlib import Path

import pytest

from engagecli.secrets import open_secrets

from contract import T0, WINDOW, ProviderContract, pull_all, spec
from engagecli.core.models import CalendarInfo
from engagecli.errors import ProviderError, RelinkNeeded, Unreachable, UsageError
from engagecli.providers import caldav
from engagecli.providers.base import ProviderContext, secret_name
from fakes.radicale import closed_port, radicale  # noqa: F401  (the module-scoped server fixture)

UTC = timezone.utc


def no_sleep(_seconds):
    return None


def ics_event(uid, start, end, summary="Busy", transparent=False, cancelled=False, extra="") -> str:
    fmt = "%Y%m%dT%H%M%SZ"
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//other client//EN", "BEGIN:VEVENT", f"UID:{uid}",
             "DTSTAMP:20300101T000000Z", f"DTSTART:{start.strftime(fmt)}", f"DTEND:{end.strftime(fmt)}",
             f"SUMMARY:{summary}"]
    if transparent:
        lines.append("TRANSP:TRANSPARENT")
    if cancelled:
        lines.append("STATUS:CANCELLED")
    if extra:
        lines.extend(extra.strip().splitlines())
    lines += ["END:VEVENT", "END:VCALENDAR", ""]
    return "\r\n".join(lines)


class CaldavHarness:
    def __init__(self, srv, calendar_url, *, base_url=None, password=None, tries=3):
        self.srv = srv
        self.calendar_url = calendar_url
        self.base_url = base_url  # a proxy in front of Radicale, when set
        self.secrets = open_secrets(Path(tempfile.mkdtemp()), {"ENGAGE_SECRETS": "file"})  # the real file store
        self.secrets.set(secret_name("default", "cal-1", "password"), password or srv.password)
        self.tries = tries
        self.last = None

    def cal_info(self):
        url = self.calendar_url
        if self.base_url:
            url = self.base_url.rstrip("/") + "/" + url.split("/", 3)[3]
        return CalendarInfo(id="cal-1", provider="caldav", account=f"{self.srv.username}@127.0.0.1", name="Work",
                            remote_id=url,
                            options={"username": self.srv.username, "server": self.base_url or self.srv.url})

    def provider(self):
        ctx = ProviderContext(timezone="Europe/Oslo", secrets=self.secrets, environ={}, profile="default")
        self.last = caldav.Provider.from_calendar(self.cal_info(), ctx, tries=self.tries, sleep=no_sleep)
        return self.last

    def add_event(self, start, end, summary="Busy", transparent=False, cancelled=False):
        uid = uuid.uuid4().hex
        return self.srv.put_event(self.calendar_url, uid, ics_event(uid, start, end, summary, transparent, cancelled))

    def delete_event(self, key):
        self.srv.delete(key)

    def remote_copies(self):
        import icalendar

        out: dict = {}
        for data in self.srv.list_events(self.calendar_url).values():
            for ev in icalendar.Calendar.from_ical(data).walk("VEVENT"):
                marker = ev.get("X-ENGAGE-APPOINTMENT-ID")
                if marker:
                    out.setdefault(str(marker), []).append((ev["DTSTART"].dt, ev["DTEND"].dt))
        return out

    def bad_cursor(self, cursor):
        _, window = caldav.decode_cursor(cursor)
        return caldav.encode_cursor("http://radicale.org/ns/sync/" + "0" * 64, window)


class TestCaldavContract(ProviderContract):
    @pytest.fixture
    def harness(self, radicale):  # noqa: F811
        return CaldavHarness(radicale, radicale.new_calendar("contract"))


@pytest.fixture
def harness(radicale):  # noqa: F811
    return CaldavHarness(radicale, radicale.new_calendar("t"))


# --- discovery ------------------------------------------------------------------------------------------------

def _by_url(result):
    return {c.remote_id: c for c in result.calendars}


def test_discover_from_root(radicale):  # noqa: F811
    radicale.mkcalendar("todos", "Todos", components=("VTODO",))
    result = caldav.link(radicale.url, radicale.username, radicale.password, None)
    cals = _by_url(result)
    assert cals[radicale.calendar_url].name == "Work"
    assert cals[radicale.other_calendar_url].name == "Personal"
    assert radicale.principal_url + "todos/" not in cals  # VTODO-only: not an event calendar
    assert sum(c.primary for c in result.calendars) == 1
    assert not any(c.read_only for c in result.calendars)
    assert result.account == "advisor@127.0.0.1"
    assert result.secrets == {"password": "s3cret"}
    assert result.options == {"username": "advisor", "server": radicale.url}


def test_discover_from_principal(radicale):  # noqa: F811
    result = caldav.discover(radicale.principal_url, radicale.username, radicale.password)
    assert {radicale.calendar_url, radicale.other_calendar_url} <= set(_by_url(result))


def test_discover_through_well_known_redirect(radicale):  # noqa: F811
    result = caldav.discover(radicale.url + ".well-known/caldav", radicale.username, radicale.password)
    assert {radicale.calendar_url, radicale.other_calendar_url} <= set(_by_url(result))


def test_discover_from_calendar_url_makes_it_primary(radicale):  # noqa: F811
    result = caldav.discover(radicale.other_calendar_url.rstrip("/"), radicale.username, radicale.password)
    first = result.calendars[0]
    assert first.remote_id == radicale.other_calendar_url and first.primary and first.name == "Personal"
    assert radicale.calendar_url in _by_url(result)  # the others are still offered
    assert sum(c.primary for c in result.calendars) == 1


def test_list_calendars(harness):
    assert harness.calendar_url in {c.remote_id for c in harness.provider().list_calendars()}


# --- errors ---------------------------------------------------------------------------------------------------

def test_wrong_password_needs_relink(radicale):  # noqa: F811
    with pytest.raises(RelinkNeeded) as info:
        caldav.discover(radicale.url, radicale.username, "wrong", sleep=no_sleep)
    assert "wrong" not in str(info.value) and "advisor" in str(info.value)
    h = CaldavHarness(radicale, radicale.calendar_url, password="wrong")
    with pytest.raises(RelinkNeeded) as info:
        pull_all(h.provider())
    assert "engage link caldav" in str(info.value) and "wrong" not in str(info.value)
    with pytest.raises(RelinkNeeded):
        h.provider().put_copy(spec("x", T0), None)


def test_missing_password_needs_relink(radicale):  # noqa: F811
    h = CaldavHarness(radicale, radicale.calendar_url)
    h.secrets.delete(secret_name("default", "cal-1", "password"))
    with pytest.raises(RelinkNeeded):
        h.provider()


def test_server_down_is_unreachable():
    url = f"http://127.0.0.1:{closed_port()}/advisor/work/"
    p = caldav.Provider(url, "advisor", "s3cret", tries=2, sleep=no_sleep)
    with pytest.raises(Unreachable) as info:
        pull_all(p)
    assert "s3cret" not in str(info.value)
    assert p.requests == 2
    with pytest.raises(Unreachable):
        caldav.discover(url, "advisor", "s3cret", tries=1, sleep=no_sleep)


def _with_userinfo(url: str, user: str, password: str) -> str:
    return url.replace("http://", f"http://{user}:{password}@", 1)


def test_userinfo_in_the_url_is_never_kept_or_shown(radicale):  # noqa: F811
    from urllib.parse import urlsplit

    url = _with_userinfo(radicale.calendar_url, "advisor", "s3cret")
    result = caldav.link(url, "", "", None)  # no --username/password given: the URL's are used
    assert result.calendars and result.calendars[0].remote_id == radicale.calendar_url
    for cal in result.calendars:
        assert "s3cret" not in cal.remote_id and urlsplit(cal.remote_id).username is None
    assert result.options == {"username": "advisor", "server": radicale.calendar_url}
    assert "s3cret" not in result.account
    assert result.secrets == {"password": "s3cret"}  # only the secret store gets it
    # a wrong password given explicitly wins over the URL's; the message shows neither
    with pytest.raises(RelinkNeeded) as info:
        caldav.link(url, "advisor", "wrong", None, sleep=no_sleep)
    assert "s3cret" not in str(info.value) and "wrong" not in str(info.value)
    assert f"engage link caldav http://127.0.0.1:{radicale.port}/ --username advisor" in str(info.value)
    # a wrong password in the URL itself
    with pytest.raises(RelinkNeeded) as info:
        caldav.discover(_with_userinfo(radicale.url, "advisor", "n0pe"), "", "", sleep=no_sleep)
    assert "n0pe" not in str(info.value) and "advisor" in str(info.value)
    # a provider built from such a URL (an old link) neither sends nor shows it
    p = caldav.Provider(_with_userinfo(radicale.calendar_url, "advisor", "s3cret"), "advisor", "wrong",
                        server=_with_userinfo(radicale.url, "advisor", "s3cret"), sleep=no_sleep)
    assert p.calendar_url == radicale.calendar_url and p.server == radicale.url
    with pytest.raises(RelinkNeeded) as info:
        pull_all(p)
    assert "s3cret" not in str(info.value) and "wrong" not in str(info.value)
    with pytest.raises(UsageError) as bad:
        caldav.discover("http://advisor:s3cret@:x/", "", "")
    assert "s3cret" not in str(bad.value)


class _Redirector:
    """A tiny http.server: PROPFIND / answers 404, /.well-known/caldav redirects to `target`; records requests."""

    def __init__(self, target: str | None = None):
        self.seen: list[tuple[str, str, str | None]] = []
        me = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_PROPFIND(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                me.seen.append((self.command, self.path, self.headers.get("Authorization")))
                if self.path.startswith("/.well-known/caldav") and me.target:
                    self.send_response(301)
                    self.send_header("Location", me.target)
                else:
                    self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.target = target
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_redirect_to_another_host_is_refused_without_sending_credentials():
    with _Redirector() as other, _Redirector() as server:
        server.target = f"http://127.0.0.1:{other.port}/dav/"
        with pytest.raises(ProviderError) as info:
            caldav.discover(f"http://127.0.0.1:{server.port}/", "advisor", "s3cret", tries=1, sleep=no_sleep)
    message = str(info.value)
    assert f"127.0.0.1:{other.port}" in message and "\n" not in message and "s3cret" not in message
    assert other.seen == []  # the credentials never went there
    assert [(m, p) for m, p, _ in server.seen] == [("PROPFIND", "/"), ("PROPFIND", "/.well-known/caldav")]


def test_same_server_redirects_only():
    same = caldav._same_server
    assert same("http://h.example/a/", "http://H.example:80/b/")
    assert same("http://h.example/a/", "https://h.example/b/")  # the https upgrade of the same host
    assert same("https://h.example:8443/a/", "https://h.example:8443/b/")
    assert not same("https://h.example/a/", "http://h.example/b/")  # never downgraded
    assert not same("https://h.example/a/", "https://h.example:8443/b/")
    assert not same("http://h.example/a/", "http://other.example/b/")
    assert not same("http://h.example/a/", "http://h.example:bad/b/")


def test_malformed_answers_are_provider_errors(harness):
    p = harness.provider()
    with pytest.raises(ProviderError) as info:
        bad = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:2030\r\n"
        list(p._expand("/advisor/x/bad.ics", bad, None, *WINDOW, True))
    assert "/advisor/x/bad.ics" in str(info.value)
    with pytest.raises(ProviderError):
        caldav.parse_multistatus(b"<multistatus xmlns='DAV:'><response>", "the CalDAV server at x")
    with pytest.raises(ProviderError):
        caldav.parse_multistatus(b"<html>hello</html>", "the CalDAV server at x")


def test_privileges_and_components_are_read():
    responses, _ = caldav.parse_multistatus(b"""<?xml version="1.0"?>
<D:multistatus xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:response><D:href>/c/</D:href>
<D:propstat><D:prop><D:resourcetype><D:collection/><C:calendar/></D:resourcetype>
<D:current-user-privilege-set><D:privilege><D:read/></D:privilege></D:current-user-privilege-set>
<C:supported-calendar-component-set><C:comp name="VTODO"/></C:supported-calendar-component-set>
</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>""", "x")
    props = responses[0].props
    assert caldav._is_calendar(props) and caldav._read_only(props) and not caldav._supports_vevent(props)


# --- pulling --------------------------------------------------------------------------------------------------

RECURRING = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//other client//EN
BEGIN:VEVENT
UID:weekly-1
DTSTAMP:20300101T000000Z
DTSTART;TZID=Europe/Oslo:20300304T100000
DTEND;TZID=Europe/Oslo:20300304T110000
RRULE:FREQ=WEEKLY;COUNT=5
EXDATE;TZID=Europe/Oslo:20300318T100000
SUMMARY:Weekly
END:VEVENT
BEGIN:VEVENT
UID:weekly-1
DTSTAMP:20300101T000000Z
RECURRENCE-ID;TZID=Europe/Oslo:20300311T100000
DTSTART;TZID=Europe/Oslo:20300312T140000
DTEND;TZID=Europe/Oslo:20300312T150000
SUMMARY:Weekly (moved)
END:VEVENT
BEGIN:VEVENT
UID:weekly-1
DTSTAMP:20300101T000000Z
RECURRENCE-ID;TZID=Europe/Oslo:20300325T100000
DTSTART;TZID=Europe/Oslo:20300325T100000
DTEND;TZID=Europe/Oslo:20300325T110000
STATUS:CANCELLED
SUMMARY:Weekly
END:VEVENT
END:VCALENDAR
"""


def test_recurring_event_with_exceptions(harness):
    key = harness.srv.put_event(harness.calendar_url, "weekly-1", RECURRING.replace("\n", "\r\n"))
    _, items = pull_all(harness.provider())
    spans = [(o.start, o.end) for o in items[key].occurrences]
    h = timedelta(hours=1)
    assert spans == [
        (datetime(2030, 3, 4, 9, tzinfo=UTC), datetime(2030, 3, 4, 9, tzinfo=UTC) + h),  # CET
        (datetime(2030, 3, 12, 13, tzinfo=UTC), datetime(2030, 3, 12, 13, tzinfo=UTC) + h),  # moved
        # 03-18 excluded, 03-25 cancelled; 04-01 is after the switch to CEST
        (datetime(2030, 4, 1, 8, tzinfo=UTC), datetime(2030, 4, 1, 8, tzinfo=UTC) + h),
    ]
    assert all(o.busy for o in items[key].occurrences)


def test_declined_by_me_is_not_busy(radicale):  # noqa: F811
    h = CaldavHarness(radicale, radicale.new_calendar("declined"))
    extra = "ATTENDEE;PARTSTAT=DECLINED:mailto:ADVISOR@example.com\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:b@example.com"
    key = radicale.put_event(h.calendar_url, "inv", ics_event("inv", T0, T0 + timedelta(hours=1), extra=extra))
    info = h.cal_info()
    info.options["me"] = ["advisor@example.com"]
    ctx = ProviderContext(timezone="Europe/Oslo", secrets=h.secrets, environ={}, profile="default")
    _, items = pull_all(caldav.Provider.from_calendar(info, ctx))
    assert [(o.busy, o.reason) for o in items[key].occurrences] == [(False, "declined")]


def test_items_are_fetched_lazily_in_chunks(harness, monkeypatch):
    monkeypatch.setattr(caldav, "MULTIGET_CHUNK", 2)
    keys = {harness.add_event(T0 + timedelta(days=i), T0 + timedelta(days=i, hours=1)) for i in range(5)}
    p = harness.provider()
    result = p.pull_changes(None, WINDOW)
    assert p.requests == 1  # only the sync-collection report so far
    assert {it.key for it in result.items} == keys
    assert p.requests == 1 + 3  # + ceil(5 / 2) multigets


def test_noop_incremental_pull_is_one_request(harness, capsys):
    harness.add_event(T0, T0 + timedelta(hours=1))
    result, _ = pull_all(harness.provider())
    p = harness.provider()
    result2, items2 = pull_all(p, result.cursor)
    assert not result2.full and not items2 and not result2.deleted
    assert p.requests == 1
    with capsys.disabled():
        print(f"\n[caldav] no-op incremental pull: {p.requests} request(s)")


def test_changed_event_moving_out_of_the_window_is_an_empty_upsert(harness):
    key = harness.add_event(T0, T0 + timedelta(hours=1))
    result, _ = pull_all(harness.provider())
    later = datetime(2032, 1, 1, tzinfo=UTC)
    name = key.rsplit("/", 1)[1][:-4]
    harness.srv.put_event(harness.calendar_url, name, ics_event(name, later, later + timedelta(hours=1)))
    result2, items2 = pull_all(harness.provider(), result.cursor)
    assert not result2.full and items2[key].occurrences == []


def test_a_grown_window_forces_a_full_pull(harness):
    harness.add_event(T0, T0 + timedelta(hours=1))
    result, _ = pull_all(harness.provider())
    wider = (WINDOW[0], WINDOW[1] + timedelta(days=1))
    result2 = harness.provider().pull_changes(result.cursor, wider)
    assert result2.full is True
    list(result2.items)


class _Resp:
    def __init__(self, status, body):
        self.status_code = status
        self.content = body.encode()
        self.text = body
        self.headers = {}


def _ms(*responses, token):
    body = "".join(responses)
    return (f'<?xml version="1.0"?><D:multistatus xmlns:D="DAV:">{body}'
            f"<D:sync-token>{token}</D:sync-token></D:multistatus>")


def _r(href, status=None, etag='"1"'):
    if status:
        return f"<D:response><D:href>{href}</D:href><D:status>HTTP/1.1 {status} X</D:status></D:response>"
    return (f"<D:response><D:href>{href}</D:href><D:propstat><D:prop><D:getetag>{etag}</D:getetag></D:prop>"
            "<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>")


def test_sync_collection_paging_follows_truncation(monkeypatch):
    p = caldav.Provider("http://example.invalid/cal/", "u", "p")
    pages = [
        _ms(_r("/cal/a.ics"), _r("/cal/b.ics"), _r("/cal/", 507), token="t1"),
        _ms(_r("/cal/b.ics", 404), _r("http://example.invalid/cal/c%20d.ics"), _r("/cal/", 507), token="t2"),
        _ms(_r("/cal/e.ics"), token="t3"),
    ]
    sent = []

    def fake_send(method, url, *, body=None, headers=None, **kw):
        sent.append(body)
        return _Resp(207, pages[len(sent) - 1])

    monkeypatch.setattr(p.client, "send", fake_send)
    token, changed, deleted = p._sync("t0")
    assert token == "t3"
    assert changed == ["/cal/a.ics", "/cal/c%20d.ics", "/cal/e.ics"]
    assert deleted == ["/cal/b.ics"]
    assert [("<D:sync-token>%s<" % t) in b for t, b in zip(["t0", "t1", "t2"], sent)] == [True] * 3


def test_sync_collection_stops_when_the_token_stops_changing(monkeypatch):
    p = caldav.Provider("http://example.invalid/cal/", "u", "p")
    page = _ms(_r("/cal/a.ics"), _r("/cal/", 507), token="same")
    monkeypatch.setattr(p.client, "send", lambda *a, **k: _Resp(207, page))
    assert p._sync("same") == ("same", ["/cal/a.ics"], [])


# --- copies ---------------------------------------------------------------------------------------------------

def test_copy_shape_and_stale_etag(harness):
    p = harness.provider()
    ref = p.put_copy(spec("app-1", T0), None)
    assert ref.remote_id == caldav.norm_path(harness.calendar_url, harness.calendar_url) + "engage-app-1.ics"
    assert ref.etag
    data = harness.srv.get(ref.remote_id).text
    for line in ("UID:engage-app-1@engage", "TRANSP:OPAQUE", "X-ENGAGE-APPOINTMENT-ID:app-1", "SEQUENCE:0",
                 "DTSTART:20300304T080000Z", "SUMMARY:Customer meeting"):
        assert line in data
    # someone else touched our copy: our etag is stale -> 412 -> refetch and overwrite, still one copy
    harness.srv.put_event(harness.calendar_url, "engage-app-1", data.replace("Customer meeting", "Edited"))
    ref2 = harness.provider().put_copy(spec("app-1", T0 + timedelta(hours=1)), ref)
    assert ref2.etag != ref.etag
    assert harness.remote_copies() == {"app-1": [(T0 + timedelta(hours=1), T0 + timedelta(hours=1, minutes=30))]}
    assert "SEQUENCE:0" not in harness.srv.get(ref.remote_id).text
    # the engine's record points at a copy someone deleted: the update recreates it
    harness.delete_event(ref.remote_id)
    harness.provider().put_copy(spec("app-1", T0), ref2)
    assert harness.remote_copies() == {"app-1": [(T0, T0 + timedelta(minutes=30))]}


def test_odd_appointment_ids_get_a_safe_href(harness):
    ref = harness.provider().put_copy(spec("a/b c", T0), None)
    assert "/" not in ref.remote_id.rsplit("/", 1)[1] and " " not in ref.remote_id
    assert harness.remote_copies() == {"a/b c": [(T0, T0 + timedelta(minutes=30))]}


# --- faults: a proxy in front of Radicale ---------------------------------------------------------------------

class FaultProxy:
    """Forwards everything to Radicale, except that the first requests follow `faults`: "503"/"429" answer that
    status (Retry-After: 0) without forwarding; "drop" closes the connection without forwarding; "drop-after"
    forwards (the server acts) and then closes the connection without answering."""

    def __init__(self, target: str, faults: list[str]):
        self.target = target.rstrip("/")
        self.faults = list(faults)
        self.seen: list[str] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def handle_any(self):
                import requests

                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy.lock:
                    fault = proxy.faults.pop(0) if proxy.faults else None
                    proxy.seen.append(f"{self.command} {fault or 'ok'}")
                if fault in ("503", "429"):
                    self.send_response(int(fault))
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fault == "drop":
                    self.close_connection = True
                    return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "connection", "accept-encoding")}
                r = requests.request(self.command, proxy.target + self.path, data=body, headers=headers,
                                     allow_redirects=False, timeout=10)
                if fault == "drop-after":
                    self.close_connection = True
                    return
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("content-length", "content-encoding", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

        for method in ("GET", "HEAD", "PUT", "DELETE", "PROPFIND", "REPORT", "OPTIONS", "MKCALENDAR"):
            setattr(Handler, f"do_{method}", Handler.handle_any)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("faults", [["503", "429", "drop"], ["drop-after"], ["drop-after", "503", "drop-after"]])
def test_put_copy_survives_faults_with_exactly_one_copy(harness, faults):
    with FaultProxy(harness.srv.url, faults) as proxy:
        h = CaldavHarness(harness.srv, harness.calendar_url, base_url=proxy.url, tries=5)
        ref = h.provider().put_copy(spec("f1", T0), None)
        assert not proxy.faults
    assert ref.remote_id.endswith("/engage-f1.ics")
    assert harness.remote_copies() == {"f1": [(T0, T0 + timedelta(minutes=30))]}


def test_pull_survives_faults_and_is_complete(harness):
    keys = {harness.add_event(T0 + timedelta(days=i), T0 + timedelta(days=i, hours=1)) for i in range(3)}
    with FaultProxy(harness.srv.url, ["503", "drop", "429", "ok", "503", "drop"]) as proxy:
        h = CaldavHarness(harness.srv, harness.calendar_url, base_url=proxy.url, tries=4)
        result, items = pull_all(h.provider())
        assert result.full and set(items) == keys
        result2, items2 = pull_all(h.provider(), result.cursor)
        assert not result2.full and not items2
    assert proxy.seen[:3] == ["REPORT 503", "REPORT drop", "REPORT 429"]


def test_faults_beyond_the_retries_are_unreachable(harness):
    with FaultProxy(harness.srv.url, ["503"] * 3) as proxy:
        h = CaldavHarness(harness.srv, harness.calendar_url, base_url=proxy.url, tries=3)
        with pytest.raises(Unreachable) as info:
            pull_all(h.provider())
    assert "503" in str(info.value)
