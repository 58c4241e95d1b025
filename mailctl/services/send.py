"""`mailctl send`: check a whole campaign, then enqueue it as chunks on SQS.

Two passes, so that nothing is enqueued before every row has been checked:
1. check: stream the recipient file once, check every row, and spool the accepted recipients
   (already encoded for the message contract) to a temporary file: constant memory at any size.
2. enqueue: stream the spool, cut it into chunks, pack the chunks into SendMessageBatch calls by
   count and total bytes against the queue's real limit, send them concurrently, and record each
   accepted chunk in a local checkpoint file as soon as SQS accepts it.

A job's id follows from its inputs, so the same command after a crash, Ctrl-C or network loss
resumes the same job and skips the chunks already accepted. A chunk accepted by SQS but not yet
checkpointed when the process died is sent again: harmless, because the sender is idempotent per
recipient. `--new-job` starts a new job from the same inputs.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import random
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from itertools import islice
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mailctl.attachments import RowFiles
from mailctl.aws.dynamodb import StateTable
from mailctl.aws.extended import Offloader
from mailctl.aws.s3 import S3Store
from mailctl.aws.session import Clients
from mailctl.aws.sqs import SqsQueue
from mailctl.campaign import Campaign
from mailctl.config import Config
from mailctl.errors import ConfigError, Interrupted, MailctlError, NotFound, PartialEnqueue, UserError, ValidationFailed
from mailctl.packing import Outgoing, oversized, pack
from mailctl.recipients import Checker, SeenHashes, RowProblem, encode_item, normalize_address
from mailctl.services import campaign_history
from mailctl.services.job_identity import Checkpoint, Target, job_id_for, new_nonce
from mailctl.services.job_lease import JobCancelled, Lease
from mail_sender import canary, contract, counters, guard
from mail_sender.compose import compose, load_bundle, render
from mail_sender.mime import SES_MAX_MESSAGE_BYTES, RecipientRejected
from mail_sender.templating import Rendered, TemplateProblem

MAX_PROBLEMS_KEPT = 1000
_address_hash = hash  # a seam: tests force collisions to prove they cost no recipient
SEND_ATTEMPTS = 5


# --- pass 1: check ------------------------------------------------------------------------------

@dataclass
class Problem:
    line: int
    reason: str


@dataclass
class CheckResult:
    source: str
    spool: Path
    accepted: int = 0
    spooled: int = 0  # accepted and within --limit
    rejected: int = 0
    duplicates: int = 0
    suppressed: int = 0  # on the suppression list: left out, written to the rejected file
    problems: list[Problem] = field(default_factory=list)
    duplicate_lines: list[tuple[int, int]] = field(default_factory=list)  # (line, first line)
    first_row: dict[str, Any] | None = None
    first_email: str | None = None
    spool_bytes: int = 0
    recipients_sha256: str = ""
    rejected_file: Path | None = None

    def discard(self) -> None:
        self.spool.unlink(missing_ok=True)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class _RejectedWriter:
    """Rejected rows, original columns plus a reason, streamed to a CSV."""

    def __init__(self, path: Path, columns: list[str] | None):
        self.path = path
        self.columns = columns
        self._handle = path.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._handle)
        self._wrote_header = False

    def write(self, line: int, row: dict[str, Any], reason: str) -> None:
        if not self._wrote_header:
            self.columns = self.columns or list(row.keys())
            self._writer.writerow([*self.columns, "line", "reason"])
            self._wrote_header = True
        self._writer.writerow([*(row.get(c, "") for c in self.columns), line, reason])

    def close(self) -> None:
        self._handle.close()


def check_recipients(
    campaign: Campaign,
    *,
    limit: int | None = None,
    rejected_path: Path | None = None,
    spool_dir: str | None = None,
    on_progress: Callable[[int], None] | None = None,
    suppressed: dict[str, str] | None = None,
    clients: Clients | None = None,
) -> CheckResult:
    """Pass 1. Raises ConfigError for a file that cannot be read as a whole (exit 2).

    `suppressed` (address -> reason, from services.suppression) leaves those addresses out.
    Without `clients` (a dry run) files at s3:// locations are not looked up."""
    source = campaign.open_recipients()
    name = str(campaign.path.parent / campaign.model.recipients) if not campaign.model.recipients.startswith("/") else campaign.model.recipients
    size_of = (lambda bucket, key: S3Store(clients.s3, bucket).size(key)) if clients else None
    files = campaign.files.checker(campaign.templates, size_of) if campaign.files else None
    checker = Checker(campaign.templates, campaign.model.email_column, name, max_message_bytes=SES_MAX_MESSAGE_BYTES - (files.shared_size if files else 0))
    columns = source.columns
    if columns is not None:
        checker.bind_columns(columns)
        check_row, encode = checker.check_values, checker.encode_values
    else:
        email_column = campaign.model.email_column
        check_row = lambda row: checker.check(row, True)  # noqa: E731
        encode = lambda email, row, line: encode_item(email, row, line, email_column)  # noqa: E731
    if files is not None and campaign.files.needs_rows:
        check_row = _with_files(check_row, encode, files)
    as_dict = (lambda row: dict(zip(columns, row))) if columns is not None else (lambda row: row)

    fd, spool_name = tempfile.mkstemp(prefix="mailctl-spool-", suffix=".jsonl", dir=spool_dir)
    result = CheckResult(source=name, spool=Path(spool_name))
    rejected = _RejectedWriter(rejected_path, columns) if rejected_path else None
    # Duplicates: 64-bit hashes in a flat table keep a million addresses in ~16 MB.
    # A hash hit is only a suspect; suspects are confirmed against the real addresses afterwards,
    # so a hash collision can never drop a recipient.
    seen = SeenHashes(_estimated_rows(campaign.recipients_path))
    suspects: list[tuple[int, str, str]] = []  # (line, key, encoded item)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as spool:
            write = spool.write
            # The hot loop: a million iterations, so counters are locals and attribute lookups
            # are hoisted; the first accepted row is kept apart for the plan's sample.
            accepted = spooled = count = 0
            room = limit if limit is not None else -1
            seen_add = seen.add
            for line, row, problem in source.rows:
                count += 1
                if on_progress and not count % 10000:
                    on_progress(count)
                if problem is None:
                    try:
                        email = check_row(row)
                    except RowProblem as exc:
                        problem = str(exc)
                if problem is not None:
                    result.rejected += 1
                    if len(result.problems) < MAX_PROBLEMS_KEPT:
                        result.problems.append(Problem(line, problem))
                    if rejected:
                        rejected.write(line, as_dict(row), problem)
                    continue
                if suppressed and email.lower() in suppressed:
                    result.suppressed += 1
                    if rejected:
                        rejected.write(line, as_dict(row), f"suppressed ({suppressed[email.lower()]})")
                    continue
                if not seen_add(_address_hash(email.lower())):
                    suspects.append((line, email.lower(), encode(email, row, line)))
                    continue
                if not accepted:
                    result.first_row, result.first_email = as_dict(row), email
                accepted += 1
                if spooled != room:
                    write(encode(email, row, line) + "\n")
                    spooled += 1
            result.accepted += accepted
            result.spooled += spooled
            del seen
            if suspects:
                for line, key, item in _confirm_suspects(campaign, check_row, suspects, result):
                    result.accepted += 1
                    if limit is None or result.spooled < limit:
                        write(item + "\n")
                        result.spooled += 1
            result.spool_bytes = spool.tell()
    except BaseException:
        result.discard()
        raise
    finally:
        if rejected:
            rejected.close()
            result.rejected_file = rejected_path
    if on_progress:
        on_progress(result.accepted + result.rejected + result.duplicates)
    result.recipients_sha256 = _sha256_file(campaign.recipients_path)
    return result


