"""The Google provider against a local HTTPS fake, through the real google-auth, google-auth-oauthlib and requests."""

from __future__ import annotations

import json
import os
import threading
import webbrowser
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests

from contract import T0, WINDOW, ProviderContract, pull_all, spec
from engagecli.core.models import CalendarInfo
from engagecli.errors import ProviderError, RelinkNeeded, Unreachable, UsageError
from engagecli.providers import google
from engagecli.providers.base import MARKER_KEY, CopyRef, ProviderContext, secret_name
from fakes.google import DEFAULT_SCOPES, GoogleFake

UTC = timezone.utc
ACCOUNT = "advisor@example.com"
CLIENT_ID = "cid.apps.googleusercontent.com"
CLIENT_SECRET = "csecret"


class Secrets(dict):
    def get(self, name):  # noqa: D401 - SecretStore shape
        return super().get(name)

    def set(self, name, value):
        self[name] = value

    def delete(self, name):
        self.pop(name, None)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    f = GoogleFake(tmp_path).start()
    for key, value in f.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ENGAGE_GOOGLE_CLIENT_SECRETS", raising=False)
    yield f
    f.stop()


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class GoogleHarness:
    def __init__(self, fake: GoogleFake, calendar_id: str = ACCOUNT, read_only: bool = False):
        self.fake = fake
        self.calendar_id = calendar_id
        fake.add_client(CLIENT_ID, CLIENT_SECRET)
        self.refresh_token = fake.issue_refresh_token(CLIENT_ID)
        self.secrets = Secrets({secret_name("default", "cal-1", "refresh_token"): self.refresh_token,
                                secret_name("default", "cal-1", "client_secret"): CLIENT_SECRET})
        self.cal = CalendarInfo(id="cal-1", provider="google", account=ACCOUNT, name="Work", remote_id=calendar_id,
                                read_only=read_only,
                                options={"client_id": CLIENT_ID, "token_uri": fake.token_url, "scopes": DEFAULT_SCOPES})
        self.sleeps: list[float] = []

    def provider(self):
        ctx = ProviderContext(timezone="Europe/Oslo", secrets=self.secrets, environ=dict(os.environ))
        p = google.Provider.from_calendar(self.cal, ctx)
        p.api.sleep = self.sleeps.append
        return p

    def add_event(self, start, end, summary="Busy", transparent=False, cancelled=False, **extra):
        event = {"summary": summary, "start": {"dateTime": iso(start), "timeZone": "Europe/Oslo"},
                 "end": {"dateTime": iso(end), "timeZone": "Europe/Oslo"}, **extra}
        if transparent:
            event["transparency"] = "transparent"
        if cancelled:
            event["status"] = "cancelled"
        return self.fake.put_event(self.calendar_id, event)["id"]

    def delete_event(self, key):
        self.fake.delete_event(self.calendar_id, key)

    def remote_copies(self):
        out: dict = {}
        for ev in self.fake.events(self.calendar_id):
            appt = ((ev.get("extendedProperties") or {}).get("private") or {}).get(MARKER_KEY)
            if appt:
                start = datetime.fromisoformat(ev["start"]["dateTime"].replace("Z", "+00:00"))
                end = datetime.fromisoformat(ev["end"]["dateTime"].replace("Z", "+00:00"))
                out.setdefault(appt, []).append((start, end))
        return out

    def bad_cursor(self, cursor):
        return "s999.1"


@pytest.fixture
def harness(fake):
    return GoogleHarness(fake)


class TestGoogleContract(ProviderContract):
    pass  # the `harness` fixture above


# --- reading ------------------------------------------------------------------------------------------------------

def test_busy_rule_all_day_declined_and_free(harness):
    h = harness
    allday = h.fake.put_event(ACCOUNT, {"summary": "Conference", "start": {"date": "2030-03-05"},
                                        "end": {"date": "2030-03-07"}})["id"]
    declined = h.add_event(T0, T0 + timedelta(hours=1), attendees=[
        {"email": "boss@example.com", "organizer": True, "responseStatus": "accepted"},
        {"email": ACCOUNT, "self": True, "responseStatus": "declined"}])
    other_declined = h.add_event(T0 + timedelta(hours=2), T0 + timedelta(hours=3), attendees=[
        {"email": "x@example.com", "responseStatus": "declined"},
        {"email": ACCOUNT, "self": True, "responseStatus": "tentative"}])
    free = h.add_event(T0 + timedelta(hours=4), T0 + timedelta(hours=5), transparent=True)
    _, items = pull_all(h.provider())
    occ = items[allday].occurrences[0]
    # whole local dates in Europe/Oslo (UTC+1 in March): 5 March 00:00 to 7 March 00:00 local
    assert (occ.start, occ.end, occ.all_day, occ.busy) == (
        datetime(2030, 3, 4, 23, tzinfo=UTC), datetime(2030, 3, 6, 23, tzinfo=UTC), True, True)
    assert (items[declined].occurrences[0].busy, items[declined].occurrences[0].reason) == (False, "declined")
    assert items[other_declined].occurrences[0].busy is True
    assert (items[free].occurrences[0].busy, items[free].occurrences[0].reason) == (False, "free")


