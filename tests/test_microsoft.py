"""The Microsoft provider against a local HTTPS fake of the identity platform and Graph, with the REAL msal and
requests (tests/fakes/graph.py)."""

from __future__ import annotations

import json
import os
import stat
import threading
from datetime import date, datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from engagecli.fsutil import write_private
from engagecli.secrets import open_secrets

from contract import T0, WINDOW, ProviderContract, pull_all, spec
from engagecli.core.models import CalendarInfo
from engagecli.errors import EngageError, RelinkNeeded, Unreachable, UsageError
from engagecli.providers import microsoft
from engagecli.providers.base import CopyRef, ProviderContext, secret_name
from fakes.graph import GraphFake

UTC = timezone.utc


class RecordingUI:
    def __init__(self):
        self.lines: list[str] = []

    def say(self, text):
        self.lines.append(text)

    def ask(self, prompt):
        raise UsageError("no terminal")


@pytest.fixture
def sleeps(monkeypatch):
    recorded: list[float] = []
    monkeypatch.setattr(microsoft, "_sleep", recorded.append)
    return recorded


@pytest.fixture
def fake(tmp_path, monkeypatch, sleeps):
    server = GraphFake(tmp_path).start()
    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    yield server
    server.stop()


def link_calendar(fake, tmp_path, *, timezone_name="Europe/Oslo", cal_id="microsoft-1a2b", ui=None):
    """What `engage link microsoft` does: sign in, pick the default calendar, store secrets and options."""
    ui = ui or RecordingUI()
    result = microsoft.link(ui, client_id=None, tenant=None, browser=False, environ=dict(os.environ))
    chosen = next(c for c in result.calendars if c.primary)
    secrets = open_secrets(tmp_path / "home", {"ENGAGE_SECRETS": "file"})  # the real file store
    for kind, value in result.secrets.items():
        secrets.set(secret_name("default", cal_id, kind), value)
    state = tmp_path / "state"
    state.mkdir(mode=0o700, exist_ok=True)
    for suffix, content in result.state_files.items():  # as `engage link` does
        write_private(state / f"{cal_id}{suffix}", content)
    cal = CalendarInfo(id=cal_id, provider="microsoft", account=result.account, name=chosen.name,
                       remote_id=chosen.remote_id, options=dict(result.options))
    ctx = ProviderContext(timezone=timezone_name, secrets=secrets, environ=dict(os.environ), profile="default",
                          state_dir=state)
    return result, cal, ctx


class GraphHarness:
    def __init__(self, fake, tmp_path):
        self.fake = fake
        self.result, self.cal, self.ctx = link_calendar(fake, tmp_path)

    def provider(self):
        return microsoft.Provider.from_calendar(self.cal, self.ctx)

    def add_event(self, start, end, summary="Busy", transparent=False, cancelled=False):
        return self.fake.add_event(self.cal.remote_id, start, end, summary,
                                   show_as="free" if transparent else "busy", cancelled=cancelled)

    def delete_event(self, key):
        self.fake.delete_event(key)

    def remote_copies(self):
        return self.fake.copies(self.cal.remote_id)

    def bad_cursor(self, cursor):
        self.fake.expire_delta_tokens()  # Graph forgot the sync state: the same delta link now answers 410
        return cursor


@pytest.fixture
def harness(fake, tmp_path):
    return GraphHarness(fake, tmp_path)


class TestMicrosoftContract(ProviderContract):
    pass  # the `harness` fixture above


# --------------------------------------------------------------------------------------------- linking


def test_link_device_code_end_to_end(fake, tmp_path):
    ui = RecordingUI()
    result, cal, ctx = link_calendar(fake, tmp_path, ui=ui)
    text = "\n".join(ui.lines)
    assert f"{fake.url}/devicelogin" in text
    assert fake.user_codes and fake.user_codes[-1] in text
    assert fake.grants["device_code"] == fake.device_pending + 1  # pending, pending, done
    assert result.account == fake.username
    by_name = {c.name: c for c in result.calendars}
    assert by_name["Calendar"].primary and not by_name["Calendar"].read_only
    assert by_name["Holidays in Norway"].read_only and not by_name["Holidays in Norway"].primary
    assert set(result.secrets) == {"cache_key"}
    assert result.options["client_id"] == fake.client_id
    assert result.options["authority"] == fake.authority
    assert result.options["graph_url"] == fake.graph_url
    assert result.options["home_account_id"] == f"{fake.uid}.{fake.utid}"
    # nothing readable in the options: the seed is ciphertext
    blob = json.dumps(result.options)
    for token in fake.issued_refresh_tokens + list(fake.access_tokens):
        assert token not in blob and token not in "\n".join(ui.lines)