def _with_files(check_row: Callable[[Any], str], encode: Callable[[str, Any, int], str], files: RowFiles) -> Callable[[Any], str]:
    """`check_row`, then the row's attachments, looked at through its encoding as the sender will."""
    def check(row: Any) -> str:
        email = check_row(row)
        files.check(contract.decode_recipient(encode(email, row, 0)))
        return email
    return check


def _estimated_rows(path: Path) -> int:
    """Rows in a file, from its size and its first lines: sizes the duplicate table up front."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(1 << 16)
    lines = head.count(b"\n") or 1
    return int(size / (len(head) / lines)) + 1


def _confirm_suspects(campaign, check_row, suspects, result) -> Iterator[tuple[int, str, str]]:
    """Second look at hash hits: a true duplicate is reported, a collision is sent after all."""
    wanted = {_address_hash(key) for _, key, _ in suspects}
    first_line: dict[str, int] = {}
    for line, row, problem in campaign.open_recipients().rows:
        if problem is not None:
            continue
        try:
            email = check_row(row)
        except RowProblem:
            continue
        key = email.lower()
        if _address_hash(key) in wanted and key not in first_line:
            first_line[key] = line
    for line, key, item in suspects:
        first = first_line.get(key)
        if first is not None and first < line:
            result.duplicates += 1
            if len(result.duplicate_lines) < MAX_PROBLEMS_KEPT:
                result.duplicate_lines.append((line, first))
        else:
            yield line, key, item


# --- the job: identity, settings, what it sends ---------------------------------------------------

@dataclass
class SendOptions:
    limit: int | None = None
    to: str | None = None
    resend: bool = False
    new_job: bool = False
    job: str | None = None  # --job: resume this job
    chunk_size: int | None = None
    canary: str | None = None  # --canary N or N%


@dataclass
class JobPlan:
    """What `send` will do, decided before anything is enqueued: the plan shows it."""

    job_id: str
    target: Target
    chunk_size: int
    shards: int
    limit: int | None
    resend: bool
    recipients: int
    existing: dict[str, Any] | None = None
    history_checked: bool = True  # False in a dry run: earlier jobs live in AWS
    continues: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    left_out: int = 0
    resent: int = 0
    spool_sha256: str = ""
    resume_hint: str = ""
    test_send: bool = False
    canary: int | None = None  # recipients sent first; the rest held (mail_sender.canary)

    @property
    def messages(self) -> int:
        return -(-self.recipients // self.chunk_size)

    @property
    def already_enqueued(self) -> bool:
        return bool(self.existing) and self.existing.get("state") in contract.JOB_STATES_FULLY_ENQUEUED


def plan_job(clients: Clients | None, config: Config, campaign: Campaign, check: CheckResult, options: SendOptions) -> JobPlan:
    """Settle the job's id and settings and cut the spool to what it sends. `clients` None (a dry
    run) touches no AWS: earlier jobs of the campaign are then not looked up."""
    if options.job and (options.new_job or options.to):
        raise UserError("--job resumes an existing job; it cannot be combined with --new-job or --to")
    target = Target.of(config)
    job_id = options.job or job_id_for(campaign, check.recipients_sha256, target, limit=options.limit,
                                       to=options.to, resend=options.resend, new_job=options.new_job or bool(options.to))
    plan = JobPlan(job_id=job_id, target=target, chunk_size=options.chunk_size or config.sending.chunk_size,
                   shards=config.sending.idempotency_shards, limit=options.limit, resend=options.resend, recipients=check.spooled,
                   test_send=bool(options.to))
    resume = f"`mailctl send {campaign.path} --job {job_id}`" if (options.new_job or options.job) else "the same command again"
    plan.resume_hint = f"run {resume} to resume; chunks already on the queue are not sent again"
    if options.canary is not None and (options.to or options.job):
        raise UserError("--canary starts a new job", hint="leave out --to and --job")
    if clients is None:
        plan.history_checked = False
        plan.recipients = campaign_history.select(check.spool, None, options.limit, options.resend).recipients
        _plan_canary(plan, options)
        return plan
    SqsQueue(clients.sqs, config.queue).url  # fail fast, before the plan, if the queue cannot be reached
    table = StateTable(clients.dynamodb, config.table)
    existing = plan.existing = table.get_manifest(job_id)
    if existing is None and options.job:
        raise NotFound(f"job {job_id}: no such job in table {config.table}", hint="`mailctl jobs` lists the jobs")
    if existing is not None:
        _check_same_inputs(existing, campaign, check, options)
        if existing.get("state") == contract.JOB_STATE_CANCELLED:
            raise UserError(f"job {job_id} was cancelled", hint="its recipients not mailed yet can go out in a new job: run the same "
                            "command with --new-job (addresses this campaign already mailed are left out)")
        # Every setting that shapes the job comes from its manifest, never from this machine's config.
        plan.chunk_size = int(existing.get("chunk_size") or plan.chunk_size)
        plan.shards = int(existing.get("idempotency_shards") or 1)
        plan.limit = existing.get("limit")
        plan.resend = bool(existing.get("resend"))
        plan.recipients = int(existing.get("recipients") or 0)
        if plan.already_enqueued:
            return plan
        manifests = campaign_history.manifests_of(table, list(existing.get("continues") or []))
    elif options.to:
        manifests = []
    else:
        manifests = campaign_history.earlier_jobs(table, campaign.name, target.key, job_id)
    history = campaign_history.load(clients, config.bucket, manifests)
    selection = campaign_history.select(check.spool, history, plan.limit, plan.resend)
    plan.continues, plan.unfinished = history.jobs, history.unfinished
    plan.left_out, plan.resent, plan.recipients = selection.left_out, selection.resent, selection.recipients
    plan.spool_sha256 = _sha256_file(check.spool)
    if existing is not None and plan.spool_sha256 != existing.get("spool_sha256"):
        _restore_spool(clients, config, existing, check, plan)
    if existing is None:
        _plan_canary(plan, options)
    return plan


def _plan_canary(plan: JobPlan, options: SendOptions) -> None:
    if options.canary is None:
        return
    try:
        plan.canary = canary.size_of(options.canary, plan.recipients)
    except ValueError as exc:
        raise UserError(f"--canary: {exc}", hint="give a count (--canary 50) or a share of the list (--canary 5%)") from None
    if plan.canary >= plan.recipients:
        raise UserError(f"--canary {options.canary}: the job has only {plan.recipients:,} recipients",
                        hint="a canary is a sample: make it smaller than the list")


def _canary_manifest(spool: Path, size: int) -> dict[str, Any]:
    """The draw (mail_sender.canary), its seed recorded, and the hold on the rest."""
    seed = secrets.token_hex(8)
    with spool.open("r", encoding="utf-8") as handle:
        limit = canary.cutoff(seed, (contract.decode_recipient(line).key for line in handle if line.strip()), size)
    now = now_iso()
    return {canary.CANARY: {"seed": seed, "cutoff": str(limit), "size": size},
            contract.JOB_PAUSED_AT: now, contract.JOB_PAUSED_BY: canary.PAUSED_BY,
            contract.JOB_PAUSED_REASON: f"held for its canary of {size:,} recipients"}


def _check_same_inputs(existing: dict[str, Any], campaign: Campaign, check: CheckResult, options: SendOptions) -> None:
    """A job is resumed with the campaign it was made from. Its recipients may come from an edited
    file: a resume enqueues the job's own rows file from S3 then (see _restore_spool)."""
    inputs = existing.get("inputs") or {}
    if inputs.get("campaign_sha256") not in (None, campaign.fingerprint):
        raise UserError(f"job {existing['job_id']} was made from another version of {campaign.path} or its templates; "
                        "it can only be resumed with the same ones",
                        hint="send the edited campaign without --job: it continues the campaign, leaving out the addresses already mailed")
    if options.job and options.limit is not None and options.limit != existing.get("limit"):
        raise UserError(f"--limit {options.limit}: job {existing['job_id']} was created with --limit {existing.get('limit')}",
                        hint="leave --limit out when resuming with --job: the job keeps its own")


