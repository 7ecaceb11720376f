from __future__ import annotations

import typer

app = typer.Typer(help="Link a work calendar (Google, Microsoft 365 / Exchange, CalDAV, or an ICS feed).",
                  no_args_is_help=True)


class TerminalUI:
    """LinkUI for providers: messages to stderr (flushed, so piped output shows prompts in order), answers
    from stdin."""

    def __init__(self, env):
        self.env = env

    def say(self, text: str) -> None:
        self.env.err(text)

    def ask(self, prompt: str) -> str:
        from engagecli.errors import UsageError

        self.env.stderr.write(prompt + " ")
        self.env.stderr.flush()
        line = self.env.stdin.readline()
        if not getattr(self.env.stdin, "isatty", lambda: False)():
            self.env.stderr.write("\n")  # a piped answer is not echoed: end the prompt line ourselves
        if not line:
            raise UsageError("no answer on standard input")
        return line.strip()


def _finish(env, provider: str, result, *, calendar=None, copy=False, name=None) -> None:
    from engagecli.errors import ExitCode
    from engagecli.services.calendars import link

    ui = TerminalUI(env)
    cal, report = link(env, provider, result, calendar=calendar, copy=copy, name=name, ask=ui.ask)
    env.out(f"Linked {cal.id}: {cal.name} ({cal.provider}, {cal.account}).")
    env.out(f"  use for availability: on   copy appointments: {'on' if cal.copy_appointments else 'off'}"
            + ("" if cal.copy_appointments or cal.read_only else f"  (turn on: engage calendars set {cal.id} --copy)"))
    if report.status == "ok":
        env.out(f"  fetched {report.pulled} event occurrences; `engage slots --week` is up to date.")
    else:
        env.err(f"engage: linked, but the first sync failed: {report.error}")
        raise typer.Exit(ExitCode.RELINK if report.status == "relink" else ExitCode.PARTIAL)


@app.command()
def ics(
    ctx: typer.Context,
    source: str = typer.Argument(..., metavar="PATH_OR_URL", help="An .ics file or an http(s) address (read-only)."),
    name: str = typer.Option(None, "--name", help="A name for it in `calendars list`."),
    copy: bool = typer.Option(False, "--copy", help="Refused: an ICS calendar is read-only.", hidden=True),
) -> None:
    """Link an iCalendar file or feed (read-only: used for availability only)."""
    from engagecli.services.calendars import ics_link_result

    env = ctx.obj
    _finish(env, "ics", ics_link_result(source), name=name, copy=copy)


@app.command()
def caldav(
    ctx: typer.Context,
    url: str = typer.Argument(..., help="The server, your principal, or a calendar collection address."),
    username: str = typer.Option(..., "--username", "-u"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input."),
    calendar: str = typer.Option(None, "--calendar", help="Display name or href of the calendar to link."),
    copy: bool = typer.Option(False, "--copy", help="Also copy appointments into it."),
) -> None:
    """Link a CalDAV calendar (iCloud, Fastmail, Nextcloud, Radicale, ...). The password goes to the keyring."""
    from engagecli.errors import UsageError
    from engagecli.providers import load

    env = ctx.obj
    if password_stdin:
        password = env.stdin.readline().rstrip("\r\n")
    elif env.interactive:
        import getpass

        password = getpass.getpass(f"Password for {username}: ")
    else:
        raise UsageError("no password given", hint="pipe it in with --password-stdin")
    if not password:
        raise UsageError("the password is empty")
    result = load("caldav").link(url, username, password, TerminalUI(env))
    _finish(env, "caldav", result, calendar=calendar, copy=copy)


@app.command()
def google(
    ctx: typer.Context,
    no_browser: bool = typer.Option(False, "--no-browser", help="Print the consent URL; paste back where the browser ended."),
    port: int = typer.Option(None, "--port", help="Fixed loopback port (for SSH port forwarding)."),
    client_secrets: str = typer.Option(None, "--client-secrets", help="OAuth client JSON (Desktop app)."),
    calendar: str = typer.Option(None, "--calendar", help="Name or id of the calendar (default: primary)."),
    copy: bool = typer.Option(False, "--copy", help="Also copy appointments into it."),
) -> None:
    """Link a Google calendar (browser consent on 127.0.0.1; refresh token in the OS keyring)."""
    from engagecli.providers import load

    env = ctx.obj
    env.secrets.describe()  # fail early, before the browser dance, when there is no usable secret store
    result = load("google").link(TerminalUI(env), client_secrets=client_secrets, no_browser=no_browser, port=port,
                                 environ=env.environ)
    _finish(env, "google", result, calendar=calendar, copy=copy)


@app.command()
def microsoft(
    ctx: typer.Context,
    device_code: bool = typer.Option(True, "--device-code/--browser", help="Device code (default, works over SSH) or a browser."),
    tenant: str = typer.Option(None, "--tenant", help="Tenant id or domain for single-tenant apps."),
    client_id: str = typer.Option(None, "--client-id", help="The app registration's public client id."),
    calendar: str = typer.Option(None, "--calendar", help="Name or id of the calendar (default: the default calendar)."),
    copy: bool = typer.Option(False, "--copy", help="Also copy appointments into it."),
) -> None:
    """Link a Microsoft 365 / Exchange Online calendar (MSAL; tokens protected by the OS keyring)."""
    from engagecli.providers import load

    env = ctx.obj
    env.secrets.describe()
    result = load("microsoft").link(TerminalUI(env), client_id=client_id, tenant=tenant, browser=not device_code,
                                    environ=env.environ)
    _finish(env, "microsoft", result, calendar=calendar, copy=copy)