def test_cache_is_encrypted_in_a_private_file(fake, tmp_path):
    result, cal, ctx = link_calendar(fake, tmp_path)
    p = microsoft.Provider.from_calendar(cal, ctx)
    assert p.list_calendars()
    path = ctx.state_dir / f"{cal.id}.msal-cache"
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    assert fake.issued_refresh_tokens
    for token in fake.issued_refresh_tokens + list(fake.access_tokens):
        assert token.encode() not in raw
    assert b"refresh_token" not in raw.lower() and b"RefreshToken" not in raw
    # the key in the secret store opens it, and it holds the real MSAL cache
    key = ctx.secrets.get(secret_name("default", cal.id, "cache_key"))
    text = microsoft._decrypt(key, raw)
    assert fake.issued_refresh_tokens[-1] in text and "RefreshToken" in json.loads(text)
    # no temporary files left behind
    assert sorted(x.name for x in ctx.state_dir.iterdir()) == [path.name]
    microsoft.forget(cal, ctx)
    assert not path.exists()


def test_link_without_client_id_says_how_to_register(fake, tmp_path, monkeypatch):
    monkeypatch.delenv("ENGAGE_MS_CLIENT_ID")
    with pytest.raises(UsageError) as info:
        microsoft.link(RecordingUI(), client_id=None, tenant=None, browser=False, environ=dict(os.environ))
    text = str(info.value)
    assert "ENGAGE_MS_CLIENT_ID" in text and "--client-id" in text
    assert "Calendars.ReadWrite" in text and "public client" in text
    assert not fake.log  # nothing was sent


def test_link_with_unknown_client_id(fake):
    with pytest.raises(UsageError) as info:
        microsoft.link(RecordingUI(), client_id="not-registered", tenant=None, browser=False, environ=dict(os.environ))
    assert "unauthorized_client" in str(info.value)


def test_link_code_expires(fake):
    fake.device_mode = "expire"
    with pytest.raises(EngageError) as info:
        microsoft.link(RecordingUI(), client_id=None, tenant=None, browser=False, environ=dict(os.environ))
    assert "expired" in str(info.value) and "engage link microsoft" in str(info.value)


def test_link_declined(fake):
    fake.device_mode = "decline"
    with pytest.raises(EngageError) as info:
        microsoft.link(RecordingUI(), client_id=None, tenant=None, browser=False, environ=dict(os.environ))
    assert "declined" in str(info.value)


def test_link_with_tenant_uses_that_authority(fake):
    result = microsoft.link(RecordingUI(), client_id=None, tenant="contoso.onmicrosoft.com", browser=False,
                            environ=dict(os.environ))
    assert result.options["authority"] == f"{fake.url}/contoso.onmicrosoft.com"
    assert any(p.startswith("/contoso.onmicrosoft.com/oauth2/v2.0/token") for _, p in fake.log)


def test_link_in_a_browser(fake, monkeypatch):
    """--browser: MSAL's loopback server; our fake browser signs in and posts the form back."""
    import requests
    import webbrowser

    def browse(url, *args, **kwargs):
        fields = fake.authorize(url)
        redirect = parse_qs(urlsplit(url).query)["redirect_uri"][0]
        threading.Thread(target=lambda: requests.post(redirect, data=fields, timeout=10), daemon=True).start()
        return True

    monkeypatch.setattr(webbrowser, "open", browse)
    result = microsoft.link(RecordingUI(), client_id=None, tenant=None, browser=True, environ=dict(os.environ))
    assert result.account == fake.username
    assert fake.grants["authorization_code"] == 1


def test_authority_must_be_https(monkeypatch):
    with pytest.raises(UsageError):
        microsoft.link(RecordingUI(), client_id="x", tenant=None, browser=False,
                       environ={"ENGAGE_MS_AUTHORITY": "http://login.example.com/common"})


# --------------------------------------------------------------------------------------------- tokens


def test_revoked_grant_needs_relink(harness):
    fake = harness.fake
    pull_all(harness.provider())
    fake.revoke()
    with pytest.raises(RelinkNeeded) as info:
        pull_all(harness.provider())
    text = str(info.value)
    assert fake.username in text and "engage link microsoft" in text
    for token in fake.issued_refresh_tokens:
        assert token not in text
    assert fake.grants["refresh_token"] == 1  # the 401 forced one refresh, which was refused
    # and the next process (nothing usable cached any more) says the same without a fuss
    with pytest.raises(RelinkNeeded):
        harness.provider().list_calendars()


