"""mailctl send: check a campaign, show the plan, enqueue it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mailctl.campaign import load_campaign
from mailctl.console import confirm, err, out, print_json
from mailctl.context import app_context
from mailctl.errors import CanaryHeld, UserError, ValidationFailed
from mailctl.services import ops as ops_service
from mailctl.services import canary as canary_service
from mailctl.services import presend, send as service

SHOWN_PROBLEMS = 20


def send(
    ctx: typer.Context,
    campaign_file: Path = typer.Argument(..., metavar="CAMPAIGN.yaml", help="The campaign YAML (name, from, subject, html/text, recipients, ...).", show_default=False),
    yes: bool = typer.Option(False, "--yes", "-y", help="Enqueue without showing the plan and asking."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check every row and render a sample; touch no AWS resource."),
    limit: int = typer.Option(None, "--limit", min=1, help="Send only to the first N valid recipients.", show_default=False),
    to: str = typer.Option(None, "--to", help="Send one sample (first row's data) to this test address instead.", show_default=False),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Send the valid rows; write the rejected ones to a CSV."),
    rejected_file: Path = typer.Option(None, "--rejected-file", help="Where --skip-invalid writes rejected rows (default: <recipients>.rejected.csv).", show_default=False),
    new_job: bool = typer.Option(False, "--new-job", help="Start a new job (its id is printed) instead of resuming this one; addresses the campaign already mailed are still left out."),
    job: str = typer.Option(None, "--job", help="Resume this job (its id, as printed by send or `mailctl jobs`) with its own settings.", show_default=False),
    resend: bool = typer.Option(False, "--resend", help="Also mail addresses that earlier jobs of this campaign already mailed or enqueued."),
    chunk_size: int = typer.Option(None, "--chunk-size", min=1, max=1000, help="Recipients per SQS message (default from config).", show_default=False),
    canary: str = typer.Option(None, "--canary", metavar="N|N%", help="Send first to N recipients (or N% of them) drawn at random from the whole list; hold the rest as a paused job (`mailctl resume JOB` releases it).", show_default=False),
    canary_wait: str = typer.Option(None, "--canary-wait", metavar="DURATION", help="With --canary: wait (e.g. 30m) for the canary's outcomes (a send SES never answered is not waited for: its outcome may never come) and release the rest if its rates are within the guard's thresholds; otherwise keep it held and say why (exit 1).", show_default=False),
    over_quota: bool = typer.Option(False, "--over-quota", help="Send a job bigger than the SES 24-hour quota left (the rest waits for the rolling window)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object on stdout."),
) -> None:
    """Check a whole campaign, then enqueue it on SQS (S3 overflow for oversized messages).

    Every row is checked before anything is enqueued. Run the same command again after an
    interruption to resume the job: chunks already on the queue are not sent twice. A later job of
    the same campaign (an edited list, a larger --limit) leaves out the addresses earlier jobs
    mailed or enqueued, and the plan counts them; --resend mails them again.
    """
    app = app_context(ctx)
    campaign = load_campaign(campaign_file)
    config = app.config
    suppressed = None if dry_run or to else _suppression_list(app)
    rejected_path = None
    if skip_invalid or suppressed:
        rejected_path = rejected_file or campaign.recipients_path.with_suffix(".rejected.csv")

    with Progress(TextColumn("checking rows"), TextColumn("{task.completed:,}"), TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("check", total=None)
        check = service.check_recipients(campaign, rejected_path=rejected_path, on_progress=lambda n: bar.update(task, completed=n),
                                         suppressed=suppressed, clients=None if dry_run else app.clients)
    try:
        _report_problems(check)
        if check.rejected and not skip_invalid:
            raise ValidationFailed(
                f"{check.source}: {check.rejected:,} invalid row{'s' if check.rejected != 1 else ''}; nothing was enqueued",
                hint="fix them, or pass --skip-invalid to send the valid rows and write the rejected ones to a CSV",
            )
        if check.spooled == 0:
            raise ValidationFailed(f"{check.source}: no valid recipients; nothing to send")
        if to:
            service.prepare_test_send(check, to, campaign.model.email_column)
        if canary_wait is not None and canary is None:
            raise UserError("--canary-wait goes with --canary", hint="mailctl send CAMPAIGN.yaml --canary 50 --canary-wait 30m")
        wait_seconds = canary_service.parse_duration(canary_wait, "--canary-wait") if canary_wait is not None else None
        options = service.SendOptions(limit=limit, to=to, resend=resend, new_job=new_job, job=job, chunk_size=chunk_size, canary=canary)
        plan = service.plan_job(None if dry_run else app.clients, config, campaign, check, options)
        if plan.already_enqueued or not plan.recipients:
            result = service.enqueue_job(app.clients, config, campaign, check, plan, service.Progress()) if plan.already_enqueued else None
            _report_nothing_to_do(plan, check, as_json, result)
            return
        # The account is asked before the plan is shown: an unverified From stops here (a dry run touches no AWS).
        account = None if dry_run else presend.check_job(app.clients, campaign, config, plan.recipients, over_quota)
        _show_plan(campaign, check, config, plan, dry_run, full=dry_run or not yes, account=account)
        if dry_run:
            if as_json:
                print_json({**_summary(plan, check), "dry_run": True})
            return
        if not yes:
            confirm(f"Enqueue {plan.recipients:,} recipients as job {plan.job_id}?", no_terminal_hint="pass --yes to send, or --dry-run to check only")
        if ops_service.sending_paused(config, app.clients):
            err.print("warning: the sender is paused (`mailctl pause`): these messages wait in the queue until `mailctl resume`", markup=False, soft_wrap=True)
        result = _enqueue(app, campaign, check, plan, as_json)
    finally:
        check.discard()

    release = None
    if plan.canary:
        err.print(f"canary: {plan.canary:,} recipients drawn at random from the whole list go first; the other "
                  f"{plan.recipients - plan.canary:,} are held (`mailctl resume {result.job_id}` releases them)", markup=False, soft_wrap=True)
        if wait_seconds is not None:
            release = canary_service.wait_and_release(app.config, app.clients, result.job_id, wait_seconds)
    if as_json:
        print_json({**result.as_dict(), "account": account.as_dict(), "canary": plan.canary,
                    "canary_release": release.as_dict() if release else None})
    elif result.already_enqueued == result.messages and not result.enqueued_now:
        out.print(result.job_id)
        err.print(f"job {result.job_id} was already enqueued in full; nothing sent again", markup=False)
    else:
        out.print(result.job_id)
        err.print(
            f"enqueued job [bold]{result.job_id}[/]: {result.recipients:,} recipients in {result.messages:,} messages"
            f" ({result.overflowed} through S3); follow it with: mailctl status {result.job_id}"
        )
    if release is not None:
        if not release.released:
            raise CanaryHeld(f"job {result.job_id} stays held: {release.reason}",
                             hint=f"look at `mailctl status {result.job_id}`; `mailctl resume {result.job_id}` releases it anyway")
        err.print(f"released the rest of job {result.job_id}: {release.reason}", markup=False, soft_wrap=True)


def _suppression_list(app) -> dict[str, str]:
    from mailctl.services.suppression import SuppressionList

    return SuppressionList(app.clients, app.config).for_send(app.config.queue)


def _report_nothing_to_do(plan: service.JobPlan, check: service.CheckResult, as_json: bool, result: service.SendResult | None) -> None:
    if as_json:
        print_json(result.as_dict() if result else {**_summary(plan, check), "dry_run": not plan.history_checked})
        return
    if result is not None:
        out.print(plan.job_id)
        err.print(f"job {plan.job_id} was already enqueued in full; nothing sent again", markup=False)
    else:
        err.print(f"nothing to send: all {plan.left_out:,} recipients were already mailed or enqueued by earlier jobs of this campaign "
                  f"({', '.join(plan.continues)}); pass --resend to mail them again", markup=False, soft_wrap=True)


def _summary(plan: service.JobPlan, check: service.CheckResult) -> dict:
    return {
        "job_id": plan.job_id, "recipients": plan.recipients, "rejected": check.rejected, "duplicates": check.duplicates,
        "suppressed": check.suppressed, "messages": plan.messages, "bytes": check.spool.stat().st_size, "left_out": plan.left_out, "resent": plan.resent,
        "continues": plan.continues, "target": plan.target.describe(),
    }


def _report_problems(check: service.CheckResult) -> None:
    for problem in check.problems[:SHOWN_PROBLEMS]:
        err.print(f"{check.source}:{problem.line}: {problem.reason}", markup=False, soft_wrap=True)
    if check.rejected > SHOWN_PROBLEMS:
        more = check.rejected - SHOWN_PROBLEMS
        where = f"; all of them are in {check.rejected_file}" if check.rejected_file else ""
        err.print(f"... and {more:,} more invalid row{'s' if more != 1 else ''}{where}", markup=False, soft_wrap=True)
    elif check.rejected_file and check.rejected:
        err.print(f"rejected rows written to {check.rejected_file}", markup=False, soft_wrap=True)
    if check.suppressed:
        err.print(f"{check.suppressed:,} address{'es' if check.suppressed != 1 else ''} on the suppression list left out; "
                  f"listed with the reason in {check.rejected_file}", markup=False, soft_wrap=True)
    for line, first in check.duplicate_lines[:SHOWN_PROBLEMS]:
        err.print(f"{check.source}:{line}: duplicate of line {first}; sent once", markup=False, soft_wrap=True)
    if check.duplicates > SHOWN_PROBLEMS:
        err.print(f"... and {check.duplicates - SHOWN_PROBLEMS:,} more duplicates", markup=False)


def _show_plan(campaign, check: service.CheckResult, config, plan: service.JobPlan, dry_run: bool, full: bool,
               account: presend.AccountPlan | None) -> None:
    rendered = service.render_sample(campaign, check, config.sending.configuration_set)
    table = Table(title=f"{'dry run: ' if dry_run else ''}plan for {campaign.name}", show_header=False, title_justify="left")
    table.add_row("job", plan.job_id + (" (resumed)" if plan.existing else ""))
    table.add_row("recipients", f"{plan.recipients:,}" + (f" (limit {plan.limit:,})" if plan.limit is not None else ""))
    table.add_row("rejected / duplicates", f"{check.rejected:,} / {check.duplicates:,}")
    table.add_row("suppressed", f"{check.suppressed:,} left out" if not dry_run else "not checked in a dry run")
    if not plan.history_checked:
        table.add_row("mailed before", "not checked in a dry run (earlier jobs of the campaign are in AWS)")
    elif plan.continues:
        table.add_row("left out", f"{plan.left_out:,} already mailed or enqueued by earlier jobs: {', '.join(plan.continues)}")
    if plan.resend:
        table.add_row("mailed again", f"{plan.resent:,} (--resend)")
    table.add_row("messages", f"{plan.messages:,} of up to {plan.chunk_size} recipients")
    table.add_row("bytes", f"{check.spool.stat().st_size / 1048576:,.1f} MiB of recipient data")
    table.add_row("queue", plan.target.describe())
    if campaign.files:
        table.add_row("attachments", campaign.files.describe() + (" (s3:// files not looked up in a dry run)" if dry_run and campaign.files.needs_s3 else ""))
    for label, text in account.plan_rows() if account else []:
        table.add_row(label, text)
    if rendered is not None:
        table.add_row("sample subject", rendered.subject)
        body = rendered.text or rendered.html or ""
        table.add_row("sample body", body[:400] + ("…" if len(body) > 400 else ""))
    if full:
        err.print(table)
    else:
        estimate = account.estimated_seconds if account else None
        err.print(f"job {plan.job_id}: {plan.recipients:,} recipients in {plan.messages:,} messages to {plan.target.describe()}"
                  + (f"; {plan.left_out:,} left out, already mailed or enqueued by {', '.join(plan.continues)}" if plan.left_out else "")
                  + (f"; about {presend.duration(estimate)} at the SES account's rate" if estimate is not None else ""),
                  markup=False, soft_wrap=True)
    for unfinished in plan.unfinished:
        err.print(f"warning: earlier job {unfinished} of this campaign is not fully enqueued; its recipients are left out here: "
                  f"resume it with `mailctl send {campaign.path} --job {unfinished}` (with its own recipient file)", markup=False, soft_wrap=True)


def _enqueue(app, campaign, check: service.CheckResult, plan: service.JobPlan, as_json: bool) -> service.SendResult:
    columns = [
        TextColumn("enqueueing"), BarColumn(), MofNCompleteColumn(), TextColumn("recipients"),
        TextColumn("{task.fields[messages]:,} messages, {task.fields[overflowed]} via S3"),
        TextColumn("{task.fields[speed_text]}"), TimeElapsedColumn(),
    ]
    with Progress(*columns, console=err, disable=not err.is_terminal) as bar:
        task = bar.add_task("enqueue", total=plan.recipients, messages=0, overflowed=0, speed_text="")
        counts = {"messages": 0, "overflowed": 0}

        def on_batch(recipients: int, messages: int, overflowed: int) -> None:
            counts["messages"] += messages
            counts["overflowed"] += overflowed
            bar.update(task, advance=recipients, messages=counts["messages"], overflowed=counts["overflowed"])
            speed = bar.tasks[0].speed
            bar.update(task, speed_text=f"{speed:,.0f}/s" if speed else "")

        return service.enqueue_job(app.clients, app.config, campaign, check, plan, service.Progress(on_batch=on_batch))


def register(app: typer.Typer) -> None:
    app.command("send")(send)
