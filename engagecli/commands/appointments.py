from __future__ import annotations

import typer

app = typer.Typer(help="Book, list, move and cancel appointments.", no_args_is_help=True)


@app.command()
def add(
    ctx: typer.Context,
    start: str = typer.Option(..., "--start", help="Start, e.g. 2030-03-04T10:00 (your time zone unless an offset is given)."),
    duration: int = typer.Option(30, "--duration", help="Minutes."),
    title: str = typer.Option(..., "--title", help="What the appointment is about."),
    customer_name: str = typer.Option(None, "--customer-name"),
    customer_email: str = typer.Option(None, "--customer-email"),
    force: bool = typer.Option(False, "--force", help="Book even if the time is not free."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Book an appointment; refused (exit 2) when the time is not free, unless --force."""
    from engagecli.output import print_json
    from engagecli.services import appointments as svc

    env = ctx.obj
    appt = svc.add(env, start=start, duration=duration, title=title, customer_name=customer_name,
                   customer_email=customer_email, force=force)
    if json_:
        return print_json(env, svc.to_json(appt, appt.timezone))
    data = svc.to_json(appt, appt.timezone)
    env.out(f"Booked {appt.id}: {data['start']} - {data['end'][11:16]} {appt.title}")


@app.command("list")
def list_(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", help="Include past and cancelled appointments."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List upcoming appointments."""
    from engagecli.output import print_json, table
    from engagecli.services import appointments as svc

    env = ctx.obj
    tz, items = svc.listing(env, include_past_and_cancelled=all_)
    if json_:
        return print_json(env, [svc.to_json(a, tz) for a in items])
    if not items:
        return env.out("No appointments." + ("" if all_ else " (--all shows past and cancelled ones)"))
    rows = []
    for a in items:
        d = svc.to_json(a, tz)
        rows.append([a.id, d["start"][:16].replace("T", " "), d["end"][11:16], a.title, a.customer_name or "", a.status])
    env.out(table(rows, ["ID", "START", "END", "TITLE", "CUSTOMER", "STATUS"]))


@app.command()
def cancel(ctx: typer.Context, appointment_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Cancel an appointment (its copies are deleted at the next sync)."""
    from engagecli.services import appointments as svc

    env = ctx.obj
    appt = svc.cancel(env, appointment_id)
    env.out(f"Cancelled {appt.id}.")


@app.command()
def move(
    ctx: typer.Context,
    appointment_id: str = typer.Argument(..., metavar="ID"),
    start: str = typer.Option(..., "--start", help="New start."),
    duration: int = typer.Option(None, "--duration", help="New length in minutes (default: unchanged)."),
    force: bool = typer.Option(False, "--force", help="Move even if the time is not free."),
) -> None:
    """Move an appointment (its copies move at the next sync)."""
    from engagecli.services import appointments as svc

    env = ctx.obj
    appt = svc.move(env, appointment_id, start=start, duration=duration, force=force)
    data = svc.to_json(appt, appt.timezone)
    env.out(f"Moved {appt.id} to {data['start']} - {data['end'][11:16]}.")