def test_graph_401_forces_one_refresh_and_the_new_cache_is_saved(harness):
    fake = harness.fake
    p = harness.provider()
    p.list_calendars()
    assert fake.grants["refresh_token"] == 0
    fake.invalidate_access_tokens()  # msal still thinks its access token is good
    assert harness.provider().list_calendars()
    assert fake.grants["refresh_token"] == 1
    # the rotated tokens were persisted: a new process uses the new access token without refreshing
    assert harness.provider().list_calendars()
    assert fake.grants["refresh_token"] == 1


def test_missing_secret_or_file_needs_relink(harness):
    harness.provider().list_calendars()
    path = harness.ctx.state_dir / f"{harness.cal.id}.msal-cache"
    harness.ctx.secrets.set(secret_name("default", harness.cal.id, "cache_key"), microsoft._new_cache_key())
    with pytest.raises(RelinkNeeded):
        harness.provider().list_calendars()  # the key does not open the file
    harness.ctx.secrets.delete(secret_name("default", harness.cal.id, "cache_key"))
    with pytest.raises(RelinkNeeded):
        harness.provider()
    assert path.exists()


# --------------------------------------------------------------------------------------------- throttling


def test_429_storm_honours_retry_after(harness, sleeps):
    fake = harness.fake
    p = harness.provider()
    p.list_calendars()
    fake.fail_next(3, 429, retry_after="7")
    before = len(fake.graph_requests())
    assert p.list_calendars()
    assert sleeps == [7.0, 7.0, 7.0]
    assert len(fake.graph_requests()) - before == 4


def test_503_is_retried_with_backoff(harness, sleeps):
    fake = harness.fake
    harness.add_event(T0, T0 + timedelta(hours=1))
    fake.fail_next(2, 503, retry_after=None)
    _, items = pull_all(harness.provider())
    assert len(items) == 1
    assert len(sleeps) == 2 and all(0 <= s <= 30 for s in sleeps)


def test_endless_throttling_is_unreachable(harness, sleeps):
    harness.fake.fail_next(20, 429, retry_after="1")
    with pytest.raises(Unreachable) as info:
        harness.provider().list_calendars()
    assert "429" in str(info.value)


def test_network_down_is_unreachable(harness):
    harness.fake.stop()
    with pytest.raises(Unreachable):
        harness.provider().list_calendars()


# --------------------------------------------------------------------------------------------- reading


def test_busy_rule_details(fake, tmp_path):
    result, cal, ctx = link_calendar(fake, tmp_path, timezone_name="Europe/Oslo")
    rid = cal.remote_id
    declined = fake.add_event(rid, T0, T0 + timedelta(hours=1), "Invite", response="declined")
    tentative = fake.add_event(rid, T0, T0 + timedelta(hours=1), "Maybe", show_as="tentative")
    elsewhere = fake.add_event(rid, T0, T0 + timedelta(hours=1), "Home", show_as="workingElsewhere")
    all_day = fake.add_event(rid, date(2030, 3, 5), date(2030, 3, 7), "Course", all_day=True)
    master, occ = fake.add_series(rid, [T0 + timedelta(days=d) for d in range(3)], 15, "Focus", show_as="free")
    _, items = pull_all(microsoft.Provider.from_calendar(cal, ctx))
    assert [(o.busy, o.reason) for o in items[declined].occurrences] == [(False, "declined")]
    assert items[tentative].occurrences[0].busy and items[elsewhere].occurrences[0].busy
    day = items[all_day].occurrences[0]
    assert day.all_day and day.busy
    oslo_midnight = datetime(2030, 3, 4, 23, 0, tzinfo=UTC)  # 2030-03-05 00:00 in Oslo (CET)
    assert (day.start, day.end) == (oslo_midnight, oslo_midnight + timedelta(days=2))
    # occurrences come sparse from delta: their free/busy comes from the series master
    assert master not in items
    assert [(items[o].occurrences[0].busy, items[o].occurrences[0].reason) for o in occ] == [(False, "free")] * 3
    assert len(fake.graph_requests("GET", f"/me/events/{master}")) == 1  # one lookup per master per pull
    assert not fake.violations