def _restore_spool(clients: Clients, config: Config, existing: dict[str, Any], check: CheckResult, plan: JobPlan) -> None:
    """A resume must enqueue exactly the recipients of the first run. When the earlier jobs have
    changed since then, take them from the job's own rows file in S3."""
    store = S3Store(clients.s3, existing.get("bucket") or config.bucket)
    rows_key = existing.get("rows_key")
    if not rows_key or not store.exists(rows_key):
        raise UserError(f"job {plan.job_id}: its recipients can no longer be rebuilt as its first run chose them "
                        "(the recipient file, or the earlier jobs it continues, changed) and its rows file never reached S3",
                        hint="send the campaign with --new-job: it leaves out the addresses already mailed")
    packed = store.get(rows_key)
    with gzip.open(io.BytesIO(packed), "rb") as rows, check.spool.open("wb") as spool:
        shutil.copyfileobj(rows, spool, 1 << 20)
    plan.spool_sha256 = _sha256_file(check.spool)
    plan.recipients = int(existing.get("recipients") or 0)
    plan.left_out, plan.resent = int(existing.get("left_out") or 0), int(existing.get("resent") or 0)


# --- pass 2: enqueue ----------------------------------------------------------------------------

@dataclass
class SendResult:
    job_id: str
    recipients: int
    rejected: int
    duplicates: int
    messages: int
    suppressed: int = 0
    overflowed: int = 0
    enqueued_now: int = 0
    already_enqueued: int = 0
    state: str = contract.JOB_STATE_ENQUEUED
    dry_run: bool = False
    resumed: bool = False
    left_out: int = 0
    resent: int = 0
    continues: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id, "recipients": self.recipients, "rejected": self.rejected,
            "duplicates": self.duplicates, "suppressed": self.suppressed, "messages": self.messages, "overflowed": self.overflowed,
            "enqueued_now": self.enqueued_now, "already_enqueued": self.already_enqueued,
            "state": self.state, "dry_run": self.dry_run, "resumed": self.resumed,
            "left_out": self.left_out, "resent": self.resent, "continues": self.continues,
        }


