"""A REAL Radicale server for tests: `python -m radicale` from this venv, on 127.0.0.1, a free port, a temp
storage folder, htpasswd auth (plain file: user `advisor`, password `s3cret`), owner_only rights.

    with RadicaleServer(tmp_path) as srv:       # or the `radicale` fixture below (one server per module)
        srv.url            # http://127.0.0.1:PORT/            (server root)
        srv.principal_url  # http://127.0.0.1:PORT/advisor/
        srv.calendar_url   # http://127.0.0.1:PORT/advisor/work/   (a VEVENT calendar, "Work")
        srv.other_calendar_url  # .../advisor/personal/          (a second VEVENT calendar, "Personal")
        srv.new_calendar("contract-3")  -> url of a fresh, empty calendar (one per test keeps tests apart)
        srv.put_event(calendar_url, name, ics_text) -> href ; srv.delete(href) ; srv.list_events(calendar_url)

The put/delete helpers are "another client": plain requests, no engage code.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

USERNAME = "advisor"
PASSWORD = "s3cret"

CONFIG = """\
[server]
hosts = 127.0.0.1:{port}
max_connections = 20
delay_on_error = 0
[auth]
type = htpasswd
htpasswd_filename = {htpasswd}
htpasswd_encryption = plain
delay = 0.05
[rights]
type = owner_only
[storage]
filesystem_folder = {storage}
[logging]
level = warning
mask_passwords = True
[web]
type = none
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (connection refused at once)."""
    return free_port()


class RadicaleServer:
    def __init__(self, folder: Path, username: str = USERNAME, password: str = PASSWORD):
        self.folder = Path(folder)
        self.username = username
        self.password = password
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self._session = None

    # lifecycle ------------------------------------------------------------------------------------------------
    def start(self) -> "RadicaleServer":
        import requests

        self.folder.mkdir(parents=True, exist_ok=True)
        htpasswd = self.folder / "users"
        htpasswd.write_text(f"{self.username}:{self.password}\n")
        storage = self.folder / "collections"
        last_error = ""
        for _ in range(3):  # a free port may be taken between probing and binding: try another
            self.port = free_port()
            config = self.folder / "config"
            config.write_text(CONFIG.format(port=self.port, htpasswd=htpasswd, storage=storage))
            log = open(self.folder / "radicale.log", "ab")
            env = dict(os.environ)
            env.pop("RADICALE_CONFIG", None)
            self.proc = subprocess.Popen([sys.executable, "-m", "radicale", "--config", str(config)],
                                         stdout=log, stderr=subprocess.STDOUT, env=env)
            log.close()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    requests.request("OPTIONS", self.url, timeout=1)
                    break
                except requests.ConnectionError:
                    time.sleep(0.05)
            if self.proc.poll() is None:
                break
            last_error = (self.folder / "radicale.log").read_text(errors="replace")[-2000:]
        else:
            raise RuntimeError(f"Radicale did not start: {last_error}")
        self._session = requests.Session()
        self._session.auth = (self.username, self.password)
        self.mkcalendar("work", "Work")
        self.mkcalendar("personal", "Personal")
        return self

    def stop(self) -> None:
        if self._session is not None:
            self._session.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> "RadicaleServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # addresses ------------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def principal_url(self) -> str:
        return f"{self.url}{self.username}/"

    @property
    def calendar_url(self) -> str:
        return f"{self.principal_url}work/"

    @property
    def other_calendar_url(self) -> str:
        return f"{self.principal_url}personal/"

    # "another client" -----------------------------------------------------------------------------------------
    def mkcalendar(self, name: str, display_name: str, components=("VEVENT",)) -> str:
        url = f"{self.principal_url}{name}/"
        comps = "".join(f'<C:comp name="{c}"/>' for c in components)
        body = f"""<?xml version="1.0" encoding="utf-8"?>
<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:set><D:prop><D:displayname>{display_name}</D:displayname>
  <C:supported-calendar-component-set>{comps}</C:supported-calendar-component-set></D:prop></D:set>
</C:mkcalendar>"""
        r = self._session.request("MKCALENDAR", url, data=body.encode(),
                                  headers={"Content-Type": "application/xml; charset=utf-8"}, timeout=10)
        assert r.status_code in (201, 405), (r.status_code, r.text)  # 405: already there
        return url

    def new_calendar(self, prefix: str = "cal") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        return self.mkcalendar(name, name)

    def put_event(self, calendar_url: str, name: str, ics: str) -> str:
        """PUT `ics` as `<calendar_url><name>.ics`; returns the href (path) as a server listing reports it."""
        url = urljoin(calendar_url, f"{name}.ics")
        r = self._session.put(url, data=ics.encode(), headers={"Content-Type": "text/calendar; charset=utf-8"},
                              timeout=10)
        assert r.status_code in (201, 204), (r.status_code, r.text)
        return urlsplit(url).path

    def get(self, href: str):
        return self._session.get(urljoin(self.url, href), timeout=10)

    def delete(self, href: str) -> None:
        r = self._session.delete(urljoin(self.url, href), timeout=10)
        assert r.status_code in (200, 204, 404), (r.status_code, r.text)

    def list_events(self, calendar_url: str) -> dict[str, str]:
        """href -> calendar data of every resource in the collection (a Depth: 1 PROPFIND + GETs)."""
        import xml.etree.ElementTree as ET

        body = '<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>'
        r = self._session.request("PROPFIND", calendar_url, data=body, headers={"Depth": "1"}, timeout=10)
        assert r.status_code == 207, r.status_code
        own = urlsplit(calendar_url).path
        out = {}
        for resp in ET.fromstring(r.content).iter("{DAV:}response"):
            href = resp.findtext("{DAV:}href")
            if href and href.rstrip("/") != own.rstrip("/"):
                out[href] = self.get(href).text
        return out


@pytest.fixture(scope="module")
def radicale(tmp_path_factory):
    server = RadicaleServer(tmp_path_factory.mktemp("radicale")).start()
    try:
        yield server
    finally:
        server.stop()