def test_seven_digit_fractions_and_windows_zones():
    assert microsoft._instant({"dateTime": "2030-03-04T08:00:00.1234567", "timeZone": "UTC"}) == \
        datetime(2030, 3, 4, 8, 0, 0, 123456, tzinfo=UTC)
    assert microsoft._instant({"dateTime": "2030-03-04T09:00:00.0000000", "timeZone": "Europe/Oslo"}) == \
        datetime(2030, 3, 4, 8, tzinfo=UTC)
    with pytest.raises(microsoft.ProviderError):
        microsoft._instant({"dateTime": "2030-03-04T09:00:00.0000000", "timeZone": "W. Europe Standard Time"})


def test_pages_are_followed_and_streamed(harness):
    fake = harness.fake
    keys = {harness.add_event(T0 + timedelta(days=i), T0 + timedelta(days=i, hours=1)) for i in range(5)}
    result = harness.provider().pull_changes(None, WINDOW)
    assert len(fake.graph_requests("GET", "calendarView/delta")) == 1  # first page only, so far
    assert result.cursor is None
    got = {item.key for item in result.items}
    assert got == keys
    assert len(fake.graph_requests("GET", "calendarView/delta")) == 3  # 2 + 2 + 1
    assert json.loads(result.cursor)["delta"].startswith(fake.graph_url)


def test_a_repeated_next_link_stops_every_listing(harness):
    fake = harness.fake
    for i in range(5):
        harness.add_event(T0 + timedelta(days=i), T0 + timedelta(days=i, hours=1))
    first, _ = pull_all(harness.provider())
    fake.page_loops = {"delta": "repeat"}
    with pytest.raises(microsoft.ProviderError, match="kept sending more pages") as info:  # a full pull
        pull_all(harness.provider())
    assert "\n" not in str(info.value)
    harness.add_event(T0, T0 + timedelta(hours=2))
    harness.add_event(T0, T0 + timedelta(hours=3))
    harness.add_event(T0, T0 + timedelta(hours=4))
    fake.log.clear()
    with pytest.raises(microsoft.ProviderError, match="kept sending more pages"):  # an incremental pull
        pull_all(harness.provider(), first.cursor)
    assert len(fake.graph_requests("GET", "calendarView/delta")) == 2  # the delta link; next link T, whose next is T
    fake.page_loops = {"events": "repeat"}  # the $filter listing of our copies on a full pull
    with pytest.raises(microsoft.ProviderError, match="kept sending more pages"):
        pull_all(harness.provider())
    fake.page_loops = {"calendars": "repeat"}
    with pytest.raises(microsoft.ProviderError, match="kept sending more pages"):
        harness.provider().list_calendars()


def test_endless_next_links_stop_after_max_pages(harness, monkeypatch):
    assert microsoft.MAX_PAGES == 10_000
    monkeypatch.setattr(microsoft, "MAX_PAGES", 4)
    fake = harness.fake
    harness.add_event(T0, T0 + timedelta(hours=1))
    fake.page_loops = {"delta": "endless"}
    with pytest.raises(microsoft.ProviderError, match="kept sending more pages"):
        pull_all(harness.provider())
    assert len(fake.graph_requests("GET", "calendarView/delta")) == 4
    fake.page_loops = {"calendars": "endless"}
    fake.log.clear()
    with pytest.raises(microsoft.ProviderError, match="kept sending more pages"):
        harness.provider().list_calendars()
    assert len(fake.graph_requests("GET", "/me/calendars")) == 4


def test_incremental_pull_reports_removed_and_cancelled(harness):
    fake = harness.fake
    a = harness.add_event(T0, T0 + timedelta(hours=1))
    b = harness.add_event(T0 + timedelta(hours=2), T0 + timedelta(hours=3))
    result, _ = pull_all(harness.provider())
    fake.edit_event(b, isCancelled=True)
    fake.delete_event(a)
    result2, items2 = pull_all(harness.provider(), result.cursor)
    assert result2.full is False and not items2
    assert set(result2.deleted) == {a, b}


def test_a_new_window_means_a_full_pull(harness):
    harness.add_event(T0, T0 + timedelta(hours=1))
    result, _ = pull_all(harness.provider())
    same_day = (WINDOW[0] + timedelta(hours=5), WINDOW[1] - timedelta(hours=3))  # snaps to the same days
    assert pull_all(harness.provider(), result.cursor)[0].full is False
    assert pull_all(harness.provider(), None)[0].full is True
    moved = (WINDOW[0] + timedelta(days=1), WINDOW[1] + timedelta(days=1))
    assert pull_all(harness.provider(), result.cursor)[0].full is False
    r = harness.provider().pull_changes(result.cursor, moved)
    list(r.items)
    assert r.full is True
    r2 = harness.provider().pull_changes(result.cursor, same_day)
    list(r2.items)
    assert r2.full is False


