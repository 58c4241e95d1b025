"""mailctl commands: dlq list / show / export / redrive / purge."""

from __future__ import annotations


import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from mailctl.console import confirm, err, out, print_json
from mailctl.context import app_context
from mailctl.errors import UserError

dlq_app = typer.Typer(help="Inspect, export, redrive and purge dead letters (the DLQ).", no_args_is_help=True)

JOB_OPTION = typer.Option(None, "--job", "-j", help="Only this job's messages.")


def _service(ctx: typer.Context):
    from mailctl.services.dlq import DeadLetters

    app_ctx = app_context(ctx)
    return DeadLetters(app_ctx.clients, app_ctx.config, note=lambda line: err.print(line, markup=False, soft_wrap=True))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _print_summary(letters) -> None:
    from mailctl.services.dlq import group_summary

    groups = group_summary(letters)
    if not groups:
        return
    err.print("by job and reason:", markup=False)
    for group in groups:
        err.print(f"  {group['messages']:>6} message(s) {group['recipients']:>8} recipient(s)  {group['job_id']}: {group['reason']}", markup=False)


@dlq_app.command("list")
def list_(ctx: typer.Context, job: str = JOB_OPTION, json_: bool = typer.Option(False, "--json", help="A JSON list on stdout.")) -> None:
    """Peek at the dead letters without removing any."""
    letters = _service(ctx).list(job)
    if json_:
        print_json([letter.summary() for letter in letters])
        return
    if not letters:
        err.print("the DLQ is empty" + (f" for job {job}" if job else ""), markup=False)
        return
    table = Table()
    for column in ("message id", "job", "chunk", "recipients", "receives", "age", "reason"):
        # Ids and jobs are for copying into the next command: never wrapped.
        keep = column in {"message id", "job"}
        table.add_column(column, justify="right" if column in {"chunk", "recipients", "receives", "age"} else "left", no_wrap=keep, overflow="fold", min_width=20 if column == "reason" else None)
    for letter in letters:
        reason = Text(letter.reason or "(no reason recorded)", style="red" if letter.problem else "")
        table.add_row(
            letter.message_id, Text(letter.job_id or "?"), "-" if letter.chunk is None else str(letter.chunk),
            "-" if letter.recipients is None else str(letter.recipients), str(letter.receive_count), _age(letter.age_seconds), reason,
        )
    out.print(table)
    _print_summary(letters)


@dlq_app.command("show")
def show(ctx: typer.Context, message_id: str = typer.Argument(..., metavar="MESSAGE_ID", help="A message id from `mailctl dlq list`.")) -> None:
    """One dead letter in full: body (S3 payload resolved), attributes, recorded reason (JSON)."""
    print_json(_service(ctx).show(message_id).full())


@dlq_app.command("export")
def export(ctx: typer.Context, path: str = typer.Argument(..., metavar="FILE.jsonl"), job: str = JOB_OPTION) -> None:
    """Write every dead letter, whole payload included, one JSON line each: a backup before a purge."""
    count = _service(ctx).export(path, job)
    err.print(f"exported {count} message(s) to {path}", markup=False)


@dlq_app.command("redrive")
def redrive(
    ctx: typer.Context,
    job: str = JOB_OPTION,
    limit: int = typer.Option(None, "--limit", min=1, help="Move at most N messages."),
    rate: float = typer.Option(None, "--rate", min=0.01, metavar="PER_SECOND", help="Messages moved per second at most."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would move; move nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    json_: bool = typer.Option(False, "--json", help="The result as JSON on stdout."),
    cancel: bool = typer.Option(False, "--cancel", help="Cancel a running message move task instead."),
) -> None:
    """Move dead letters back to the main queue (recipients already sent are not sent again)."""
    service = _service(ctx)
    if cancel:
        moved = service.cancel_task()
        if json_:
            print_json({"cancelled": True, "moved": moved})
        err.print(f"cancelled the move task after about {moved} message(s)", markup=False)
        return
    plan = service.redrive(job=job, limit=limit, dry_run=True)
    scope = f" of job {job}" if job else ""
    if dry_run or plan.selected == 0:
        if json_:
            print_json({**plan.to_json(), "moved": 0})
        err.print(f"would move {plan.selected} message(s){scope} from {service.dlq.name} to {service.main.name}" if plan.selected else f"nothing to redrive{scope}", markup=False)
        return
    if not yes:
        confirm(f"Move {plan.selected} message(s){scope} from {service.dlq.name} back to {service.main.name}?", no_terminal_hint="pass --yes to redrive")

    with Progress(TextColumn("redrive"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task("redrive", total=plan.selected)

        def progress(moved: int, total: int | None) -> None:
            bar.update(task, completed=moved, total=total or plan.selected)

        result = service.redrive(job=job, limit=limit, rate=rate, progress=progress, note=lambda line: err.print(line, markup=False))
    if json_:
        print_json(result.to_json())
    how = "by a message move task" if result.method == "move-task" else "copied, then deleted from the DLQ"
    err.print(f"moved {result.moved} message(s){scope} to {service.main.name} ({how})", markup=False)
    if result.left is not None:
        err.print(f"left in {service.dlq.name}: {result.left.describe()}", markup=False, soft_wrap=True)


@dlq_app.command("purge")
def purge(
    ctx: typer.Context,
    job: str = JOB_OPTION,
    yes: bool = typer.Option(False, "--yes", "-y", help="Required: purging cannot be undone."),
    json_: bool = typer.Option(False, "--json", help="The result as JSON on stdout."),
) -> None:
    """Delete dead letters and their S3 payloads for good."""
    scope = f" --job {job}" if job else ""
    err.print(f"to keep a copy first: mailctl dlq export dead-letters.jsonl{scope}", markup=False)
    if not yes:
        raise UserError("refusing to purge without --yes", hint=f"run `mailctl dlq export FILE.jsonl{scope}` first, then `mailctl dlq purge{scope} --yes`")
    service = _service(ctx)
    result = service.purge(job)
    if json_:
        print_json(result.to_json())
    err.print(f"deleted {result.messages} message(s) and {result.payloads} S3 payload(s); {result.recipients} recipient(s) recorded as purged for `mailctl status`", markup=False)
    if result.undecodable:
        err.print(f"{result.undecodable} deleted message(s) could not be decoded: their recipients stay 'not started' in status", markup=False)
    err.print(f"left in {service.dlq.name}: {result.left.describe()}", markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the root app."""
    app.add_typer(dlq_app, name="dlq")
