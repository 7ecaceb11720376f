from __future__ import annotations

import typer

app = typer.Typer(help="Your linked work calendars and their two switches.", no_args_is_help=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
    all_profiles: bool = typer.Option(False, "--all-profiles", help="Every advisor profile under ENGAGE_HOME (admins)."),
) -> None:
    """Each calendar with its switches, when it last synced, and its status."""
    from engagecli.output import ago, print_json, style, table
    from engagecli.services.calendars import list_calendars

    env = ctx.obj
    from engagecli.errors import EngageError

    rows, broken = [], []
    for e in env.for_profiles() if all_profiles else [env]:
        try:
            rows += [(e.profile, r) for r in list_calendars(e)]
        except EngageError as exc:  # with --all-profiles one broken profile never hides the others
            if not all_profiles:
                raise
            broken.append(e.profile)
            env.err(f"engage: profile {e.profile}: {exc}")

    if json_:
        print_json(env, [dict(r.as_json(), **({"profile": p} if all_profiles else {})) for p, r in rows])
        raise typer.Exit(1 if broken else 0)
    if not rows:
        return env.out("No calendars linked. Try `engage link ics FILE` or `engage link google`.")
    now = env.now()
    colour = {"ok": "green", "never": "yellow", "error": "red", "relink": "red"}
    out = []
    for profile, r in rows:
        c = r.cal
        out.append(([profile] if all_profiles else []) + [
            c.id, c.provider, c.account, c.name, "on" if c.copy_appointments else "off",
            "on" if c.use_for_availability else "off", ago(c.last_synced_at, now), c.status])
    headers = ["ID", "PROVIDER", "ACCOUNT", "NAME", "COPY", "AVAILABILITY", "LAST SYNCED", "STATUS"]
    lines = table(out, (["PROFILE"] if all_profiles else []) + headers).split("\n")
    for i, (_p, r) in enumerate(rows):
        lines[i + 2] = lines[i + 2][: -len(r.cal.status)] + style(env, r.cal.status, colour.get(r.cal.status, "bold"))
    env.out("\n".join(lines))
    for profile, r in rows:
        if r.cal.error:
            env.out(f"{(profile + ' ') if all_profiles else ''}{r.cal.id}: {r.cal.error}")
    if broken:
        raise typer.Exit(1)


@app.command("set")
def set_(
    ctx: typer.Context,
    calendar_id: str = typer.Argument(..., metavar="ID"),
    copy: bool = typer.Option(None, "--copy/--no-copy", help="Copy appointments into this calendar."),
    availability: bool = typer.Option(None, "--availability/--no-availability", help="Offer slots only where it is free."),
    keep_copies: bool = typer.Option(None, "--keep-copies/--remove-copies", help="With --no-copy: keep or delete copies made."),
) -> None:
    """Turn "copy appointments" and "use for availability" on or off."""
    from engagecli.services.calendars import set_switches

    env = ctx.obj
    if copy is False and keep_copies is None:
        keep_copies = _ask_keep_copies(env, calendar_id)
    cal, removed = set_switches(env, calendar_id, copy=copy, availability=availability, keep_copies=keep_copies)
    env.out(f"{cal.id}: copy appointments {'on' if cal.copy_appointments else 'off'}, "
            f"use for availability {'on' if cal.use_for_availability else 'off'}."
            + (f" Removed {removed} copies." if removed else "")
            + (" Run `engage sync` to copy appointments now." if copy else ""))


@app.command()
def unlink(
    ctx: typer.Context,
    calendar_id: str = typer.Argument(..., metavar="ID"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    keep_copies: bool = typer.Option(None, "--keep-copies/--remove-copies", help="Keep or delete the copies made there."),
) -> None:
    """Forget a calendar, its busy times and its stored secret."""
    from engagecli.errors import UsageError
    from engagecli.services.calendars import unlink as do_unlink

    from engagecli.services.calendars import get_calendar

    env = ctx.obj
    cal = get_calendar(env, calendar_id)
    if not yes:
        if not env.interactive:
            raise UsageError(f"unlinking {cal.id} needs confirmation", hint="add --yes")
        if not typer.confirm(f"Unlink {cal.id} ({cal.name})?", err=True):
            raise typer.Exit(1)
    if keep_copies is None:
        keep_copies = _ask_keep_copies(env, calendar_id)
    removed = do_unlink(env, calendar_id, keep_copies=keep_copies)
    env.out(f"Unlinked {cal.id}." + (f" Removed {removed} copies." if removed else ""))


def _ask_keep_copies(env, calendar_id: str) -> bool | None:
    """On a terminal, ask what to do with the copies already made; elsewhere the service asks for a flag."""
    from engagecli.services.calendars import copies_made

    copies = copies_made(env, calendar_id)
    if not copies or not env.interactive:
        return None
    return not typer.confirm(f"Remove the {copies} copies engage made in {calendar_id} from the work calendar?",
                             default=False, err=True)