def test_cursor_for_another_server_is_not_followed(harness):
    harness.add_event(T0, T0 + timedelta(hours=1))
    result, _ = pull_all(harness.provider())
    state = json.loads(result.cursor)
    state["delta"] = "https://evil.example/v1.0/me/calendarView/delta?$deltatoken=x"
    result2, items2 = pull_all(harness.provider(), json.dumps(state))
    assert result2.full is True and len(items2) == 1
    result3, _ = pull_all(harness.provider(), "not json")
    assert result3.full is True


# --------------------------------------------------------------------------------------------- copies


def test_copy_wire_format(harness):
    fake = harness.fake
    ref = harness.provider().put_copy(spec("w1", T0), None)
    ev = fake.events[ref.remote_id]
    assert ev["showAs"] == "busy" and ev["subject"] == "Customer meeting"
    assert ev["start"] == T0 and ev["end"] == T0 + timedelta(minutes=30)
    assert ev["props"] == {microsoft.MARKER_PROP: "w1"}
    txn = ev["transactionId"]
    assert txn and len(txn) == 36 and txn.count("-") == 4  # a GUID
    assert ref.etag == ev["etag"]


def test_update_conflict_refetches_and_overwrites(harness):
    fake = harness.fake
    ref = harness.provider().put_copy(spec("c1", T0), None)
    fake.edit_event(ref.remote_id, subject="edited in Outlook")  # new etag
    moved = T0 + timedelta(hours=2)
    ref2 = harness.provider().put_copy(spec("c1", moved), ref)
    assert ref2.remote_id == ref.remote_id and ref2.etag != ref.etag
    assert fake.events[ref.remote_id]["subject"] == "Customer meeting"
    assert harness.remote_copies() == {"c1": [(moved, moved + timedelta(minutes=30))]}
    assert len(fake.graph_requests("PATCH")) == 2  # 412, then the overwrite


def test_update_of_a_deleted_copy_recreates_it(harness):
    fake = harness.fake
    ref = harness.provider().put_copy(spec("c2", T0), None)
    fake.delete_event(ref.remote_id)
    ref2 = harness.provider().put_copy(spec("c2", T0), ref)
    assert ref2.remote_id != ref.remote_id
    assert harness.remote_copies() == {"c2": [(T0, T0 + timedelta(minutes=30))]}


def test_transaction_id_makes_a_blind_retry_safe(harness, monkeypatch):
    """When the $filter lookup does not see the first copy yet, the repeated POST returns it."""
    fake = harness.fake
    monkeypatch.setattr(microsoft.Provider, "_find_copies", lambda self, appointment_id: [])
    ref = harness.provider().put_copy(spec("t1", T0), None)
    ref2 = harness.provider().put_copy(spec("t1", T0), None)
    assert ref2.remote_id == ref.remote_id
    assert harness.remote_copies() == {"t1": [(T0, T0 + timedelta(minutes=30))]}
    assert len(fake.graph_requests("POST")) == 2


def test_duplicate_copies_from_an_old_crash_are_merged(harness):
    fake = harness.fake
    for _ in range(2):
        fake.add_event(harness.cal.remote_id, T0, T0 + timedelta(minutes=30), "old",
                       props={microsoft.MARKER_PROP: "d1"})
    ref = harness.provider().put_copy(spec("d1", T0 + timedelta(hours=1)), None)
    assert harness.remote_copies() == {"d1": [(T0 + timedelta(hours=1), T0 + timedelta(hours=1, minutes=30))]}
    assert ref.remote_id in fake.events


def test_copy_into_read_only_calendar_fails_clearly(harness):
    harness.cal.remote_id = next(k for k, v in harness.fake.calendars.items() if not v["canEdit"])
    with pytest.raises(microsoft.ProviderError) as info:
        harness.provider().put_copy(spec("r1", T0), None)
    assert "403" in str(info.value)