def test_all_day_across_dst_uses_local_midnights(harness):
    key = harness.fake.put_event(ACCOUNT, {"start": {"date": "2030-03-31"}, "end": {"date": "2030-04-01"}})["id"]
    _, items = pull_all(harness.provider())
    occ = items[key].occurrences[0]
    assert (occ.start, occ.end) == (datetime(2030, 3, 30, 23, tzinfo=UTC), datetime(2030, 3, 31, 22, tzinfo=UTC))


def test_full_pull_streams_every_page_and_cursor_comes_last(harness):
    h = harness
    keys = {h.add_event(T0 + timedelta(days=i), T0 + timedelta(days=i, hours=1)) for i in range(8)}
    p = h.provider()
    result = p.pull_changes(None, WINDOW)
    with pytest.raises(ProviderError):
        result.cursor  # not known before the last page was read
    got = {item.key for item in result.items}
    assert got == keys
    assert result.cursor and result.full
    lists = [q for m, path, q in h.fake.log if m == "GET" and path.endswith("/events")]
    assert len(lists) == 3  # pages of 3, 3, 2
    assert all(q["singleEvents"] == "true" for q in lists)
    assert lists[0]["timeMin"] == "2030-01-01T00:00:00Z" and lists[0]["timeMax"] == "2031-01-01T00:00:00Z"
    assert "pageToken" in lists[1] and "pageToken" in lists[2]


def test_incremental_pull_uses_sync_token_only_and_pages(harness):
    h = harness
    result, _ = pull_all(h.provider())
    added = [h.add_event(T0 + timedelta(days=i), T0 + timedelta(days=i, hours=1)) for i in range(4)]
    h.delete_event(added[0])
    outside = h.add_event(datetime(2032, 1, 1, tzinfo=UTC), datetime(2032, 1, 1, 1, tzinfo=UTC))
    h.fake.log.clear()
    result2, items2 = pull_all(h.provider(), result.cursor)
    assert result2.full is False
    assert set(items2) == set(added[1:])
    assert set(result2.deleted) == {added[0], outside}  # cancelled stubs, and what lies outside the window
    lists = [q for m, path, q in h.fake.log if path.endswith("/events")]
    assert len(lists) == 2
    assert all("timeMin" not in q and "timeMax" not in q and result.cursor.endswith("|" + q["syncToken"]) for q in lists)


def test_expired_sync_token_falls_back_to_full(harness):
    key = harness.add_event(T0, T0 + timedelta(hours=1))
    result, _ = pull_all(harness.provider())
    harness.fake.invalidate_sync_tokens()
    result2, items2 = pull_all(harness.provider(), result.cursor)
    assert result2.full and key in items2 and result2.cursor != result.cursor


def _listings(fake, suffix):
    return [q for m, path, q in fake.log if m == "GET" and path.endswith(suffix)]


def test_a_repeated_page_token_stops_every_listing(harness):
    h = harness
    for i in range(4):
        h.add_event(T0 + timedelta(days=i), T0 + timedelta(days=i, hours=1))
    first, _ = pull_all(h.provider())
    h.fake.page_loops = {"events": "repeat", "calendarList": "repeat"}
    h.fake.log.clear()
    with pytest.raises(ProviderError, match="kept sending more pages") as info:  # a full pull (streamed)
        pull_all(h.provider())
    assert "\n" not in str(info.value)
    assert len(_listings(h.fake, "/events")) == 2  # the first page; the page of token T, whose next token is T
    h.add_event(T0, T0 + timedelta(hours=2))
    h.add_event(T0, T0 + timedelta(hours=3))
    h.add_event(T0, T0 + timedelta(hours=4))
    h.add_event(T0, T0 + timedelta(hours=5))
    with pytest.raises(ProviderError, match="kept sending more pages"):  # an incremental pull
        h.provider().pull_changes(first.cursor, WINDOW)
    h.fake.log.clear()
    with pytest.raises(ProviderError, match="kept sending more pages"):  # the calendar list
        h.provider().list_calendars()
    assert len(_listings(h.fake, "/calendarList")) == 2


