from __future__ import annotations

from typing import List

import typer

app = typer.Typer(help="Your weekly hours and one-off changes, in your account's time zone.", no_args_is_help=True)


@app.command("set")
def set_(
    ctx: typer.Context,
    days: str = typer.Argument(..., help="Days: mon-fri, sat,sun, daily ..."),
    ranges: List[str] = typer.Argument(..., help="Time ranges HH:MM-HH:MM, or 'off'."),
) -> None:
    """Set the weekly hours of some days, e.g. `mon-fri 09:00-12:00 13:00-17:00` (replaces those days)."""
    from engagecli.services.profile import set_hours

    env = ctx.obj
    set_hours(env, days, ranges)
    env.out(f"Hours saved for {days}.")


@app.command()
def override(
    ctx: typer.Context,
    day: str = typer.Argument(..., help="The date, YYYY-MM-DD."),
    ranges: List[str] = typer.Argument(None, help="Time ranges HH:MM-HH:MM for that date only."),
    off: bool = typer.Option(False, "--off", help="Not available at all that date."),
    clear: bool = typer.Option(False, "--clear", help="Back to the weekly hours for that date."),
) -> None:
    """Change one date: other hours, or --off; --clear removes the change."""
    from engagecli.services.profile import set_override

    env = ctx.obj
    windows = set_override(env, day, ranges or [], off=off, clear=clear)
    what = "weekly hours" if windows is None else ("off" if not windows else " ".join(w.label() for w in windows))
    env.out(f"{day}: {what}.")


@app.command()
def show(ctx: typer.Context, json_: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Show weekly hours and upcoming one-off changes."""
    from engagecli.output import print_json
    from engagecli.services.profile import availability

    env = ctx.obj
    data = availability(env)
    if json_:
        return print_json(env, data)
    env.out(f"Weekly hours ({data['timezone']}):")
    for day, windows in data["weekly"].items():
        env.out(f"  {day}  {' '.join(windows) if windows else 'off'}")
    if data["overrides"]:
        env.out("Changes:")
        for day, windows in data["overrides"].items():
            env.out(f"  {day}  {' '.join(windows) if windows else 'off'}")