@pytest.mark.parametrize("code", ["ErrorAccessDenied", "Authorization_RequestDenied", "accessDenied"])
def test_access_denied_on_reads_needs_relink(harness, code):
    p = harness.provider()
    key = harness.add_event(T0, T0 + timedelta(hours=1))
    harness.fake.deny_reads = code
    expected = "Microsoft refused access to the calendar for advisor@example.com; run `engage link microsoft` again"
    with pytest.raises(RelinkNeeded) as info:  # the calendar list
        p.list_calendars()
    assert str(info.value) == expected
    with pytest.raises(RelinkNeeded) as info:  # calendarView/delta
        pull_all(p)
    assert str(info.value) == expected
    with pytest.raises(RelinkNeeded):  # GET of an event
        p._get_event(key)
    with pytest.raises(RelinkNeeded):  # the $filter listing of our copies
        p._list_copies()
    with pytest.raises(RelinkNeeded):  # the look-up of put_copy, single and in a batch
        p.put_copy(spec("d1", T0), None)
    with pytest.raises(RelinkNeeded):
        p.put_copies([(spec("d2", T0), None), (spec("d3", T0), None)])
    assert harness.fake.copies(harness.cal.remote_id) == {}


def test_other_403_on_reads_stays_a_provider_error(harness):
    harness.fake.deny_reads = "ErrorSomethingElse"
    with pytest.raises(microsoft.ProviderError, match="403"):
        pull_all(harness.provider())


def test_copies_are_recognised_in_incremental_pulls(harness):
    p = harness.provider()
    result, _ = pull_all(p)
    ref = harness.provider().put_copy(spec("i1", T0), None)
    result2, items2 = pull_all(harness.provider(), result.cursor)
    assert result2.full is False
    assert items2[ref.remote_id].appointment_id == "i1"
    harness.provider().delete_copy(CopyRef(ref.remote_id))
    result3, _ = pull_all(harness.provider(), result2.cursor)
    assert ref.remote_id in result3.deleted


# --------------------------------------------------------------------------------------------- $batch


def batch_work(prefix: str, n: int, *, shift: timedelta = timedelta(0), refs=None):
    return [(spec(f"{prefix}{i}", T0 + timedelta(hours=i) + shift), refs[i] if refs else None) for i in range(n)]


def put_all(p, work):
    from engagecli.providers.base import iter_chunks

    out = []
    for chunk in iter_chunks(work, p.batch_size):
        out.extend(p.put_copies(chunk))
    return out


def expected_copies(work):
    return {s.appointment_id: [(s.start, s.end)] for s, _ in work}


def test_fifty_copies_in_batches_then_fifty_updates(harness):
    fake = harness.fake
    p = harness.provider()
    p.list_calendars()  # sign-in done
    assert p.batch_size == 20
    work = batch_work("b", 50)
    before = len(fake.graph_requests())
    refs = put_all(p, work)
    # per chunk of 20: one batch of marker lookups, one batch of creates; nothing else went over the wire
    assert fake.batch_requests() == 6
    assert len(fake.graph_requests()) - before == 6
    assert [len(b) for b in fake.batch_log] == [20, 20, 20, 20, 10, 10]
    assert [{m for m, _ in b} for b in fake.batch_log] == [{"GET"}, {"POST"}] * 3
    assert all(url.startswith("/me/") for b in fake.batch_log for _, url in b)  # relative to the version
    assert harness.remote_copies() == expected_copies(work)
    assert all(isinstance(r, CopyRef) for r in refs)
    for (s, _), ref in zip(work, refs):  # in order, matched by id although the answers came shuffled
        ev = fake.events[ref.remote_id]
        assert ev["props"][microsoft.MARKER_PROP] == s.appointment_id and ev["start"] == s.start
        assert ref.etag == ev["etag"]
    assert not fake.violations  # every item carried its own Prefer header
    # all 50 moved by an hour: known copies are PATCHed with If-Match, 20 to a batch, no lookups
    moved = batch_work("b", 50, shift=timedelta(hours=1), refs=refs)
    refs2 = put_all(p, moved)
    assert fake.batch_requests() == 9
    assert [{m for m, _ in b} for b in fake.batch_log[6:]] == [{"PATCH"}] * 3
    assert [r.remote_id for r in refs2] == [r.remote_id for r in refs]
    assert harness.remote_copies() == expected_copies(moved)


