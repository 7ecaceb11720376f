from __future__ import annotations

import typer

app = typer.Typer(help="Your contact details and time zone.", no_args_is_help=True)


@app.command("set")
def set_(
    ctx: typer.Context,
    name: str = typer.Option(None, "--name", help="Your name as customers see it."),
    email: str = typer.Option(None, "--email", help="Your contact email."),
    timezone: str = typer.Option(None, "--timezone", "--tz", help="IANA time zone, e.g. Europe/Oslo."),
    phone: str = typer.Option(None, "--phone", help="Your contact phone number."),
) -> None:
    """Change the fields given (the first time, --timezone is required)."""
    from engagecli.services.profile import set_account

    env = ctx.obj
    account = set_account(env, name=name, email=email, timezone=timezone, phone=phone)
    env.out(f"Account saved ({account.timezone}).")


@app.command()
def show(ctx: typer.Context, json_: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Show your contact details and time zone."""
    from engagecli.output import print_json
    from engagecli.services.profile import account_dict, require_account

    env = ctx.obj
    data = account_dict(require_account(env))
    if json_:
        print_json(env, data)
    else:
        for key, value in data.items():
            env.out(f"{key + ':':<10} {value if value is not None else '-'}")
