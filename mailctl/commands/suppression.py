"""mailctl suppression: the addresses mailctl never mails (list, add, remove, import)."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from mailctl.console import err, out, print_json
from mailctl.context import app_context
from mailctl.errors import UserError

suppression_app = typer.Typer(
    help="The suppression list: addresses `mailctl send` leaves out and the sender skips. Permanent "
    "bounces and complaints are added by the events function.",
    no_args_is_help=True,
)


def _service(ctx: typer.Context):
    from mailctl.services.suppression import SuppressionList

    app = app_context(ctx)
    return app, SuppressionList(app.clients, app.config)


@suppression_app.command("list")
def list_(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="A JSON list on stdout."),
) -> None:
    """Every listed address, with its reason, source and when it was added."""
    _, service = _service(ctx)
    entries = sorted(service.entries(), key=lambda e: e.email)
    if as_json:
        print_json([e.to_json() for e in entries])
        return
    table = Table()
    for column in ("address", "reason", "source", "added", "job", "detail"):
        table.add_column(column)
    for e in entries:
        table.add_row(*(Text(v or "") for v in (e.email, e.reason, e.source, e.added_at, e.job_id, e.detail)))
    out.print(table)
    err.print(f"{len(entries):,} suppressed address(es)", markup=False)


@suppression_app.command("add")
def add(
    ctx: typer.Context,
    addresses: list[str] = typer.Argument(..., help="One or more addresses.", show_default=False),
    reason: str = typer.Option("MANUAL", "--reason", help="Why (BOUNCE, COMPLAINT, MANUAL, or your own word)."),
) -> None:
    """Add addresses (an address already listed takes the new reason)."""
    _, service = _service(ctx)
    count = service.add(addresses, reason=reason.strip().upper() or "MANUAL")
    err.print(f"added {count} address(es) to the suppression list", markup=False)


@suppression_app.command("remove")
def remove(
    ctx: typer.Context,
    addresses: list[str] = typer.Argument(..., help="One or more addresses.", show_default=False),
) -> None:
    """Remove addresses: mailctl may mail them again."""
    _, service = _service(ctx)
    missing = service.remove(addresses)
    for key in missing:
        err.print(f"{key}: was not on the suppression list", markup=False)
    err.print(f"removed {len(addresses) - len(missing)} address(es)", markup=False)


@suppression_app.command("import")
def import_(
    ctx: typer.Context,
    file: Path = typer.Argument(None, help="One address per line, or a CSV with an `email` (and optional `reason`) column.", show_default=False),
    from_ses: bool = typer.Option(False, "--from-ses", help="Import SES's account-level suppression list instead."),
    reason: str = typer.Option("MANUAL", "--reason", help="Reason for rows that name none."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object on stdout."),
) -> None:
    """Import many addresses at once (batch writes, in parallel)."""
    if (file is None) == (not from_ses):
        raise UserError("suppression import: give a FILE or --from-ses (one of them)", hint="mailctl suppression import addresses.csv")
    app, service = _service(ctx)
    started = time.monotonic()
    if from_ses:
        from mailctl.aws.ses import SesAdapter

        count = service.import_from_ses(SesAdapter(app.clients.client("sesv2"), app.clients.client("ses")))
        source = "SES account suppression list"
    else:
        count = service.import_file(file, reason=reason.strip().upper() or "MANUAL")
        source = str(file)
    seconds = time.monotonic() - started
    if as_json:
        print_json({"imported": count, "source": source, "seconds": round(seconds, 2)})
    err.print(f"imported {count:,} address(es) from {source} in {seconds:.1f}s", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(suppression_app, name="suppression")
