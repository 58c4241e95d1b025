"""mailctl commands: local (the stack on one machine: moto + the local worker)."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import typer

from mailctl.config import LOCAL_PORT
from mailctl.local.ses_account import DEFAULT_MAX_24_HOUR_SEND, DEFAULT_MAX_SEND_RATE
from mailctl.console import err
from mailctl.context import app_context
from mailctl.errors import OperationalError

local_app = typer.Typer(
    help="Run the system on this machine: moto stands in for AWS, a worker for the Lambda event source mapping.",
    no_args_is_help=True,
)


def _log(message: str) -> None:
    err.print(message, markup=False, highlight=False, soft_wrap=True)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM end the run through `stop`, so threads and the server shut down in order."""
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _require_local_extra() -> None:
    """moto (the stand-in for AWS) is an optional dependency: an operator of a real deployment never needs it."""
    import importlib.util

    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        raise OperationalError("mailctl local up needs moto[server], which is not installed",
                               hint="pip install 'mailctl[local]' (or 'mailctl[dev]' for the test suite too)")


@local_app.command("up")
def up(
    ctx: typer.Context,
    port: int = typer.Option(LOCAL_PORT, "--port", min=1, max=65535, help="Loopback port for the moto server."),
    no_worker: bool = typer.Option(False, "--no-worker", help="Do not run the worker (run `mailctl local worker` yourself)."),
    outbox: Path = typer.Option(Path("outbox"), "--outbox", help="Folder where the worker writes every sent mail as .eml."),
    ses_rate: float = typer.Option(DEFAULT_MAX_SEND_RATE, "--ses-rate", min=0.01, metavar="PER_SECOND", help="The SES account's MaxSendRate (recipients per second; a new sandbox account has 1, production 14)."),
    ses_quota: float = typer.Option(DEFAULT_MAX_24_HOUR_SEND, "--ses-quota", min=1, metavar="PER_24_HOURS", help="The SES account's Max24HourSend, a rolling 24-hour window (sandbox: 200)."),
    sandbox: bool = typer.Option(False, "--sandbox", help="Play a sandbox account: every recipient must be verified (or the mailbox simulator)."),
    verify: list[str] = typer.Option([], "--verify", metavar="IDENTITY", help="Also verify this address or domain (repeatable; example.com and example.jp always are)."),
) -> None:
    """Start moto on 127.0.0.1, create the queue, DLQ, bucket, table, SES identities and the sender's
    function record, run the worker, and serve until Ctrl-C. SES answers as an account with the
    --ses-* limits would (throttling, daily quota, unverified identities)."""
    _require_local_extra()
    from mailctl.local.ses_front import AccountOptions
    from mailctl.local.stack import LocalStack, shell_environment

    config = app_context(ctx).config
    outbox_dir = None
    if not no_worker:
        outbox.mkdir(parents=True, exist_ok=True)
        outbox_dir = str(outbox.resolve())
    ses = AccountOptions(max_send_rate=ses_rate, max_24_hour_send=ses_quota, sandbox=sandbox, verify=tuple(verify))
    stack = LocalStack(config, port=port, worker=not no_worker, outbox=outbox_dir, log=_log, ses=ses)
    stop = threading.Event()
    data = sys.stdout
    # The sender logs to stdout (CloudWatch Logs, on AWS); here that is diagnostics, so stderr, and
    # stdout carries only the environment. (Its logger binds the stream when the handler is imported.)
    with redirect_stdout(sys.stderr), _stop_on_signals(stop):
        provisioned = stack.start()
        try:
            _log(f"local stack ready on {stack.endpoint}: queue {provisioned.queue_url.rsplit('/', 1)[-1]}, "
                 f"DLQ {provisioned.dlq_url.rsplit('/', 1)[-1]}, bucket {provisioned.bucket}, table {provisioned.table}")
            _log(f"SES: {ses_rate:g}/s, {ses_quota:,.0f} per 24 hours, {'sandbox' if sandbox else 'production'}; "
                 f"verified: {', '.join(sorted(stack.ses_front.account.identities))}")
            _log(f"worker: {'running' if not no_worker else 'not running (--no-worker)'}"
                 + (f"; outbox {outbox_dir}" if outbox_dir else ""))
            _log("in another shell:")
            # The environment is data (a person may paste it, a script may read it): stdout.
            for name, value in shell_environment(stack.endpoint, stack.config):
                data.write(f"export {name}={value}\n")
            data.flush()
            _log("Ctrl-C stops the stack (its state lives in memory and goes with it)")
            stack.wait(stop)
            _log("stopping")
        finally:
            stack.stop()
    if stack.stats is not None:
        _log(f"worker: {stack.stats.summary()}")


@local_app.command("worker")
def worker(
    ctx: typer.Context,
    until_empty: bool = typer.Option(False, "--until-empty", help="Return once the queue has no visible, in-flight or delayed message."),
    outbox: Path = typer.Option(None, "--outbox", help="Also write every sent mail as .eml into this folder."),
) -> None:
    """Play the Lambda event source mapping against the config's queue: poll, invoke the sender's
    handler in-process with Lambda's event shape, delete what succeeded."""
    from mailctl.local.worker import LocalWorker

    clients = app_context(ctx).clients
    outbox_dir = None
    if outbox is not None:
        outbox.mkdir(parents=True, exist_ok=True)
        outbox_dir = str(outbox.resolve())
    local_worker = LocalWorker(clients, outbox=outbox_dir, log=_log)
    stop = threading.Event()
    config = clients.config
    _log(f"worker: queue {config.queue}, batch size {config.sender.batch_size}, "
         f"{config.sender.max_concurrency} concurrent invocation(s)" + (f", outbox {outbox_dir}" if outbox_dir else ""))
    # The sender's logs (stdout on Lambda) are diagnostics here: stderr.
    with redirect_stdout(sys.stderr), _stop_on_signals(stop):
        stats = local_worker.run(stop, until_empty=until_empty)
    _log(f"worker: {stats.summary()}")


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the root app."""
    app.add_typer(local_app, name="local")
