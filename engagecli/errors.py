"""One exception hierarchy, mapped to the exit codes of CLI.md in one place.

Every message is one line that says what went wrong and what to run next. Messages never carry a token,
password or customer detail: build them from ids and user-supplied arguments only.
"""

from __future__ import annotations


class ExitCode:
    OK = 0
    FAILED = 1
    USAGE = 2
    RELINK = 3
    UNREACHABLE = 4
    PARTIAL = 5
    INTERRUPTED = 130


class EngageError(Exception):
    """Base: a failure with a message for the user. Exit 1."""

    exit_code = ExitCode.FAILED

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(EngageError):
    """Bad arguments or bad input. Exit 2."""

    exit_code = ExitCode.USAGE


class NotFound(UsageError):
    """An id that names nothing (an appointment, a calendar). Exit 2."""


class SlotTaken(UsageError):
    """An appointment that does not fit the advisor's free time. Exit 2."""


class RelinkNeeded(EngageError):
    """A revoked or expired grant: the calendar must be linked again. Exit 3."""

    exit_code = ExitCode.RELINK


class Unreachable(EngageError):
    """A provider could not be reached (network, DNS, timeouts, 5xx after retries). Exit 4."""

    exit_code = ExitCode.UNREACHABLE


class ProviderError(EngageError):
    """A provider answered something we cannot use (malformed calendar, unexpected status). Exit 1."""


class SecretStoreError(EngageError):
    """No usable secret store (no keyring backend, locked keyring). Exit 1."""


class StoreError(EngageError):
    """The local database is unreadable, corrupt or from a newer engage. Exit 1."""


class SyncBusy(EngageError):
    """Another sync holds the lock. `engage sync` reports it and exits 0."""

    exit_code = ExitCode.OK