def test_engine_pushes_fifty_appointments_in_batches(harness, tmp_path):
    from engagecli.core.models import Appointment
    from engagecli.store import Store
    from engagecli.sync.engine import sync_calendar

    fake = harness.fake
    now = T0 - timedelta(days=1)
    store = Store.open(tmp_path / "engage.db")
    cal = harness.cal
    cal.copy_appointments = True
    store.add_calendar(cal, now)
    for i in range(50):
        start = T0 + timedelta(hours=i)
        store.add_appointment(Appointment(f"e{i}", start, start + timedelta(minutes=45), "Europe/Oslo", "Review"), now)
    report = sync_calendar(store, harness.provider(), store.get_calendar(cal.id), now=now, window=WINDOW)
    assert report.status == "ok" and report.copied == 50
    assert fake.batch_requests() == 6
    assert len(fake.graph_requests("POST")) == 6  # the batches are the only POSTs: no single creates
    want = {f"e{i}": [(T0 + timedelta(hours=i), T0 + timedelta(hours=i, minutes=45))] for i in range(50)}
    assert harness.remote_copies() == want
    # the next sync sees our copies in the pull and pushes nothing
    report2 = sync_calendar(store, harness.provider(), store.get_calendar(cal.id), now=now, window=WINDOW)
    assert report2.status == "ok" and report2.copied == report2.updated == 0 and report2.pulled == 0
    assert fake.batch_requests() == 6
    assert harness.remote_copies() == want
    store.close()


def test_throttled_items_are_retried_alone_after_the_largest_retry_after(harness, sleeps):
    fake = harness.fake
    work = batch_work("t", 10)
    fake.fail_items(1, 429, "3", method="POST", contains='"t2"')
    fake.fail_items(1, 429, "9", method="POST", contains='"t5"')
    fake.fail_items(1, 503, None, method="POST", contains='"t7"')
    refs = harness.provider().put_copies(work)
    assert all(isinstance(r, CopyRef) for r in refs)
    assert sleeps == [9.0]
    assert [len(b) for b in fake.batch_log] == [10, 10, 3]  # lookups, writes, the three again
    assert harness.remote_copies() == expected_copies(work)
    assert len(fake.live(harness.cal.remote_id)) == 10


def test_throttled_lookups_are_retried_too(harness, sleeps):
    fake = harness.fake
    work = batch_work("l", 4)
    fake.fail_items(2, 429, "2", method="GET")
    refs = harness.provider().put_copies(work)
    assert all(isinstance(r, CopyRef) for r in refs)
    assert sleeps == [2.0]
    assert [len(b) for b in fake.batch_log] == [4, 2, 4]
    assert harness.remote_copies() == expected_copies(work)


def test_items_throttled_too_long_raise_unreachable_and_a_rerun_makes_no_duplicates(harness, sleeps):
    fake = harness.fake
    work = batch_work("u", 5)
    fake.fail_items(100, 429, "1", method="POST", contains='"u1"')
    with pytest.raises(Unreachable) as info:
        harness.provider().put_copies(work)
    assert "429" in str(info.value)
    assert sleeps == [1.0] * (microsoft.BATCH_TRIES - 1)
    assert fake.batch_requests() == 1 + microsoft.BATCH_TRIES
    assert set(harness.remote_copies()) == {"u0", "u2", "u3", "u4"}  # written, but the engine never heard
    fake.item_faults.clear()
    refs = harness.provider().put_copies(work)  # the next sync: no mapping for any of them
    assert all(isinstance(r, CopyRef) for r in refs)
    assert harness.remote_copies() == expected_copies(work)


def test_repeated_batch_after_a_crash_makes_no_duplicates(harness):
    fake = harness.fake
    work = batch_work("c", 12)
    first = harness.provider().put_copies(work)  # ... and the process dies before the mapping is saved
    again = harness.provider().put_copies(work)
    assert [r.remote_id for r in again] == [r.remote_id for r in first]
    assert harness.remote_copies() == expected_copies(work)
    assert {m for m, _ in fake.batch_log[-1]} == {"PATCH"}  # found by marker: updated, not created
    # the appointments changed before the rerun (another transactionId): still found by the marker
    moved = batch_work("c", 12, shift=timedelta(days=1))
    third = harness.provider().put_copies(moved)
    assert [r.remote_id for r in third] == [r.remote_id for r in first]
    assert harness.remote_copies() == expected_copies(moved)


def test_lagging_filter_index_is_covered_by_the_transaction_id(harness):
    """The lookup may not see a copy written a moment ago: the repeated POST (same transactionId) returns it."""
    fake = harness.fake
    fake.index_lag = True
    work = batch_work("x", 6)
    first = harness.provider().put_copies(work)
    again = harness.provider().put_copies(work)
    assert [r.remote_id for r in again] == [r.remote_id for r in first]
    assert {m for m, _ in fake.batch_log[-1]} == {"POST"}
    assert harness.remote_copies() == expected_copies(work)


