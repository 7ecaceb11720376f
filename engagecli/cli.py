"""The Typer app: command groups, one error handler, exit codes (CLI.md).

Start-up is kept cheap: command modules import only typer; services, the store, providers and rich are
imported inside the functions that need them (tests/test_startup.py checks what `engage --help` loads)."""

from __future__ import annotations

import os
import sys

import typer

from engagecli import __version__
from engagecli.commands import account, appointments, availability, calendars, link, misc

app = typer.Typer(
    name="engage",
    help="A planning layer for advisors on top of their work calendar (Google, Microsoft 365, CalDAV, ICS).",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"engage {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    profile: str = typer.Option(None, "--profile", "-p", envvar="ENGAGE_PROFILE", help="Advisor profile (default: default)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    from engagecli.env import Env

    ctx.obj = Env.from_environ(profile=profile)
    ctx.call_on_close(ctx.obj.close)


app.add_typer(account.app, name="account")
app.add_typer(availability.app, name="availability")
app.add_typer(appointments.app, name="appointments")
app.add_typer(link.app, name="link")
app.add_typer(calendars.app, name="calendars")
misc.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app and turn every failure into a one-line message and an exit code."""
    os.umask(0o077)  # every file we create is 0600, every folder 0700
    code = run(argv)
    sys.exit(code)


def run(argv: list[str] | None = None) -> int:
    from engagecli.errors import EngageError, ExitCode

    try:
        from typer._click.exceptions import ClickException
    except ImportError:  # typer before 0.22 used click itself
        from click.exceptions import ClickException

    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="engage", standalone_mode=False)
        return result if isinstance(result, int) else ExitCode.OK
    except typer.Exit as exc:
        return exc.exit_code
    except ClickException as exc:  # bad usage: unknown option, missing argument, bad value
        exc.show()
        return ExitCode.USAGE if exc.exit_code == 2 else exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("\nengage: interrupted\n")
        return ExitCode.INTERRUPTED
    except EngageError as exc:
        sys.stderr.write(f"engage: {exc}\n")
        return exc.exit_code
    except BrokenPipeError:
        return ExitCode.OK
    except Exception as exc:  # noqa: BLE001 - never a traceback for the user
        if os.environ.get("ENGAGE_DEBUG"):
            raise
        import sqlite3

        if isinstance(exc, sqlite3.DatabaseError):  # damage found after the database opened
            sys.stderr.write(f"engage: the database cannot be read ({exc}); restore it from a backup, or move it "
                             "aside and run `engage` again to start afresh\n")
            return ExitCode.FAILED
        from engagecli.secrets import redact

        sys.stderr.write(f"engage: internal error ({type(exc).__name__}: {redact(str(exc))[:200]}); "
                         "run again with ENGAGE_DEBUG=1 for details and report it\n")
        return ExitCode.FAILED
