"""mailctl commands: status, jobs."""

from __future__ import annotations

import time

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mailctl.console import err, out, print_json
from mailctl.context import app_context
from mailctl.services.status import RATE_WINDOW_SECONDS


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def render_status(status) -> Group:
    table = Table(title=f"job {status.job_id}" + (f" ({status.name})" if status.name else ""), title_justify="left")
    table.add_column("", style="bold")
    table.add_column("count", justify="right")
    table.add_column("")
    total = status.recipients or 1
    rows = [
        ("state", status.state, ""),
        ("recipients", status.recipients, "in the manifest"),
        ("sent", status.sent, f"{100 * status.sent / total:.1f}%"),
        ("failed", status.failed, "permanent, see below" if status.failed else ""),
        ("skipped", status.skipped, "job cancelled" if status.skipped else ""),
        ("in progress", status.in_progress, ""),
        ("stale in progress", status.stale_in_progress, "sender stopped mid-send; retried on redelivery" if status.stale_in_progress else ""),
        ("not started", status.not_started, ""),
        ("expired records", status.expired, "[yellow]a redrive could send these again[/]" if status.expired else ""),
        ("in the DLQ", "-" if status.dlq_messages is None else status.dlq_messages, "messages; `mailctl dlq list --job`" if status.dlq_messages else ""),
    ]
    if status.queue is not None:
        rows.append(("queue", f"{status.queue.visible}/{status.queue.in_flight}/{status.queue.delayed}", "visible/in flight/delayed (all jobs)"))
    rows.append(("rate", "-" if status.rate_per_second is None else f"{status.rate_per_second:.1f}/s", f"last {RATE_WINDOW_SECONDS // 60} min"))
    rows.append(("time left", _duration(status.eta_seconds), "estimate"))
    for label, value, note in rows:
        table.add_row(label, str(value), note)
    parts = [table]
    if status.failed_by_reason:
        reasons = Table(title="failed, by reason", title_justify="left")
        reasons.add_column("recipients", justify="right")
        reasons.add_column("reason")
        for reason, count in status.failed_by_reason.items():
            reasons.add_row(str(count), Text(str(reason)))
        parts.append(reasons)
    return Group(*parts)


def register(app: typer.Typer) -> None:
    @app.command("status")
    def status(
        ctx: typer.Context,
        job_id: str = typer.Argument(..., metavar="JOB", help="The job id `mailctl send` printed (see `mailctl jobs`)."),
        json_: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
        watch: bool = typer.Option(False, "--watch", "-w", help="Refresh until the job settles."),
        interval: float = typer.Option(5.0, "--interval", min=0.5, help="Seconds between refreshes with --watch."),
        recipients: str = typer.Option(None, "--recipients", metavar="STATE", help="List the recipients in one state: sent, failed, skipped, in_progress, stale_in_progress, not_started, expired."),
        export_unsent: str = typer.Option(None, "--export-unsent", metavar="FILE.csv", help="Write the original rows of every recipient not sent, with state and reason columns."),
    ) -> None:
        """What happened to a job's recipients: sent, failed (by reason), in progress, not started, in the DLQ."""
        from mailctl.services.status import JobState

        app_ctx = app_context(ctx)
        service = JobState(app_ctx.clients, app_ctx.config)
        if export_unsent:
            count = service.export_unsent(job_id, export_unsent)
            if json_:
                print_json({"job_id": job_id, "file": export_unsent, "rows": count})
            err.print(f"wrote {count} unsent recipient row(s) to {export_unsent}", markup=False)
            return
        if recipients:
            rows = list(service.recipients(job_id, recipients))
            if json_:
                print_json(rows)
            else:
                for row in rows:
                    out.print(f"{row.get('row', '')}\t{row['email']}\t{row['state']}\t{row['reason'] or ''}", markup=False, highlight=False)
                err.print(f"{len(rows)} recipient(s) {recipients}", markup=False)
            return
        result = service.status(job_id)
        if watch and not result.settled:
            with Live(render_status(result), console=err, transient=True, auto_refresh=False) as live:
                while not result.settled:
                    time.sleep(interval)
                    result = service.status(job_id)
                    live.update(render_status(result), refresh=True)
        if json_:
            print_json(result.to_json())
        else:
            out.print(render_status(result))
            if result.expired:
                err.print(f"warning: {result.expired} idempotency record(s) have expired: redriving this job's messages could send those recipients again", style="yellow", markup=False)

    @app.command("jobs")
    def jobs(
        ctx: typer.Context,
        json_: bool = typer.Option(False, "--json", help="A JSON list on stdout."),
    ) -> None:
        """List jobs (their manifests), newest first."""
        from mailctl.services.status import JobState

        app_ctx = app_context(ctx)
        manifests = JobState(app_ctx.clients, app_ctx.config).jobs()
        keys = ("job_id", "name", "state", "created_at", "updated_at", "recipients", "rejected", "messages")
        if json_:
            print_json([{k: m.get(k) for k in keys} for m in manifests])
            return
        if not manifests:
            err.print("no jobs", markup=False)
            return
        table = Table()
        for column in ("job", "name", "state", "created", "recipients", "rejected", "messages"):
            # In a narrow terminal an id folds onto the next line rather than being cut: it is for copying.
            table.add_column(column, justify="right" if column in {"recipients", "rejected", "messages"} else "left",
                             overflow="fold", no_wrap=column not in {"job", "name"})
        for m in manifests:
            table.add_row(*(Text(str(m.get(k, "") if m.get(k) is not None else "")) for k in ("job_id", "name", "state", "created_at", "recipients", "rejected", "messages")))
        out.print(table)