def test_endless_pages_stop_after_max_pages(harness, monkeypatch):
    assert google.MAX_PAGES == 10_000
    monkeypatch.setattr(google, "MAX_PAGES", 5)
    harness.add_event(T0, T0 + timedelta(hours=1))
    harness.fake.page_loops = {"events": "endless", "calendarList": "endless"}
    with pytest.raises(ProviderError, match="kept sending more pages"):
        pull_all(harness.provider())
    assert len(_listings(harness.fake, "/events")) == 5
    with pytest.raises(ProviderError, match="kept sending more pages"):
        harness.provider().list_calendars()
    assert len(_listings(harness.fake, "/calendarList")) == 5


def test_list_calendars_marks_primary_and_read_only(harness):
    harness.fake.page_size = 2  # two pages of calendarList
    cals = harness.provider().list_calendars()
    assert len(cals) == 3
    assert cals[0].remote_id == ACCOUNT and cals[0].primary and not cals[0].read_only
    by_id = {c.remote_id: c for c in cals}
    assert by_id["en.norwegian#holiday@group.v.calendar.google.com"].read_only
    assert not by_id["team@group.calendar.google.com"].read_only


def test_secondary_calendar_with_odd_id_is_url_encoded(fake):
    h = GoogleHarness(fake, calendar_id="en.norwegian#holiday@group.v.calendar.google.com", read_only=True)
    key = h.add_event(T0, T0 + timedelta(hours=1))
    _, items = pull_all(h.provider())
    assert key in items
    with pytest.raises(UsageError):
        h.provider().put_copy(spec("r1", T0), None)


# --- writing ------------------------------------------------------------------------------------------------------

def test_copy_ids_are_base32hex_and_deterministic():
    a = google.copy_event_id("appt-1")
    assert a == google.copy_event_id("appt-1") != google.copy_event_id("appt-2")
    assert set(a) <= set("abcdefghijklmnopqrstuv0123456789") and 5 <= len(a) <= 1024
    long_id = google.copy_event_id("x" * 2000)
    assert set(long_id) <= set("abcdefghijklmnopqrstuv0123456789") and len(long_id) <= 1024


def test_copy_uses_our_id_marker_and_zone(harness):
    ref = harness.provider().put_copy(spec("a9", T0), None)
    assert ref.remote_id == google.copy_event_id("a9") and ref.etag
    ev = [e for e in harness.fake.events(ACCOUNT) if e["id"] == ref.remote_id][0]
    assert ev["extendedProperties"]["private"][MARKER_KEY] == "a9"
    assert ev["start"] == {"dateTime": "2030-03-04T08:00:00Z", "timeZone": "Europe/Oslo"}


def test_update_after_someone_edited_the_copy_overwrites(harness):
    h = harness
    ref = h.provider().put_copy(spec("a5", T0), None)
    ev = [e for e in h.fake.events(ACCOUNT) if e["id"] == ref.remote_id][0]
    h.fake.put_event(ACCOUNT, {**ev, "summary": "edited by hand"})  # new etag
    moved = T0 + timedelta(hours=2)
    h.fake.log.clear()
    ref2 = h.provider().put_copy(spec("a5", moved), ref)
    assert h.remote_copies() == {"a5": [(moved, moved + timedelta(minutes=30))]}
    methods = [m for m, _p, _q in h.fake.log]
    assert methods == ["PATCH", "GET", "PATCH"]  # 412, refetch, overwrite
    assert ref2.etag != ref.etag
    assert [e["summary"] for e in h.fake.events(ACCOUNT)] == ["Customer meeting"]


def test_update_of_a_copy_deleted_by_the_user_restores_it(harness):
    h = harness
    ref = h.provider().put_copy(spec("a6", T0), None)
    h.delete_event(ref.remote_id)
    h.provider().put_copy(spec("a6", T0 + timedelta(hours=1)), ref)
    assert h.remote_copies() == {"a6": [(T0 + timedelta(hours=1), T0 + timedelta(hours=1, minutes=30))]}


