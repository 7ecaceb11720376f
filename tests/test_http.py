"""The shared HTTP helper: transient failures (refused, timed out, cut off mid-body, 429/5xx with Retry-After)
are retried a bounded number of times, then Unreachable; other request errors are ProviderError."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engagecli.errors import ProviderError, Unreachable
from engagecli.providers import http


class Handler(BaseHTTPRequestHandler):
    plan: list = []
    seen = 0

    def do_GET(self):  # noqa: N802
        Handler.seen += 1
        step = Handler.plan.pop(0) if Handler.plan else "ok"
        if step == "cut":  # promise 5000 bytes, send 12, hang up
            self.send_response(200)
            self.send_header("Content-Length", "5000")
            self.end_headers()
            self.wfile.write(b"partial body")
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if step == "429":
            self.send_response(429)
            self.send_header("Retry-After", "7")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    Handler.plan, Handler.seen = [], 0
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def test_a_body_cut_off_is_retried(server):
    Handler.plan = ["cut", "cut"]
    sleeps = []
    r = http.request(http.new_session(), "GET", server, what="the server", sleep=sleeps.append)
    assert r.status_code == 200 and r.text == "ok" and Handler.seen == 3 and len(sleeps) == 2


def test_retry_after_is_honoured_then_unreachable_is_bounded(server):
    Handler.plan = ["429"]
    sleeps = []
    assert http.request(http.new_session(), "GET", server, what="x", sleep=sleeps.append).status_code == 200
    assert sleeps == [7.0]
    Handler.plan = ["cut"] * 10
    with pytest.raises(Unreachable):
        http.request(http.new_session(), "GET", server, what="the server", tries=3, sleep=lambda s: None)
    assert Handler.seen == 2 + 3


def test_a_bad_address_is_a_provider_error():
    with pytest.raises(ProviderError):
        http.request(http.new_session(), "GET", "http://[::1", what="the server", sleep=lambda s: None)