def iter_chunks(spool: Path, chunk_size: int) -> Iterator[tuple[int, list[str]]]:
    """The spool's recipients in chunks. Lines keep their newline: JSON allows it between items."""
    with spool.open("r", encoding="utf-8") as handle:
        number = 0
        while items := list(islice(handle, chunk_size)):
            yield number, items
            number += 1


def message_attributes(job_id: str, number: int) -> dict[str, dict[str, str]]:
    return {
        contract.JOB_ATTRIBUTE: {"DataType": "String", "StringValue": job_id},
        contract.CHUNK_ATTRIBUTE: {"DataType": "Number", "StringValue": str(number)},
    }


@dataclass
class Progress:
    """What the enqueue loop reports; the command renders it."""

    on_batch: Callable[[int, int, int], None] = lambda recipients, messages, overflowed: None


class Enqueuer:
    def __init__(self, clients: Clients, config: Config, job_id: str, bundle: contract.BundleRef, checkpoint: Checkpoint,
                 progress: Progress, sleep: Callable[[float], None] = time.sleep, lease: Lease | None = None,
                 resume_hint: str = "run the same command again to resume; chunks already on the queue are not sent again"):
        self.lease = lease
        self.resume_hint = resume_hint
        self.queue = SqsQueue(clients.sqs, config.queue)
        self.clients = clients
        self.config = config
        self.job_id = job_id
        self.bundle = bundle
        self.checkpoint = checkpoint
        self.progress = progress
        self.sleep = sleep
        self._offloader: Offloader | None = None
        self.overflowed = 0
        self.sent_messages = 0

    def offloader(self) -> Offloader:
        if self._offloader is None:
            self._offloader = Offloader(self.clients, self.config.bucket)
        return self._offloader

    def _send_batch(self, batch: list[Outgoing]) -> list[int]:
        """Send one batch, retrying entries SQS reports in Failed. Returns the chunks accepted;
        raises PartialEnqueue if some never are."""
        pending = {str(m.chunk): m for m in batch}
        accepted: list[int] = []
        for attempt in range(SEND_ATTEMPTS):
            ok, failed = self.queue.send_batch([m.entry() for m in pending.values()])
            for entry_id in ok:
                accepted.append(pending.pop(entry_id).chunk)
            if not pending:
                return accepted
            if any(f.get("SenderFault") for f in failed):
                reason = "; ".join(f"{f.get('Code')}: {f.get('Message', '')}" for f in failed if f.get("SenderFault"))
                self._failed_batch(accepted, pending, reason)
            self.sleep(min(0.2 * 2**attempt, 5) * (0.5 + random.random()))
        self._failed_batch(accepted, pending, "; ".join(f"{f.get('Code')}" for f in failed))
        return accepted

    def _failed_batch(self, accepted: list[int], pending: dict[str, Outgoing], reason: str) -> None:
        self.checkpoint.record(accepted)
        raise PartialEnqueue(f"chunks {', '.join(sorted(pending, key=int))} were not accepted by the queue: {reason}")

    def _send_large(self, message: Outgoing) -> list[int]:
        self.offloader().send(self.queue.url, message.body, message.attributes)
        return [message.chunk]

    def run(self, spool: Path, chunk_size: int) -> None:
        max_bytes = self.queue.max_message_size()
        self.queue.url  # resolve once, before the threads start
        concurrency = self.config.sending.concurrency
        executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="enqueue")
        in_flight: dict[Future, list[Outgoing]] = {}
        error: Exception | None = None

        def settle(futures) -> None:
            nonlocal error
            for future in futures:
                messages = in_flight.pop(future)
                try:
                    accepted = future.result()
                except Exception as exc:  # noqa: BLE001  (stop sending; the others still get checkpointed)
                    error = error or exc
                    continue
                self.checkpoint.record(accepted)
                overflowed = sum(1 for m in messages if m.size > max_bytes)
                self.overflowed += overflowed
                self.sent_messages += len(accepted)
                self.progress.on_batch(sum(m.recipients for m in messages), len(accepted), overflowed)

        def outgoing() -> Iterator[Outgoing]:
            for number, items in iter_chunks(spool, chunk_size):
                if number in self.checkpoint.done:
                    continue
                yield Outgoing(number, contract.assemble_chunk_body(self.job_id, number, self.bundle, items), message_attributes(self.job_id, number), len(items))

        def batches() -> Iterator[tuple[Callable[[], list[int]], list[Outgoing]]]:
            for batch in pack(outgoing(), max_bytes):
                if oversized(batch, max_bytes):
                    yield (lambda m=batch[0]: self._send_large(m)), batch
                else:
                    yield (lambda b=batch: self._send_batch(b)), batch

        try:
            for task, messages in batches():
                if error is not None or (self.lease is not None and self.lease.stopped):
                    break
                while len(in_flight) >= concurrency * 2:
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    settle(done)
                in_flight[executor.submit(task)] = messages
            while in_flight:
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                settle(done)
        except KeyboardInterrupt:
            # Let the calls already in flight finish and checkpoint them, so a resume skips them.
            executor.shutdown(wait=True, cancel_futures=True)
            settle([f for f in list(in_flight) if f.done() and not f.cancelled()])
            raise Interrupted(
                f"interrupted: job {self.job_id} is partly enqueued ({len(self.checkpoint.done)} chunks on the queue)",
                hint=self.resume_hint,
            ) from None
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
        if error is not None and not isinstance(error, MailctlError):
            raise error
        stopped = self.lease.stopped if self.lease is not None else None
        if stopped == "cancelled":
            raise JobCancelled(f"job {self.job_id} was cancelled while it was being enqueued ({len(self.checkpoint.done)} chunks "
                               "were on the queue); enqueueing stopped, and the sender skips its recipients not mailed yet")
        if stopped:
            raise PartialEnqueue(f"job {self.job_id}: enqueueing stopped: {stopped}", hint=f"`mailctl status {self.job_id}` shows how far it got")
        if error is not None:
            hint = self.resume_hint
            if isinstance(error, PartialEnqueue):
                raise PartialEnqueue(f"job {self.job_id}: {error.message}", hint=hint)
            raise PartialEnqueue(f"job {self.job_id} is partly enqueued: {error.message}", hint=error.hint and f"{error.hint}; then {hint}" or hint)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def prepare_test_send(check: CheckResult, to: str, email_column: str = "email") -> None:
    """`--to`: one message, the first row's data, to a test address instead of the list."""
    try:
        address = normalize_address(to.strip())
    except RowProblem as exc:
        raise UserError(f"--to: not a valid address: {exc}") from None
    if check.first_row is None:
        raise ValidationFailed(f"{check.source}: no valid recipient row to take sample data from")
    check.spool.write_text(encode_item(address, check.first_row, 0, email_column) + "\n", encoding="utf-8")
    check.spooled = 1