def test_delete_of_unknown_copy_is_fine(harness):
    harness.provider().delete_copy(CopyRef("eng0neverexisted"))


# --- errors -------------------------------------------------------------------------------------------------------

def test_revoked_grant_needs_relink_and_never_shows_the_token(harness):
    harness.fake.revoke()
    with pytest.raises(RelinkNeeded) as info:
        harness.provider().pull_changes(None, WINDOW)
    message = str(info.value)
    assert ACCOUNT in message and "engage link google" in message
    assert harness.refresh_token not in message and CLIENT_SECRET not in message


def test_missing_secret_needs_relink(harness):
    harness.secrets.clear()
    with pytest.raises(RelinkNeeded):
        harness.provider()


def test_expired_access_token_is_refreshed(harness):
    p = harness.provider()
    pull_all(p)
    harness.fake.expire_access_tokens()
    pull_all(p)
    assert harness.fake.token_requests.count("refresh_token") == 2


def test_persistent_401_needs_relink(harness):
    harness.fake.fail_next(5, 401)
    with pytest.raises(RelinkNeeded):
        harness.provider().pull_changes(None, WINDOW)


@pytest.mark.parametrize("status,reason", [(429, None), (500, None), (503, None), (403, "rateLimitExceeded"),
                                           (403, "userRateLimitExceeded")])
def test_transient_faults_are_retried(harness, status, reason):
    key = harness.add_event(T0, T0 + timedelta(hours=1))
    harness.fake.fail_next(2, status, retry_after="1", reason=reason)
    _, items = pull_all(harness.provider())
    assert key in items
    assert harness.sleeps == [1.0, 1.0]  # Retry-After honoured
    assert harness.fake.api_requests == 3


def test_retries_without_retry_after_back_off(harness):
    harness.fake.fail_next(2, 502)
    harness.provider().put_copy(spec("b1", T0), None)
    assert len(harness.sleeps) == 2 and all(0 <= s <= 30 for s in harness.sleeps)
    assert harness.remote_copies() == {"b1": [(T0, T0 + timedelta(minutes=30))]}


@pytest.mark.parametrize("status,reason", [(400, None), (403, "forbidden"), (404, "notFound")])
def test_other_client_errors_fail_at_once(harness, status, reason):
    harness.fake.fail_next(1, status, reason=reason)
    with pytest.raises(ProviderError) as info:
        harness.provider().pull_changes(None, WINDOW)
    assert str(status) in str(info.value)
    assert harness.fake.api_requests == 1 and harness.sleeps == []


def test_insufficient_scope_needs_relink(harness):
    harness.fake.fail_next(1, 403, reason="insufficientPermissions")
    with pytest.raises(RelinkNeeded):
        harness.provider().pull_changes(None, WINDOW)


def test_endless_server_errors_are_unreachable(harness):
    harness.fake.fail_next(10, 503, retry_after="2")
    with pytest.raises(Unreachable):
        harness.provider().pull_changes(None, WINDOW)
    assert harness.fake.api_requests == 5 and harness.sleeps == [2.0] * 4


def test_network_failure_is_unreachable(harness, monkeypatch):
    monkeypatch.setenv("ENGAGE_GOOGLE_API_URL", "https://127.0.0.1:9")
    with pytest.raises(Unreachable):
        harness.provider().pull_changes(None, WINDOW)
    monkeypatch.setenv("ENGAGE_GOOGLE_TOKEN_URL", "https://127.0.0.1:9/token")
    with pytest.raises(Unreachable):
        harness.provider().pull_changes(None, WINDOW)


# --- batches ------------------------------------------------------------------------------------------------------

BATCH_PATH = "/batch/calendar/v3"


def batch_posts(fake) -> int:
    return sum(1 for m, p, _q in fake.log if p == BATCH_PATH)


def single_writes(fake) -> list:
    return [(m, p) for m, p, _q in fake.log if m != "GET" and p != BATCH_PATH]


def specs(n: int, first: int = 0, offset: timedelta = timedelta(0)):
    return [spec(f"bt-{i}", T0 + timedelta(hours=i) + offset) for i in range(first, first + n)]


def check_copies(h, all_specs):
    assert h.remote_copies() == {s.appointment_id: [(s.start, s.end)] for s in all_specs}


