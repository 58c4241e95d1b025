"""mailctl cancel, pause, resume, doctor: operating the deployed system."""

from __future__ import annotations

import typer
from rich.text import Text

from mailctl.console import confirm, err, out, print_json
from mailctl.context import app_context
from mailctl.services import doctor as doctor_service
from mailctl.errors import UserError
from mailctl.services import job_pause
from mailctl.services import ops as service

_STYLE = {doctor_service.OK: "green", doctor_service.WARNING: "yellow", doctor_service.PROBLEM: "bold red"}


def cancel(
    ctx: typer.Context,
    job_id: str = typer.Argument(..., metavar="JOB", help="The job to cancel (see `mailctl jobs`).", show_default=False),
    yes: bool = typer.Option(False, "--yes", "-y", help="Cancel without asking."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object on stdout."),
) -> None:
    """Cancel a job: the sender skips its recipients not sent yet; `mailctl status` counts them as skipped.

    It takes effect within about 2 seconds, even in the middle of a chunk: the sender reads the
    job's state again before each send once its copy is 2 s old, and a `send` still enqueueing the
    job stops within its 2 s heartbeat. Mail already sent stays sent. The job's messages still flow
    through the queue (and are acknowledged without sending), so the queue drains normally.
    """
    app = app_context(ctx)
    job = service.get_job(app.config, app.clients, job_id)
    if not yes:
        recipients = int(job.get("recipients") or 0)
        name = job.get("name") or job_id
        confirm(f"Cancel job {job_id} ({name}, {recipients:,} recipients, state {job.get('state')})?", no_terminal_hint="pass --yes to cancel")
    result = service.cancel_job(app.config, app.clients, job_id)
    if as_json:
        print_json(result.as_dict())
    elif result.already_cancelled:
        out.print(f"job {job_id} was already cancelled", markup=False)
    elif result.left_to_skip:
        out.print(f"job {job_id}: cancelled (was {result.previous_state}); its {result.left_to_skip:,} recipient(s) not sent yet will be skipped", markup=False)
    elif result.sent == result.recipients:
        out.print(f"job {job_id}: cancelled (was {result.previous_state}); nothing left to skip: all {result.recipients:,} recipients were already sent", markup=False)
    else:
        out.print(f"job {job_id}: cancelled (was {result.previous_state}); nothing left to skip: every recipient already has an outcome (`mailctl status {job_id}`)", markup=False)


def _switch(ctx: typer.Context, enabled: bool, as_json: bool) -> None:
    app = app_context(ctx)
    result = service.set_sending(app.config, app.clients, enabled)
    if as_json:
        print_json(result.as_dict())
        return
    verb = "resumed" if enabled else "paused"
    out.print(f"{verb}: event source mapping {result.mapping_uuid} ({result.queue} -> {result.function}) is {result.state}", markup=False)
    if not enabled:
        err.print(
            "messages wait in the queue while paused, and still age towards its retention; `mailctl resume` to send again",
            markup=False,
        )


_JOB_HELP = "One job only (see `mailctl jobs`); without it, the switch for every job."


def pause(
    ctx: typer.Context,
    job_id: str = typer.Argument(None, metavar="[JOB]", help=_JOB_HELP, show_default=False),
    reason: str = typer.Option(None, "--reason", help="Why (a job's pause only): shown by status and jobs.", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object on stdout."),
) -> None:
    """Stop sending: disable the sender's event source mapping (the local worker obeys it too), or pause one job.

    A paused job's messages wait in the queue, held back by the sender (no retries burnt, no DLQ),
    while other jobs keep sending; a pause bites within about 2 s, even in the middle of a chunk.
    """
    if job_id is None:
        if reason:
            raise UserError("--reason is for one job's pause", hint="mailctl pause JOB --reason '...'")
        _switch(ctx, False, as_json)
        return
    app = app_context(ctx)
    _report_pause(job_pause.pause_job(app.config, app.clients, job_id, by=job_pause.operator(), reason=reason), as_json)


def resume(
    ctx: typer.Context,
    job_id: str = typer.Argument(None, metavar="[JOB]", help=_JOB_HELP, show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object on stdout."),
) -> None:
    """Send again: enable the sender's event source mapping, or resume one paused job.

    A job the guard paused stays resumed: the guard respects the override until its thresholds change.
    """
    if job_id is None:
        _switch(ctx, True, as_json)
        return
    app = app_context(ctx)
    _report_pause(job_pause.resume_job(app.config, app.clients, job_id, by=job_pause.operator()), as_json)


def _report_pause(result: job_pause.PauseResult, as_json: bool) -> None:
    if as_json:
        print_json(result.as_dict())
    elif result.paused:
        out.print(f"job {result.job_id}: {'paused' if result.changed else 'already paused'} by {result.by} at {result.at}"
                  + (f": {result.reason}" if result.reason else ""), markup=False)
        if result.changed:
            err.print(f"its messages wait in the queue (held back by the sender, no retries burnt); `mailctl resume {result.job_id}` sends the rest",
                      markup=False, soft_wrap=True)
    elif result.changed:
        out.print(f"job {result.job_id}: resumed by {result.by} at {result.at}; its waiting messages are sent within about 5 minutes", markup=False)
    else:
        out.print(f"job {result.job_id} is not paused; nothing to resume", markup=False)


def doctor(
    ctx: typer.Context,
    identity: list[str] = typer.Option(None, "--identity", help="A sender address or domain to check in SES (repeatable; default: the newest jobs' From).", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of {check, status, detail, fix} on stdout."),
) -> None:
    """Check the deployed resources against what production needs; exit 1 on any problem.

    Reads the queue, DLQ, function, event source mapping, bucket, table and SES account, and prints
    one line per check: ok, warning, or problem with its fix.
    """
    app = app_context(ctx)
    checks = doctor_service.run_doctor(app.config, app.clients, identities=identity or None)
    if as_json:
        print_json([c.as_dict() for c in checks])
    else:
        width = max(len(c.check) for c in checks)
        for check in checks:
            out.print(Text.assemble((f"{check.status:<8}", _STYLE[check.status]), f"{check.check:<{width}}  ", check.detail))
            if check.fix and check.status != doctor_service.OK:
                out.print(Text.assemble(" " * (8 + width + 2), ("fix: ", "bold"), check.fix))
        counts = {s: sum(1 for c in checks if c.status == s) for s in _STYLE}
        err.print(
            f"{counts['ok']} ok, {counts['warning']} warning{'s' if counts['warning'] != 1 else ''}, "
            f"{counts['problem']} problem{'s' if counts['problem'] != 1 else ''}",
            markup=False,
        )
    if doctor_service.has_problems(checks):
        raise doctor_service.DoctorFoundProblems(checks)


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the root app."""
    app.command("cancel")(cancel)
    app.command("pause")(pause)
    app.command("resume")(resume)
    app.command("doctor")(doctor)
