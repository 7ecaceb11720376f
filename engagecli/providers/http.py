"""Shared HTTP plumbing for the network providers: one requests session, timeouts, retries with exponential
backoff + jitter that honour Retry-After, and the mapping of transport failures to our errors.

requests is imported inside the functions (providers are imported only when used, but keep it lazy anyway).
"""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime

from engagecli.errors import Unreachable

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TIMEOUT = (10, 60)  # connect, read seconds


def new_session(user_agent: str = "engage"):
    import requests

    from engagecli import __version__

    s = requests.Session()
    s.headers["User-Agent"] = f"{user_agent}/{__version__}"
    return s


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(attempt: int, retry_after: float | None, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds to wait before retry number `attempt` (1-based): Retry-After when given (capped), else
    exponential backoff with full jitter."""
    if retry_after is not None:
        return min(retry_after, cap)
    return random.uniform(0, min(cap, base * (2 ** (attempt - 1))))


def request(session, method: str, url: str, *, what: str, retry_statuses=RETRY_STATUSES, tries: int = 5,
            should_retry=None, sleep=time.sleep, **kwargs):
    """Send a request, retrying transient failures (connection errors, timeouts, `retry_statuses`, and any
    response for which `should_retry(response)` is true) up to `tries` times. Returns the last response
    (the caller checks its status); raises Unreachable when the server could not be reached at all.
    `what` names the server in messages (never a URL with a token in it)."""
    import requests
    from requests.exceptions import ChunkedEncodingError, ContentDecodingError

    from engagecli.errors import ProviderError

    transient = (requests.ConnectionError, requests.Timeout, ChunkedEncodingError, ContentDecodingError)
    kwargs.setdefault("timeout", TIMEOUT)
    last_exc: Exception | None = None
    for attempt in range(1, tries + 1):
        try:
            response = session.request(method, url, **kwargs)
        except transient as exc:  # refused, timed out, or cut off in the middle of the body
            last_exc = exc
            if attempt == tries:
                break
            sleep(backoff_delay(attempt, None))
            continue
        except requests.RequestException as exc:  # a bad address, too many redirects, ...
            raise ProviderError(f"{what} could not be asked ({type(exc).__name__})") from None
        retry = response.status_code in retry_statuses or (should_retry is not None and should_retry(response))
        if not retry or attempt == tries:
            return response
        sleep(backoff_delay(attempt, retry_after_seconds(response.headers.get("Retry-After"))))
    kind = "timed out" if isinstance(last_exc, requests.Timeout) else "could not be reached"
    raise Unreachable(f"{what} {kind} after {tries} tries", hint="check the network and run `engage sync` again")


class PageGuard:
    """Bounds one page loop (Google page tokens, Graph next links): at most `max_pages` pages, and never the
    same token or link twice; otherwise a ProviderError saying `what` kept sending pages while `doing`."""

    def __init__(self, what: str, max_pages: int, doing: str):
        self.what, self.max_pages, self.doing = what, max_pages, doing
        self.pages = 1  # the first page was (or is being) fetched without a token
        self.seen: set[str] = set()

    def next(self, token: str) -> str:
        from engagecli.errors import ProviderError

        if token in self.seen or self.pages >= self.max_pages:
            why = "a page token came back twice" if token in self.seen else f"more than {self.max_pages} pages"
            raise ProviderError(f"{self.what} kept sending more pages while {self.doing} ({why})",
                                hint="run `engage sync` again later")
        self.seen.add(token)
        self.pages += 1
        return token