def _engine_run(h, tmp_path, count: int, batch_size: int | None):
    import dataclasses

    from engagecli.core.models import Appointment
    from engagecli.store import Store
    from engagecli.sync.engine import sync_calendar

    store = Store.open(tmp_path / f"engage-{batch_size}.db")
    now = datetime(2030, 3, 1, 8, tzinfo=UTC)
    cal = dataclasses.replace(h.cal, copy_appointments=True)
    store.add_calendar(cal, now)
    for i in range(count):
        start = T0 + timedelta(hours=i)
        store.add_appointment(Appointment(f"e-{i:03d}", start, start + timedelta(minutes=30), "Europe/Oslo",
                                          f"Meeting {i}"), now)
    h.fake.page_size = 2500  # Google's maxResults: the next pull reads our 120 copies back in one page
    p = h.provider()
    if batch_size is not None:
        p.batch_size = batch_size
    api0 = h.fake.api_requests
    report = sync_calendar(store, p, store.get_calendar(cal.id), now=now, window=WINDOW)
    assert (report.status, report.error, report.copied) == ("ok", None, count)
    copied = h.fake.api_requests - api0
    assert h.remote_copies() == {f"e-{i:03d}": [(T0 + timedelta(hours=i), T0 + timedelta(hours=i, minutes=30))]
                                 for i in range(count)}
    api1 = h.fake.api_requests
    again = sync_calendar(store, p, store.get_calendar(cal.id), now=now, window=WINDOW)
    assert (again.status, again.copied, again.updated) == ("ok", 0, 0)
    return copied, h.fake.api_requests - api1


def test_120_copies_through_the_engine_take_three_batch_requests(harness, tmp_path, capsys):
    h = harness
    copied, noop = _engine_run(h, tmp_path, 120, None)
    assert h.fake.batches == [50, 50, 20] and batch_posts(h.fake) == 3
    assert single_writes(h.fake) == []  # no copy went as a request of its own
    assert copied == 1 + 3  # the pull's one page, then three batches
    assert noop == 1  # the next sync only pulls (its copies come back once, recognised by our marker)
    inserts = [p for m, p, _q in h.fake.batch_parts if m == "POST"]
    assert len(inserts) == 120 and all(p == "/calendar/v3/calendars/advisor%40example.com/events" for p in inserts)
    with capsys.disabled():
        print(f"\n120 copies, batched: {copied} API requests ({h.fake.batches} parts)")


def test_120_copies_without_batches_for_comparison(harness, tmp_path, capsys):
    copied, _ = _engine_run(harness, tmp_path, 120, 1)
    assert batch_posts(harness.fake) == 0 and len(single_writes(harness.fake)) == 120
    assert copied == 1 + 120
    with capsys.disabled():
        print(f"\n120 copies, one request each: {copied} API requests")


def test_batch_parts_answering_429_503_or_rate_limit_are_sent_again(harness):
    h = harness
    work = specs(10)
    h.fake.fail_parts({1: 429, 4: 503}, retry_after="2")
    h.fake.fail_parts({0: 403}, reason="userRateLimitExceeded")  # the retry batch: its first part again
    results = h.provider().put_copies([(s, None) for s in work])
    assert all(isinstance(r, CopyRef) for r in results)
    assert [r.remote_id for r in results] == [google.copy_event_id(s.appointment_id) for s in work]
    assert h.fake.batches == [10, 2, 1] and h.fake.api_requests == 3
    assert h.sleeps[0] == 2.0 and 0 <= h.sleeps[1] <= 1.0 and len(h.sleeps) == 2  # Retry-After, then backoff
    check_copies(h, work)  # exactly once each


def test_batch_part_that_keeps_failing_is_that_items_error(harness):
    h = harness
    work = specs(5)
    h.fake.fail_parts({2: 503})
    for _ in range(4):
        h.fake.fail_parts({0: 503})  # each retry batch holds only that part
    results = h.provider().put_copies([(s, None) for s in work])
    assert isinstance(results[2], ProviderError) and "503" in str(results[2]) and "bt-2" in str(results[2])
    assert all(isinstance(r, CopyRef) for i, r in enumerate(results) if i != 2)
    assert h.fake.batches == [5, 1, 1, 1, 1]  # bounded: 5 tries for the part, like a single request
    check_copies(h, [s for i, s in enumerate(work) if i != 2])