def test_a_refused_item_fails_alone(harness):
    fake = harness.fake
    work = batch_work("e", 6)
    fake.fail_items(1, 400, None, method="POST", contains='"e3"')
    refs = harness.provider().put_copies(work)
    assert isinstance(refs[3], microsoft.ProviderError) and "400" in str(refs[3])
    assert all(isinstance(r, CopyRef) for i, r in enumerate(refs) if i != 3)
    assert harness.remote_copies() == {k: v for k, v in expected_copies(work).items() if k != "e3"}
    assert fake.batch_requests() == 2  # not retried


def test_conflicts_and_deleted_copies_in_a_batch_go_the_single_way(harness):
    fake = harness.fake
    work = batch_work("k", 4)
    refs = harness.provider().put_copies(work)
    fake.edit_event(refs[1].remote_id, subject="edited in Outlook")  # 412 on our If-Match
    fake.delete_event(refs[2].remote_id)  # 404
    moved = batch_work("k", 4, shift=timedelta(hours=3), refs=refs)
    refs2 = harness.provider().put_copies(moved)
    assert all(isinstance(r, CopyRef) for r in refs2)
    assert refs2[1].remote_id == refs[1].remote_id and refs2[2].remote_id != refs[2].remote_id
    assert fake.events[refs[1].remote_id]["subject"] == "Customer meeting"
    assert harness.remote_copies() == expected_copies(moved)


def test_duplicates_from_an_old_crash_are_merged_in_a_batch(harness):
    fake = harness.fake
    for _ in range(2):
        fake.add_event(harness.cal.remote_id, T0, T0 + timedelta(minutes=30), "old",
                       props={microsoft.MARKER_PROP: "m1"})
    work = batch_work("m", 3)
    refs = harness.provider().put_copies(work)
    assert all(isinstance(r, CopyRef) for r in refs)
    assert harness.remote_copies() == expected_copies(work)


def test_batch_request_throttled_or_unauthorised_as_a_whole(harness, sleeps):
    fake = harness.fake
    p = harness.provider()
    p.list_calendars()
    fake.fail_next(2, 429, retry_after="4")
    assert all(isinstance(r, CopyRef) for r in p.put_copies(batch_work("w", 3)))
    assert sleeps == [4.0, 4.0]
    fake.invalidate_access_tokens()
    assert all(isinstance(r, CopyRef) for r in p.put_copies(batch_work("v", 3)))
    assert fake.grants["refresh_token"] == 1
    fake.revoke()
    with pytest.raises(RelinkNeeded):
        harness.provider().put_copies(batch_work("r", 3))
    assert set(harness.remote_copies()) == {"w0", "w1", "w2", "v0", "v1", "v2"}


def test_fake_batch_rules(harness):
    """The fake refuses what Graph refuses: more than 20 items, items without Prefer or without Content-Type."""
    fake = harness.fake
    p = harness.provider()
    cal = f"/me/calendars/{harness.cal.remote_id}/events"
    too_many = [{"id": str(i), "method": "GET", "url": "/me/calendars", "headers": {"Prefer": microsoft.PREFER}}
                for i in range(21)]
    assert p.graph.send("POST", "/$batch", json_body={"requests": too_many}).status_code == 400
    body = microsoft.Provider._copy_body(p, spec("f1", T0))
    items = [
        {"id": "a", "method": "GET", "url": "/me/calendars"},  # no Prefer on the item
        {"id": "b", "method": "POST", "url": cal, "headers": {"Prefer": microsoft.PREFER}, "body": body},
        {"id": "c", "method": "GET", "url": "/me/calendars", "headers": {"Prefer": microsoft.PREFER}},
    ]
    resp = p.graph.send("POST", "/$batch", json_body={"requests": items})
    assert resp.status_code == 200
    got = {r["id"]: r for r in resp.json()["responses"]}
    assert got["a"]["status"] == 400 and got["a"]["body"]["error"]["code"] == "FakeNeedsPrefer"
    assert got["b"]["status"] == 400 and "Content-Type" in got["b"]["body"]["error"]["message"]
    assert got["c"]["status"] == 200 and got["c"]["body"]["value"]
    assert not harness.remote_copies()
