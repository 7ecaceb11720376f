"""One sync at a time per profile: an advisory lock (fcntl.flock) on a file beside the database. The kernel
drops it when the process dies, so a killed sync never leaves a stale lock behind."""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path

from engagecli.errors import SyncBusy


@contextmanager
def sync_lock(path: Path, wait_seconds: float = 5.0):
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise SyncBusy("another `engage sync` is running for this profile; this one did nothing") from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)