def test_batch_insert_finding_the_copy_already_there_adopts_it(harness):
    """A crash after the server wrote copies but before engage recorded them: the batch inserts answer 409 for
    those, and a second batch patches them to what the appointments say now: still exactly once."""
    h = harness
    work = specs(8)
    p = h.provider()
    for i in (3, 5):  # landed before the crash, with the old times
        p.put_copy(spec(work[i].appointment_id, work[i].start - timedelta(days=1)), None)
    h.fake.log.clear()
    results = p.put_copies([(s, None) for s in work])
    assert [r.remote_id for r in results] == [google.copy_event_id(s.appointment_id) for s in work]
    assert all(r.etag for r in results)
    assert h.fake.batches == [8, 2]
    assert [m for m, _p, _q in h.fake.batch_parts] == ["POST"] * 8 + ["PATCH"] * 2
    assert single_writes(h.fake) == []
    check_copies(h, work)


def test_batch_part_with_400_is_that_items_error_only(harness):
    h = harness
    work = specs(5)
    h.fake.fail_parts({2: 400})
    results = h.provider().put_copies([(s, None) for s in work])
    assert isinstance(results[2], ProviderError) and "400" in str(results[2])
    assert all(isinstance(r, CopyRef) for i, r in enumerate(results) if i != 2)
    assert h.fake.batches == [5] and h.sleeps == []  # never retried
    check_copies(h, [s for i, s in enumerate(work) if i != 2])


def test_batch_updates_use_if_match_and_repair_edited_and_removed_copies(harness):
    h = harness
    p = h.provider()
    work = specs(4)
    refs = p.put_copies([(s, None) for s in work])
    edited, removed = refs[1], refs[2]
    ev = [e for e in h.fake.events(ACCOUNT) if e["id"] == edited.remote_id][0]
    h.fake.put_event(ACCOUNT, {**ev, "summary": "edited by hand"})  # new etag: our If-Match answers 412
    with h.fake.lock:
        del h.fake.calendars[ACCOUNT]["events"][removed.remote_id]  # gone for good: the PATCH answers 404
    h.fake.log.clear()
    h.fake.batch_parts.clear()
    h.fake.batches.clear()
    moved = specs(4, offset=timedelta(minutes=15))
    results = p.put_copies(list(zip(moved, refs)))
    assert all(isinstance(r, CopyRef) for r in results)
    assert [r.remote_id for r in results] == [r.remote_id for r in refs]
    assert results[0].etag != refs[0].etag
    check_copies(h, moved)
    assert [e["summary"] for e in h.fake.events(ACCOUNT)] == ["Customer meeting"] * 4
    assert h.fake.batches == [4, 1]  # the removed one is inserted again in a second batch
    assert [m for m, _p, _q in h.fake.batch_parts] == ["PATCH"] * 4 + ["POST"]
    assert [m for m, _p, _q in h.fake.log if _p != BATCH_PATH] == ["GET", "PATCH"]  # the 412: refetch, overwrite


def test_batch_parts_answering_401_refresh_once(harness):
    h = harness
    p = h.provider()
    p.put_copies([(s, None) for s in specs(3)])
    h.fake.expire_access_tokens()  # the parts answer 401, the batch itself 200
    results = p.put_copies([(s, None) for s in specs(3, first=3)])
    assert all(isinstance(r, CopyRef) for r in results)
    assert h.fake.token_requests.count("refresh_token") == 2 and h.fake.batches == [3, 3, 3]
    check_copies(h, specs(6))
    h.fake.revoke()
    with pytest.raises(RelinkNeeded):
        p.put_copies([(s, None) for s in specs(2, first=6)])


def test_whole_batch_faults_go_through_the_single_request_handling(harness):
    h = harness
    p = h.provider()
    h.fake.fail_next(2, 503, retry_after="1")
    assert all(isinstance(r, CopyRef) for r in p.put_copies([(s, None) for s in specs(3)]))
    assert h.sleeps == [1.0, 1.0] and h.fake.api_requests == 3 and h.fake.batches == [3]
    h.fake.fail_next(1, 401)  # google-auth refreshes and sends the batch again
    assert all(isinstance(r, CopyRef) for r in p.put_copies([(s, None) for s in specs(3, first=3)]))
    check_copies(h, specs(6))
    h.fake.fail_next(5, 503)  # every try of the batch itself
    with pytest.raises(Unreachable):
        p.put_copies([(s, None) for s in specs(2, first=6)])
    h.fake.fail_next(5, 401)
    with pytest.raises(RelinkNeeded):
        p.put_copies([(s, None) for s in specs(2, first=6)])


