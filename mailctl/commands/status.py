"""mailctl commands: status, jobs."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mailctl.console import err, out, print_json
from mailctl.context import app_context
from mailctl.errors import CounterDrift, UserError
from mailctl.services.status import RATE_WINDOW_SECONDS, WAITING_FOR


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _dlq_row(status) -> tuple[str, str, str]:
    dlq = status.dlq
    if dlq is None:
        return ("in the DLQ", "-", "")
    if dlq.exact:
        return ("in the DLQ", "0", "exact: the DLQ is empty")
    note = f"approximate (the sender's failure records); {dlq.total.total} in the whole DLQ (SQS's approximate count, all jobs)"
    if dlq.unattributed:
        note += f", {dlq.unattributed} without a failure record (job unknown until `mailctl dlq list`)"
    return ("in the DLQ", f"~{dlq.job}", note)


def _guard_row(report: dict) -> tuple[str, str, str]:
    limits = report["thresholds"]
    note = (f"permanent bounces {report['bounces']:,} ({report['bounce_rate']:.2%} of {limits['bounce_rate']:.2%} allowed), "
            f"complaints {report['complaints']:,} ({report['complaint_rate']:.2%} of {limits['complaint_rate']:.2%}); "
            f"judges from {limits['min_outcomes']:,} outcomes")
    if report["overridden"]:
        note += "; [yellow]overridden by a manual resume[/]"
    return ("guard", f"{report['outcomes']:,}", note)


def _sender_row(status) -> tuple[str, str, str] | None:
    if status.sender_paused:
        return ("sender", "paused", "[yellow]event source mapping disabled: nothing is sent until `mailctl resume`[/]")
    if status.sender_paused is None and status.queue is not None:
        return ("sender", "?", "event source mapping not readable")
    return None


def _time_left(status) -> tuple[str, str, str]:
    if status.stopped:
        return ("time left", "-", "nothing moves until the operator acts (see below)")
    return ("time left", _duration(status.eta_seconds), "estimate")


def _rate(value: float | None, review: float, pause: float) -> str:
    """SES reviews an account at a 5% bounce or 0.1% complaint rate and may pause it at ~10% / 0.5%."""
    if value is None:
        return "-"
    style = "bold red" if value >= pause else "yellow" if value >= review else ""
    text = f"{100 * value:.2f}%"
    return f"[{style}]{text}[/]" if style else text


def _delivery_rows(status) -> list[tuple[str, object, str]]:
    counts = status.delivery
    bounce_rate, complaint_rate = counts.rates(status.sent)
    return [
        ("delivered", counts.delivered, "SES events (includes complained)"),
        ("bounced", counts.bounced, f"{counts.bounced_permanent} permanent, {counts.bounced_transient} transient"),
        ("complained", counts.complained, ""),
        ("delayed", counts.delayed, "no outcome yet" if counts.delayed else ""),
        ("rejected", counts.rejected, "by SES after accepting" if counts.rejected else ""),
        ("suppressed", counts.suppressed, "on the suppression list: left out or skipped" if counts.suppressed else ""),
        ("bounce rate", _rate(bounce_rate, 0.05, 0.10), "of sent; SES reviews at 5%"),
        ("complaint rate", _rate(complaint_rate, 0.001, 0.005), "of sent; SES reviews at 0.1%"),
    ]


def render_status(status) -> Group:
    table = Table(title=f"job {status.job_id}" + (f" ({status.name})" if status.name else ""), title_justify="left")
    table.add_column("", style="bold")
    table.add_column("count", justify="right")
    table.add_column("")
    total = status.recipients or 1
    state_note = ""
    if status.enqueue_interrupted:
        state_note = f"[yellow]interrupted: {status.chunks_enqueued if status.chunks_enqueued is not None else '?'} of {status.messages} chunks on the queue[/]"
    elif status.state == "enqueueing":
        state_note = "mailctl send is enqueueing"
    elif status.outlived_records:
        state_note = "[yellow]older than its idempotency records[/]"
    rows = [
        ("state", status.state, state_note or status.state_reason or ""),
        ("recipients", status.recipients, "in the manifest"),
        ("sent", status.sent, f"{100 * status.sent / total:.1f}%"),
        ("failed", status.failed, "permanent, see below" if status.failed else ""),
        ("skipped", status.skipped, "job cancelled" if status.skipped else ""),
        ("unknown", status.unknown, "[yellow]SES did not answer; not resent: `--recipients unknown`[/]" if status.unknown else ""),
        *([("in progress", status.in_progress, ""),
           ("stale in progress", status.stale_in_progress, "sender stopped mid-send; retried on redelivery" if status.stale_in_progress else "")]
          if status.counted_from == "records" else []),
        ("not started", status.not_started, "not enqueued yet" if status.enqueue_interrupted and status.not_started
         else "no outcome yet, in progress included (from the job's counters; --recipients reads the records)" if status.counted_from == "counters" and status.not_started else ""),
        *([("purged", status.purged, "their messages were deleted by `mailctl dlq purge`")] if status.purged else []),
        *([("expired, no record", status.expired_no_record, "[yellow]record expired (TTL) or never started: outcome unknown[/]")] if status.expired_no_record else []),
        ("expired records", status.expired, "[yellow]a redrive could send these again[/]" if status.expired else ""),
        _dlq_row(status),
    ]
    if status.dlq is not None and status.dlq.retrying:
        rows.append(("failing, retrying", status.dlq.retrying, "messages with receives left (the sender's failure records)"))
    if status.delivery is not None:
        rows += _delivery_rows(status)
    if status.queue is not None:
        rows.append(("queue", f"{status.queue.visible}/{status.queue.in_flight}/{status.queue.delayed}", "visible/in flight/delayed (all jobs, approximate)"))
    sender = _sender_row(status)
    if sender:
        rows.append(sender)
    if status.guard:
        rows.append(_guard_row(status.guard))
    if status.canary:
        c = status.canary
        rows.append(("canary", f"{c['size']:,}", f"{'holding the rest; ' if c['held'] else ''}sent {c['sent']:,}, failed {c['failed']:,}"
                     f"{f', unknown {unknown:,}' if (unknown := c.get('unknown')) else ''}; "
                     f"{c['outcomes']:,} outcomes: {c['bounced_permanent']:,} permanent bounces ({c['bounce_rate']:.2%}), "
                     f"{c['complained']:,} complaints ({c['complaint_rate']:.2%}); seed {c['seed']}"))
    rows.append(("rate", "-" if status.rate_per_second is None else f"{status.rate_per_second:.1f}/s", f"last {RATE_WINDOW_SECONDS // 60} min"))
    rows.append(_time_left(status))
    for label, value, note in rows:
        table.add_row(label, str(value), note)
    parts = [table]
    if status.waiting:
        until = datetime.fromtimestamp(status.waiting["until"], timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        what = WAITING_FOR.get(status.waiting["for"], status.waiting["for"])
        parts.insert(0, Text(f"waiting for {what}; next try at {until} ({status.waiting.get('reason') or ''})", style="yellow"))
    if status.failed_by_reason:
        reasons = Table(title="failed, by reason", title_justify="left")
        reasons.add_column("recipients", justify="right")
        reasons.add_column("reason")
        for reason, count in status.failed_by_reason.items():
            reasons.add_row(str(count), Text(str(reason)))
        parts.append(reasons)
    return Group(*parts)


def _report_verify(job_id: str, result) -> None:
    if result.counter_drift is None:
        err.print(f"job {job_id}: no counters (enqueued before them): counted from its records", markup=False)
    elif not result.counter_drift:
        err.print(f"job {job_id}: counters agree with the records", markup=False)
    else:
        raise CounterDrift(f"job {job_id}: counters differ from the records: " + "; ".join(result.counter_drift),
                           hint="the records are the truth (status --recipients and --export-unsent read them); please report this")


class WatchProgress:
    """`status --watch`'s bar: recipients with an outcome, the rate between refreshes, the ETA."""

    def __init__(self, first, monotonic=time.monotonic):
        self._monotonic = monotonic
        self._samples = [(monotonic(), _done(first))]

    def render(self, status) -> Text:
        now, done = self._monotonic(), _done(status)
        self._samples = [s for s in self._samples if s[0] >= now - RATE_WINDOW_SECONDS] + [(now, done)]
        start_time, start_done = self._samples[0]
        rate = (done - start_done) / (now - start_time) if now - start_time >= 1 else status.rate_per_second
        total = max(status.recipients, 1)
        left = max(status.recipients - done, 0)
        eta = left / rate if rate and left else None
        return progress_line(done, total, rate, eta)