def render_sample(campaign: Campaign, check: CheckResult, configuration_set: str | None) -> Rendered | None:
    """The plan's sample: the job's first recipient, encoded as the chunks carry it, decoded and
    rendered as the sender will (the bundle too goes through its encoding). None if the job sends
    to nobody."""
    with check.spool.open("r", encoding="utf-8") as handle:
        item = handle.readline()
    if not item.strip():
        return None
    try:
        bundle = load_bundle(contract.decode_bundle(contract.encode_bundle(campaign.bundle(configuration_set))[0]))
    except contract.ContractError as exc:
        raise ConfigError(f"{campaign.path}: {exc}") from None
    recipient = contract.decode_recipient(item)
    try:
        compose(bundle, recipient, "sample")
        return render(bundle, recipient)
    except TemplateProblem as problem:
        raise UserError(f"{campaign.path}: {problem}", hint=f"the first recipient ({check.source}:{recipient.row}) could not be rendered") from None
    except RecipientRejected as exc:
        raise UserError(f"{check.source}:{recipient.row}: {exc}") from None


def enqueue_job(
    clients: Clients,
    config: Config,
    campaign: Campaign,
    check: CheckResult,
    plan: JobPlan,
    progress: Progress,
    clock: Callable[[], float] = time.time,
) -> SendResult:
    """Pass 2: bundle and manifest, then the chunks, under the job's lease. Resumes a job already
    partly enqueued, from what its manifest says was enqueued (and this machine's checkpoint, if it
    was written for that manifest)."""
    job_id = plan.job_id
    table = StateTable(clients.dynamodb, config.table)
    store = S3Store(clients.s3, config.bucket)
    result = SendResult(job_id=job_id, recipients=plan.recipients, rejected=check.rejected, duplicates=check.duplicates,
                        messages=plan.messages, left_out=plan.left_out, resent=plan.resent, continues=plan.continues,
                        suppressed=check.suppressed)
    if plan.already_enqueued:
        result.already_enqueued, result.resumed = plan.messages, True
        return result

    files = campaign.files.bundle_fields(config.bucket, job_id) if campaign.files else {}
    bundle_body, digest = contract.encode_bundle({**campaign.bundle(config.sending.configuration_set), **files})
    bundle = contract.BundleRef(bucket=config.bucket, key=contract.bundle_key(digest))
    # Put even when present: the bucket's lifecycle expires objects N days after their last write
    # (reads do not count), and this job's messages may live that long from now. Rewriting the
    # same few kilobytes restarts the bundle's age for every job that reuses it.
    store.put(bundle.key, bundle_body, "application/json")
    rows_key = f"jobs/{job_id}/recipients.jsonl.gz"
    if plan.existing is None:
        now = now_iso()
        table.create_manifest({
            "job_id": job_id, "name": campaign.name, "state": contract.JOB_STATE_ENQUEUEING,
            "created_at": now, "updated_at": now, "target": plan.target.key, "nonce": new_nonce(),
            "recipients": plan.recipients, "rejected": check.rejected, "duplicates": check.duplicates,
            "suppressed": check.suppressed,
            "messages": plan.messages, "chunk_size": plan.chunk_size, "idempotency_shards": plan.shards,
            # Only a new job gets counters (one that sent without them is counted from its records),
            # and only if the table streams its changes to the counters function (docs/counters.md).
            counters.MANIFEST_ATTR: counters.COUNTER_SHARDS if table.streams_changes() else None,
            "limit": plan.limit, "resend": plan.resend, "continues": plan.continues, "left_out": plan.left_out,
            "resent": plan.resent, "test_send": plan.test_send or None,
            "spool_sha256": plan.spool_sha256, "enqueued_through": 0,
            "bucket": config.bucket, "bundle_key": bundle.key, "rows_key": rows_key,
            "campaign": campaign.model.model_dump_json(by_alias=True),
            "inputs": {"campaign_sha256": campaign.fingerprint, "recipients_sha256": check.recipients_sha256},
            "campaign_file": str(campaign.path),  # for the resume command `status` prints
            guard.GUARD: thresholds.as_manifest() if (thresholds := config.guard.thresholds()) else None,
            **(_canary_manifest(check.spool, plan.canary) if plan.canary else {}),
        })  # False when an identical send created it a moment ago: the claim below settles who enqueues
    lease = Lease(table, job_id, clock=clock)
    manifest = lease.claim()
    if manifest.get("state") in contract.JOB_STATES_FULLY_ENQUEUED:
        result.already_enqueued, result.resumed = plan.messages, True
        return result

    checkpoint = Checkpoint(job_id, str(manifest.get("nonce") or ""))
    checkpoint.add_prefix(int(manifest.get("enqueued_through") or 0))
    result.resumed = bool(checkpoint.done)
    result.already_enqueued = len(checkpoint.done)
    # The rows file (what `status --export-unsent` and later jobs of the campaign read) is
    # compressed and uploaded on the other core while the chunks are enqueued; zlib and the socket
    # release the GIL.
    rows_upload = _Background(lambda: _upload_rows(store, rows_key, check.spool)) if not store.exists(rows_key) else None
    enqueuer = Enqueuer(clients, config, job_id, bundle, checkpoint, progress, lease=lease, resume_hint=plan.resume_hint)
    lease.start_heartbeat(checkpoint)
    try:
        if campaign.files:
            # Before the first chunk: no message may name a file that is not there yet.
            campaign.files.upload(store.put_file, job_id, check.spool, config.sending.concurrency)
        enqueuer.run(check.spool, plan.chunk_size)
    except BaseException:
        if rows_upload:
            rows_upload.join()  # the spool is deleted next; the enqueue error is the one to report
        try:
            lease.release(checkpoint)
        except MailctlError:
            pass  # the lease expires by itself; the checkpoint and the error's hint still say how to resume
        raise
    finally:
        lease.stop_heartbeat()
        checkpoint.close()
    if rows_upload:
        rows_upload.result()
    result.overflowed = enqueuer.overflowed
    result.enqueued_now = enqueuer.sent_messages
    lease.finish(updated_at=now_iso(), enqueued_at=now_iso(), enqueued_through=plan.messages, chunks_enqueued=len(checkpoint.done))
    return result


def _upload_rows(store: S3Store, key: str, spool: Path) -> None:
    with tempfile.NamedTemporaryFile(suffix=".jsonl.gz") as packed:
        with spool.open("rb") as raw, gzip.open(packed.name, "wb", compresslevel=1) as gz:
            shutil.copyfileobj(raw, gz, 1 << 20)
        store.put_file(key, packed.name)


class _Background:
    """Run one function on a thread; `result()` joins and re-raises its exception."""

    def __init__(self, function: Callable[[], None]):
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(function,), name="rows-upload", daemon=True)
        self._thread.start()

    def _run(self, function: Callable[[], None]) -> None:
        try:
            function()
        except BaseException as exc:  # noqa: BLE001  (re-raised in the caller's thread)
            self._error = exc

    def join(self) -> None:
        self._thread.join()

    def result(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