def test_batch_answer_parsing_follows_google_wire_format():
    """Parts matched by Content-ID (`response-` + the request's id), in any order; LF or CRLF line ends; a
    quoted boundary; parts without Content-ID matched by position."""
    class Answer:
        headers = {"Content-Type": 'multipart/mixed; boundary="batch_abc"'}
        content = (b"--batch_abc\nContent-Type: application/http\nContent-ID: <response-item1+x>\n\n"
                   b"HTTP/1.1 409 Conflict\nContent-Type: application/json\n\n{\"error\": {\"code\": 409}}\n"
                   b"--batch_abc\r\nContent-Type: application/http\r\nContent-ID: <response-item0+x>\r\n\r\n"
                   b"HTTP/1.1 200 OK\r\nETag: \"e1\"\r\n\r\n{\"id\": \"eng0a\", \"etag\": \"\\\"e1\\\"\"}\r\n"
                   b"--batch_abc\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\r\n"
                   b"--batch_abc--\r\n")

    parts = google._batch_answer(Answer())
    assert [(cid, part.status_code) for cid, part in parts] == [("item1+x", 409), ("item0+x", 200), (None, 204)]
    assert parts[1][1].json() == {"id": "eng0a", "etag": '"e1"'} and parts[1][1].headers["etag"] == '"e1"'
    Answer.headers = {"Content-Type": "application/json"}
    with pytest.raises(ProviderError):
        google._batch_answer(Answer())


# --- link ---------------------------------------------------------------------------------------------------------

class UI:
    def __init__(self, answer=None):
        self.lines: list[str] = []
        self.prompts: list[str] = []
        self.answer = answer

    def say(self, text):
        assert "\n" not in text
        self.lines.append(text)

    def ask(self, prompt):
        self.prompts.append(prompt)
        return self.answer(self) if callable(self.answer) else self.answer


@pytest.fixture
def client_file(fake, tmp_path):
    path = tmp_path / "client_secret.json"
    path.write_text(json.dumps(fake.client_json(CLIENT_ID, CLIENT_SECRET)))
    return str(path)


def consent_url(ui: UI) -> str:
    return next(line for line in ui.lines if line.startswith("https://"))


def _check_linked(result, fake):
    assert result.account == ACCOUNT
    assert [c.remote_id for c in result.calendars][0] == ACCOUNT and result.calendars[0].primary
    assert {c.remote_id: c.read_only for c in result.calendars}["en.norwegian#holiday@group.v.calendar.google.com"]
    assert result.secrets["refresh_token"] in fake.refresh_tokens
    assert result.secrets["client_secret"] == CLIENT_SECRET
    assert result.options["client_id"] == CLIENT_ID and result.options["token_uri"] == fake.token_url
    assert "client_secret" not in json.dumps(result.options) and result.secrets["refresh_token"] not in json.dumps(result.options)
    auth = fake.authorize_requests[-1]
    assert auth["code_challenge_method"] == "S256" and auth["state"]
    assert auth["access_type"] == "offline" and auth["prompt"] == "consent"
    assert set(auth["scope"].split()) == set(google.SCOPES)


def test_link_browser_flow(fake, client_file, monkeypatch):
    visits = []

    class Browser:
        def open(self, url, new=0, autoraise=True):
            def visit():  # the "user" signs in; the fake redirects to the loopback server
                visits.append(requests.get(url, timeout=10))

            threading.Thread(target=visit, daemon=True).start()
            return True

    monkeypatch.setattr(webbrowser, "get", lambda using=None: Browser())
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: Browser().open(url))
    ui = UI()
    result = google.link(ui, client_secrets=client_file, no_browser=False, port=None, environ=dict(os.environ))
    _check_linked(result, fake)
    assert fake.authorize_requests[-1]["redirect_uri"].startswith("http://127.0.0.1:")
    assert consent_url(ui).startswith(fake.auth_url + "?")
    assert visits and visits[0].status_code == 200 and "linked" in visits[0].text


def test_link_browser_port_in_use(fake, client_file, monkeypatch):
    import socket

    monkeypatch.setattr(webbrowser, "get", lambda using=None: object())  # never opened: binding fails first
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(UsageError) as info:
            google.link(UI(), client_secrets=client_file, port=port, environ=dict(os.environ))
    assert str(port) in str(info.value) and "--port" in str(info.value)