def _done(status) -> int:
    return status.sent + status.failed + status.skipped + status.unknown


def progress_line(done: int, total: int, rate: float | None, eta: float | None, width: int = 30) -> Text:
    filled = min(width, int(width * done / total)) if total else 0
    bar = "#" * filled + "-" * (width - filled)
    rate_text = "-" if rate is None else f"{rate:,.1f}/s"
    return Text(f"[{bar}] {done:,}/{total:,} ({100 * done / total:.1f}%)  {rate_text}  ETA {_duration(eta)}")


def register(app: typer.Typer) -> None:
    @app.command("status")
    def status(
        ctx: typer.Context,
        job_id: str = typer.Argument(..., metavar="JOB", help="The job id `mailctl send` printed (see `mailctl jobs`)."),
        json_: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
        watch: bool = typer.Option(False, "--watch", "-w", help="Refresh until the job settles, or until nothing can change without the operator (interrupted enqueue, paused sender)."),
        interval: float = typer.Option(5.0, "--interval", min=0.5, help="Seconds between refreshes with --watch."),
        recipients: str = typer.Option(None, "--recipients", metavar="STATE", help="List the recipients in one state: sent, failed, skipped, unknown, in_progress, stale_in_progress, not_started, expired, purged; or by what SES said: delivered, bounced, complained, delayed, rejected, suppressed."),
        export_unsent: str = typer.Option(None, "--export-unsent", metavar="FILE.csv", help="Write the original rows of every recipient not sent, with state and reason columns; refused while the sender may still send some of them."),
        force: bool = typer.Option(False, "--force", help="With --export-unsent: export even while chunks of the job are queued, in flight or in the DLQ."),
        verify: bool = typer.Option(False, "--verify", help="Count from the per-recipient records and report every count the job's counters disagree on (exit 1 if any)."),
    ) -> None:
        """What happened to a job's recipients: sent, failed (by reason), in progress, not started, in the DLQ."""
        from mailctl.services.status import JobState

        if force and not export_unsent:
            raise UserError("--force only applies to --export-unsent", hint=f"mailctl status {job_id} --export-unsent FILE.csv --force")
        app_ctx = app_context(ctx)
        service = JobState(app_ctx.clients, app_ctx.config)
        if export_unsent:
            count, overridden = service.export_unsent(job_id, export_unsent, force=force)
            if json_:
                print_json({"job_id": job_id, "file": export_unsent, "rows": count, "forced_past": overridden})
            for reason in overridden:
                err.print(f"warning: exported although {reason}", style="yellow", markup=False)
            err.print(f"wrote {count} unsent recipient row(s) to {export_unsent}", markup=False)
            return
        if recipients:
            rows = list(service.recipients(job_id, recipients))
            if json_:
                print_json(rows)
            else:
                for row in rows:
                    fields = [row.get("row", ""), row["email"], row["state"]]
                    if "bounce_type" in row:
                        fields += [row.get("bounce_type") or "", row.get("bounce_subtype") or "", row.get("diagnostic") or ""]
                    else:
                        fields.append(row["reason"] or "")
                    out.print("\t".join("" if f is None else str(f) for f in fields), markup=False, highlight=False)
                err.print(f"{len(rows)} recipient(s) {recipients}", markup=False)
            return
        if verify and (watch or recipients):
            raise UserError("--verify is a one-off recount", hint=f"mailctl status {job_id} --verify")
        result = service.status(job_id, verify=verify)
        if watch and not result.final:
            progress = WatchProgress(result)
            with Live(Group(progress.render(result), render_status(result)), console=err, transient=True, auto_refresh=False) as live:
                while not result.final:
                    time.sleep(interval)
                    result = service.status(job_id)
                    live.update(Group(progress.render(result), render_status(result)), refresh=True)
        if json_:
            print_json(result.to_json())
        else:
            out.print(render_status(result))
            if result.expired:
                err.print(f"warning: {result.expired} idempotency record(s) have expired: redriving this job's messages could send those recipients again", style="yellow", markup=False)
        if result.stopped:
            err.print(f"job {job_id}: not moving: {result.stopped}", style="yellow", markup=False, soft_wrap=True)
        if verify:
            _report_verify(job_id, result)

    @app.command("jobs")
    def jobs(
        ctx: typer.Context,
        json_: bool = typer.Option(False, "--json", help="A JSON list on stdout."),
    ) -> None:
        """List jobs (their manifests), newest first."""
        from mailctl.services.status import JobState

        app_ctx = app_context(ctx)
        manifests = JobState(app_ctx.clients, app_ctx.config).jobs_with_progress()
        keys = ("job_id", "name", "state", "state_reason", "created_at", "updated_at", "recipients", "done", "rejected", "suppressed", "messages")
        if json_:
            print_json([{k: m.get(k) for k in keys} for m in manifests])
            return
        if not manifests:
            err.print("no jobs", markup=False)
            return
        table = Table()
        for column in ("job", "name", "state", "created", "progress", "rejected", "messages"):
            # In a narrow terminal an id folds onto the next line rather than being cut: it is for copying.
            table.add_column(column, justify="right" if column in {"progress", "rejected", "messages"} else "left",
                             overflow="fold", no_wrap=column not in {"job", "name"})
        for m in manifests:
            recipients = int(m.get("recipients") or 0)
            progress = f"{m.get('done', 0):,}/{recipients:,}" + (f" ({100 * m.get('done', 0) / recipients:.0f}%)" if recipients else "")
            cells = [m.get("job_id"), m.get("name"), m.get("state"), m.get("created_at"), progress, m.get("rejected"), m.get("messages")]
            table.add_row(*(Text("" if v is None else str(v)) for v in cells))
        out.print(table)

