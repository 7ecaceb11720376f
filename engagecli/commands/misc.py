"""Top-level commands: slots, calendar, sync, demo, doctor, settings."""

from __future__ import annotations

import typer

settings_app = typer.Typer(help="Settings of this profile (sync window, default slot length).", no_args_is_help=True)


def slots(
    ctx: typer.Context,
    week: bool = typer.Option(False, "--week", help="Seven days from --start (the default)."),
    days: int = typer.Option(None, "--days", help="Number of days from --start."),
    start: str = typer.Option(None, "--start", help="First date, YYYY-MM-DD (default today)."),
    end: str = typer.Option(None, "--end", help="Last date, inclusive."),
    duration: int = typer.Option(None, "--duration", help="Slot length in minutes (default 30)."),
    interval: int = typer.Option(None, "--interval", help="Minutes between slot starts (default: the duration)."),
    tz: str = typer.Option(None, "--tz", help="Time zone to print in (default: your account's)."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ics: bool = typer.Option(False, "--ics", help="The slots as an iCalendar file."),
) -> None:
    """Free slots to offer a customer: times only, nothing about the work calendar."""
    from engagecli.errors import UsageError
    from engagecli.output import print_json
    from engagecli.services.planner import free_slots, slots_json
    from engagecli.services.render import slots_ics, slots_text

    env = ctx.obj
    if json_ and ics:
        raise UsageError("give --json or --ics, not both")
    result = free_slots(env, start=start, end=end, days=days, week=week, duration=duration, interval=interval, tz=tz)
    for warning in result.warnings:
        env.err(f"engage: warning: {warning}")
    if json_:
        print_json(env, slots_json(result))
    elif ics:
        env.stdout.write(slots_ics(result, env.now()))
    else:
        env.out(slots_text(env, result))


def calendar(
    ctx: typer.Context,
    week: bool = typer.Option(False, "--week", help="Seven days from --start (the default)."),
    days: int = typer.Option(None, "--days", help="Number of days from --start."),
    start: str = typer.Option(None, "--start", help="First date, YYYY-MM-DD (default today)."),
    end: str = typer.Option(None, "--end", help="Last date, inclusive."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Your agenda: appointments and work events, and why each time is busy or free."""
    from engagecli.output import print_json
    from engagecli.services.planner import agenda, agenda_json
    from engagecli.services.render import agenda_text

    env = ctx.obj
    period, entries = agenda(env, start=start, end=end, days=days, week=week)
    if json_:
        return print_json(env, agenda_json(period, entries))
    env.out(agenda_text(env, period, entries))


def sync(
    ctx: typer.Context,
    calendar_id: str = typer.Option(None, "--calendar", help="Only this calendar."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing unless something failed."),
    all_profiles: bool = typer.Option(False, "--all-profiles", help="Every advisor profile under ENGAGE_HOME (admins)."),
) -> None:
    """Pull busy times and push copies for every linked calendar. Never prompts: safe from cron."""
    from engagecli.errors import EngageError, SyncBusy, UsageError
    from engagecli.output import print_json
    from engagecli.services.sync import exit_code
    from engagecli.sync.engine import CalendarReport

    env = ctx.obj
    if all_profiles and calendar_id:
        raise UsageError("give --calendar or --all-profiles, not both")
    reports, skipped = [], []
    for e in env.for_profiles() if all_profiles else [env]:
        try:
            if all_profiles and e.store.get_account() is None:
                continue  # a profile that was never set up has nothing to sync
            reports += [(e.profile, r) for r in _sync_with_progress(env, e, calendar_id, show=not (json_ or quiet))]
        except SyncBusy as exc:
            skipped.append(str(exc))
            if not json_ and not quiet:
                env.err(f"engage: {exc}")
        except EngageError as exc:  # with --all-profiles one broken profile never stops the others
            if not all_profiles:
                raise
            reports.append((e.profile, CalendarReport("-", status="error", error=str(exc))))
    prefix = (lambda p: f"{p}/") if all_profiles else (lambda p: "")
    if json_:
        data = {"calendars": [dict(r.as_json(), **({"profile": p} if all_profiles else {})) for p, r in reports]}
        if skipped:
            data["skipped"] = "; ".join(skipped)
        print_json(env, data)
    else:
        for p, r in reports:
            if r.status == "ok" and not quiet:
                env.out(f"{prefix(p)}{r.id}: ok ({r.pulled} event occurrences pulled; {r.copied} copied, {r.updated} updated, "
                        f"{r.deleted} deleted)")
            elif r.status != "ok":
                env.err(f"engage: {prefix(p)}{r.id}: {r.status}: {r.error}")
        if not reports and not skipped and not quiet:
            env.out("No calendars linked.")
    reports = [r for _p, r in reports]
    code = exit_code(reports)
    if code:
        raise typer.Exit(code)


def _sync_with_progress(env, profile_env, calendar_id, *, show: bool):
    """A spinner naming the calendar being synced, on a terminal only (never under cron or in a pipe)."""
    from engagecli.services.sync import sync as do_sync

    if not (show and getattr(env.stderr, "isatty", lambda: False)()):
        return do_sync(profile_env, calendar_id)
    from rich.console import Console

    console = Console(file=env.stderr, no_color=not env.color)
    with console.status("Syncing…") as status:
        return do_sync(profile_env, calendar_id,
                       progress=lambda cal: status.update(f"Syncing {cal.id} ({cal.name})…"))


def demo(
    ctx: typer.Context,
    json_: bool = typer.Option(False, "--json", help="Print next week's slots as JSON instead of the overview."),
) -> None:
    """Create (or reset) the `demo` profile: sample work calendar, hours, appointments; print next week."""
    from engagecli.output import print_json
    from engagecli.services.demo import run_demo
    from engagecli.services.planner import agenda_json, slots_json
    from engagecli.services.render import agenda_text, slots_text

    env = ctx.obj
    demo_env, slots_result, period, entries = run_demo(env)
    if json_:
        return print_json(env, {"profile": demo_env.profile, "slots": slots_json(slots_result),
                                "agenda": agenda_json(period, entries)})
    env.out(f"Demo profile '{demo_env.profile}' is ready in {demo_env.profile_dir}.")
    env.out("")
    env.out(agenda_text(env, period, entries))
    env.out("")
    env.out(slots_text(env, slots_result))
    env.out("")
    env.out(f"Try: engage --profile {demo_env.profile} calendars list | slots --week --json | appointments list")


def doctor(
    ctx: typer.Context,
    offline: bool = typer.Option(False, "--offline", help="Do not contact the calendar servers."),
) -> None:
    """Check the database, permissions, time zone, secret store, stored sign-ins and reachability of calendars."""
    from engagecli.services.doctor import run_checks

    env = ctx.obj
    problems = 0
    for ok, line in run_checks(env, offline=offline):
        env.out(("ok       " if ok else "PROBLEM  ") + line)
        problems += not ok
    if problems:
        raise typer.Exit(1)


@settings_app.command("show")
def settings_show(ctx: typer.Context, json_: bool = typer.Option(False, "--json")) -> None:
    """Show every setting and its value."""
    from engagecli.output import print_json
    from engagecli.services.settings import show

    env = ctx.obj
    data = show(env)
    if json_:
        return print_json(env, data)
    for key, value in data.items():
        env.out(f"{key} = {value}")


@settings_app.command("set")
def settings_set(ctx: typer.Context, key: str = typer.Argument(...), value: str = typer.Argument(...)) -> None:
    """Change a setting, e.g. `engage settings set sync.window_future_days 730`."""
    from engagecli.services.settings import set_setting

    env = ctx.obj
    number = set_setting(env, key, value)
    env.out(f"{key} = {number}" + (" (run `engage sync` to fetch the new window)" if key.startswith("sync.") else ""))


def register(app: typer.Typer) -> None:
    app.command()(slots)
    app.command()(calendar)
    app.command()(sync)
    app.command()(demo)
    app.command()(doctor)
    app.add_typer(settings_app, name="settings")