def test_link_without_browser_available(fake, client_file, monkeypatch):
    def no_browser(using=None):
        raise webbrowser.Error("could not locate runnable browser")

    monkeypatch.setattr(webbrowser, "get", no_browser)
    with pytest.raises(UsageError) as info:
        google.link(UI(), client_secrets=client_file, environ=dict(os.environ))
    assert "--no-browser" in str(info.value)


def _follow_consent(ui: UI) -> str:
    """The user opens the consent URL and copies the address the browser ended on (which does not load)."""
    response = requests.get(consent_url(ui), allow_redirects=False, timeout=10)
    assert response.status_code == 302
    return response.headers["Location"]


def test_link_no_browser_flow_with_env_client(fake, client_file, monkeypatch):
    monkeypatch.setenv("ENGAGE_GOOGLE_CLIENT_SECRETS", client_file)
    ui = UI(_follow_consent)
    result = google.link(ui, client_secrets=None, no_browser=True, port=8765, environ=dict(os.environ))
    _check_linked(result, fake)
    assert fake.authorize_requests[-1]["redirect_uri"] == "http://127.0.0.1:8765/"
    assert ui.prompts and consent_url(ui) in ui.lines  # the URL on a line of its own


def test_link_no_browser_state_mismatch(fake, client_file):
    def tampered(ui):
        parts = urlsplit(_follow_consent(ui))
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        q["state"] = "someone-elses-state"
        return urlunsplit(parts._replace(query=urlencode(q)))

    with pytest.raises(UsageError) as info:
        google.link(UI(tampered), client_secrets=client_file, no_browser=True, environ=dict(os.environ))
    assert "state" in str(info.value)
    assert "authorization_code" not in fake.token_requests  # never exchanged


def test_link_no_browser_garbage_and_denied(fake, client_file):
    with pytest.raises(UsageError):
        google.link(UI("not a url"), client_secrets=client_file, no_browser=True, environ=dict(os.environ))
    fake.consent = "deny"
    with pytest.raises(UsageError) as info:
        google.link(UI(_follow_consent), client_secrets=client_file, no_browser=True, environ=dict(os.environ))
    assert "denied" in str(info.value)


def test_link_partial_grant_is_refused(fake, client_file):
    fake.granted_scopes = [google.SCOPES[1]]
    with pytest.raises(UsageError) as info:
        google.link(UI(_follow_consent), client_secrets=client_file, no_browser=True, environ=dict(os.environ))
    assert "permission" in str(info.value)


def test_link_needs_a_desktop_client(fake, tmp_path):
    with pytest.raises(UsageError) as info:
        google.link(UI(), client_secrets=None, environ={})
    assert "Desktop app" in str(info.value)
    web = tmp_path / "web.json"
    web.write_text(json.dumps({"web": {"client_id": "x", "client_secret": "y"}}))
    with pytest.raises(UsageError) as info:
        google.link(UI(), client_secrets=str(web), environ={})
    assert "Web application" in str(info.value)
    with pytest.raises(UsageError):
        google.link(UI(), client_secrets=str(tmp_path / "missing.json"), environ={})


def test_linked_result_drives_the_provider(fake, client_file):
    """What link returns is enough for from_calendar (as `engage link` stores it)."""
    result = google.link(UI(_follow_consent), client_secrets=client_file, no_browser=True, environ=dict(os.environ))
    secrets = Secrets({secret_name("default", "cal-9", k): v for k, v in result.secrets.items()})
    cal = CalendarInfo(id="cal-9", provider="google", account=result.account, name="Work",
                       remote_id=result.calendars[0].remote_id, options=result.options)
    ctx = ProviderContext(timezone="Europe/Oslo", secrets=secrets, environ={})  # endpoints from the options
    p = google.Provider.from_calendar(cal, ctx)
    ref = p.put_copy(spec("l1", T0), None)
    assert ref.remote_id == google.copy_event_id("l1")


def test_a_moved_window_gets_one_full_listing(harness):
    """A sync token keeps the time bounds it was made with: when the window moves (a new day), the next pull
    lists the new window in full, so events that entered it are not missed; then incremental again."""
    h = harness
    result, _ = pull_all(h.provider())
    later = (WINDOW[0] + timedelta(days=1), WINDOW[1] + timedelta(days=1))
    moved = h.provider().pull_changes(result.cursor, later)
    list(moved.items)
    assert moved.full is True
    again = h.provider().pull_changes(moved.cursor, later)
    list(again.items)
    assert again.full is False
