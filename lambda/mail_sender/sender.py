"""The sending logic: one SQS record (a chunk of one job's recipients) in, mail out through SES.

Failure classes (SES refusals are classed in failures.py, by what SES means):
- poison: the body or its bundle cannot be read or decoded. The record fails on every delivery and
  reaches the DLQ; the reason is recorded under pk="failures", sk=<messageId>.
- retryable: SES 5xx or no connection, DynamoDB/S3 trouble, a recipient another invocation is
  sending, running out of time. The record fails; redelivery sends only the recipients not yet
  done, because each recipient's send is idempotent (Powertools) on job id + address, never on the
  messageId.
- rate, quota, account: SES throttled, the 24-hour quota is used up, or the account cannot send
  (From or MAIL FROM identity not verified, configuration set missing, access denied, suspended,
  paused). No recipient is blamed; the invocation stops starting sends, and the record waits with a
  growing backoff (backoff.py) instead of marching to the DLQ; the job's manifest says what it
  waits for and until when.
- permanent, per recipient: SES refused this recipient or message (in the sandbox an unverified
  recipient), the template cannot render for that row, a header would carry CR/LF. Recorded
  COMPLETED with outcome "failed" and the reason; never retried.
- unknown: SES may have accepted the mail but did not answer (read timeout). Recorded COMPLETED
  with outcome "unknown": never sent again on the sender's own; `mailctl status` lists them.

Sends are paced across every invocation to the account's rate (pacing.py), and start only when the
invocation has time for the SES call's worst case (connect + read timeout, no botocore retries).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
)

from mail_sender import failures
from mail_sender.aws import ClientFactory
from mail_sender.backoff import PAUSED, RETRYABLE, Backoff
from mail_sender.contract import (
    CHUNK_ATTRIBUTE,
    IDEMPOTENCY_KEY_PREFIX,
    JOB_ATTRIBUTE,
    JOB_TAG,
    BundleRef,
    Chunk,
    ContractError,
    Recipient,
    decode_bundle,
    decode_chunk,
    idempotency_data,
    job_partition,
    parse_pointer,
    shard_of,
)
from mail_sender.addresses import AddressProblem
from mail_sender.attachments import Fetcher, FileRefused
from mail_sender.compose import LoadedBundle, compose, load_bundle, render_context
from mail_sender.mime import RecipientRejected
from mail_sender.payloads import PayloadMissing, PayloadStore, PayloadUnavailable
from mail_sender.failures import ACCOUNT, QUOTA, RATE, SendFailure
from mail_sender.pacing import AccountRate, Pacer
from mail_sender.queue import RecordQueue
from mail_sender.ses import SesAdapter
from mail_sender.settings import Settings
from mail_sender.state import JobInfo, StateStore, StateUnavailable
from mail_sender.templating import TemplateProblem

# Stop starting sends when the invocation has less than this left beyond the SES call's worst case:
# a send cut off by the timeout leaves an INPROGRESS record (harmless thanks to
# register_lambda_context, but the mail's fate is then unknown), while one never started is simply
# sent on redelivery.
TIME_MARGIN_MS = 1000
BUNDLE_CACHE_SIZE = 32
PARTITION_CACHE_SIZE = 256

POISON = "poison"
UNEXPECTED = "unexpected"
# The kinds a record waits out (backoff.py) rather than failing toward the DLQ.
WAITING_KINDS = frozenset({RETRYABLE, RATE, QUOTA, ACCOUNT, PAUSED})
# The SES failures that halt the rest of the invocation and make the job wait, strongest first.
HALT_ORDER = (ACCOUNT, QUOTA, RATE)
HALT_PRIORITY = (*HALT_ORDER, RETRYABLE)  # RETRYABLE: SES stopped answering

_EMAIL = re.compile(r"([A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*@([A-Za-z0-9.\-]+\.[A-Za-z]{2,})")


def mask_email(email: str) -> str:
    """What logs show of an address: enough to recognise, not the address."""
    local, _, domain = email.strip().partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def scrub(text: str) -> str:
    """Mask every address inside free text (SES error messages quote the recipient)."""
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)


class RecordFailed(Exception):
    """The SQS record must fail: SQS redelivers it, or moves it to the DLQ after maxReceiveCount."""

    def __init__(self, reason: str, kind: str):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class Deferred(Exception):
    """A recipient not attempted in this invocation; the redelivery will."""

    def __init__(self, reason: str, kind: str = RETRYABLE):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


@dataclass
class Counts:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    duplicates_skipped: int = 0
    throttled: int = 0
    unknown: int = 0
    not_sent: int = 0

    def add(self, other: Counts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class Invocation:
    """What lives for one Lambda invocation: its clock budget, pacer, counts and halt flag."""

    def __init__(self, context: Any, pacer: Pacer, clock: Callable[[], float], send_worst_case_ms: float = 0.0):
        self.context = context
        self.pacer = pacer
        self._clock = clock
        self._reserve_ms = TIME_MARGIN_MS + send_worst_case_ms
        self.counts = Counts()
        self._halt: tuple[str, str] | None = None
        self._lock = threading.Lock()

    def remaining_ms(self) -> float | None:
        get = getattr(self.context, "get_remaining_time_in_millis", None)
        return float(get()) if callable(get) else None

    def out_of_time(self) -> bool:
        remaining = self.remaining_ms()
        return remaining is not None and remaining < self._reserve_ms

    def send_deadline(self) -> float | None:
        """The latest time (wall clock) a send may start and still finish before the timeout."""
        remaining = self.remaining_ms()
        return None if remaining is None else self._clock() + (remaining - self._reserve_ms) / 1000

    def halt(self, kind: str, reason: str) -> None:
        """Stop starting sends for the rest of this invocation (throttled, quota, account stopped)."""
        with self._lock:
            if self._halt is None or HALT_PRIORITY.index(kind) < HALT_PRIORITY.index(self._halt[0]):
                self._halt = (kind, reason)

    @property
    def halted(self) -> tuple[str, str] | None:
        return self._halt


@dataclass
class Envelope:
    message_id: str
    receive_count: int
    job_id: str | None = None
    chunk: int | None = None


def _outcome(outcome: str, recipient: Recipient, at: float, reason: str | None = None, ses_message_id: str | None = None) -> dict[str, Any]:
    return {
        "outcome": outcome,
        "email": recipient.email,
        "row": recipient.row,
        "reason": reason,
        "ses_message_id": ses_message_id,
        "at": at,
    }


def _mark_replayed(response: Any, record: Any) -> Any:
    """Powertools calls this only for a response replayed from the table: a recipient already done."""
    if isinstance(response, dict):
        return {**response, "replayed": True}
    return {"outcome": None, "replayed": True}


def _safe_name(value: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", value).strip(".")
    return cleaned or "_"


class Sender:
    """Lives for the container: settings, adapters, the bundle and idempotency caches, the pool."""

    def __init__(
        self,
        settings: Settings,
        *,
        ses: SesAdapter | None = None,
        payloads: PayloadStore | None = None,
        state: StateStore | None = None,
        queue: RecordQueue | None = None,
        logger: Any = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = settings
        factory = ClientFactory(max_pool_connections=max(10, settings.send_concurrency + 4), region=settings.region,
                                ses_timeouts=(settings.ses_connect_timeout, settings.ses_read_timeout))
        self.ses = ses or SesAdapter(factory=factory)
        self.payloads = payloads or PayloadStore(factory=factory)
        self.state = state or StateStore(settings.table, factory=factory)
        self.queue = queue or RecordQueue(factory=factory)
        self.files = Fetcher(self.payloads.get)
        self.log = logger or logging.getLogger(__name__)
        self.account_rate = AccountRate(self.ses, settings.rate_per_second, monotonic=monotonic, log=self.log)
        self.backoff = Backoff(self.queue, settings.max_backoff_seconds, clock=clock, log=self.log)
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self.idempotency_config = IdempotencyConfig(
            expires_after_seconds=settings.idempotency_expiry_seconds,
            response_hook=_mark_replayed,
        )
        self._bundles: OrderedDict[tuple[str, str], LoadedBundle] = OrderedDict()
        self._functions: OrderedDict[str, Callable[..., dict[str, Any]]] = OrderedDict()
        self._pool: ThreadPoolExecutor | None = None
        self._pacer: Pacer | None = None

    # --- per invocation ---------------------------------------------------------------------------

    def begin(self, context: Any) -> Invocation:
        # Without the context Powertools cannot stamp in_progress_expiration, and a timed-out
        # invocation's INPROGRESS records would block every retry until they expire (days).
        if callable(getattr(context, "get_remaining_time_in_millis", None)):
            self.idempotency_config.register_lambda_context(context)
        else:
            self.idempotency_config.lambda_context = None
        rate = self.account_rate.per_second()
        if self._pacer is None or self._pacer.rate != rate:
            self._pacer = Pacer(self.state, rate, scope=self.settings.region or "default",
                                clock=self._clock, sleep=self._sleep, log=self.log)
        pacer = self._pacer
        worst_case_ms = (self.settings.ses_connect_timeout + self.settings.ses_read_timeout) * 1000
        return Invocation(context, pacer, self._clock, worst_case_ms)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    # --- per record ----------------------------------------------------------------------------------

    def process(self, record: Any, invocation: Invocation) -> dict[str, Any]:
        """Send one SQS record's recipients. Returns its counts; raises RecordFailed to fail it."""
        envelope = self._envelope(record)
        try:
            counts = self._process(envelope, record.body, invocation)
        except RecordFailed as failed:
            self._log_failure(envelope, failed)
            self._record_failure(envelope, failed)
            if failed.kind in WAITING_KINDS and self._wait(record, envelope, failed):
                self._forget_failure(envelope)  # the original is gone; its copy explains itself
                return {"job_id": envelope.job_id, "chunk": envelope.chunk, "requeued": True}
            raise
        except Exception as exc:  # a bug, or an error nobody classified: still explain the failure
            self.log.exception("unexpected error processing a record", extra={"job_id": envelope.job_id, "message_id": envelope.message_id})
            failed = RecordFailed(f"unexpected {type(exc).__name__}: {exc}", UNEXPECTED)
            self._record_failure(envelope, failed)
            raise failed from exc
        if envelope.receive_count > 1:
            # It failed before, so a reason may be on record; it no longer explains anything.
            self._forget_failure(envelope)
        return {"job_id": envelope.job_id, "chunk": envelope.chunk, **counts.as_dict()}

    def _envelope(self, record: Any) -> Envelope:
        try:
            receive_count = int(record.attributes.approximate_receive_count or 1)
        except (TypeError, ValueError, KeyError):
            receive_count = 1
        attributes = record.message_attributes
        job_attr = attributes[JOB_ATTRIBUTE]
        chunk_attr = attributes[CHUNK_ATTRIBUTE]
        chunk = None
        if chunk_attr is not None and chunk_attr.string_value:
            try:
                chunk = int(chunk_attr.string_value)
            except ValueError:
                chunk = None
        return Envelope(
            message_id=record.message_id,
            receive_count=receive_count,
            job_id=job_attr.string_value if job_attr is not None else None,
            chunk=chunk,
        )

    def _process(self, envelope: Envelope, body: str, invocation: Invocation) -> Counts:
        halted = invocation.halted
        if halted is not None:
            raise RecordFailed(f"not attempted: {halted[1]}", halted[0])
        chunk = self._load_chunk(body)
        envelope.job_id, envelope.chunk = chunk.job_id, chunk.chunk
        bundle = self._bundle(chunk.bundle)
        try:
            job = self.state.job(chunk.job_id)
        except StateUnavailable as exc:
            raise RecordFailed(str(exc), RETRYABLE) from None
        if job.paused and not job.holding_for_canary:
            raise RecordFailed(f"job paused by {job.paused_by}", PAUSED)

        counts = Counts()
        seen: set[str] = set()
        unique: list[Recipient] = []
        for recipient in chunk.recipients:
            if recipient.key in seen:
                counts.duplicates_skipped += 1  # the same address twice in one chunk: one mail
                continue
            seen.add(recipient.key)
            unique.append(recipient)

        try:
            # Listed after the job was enqueued (a bounce or complaint from an earlier job, an
            # operator's `suppression add`): skipped, never sent.
            suppressed = frozenset(self.state.suppressed([r.email for r in unique])) if unique and not job.cancelled else frozenset()
        except StateUnavailable as exc:
            raise RecordFailed(str(exc), RETRYABLE) from None

        problems: dict[str, list[str]] = {}
        if job.holding_for_canary:
            # The rest of a job held for its canary waits untouched: no idempotency record written.
            held = [r for r in unique if not job.sends(r.key)]
            if held:
                problems[PAUSED] = ["deferred (held for the job's canary)"] * len(held)
                unique = [r for r in unique if job.sends(r.key)]
        pool = self._executor()
        # The idempotent functions are looked up here, in one thread, so the cache needs no lock.
        futures = [
            pool.submit(self._deliver, self._idempotent(self._partition(chunk.job_id, r, job)), invocation, chunk, bundle, job, r, suppressed)
            for r in unique
        ]
        for recipient, future in zip(unique, futures):
            try:
                result = future.result()
            except Deferred as exc:
                problems.setdefault(exc.kind, []).append(f"deferred ({exc.reason})")
            except SendFailure as exc:
                counts.throttled += exc.kind == RATE
                problems.setdefault(RETRYABLE if exc.kind == failures.TRANSIENT else exc.kind, []).append(exc.reason)
            except IdempotencyAlreadyInProgressError:
                problems.setdefault(RETRYABLE, []).append("being sent by another invocation")
            except IdempotencyPersistenceLayerError as exc:
                problems.setdefault(RETRYABLE, []).append(f"idempotency store: {exc}")
            except Exception as exc:  # a bug: fail the record (it will retry), keep the others going
                self.log.exception("unexpected error sending to a recipient", extra={"job_id": chunk.job_id, "chunk": chunk.chunk, "recipient": mask_email(recipient.email)})
                problems.setdefault(UNEXPECTED, []).append(f"unexpected {type(exc).__name__}: {exc}")
            else:
                self._count(counts, result, chunk, recipient)
        counts.not_sent = sum(len(v) for v in problems.values())
        invocation.counts.add(counts)

        self.log.info(
            "chunk processed",
            extra={"job_id": chunk.job_id, "chunk": chunk.chunk, "message_id": envelope.message_id,
                   "receive_count": envelope.receive_count, "recipients": len(chunk.recipients), **counts.as_dict()},
        )
        if counts.sent:
            self._no_longer_waiting(chunk.job_id)
        if problems:
            kind = next((k for k in (*HALT_ORDER, UNEXPECTED, PAUSED) if k in problems), RETRYABLE)
            reasons = problems[kind]
            # The cause, not a consequence: a deferral only echoes what halted the invocation.
            first = scrub(next((r for r in reasons if not r.startswith("deferred")), reasons[0]))
            raise RecordFailed(
                f"{counts.not_sent} of {len(seen)} recipients not sent yet, e.g. {first}",
                kind,
            )
        return counts

    def _count(self, counts: Counts, result: dict[str, Any], chunk: Chunk, recipient: Recipient) -> None:
        if result.get("replayed"):
            counts.duplicates_skipped += 1
            return
        outcome = result.get("outcome")
        if outcome == "sent":
            counts.sent += 1
        elif outcome == "skipped":
            counts.skipped += 1
        elif outcome == "unknown":
            counts.unknown += 1
            self.log.warning(
                "SES did not answer a send: recorded unknown, not sent again",
                extra={"job_id": chunk.job_id, "chunk": chunk.chunk, "recipient": mask_email(recipient.email),
                       "row": recipient.row, "reason": scrub(str(result.get("reason")))},
            )
        else:
            counts.failed += 1
            self.log.warning(
                "recipient failed permanently",
                extra={"job_id": chunk.job_id, "chunk": chunk.chunk, "recipient": mask_email(recipient.email),
                       "row": recipient.row, "reason": scrub(str(result.get("reason")))},
            )

    # --- loading -------------------------------------------------------------------------------------

    def _load_chunk(self, body: str) -> Chunk:
        pointer = parse_pointer(body)
        raw: str | bytes = body
        if pointer is not None:
            try:
                raw = self.payloads.get(pointer.bucket, pointer.key)
            except PayloadMissing as exc:
                raise RecordFailed(f"message payload is gone: {exc}", POISON) from None
            except PayloadUnavailable as exc:
                raise RecordFailed(f"message payload unreadable for now: {exc}", RETRYABLE) from None
        try:
            return decode_chunk(raw)
        except ContractError as exc:
            raise RecordFailed(f"undecodable message: {exc}", POISON) from None

    def _bundle(self, ref: BundleRef) -> LoadedBundle:
        key = (ref.bucket, ref.key)
        cached = self._bundles.get(key)
        if cached is not None:
            self._bundles.move_to_end(key)
            return cached
        where = f"template bundle s3://{ref.bucket}/{ref.key}"
        try:
            loaded = load_bundle(decode_bundle(self.payloads.get(ref.bucket, ref.key)))
        except PayloadMissing as exc:
            raise RecordFailed(f"{where} is gone: {exc}", POISON) from None
        except PayloadUnavailable as exc:
            raise RecordFailed(f"{where} unreadable for now: {exc}", RETRYABLE) from None
        except (ContractError, TemplateProblem) as exc:
            raise RecordFailed(f"{where}: {exc}", POISON) from None
        self._bundles[key] = loaded
        if len(self._bundles) > BUNDLE_CACHE_SIZE:
            self._bundles.popitem(last=False)
        return loaded

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.settings.send_concurrency, thread_name_prefix="mailctl-send")
        return self._pool

    def _idempotent(self, partition: str) -> Callable[..., dict[str, Any]]:
        function = self._functions.get(partition)
        if function is None:
            function = idempotent_function(
                self._send_one,
                data_keyword_argument="data",
                persistence_store=self.state.persistence_layer(partition),
                config=self.idempotency_config,
                key_prefix=IDEMPOTENCY_KEY_PREFIX,
            )
            self._functions[partition] = function
            if len(self._functions) > PARTITION_CACHE_SIZE:
                self._functions.popitem(last=False)
        return function

    # --- per recipient (in the pool's threads) -------------------------------------------------------

    @staticmethod
    def _partition(job_id: str, recipient: Recipient, job: JobInfo) -> str:
        return job_partition(job_id, shard_of(recipient.key, job.shards), job.shards)

    def _deliver(self, function: Callable[..., dict[str, Any]], invocation: Invocation, chunk: Chunk,
                 bundle: LoadedBundle, job: JobInfo, recipient: Recipient, suppressed: frozenset[str] = frozenset()) -> dict[str, Any]:
        halted = invocation.halted
        if halted is not None:
            raise Deferred(halted[1], halted[0])
        if invocation.out_of_time():
            raise Deferred("the invocation is about to time out")
        return function(
            data=idempotency_data(chunk.job_id, recipient.email),
            recipient=recipient, chunk=chunk, bundle=bundle, job=job, invocation=invocation, suppressed=suppressed,
        )

    def _send_one(self, *, data: dict[str, str], recipient: Recipient, chunk: Chunk, bundle: LoadedBundle, job: JobInfo, invocation: Invocation,
                  suppressed: frozenset[str] = frozenset()) -> dict[str, Any]:
        """The idempotent unit: its return value is stored as the record's `data`. Raising makes
        Powertools delete the INPROGRESS record, so the recipient is tried again on redelivery."""
        if job.cancelled:
            return _outcome("skipped", recipient, self._clock(), reason="job cancelled")
        if recipient.key in suppressed:
            return _outcome("skipped", recipient, self._clock(), reason="suppressed")
        try:
            files = self.files.parts(bundle.files, render_context(recipient))
            address, raw = compose(bundle, recipient, chunk.job_id, now=self._clock(), files=files)
        except TemplateProblem as exc:
            return _outcome("failed", recipient, self._clock(), reason=f"template: {exc}")
        except AddressProblem as exc:
            return _outcome("failed", recipient, self._clock(), reason=f"address: {exc.reason}")
        except FileRefused as exc:
            return _outcome("failed", recipient, self._clock(), reason=f"attachment: {exc}")
        except PayloadMissing as exc:
            # Checked at the desk, so gone since, or not readable by the sender (IAM): retried,
            # and explained in the DLQ, rather than blamed on the recipient.
            raise Deferred(f"attachment missing or not readable: {exc}") from None
        except PayloadUnavailable as exc:
            raise Deferred(f"attachment unreadable for now: {exc}") from None
        except RecipientRejected as exc:
            return _outcome("failed", recipient, self._clock(), reason=str(exc))

        halted = invocation.halted
        if halted is not None:
            raise Deferred(halted[1], halted[0])
        if not invocation.pacer.acquire(deadline=invocation.send_deadline()):
            raise Deferred("the account's sending rate leaves no time before the invocation times out")
        halted = invocation.halted  # it may have come while this thread waited for its slot
        if halted is not None:
            raise Deferred(halted[1], halted[0])
        # The job state again, right before the send (cached for at most JOB_CACHE_SECONDS): a
        # cancel bites within seconds even in the middle of a long chunk.
        # A pause bites the same way: the recipient is left for the chunk's next delivery.
        try:
            current = self.state.job(chunk.job_id)
        except StateUnavailable as exc:
            raise Deferred(str(exc)) from None
        if current.cancelled:
            return _outcome("skipped", recipient, self._clock(), reason="job cancelled")
        if not current.sends(recipient.key):
            raise Deferred(f"job paused by {current.paused_by}", PAUSED)
        try:
            message_id = self.ses.send_raw(
                raw,
                to=address,
                tags={JOB_TAG: chunk.job_id},
                configuration_set=bundle.configuration_set or self.settings.configuration_set,
                sender=bundle.headers.from_address,
            )
        except SendFailure as exc:
            if exc.kind == failures.RECIPIENT:
                return _outcome("failed", recipient, self._clock(), reason=exc.reason)
            if exc.kind == failures.UNKNOWN:
                # Sending again could mail this recipient twice; an operator decides (status --recipients
                # unknown). SES not answering is no time to start more sends whose fate would be unknown too.
                invocation.halt(RETRYABLE, "SES stopped answering")
                return _outcome("unknown", recipient, self._clock(), reason=exc.reason)
            if exc.kind in HALT_ORDER:
                invocation.halt(exc.kind, f"{exc.what}: {exc.reason}")
            if exc.kind == ACCOUNT:
                self.log.error(
                    "SES REFUSES TO SEND FOR THE ACCOUNT: no recipient is marked failed; the job's records wait "
                    "(growing backoff) until a person fixes it",
                    extra={"job_id": chunk.job_id, "chunk": chunk.chunk, "code": exc.code, "reason": scrub(exc.reason)},
                )
            raise
        if self.settings.outbox:
            self._write_outbox(chunk.job_id, recipient, raw)
        return _outcome("sent", recipient, self._clock(), ses_message_id=message_id)

    def _write_outbox(self, job_id: str, recipient: Recipient, raw: bytes) -> None:
        name = str(recipient.row) if recipient.row is not None else hashlib.md5(recipient.key.encode()).hexdigest()
        directory = Path(self.settings.outbox) / _safe_name(job_id)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            temporary = directory / f".{name}.{threading.get_ident()}.tmp"
            temporary.write_bytes(raw)
            os.replace(temporary, directory / f"{name}.eml")
        except OSError as exc:
            # The mail is sent; a copy we could not keep must not make it be sent again.
            self.log.warning("could not write the outbox copy", extra={"job_id": job_id, "error": str(exc)})

    # --- waiting -------------------------------------------------------------------------------------

    def _wait(self, record: Any, envelope: Envelope, failed: RecordFailed) -> bool:
        """Hold the record back (or replace it with a copy); True when the original is to be let go."""
        wait = self.backoff.hold(record.raw_event, failed.kind)
        self.log.warning(
            f"record waits {wait.seconds}s ({failed.kind})" + (": replaced by a fresh copy to stay clear of the DLQ" if wait.requeued else ""),
            extra={"job_id": envelope.job_id, "chunk": envelope.chunk, "message_id": envelope.message_id,
                   "receive_count": envelope.receive_count, "kind": failed.kind},
        )
        if failed.kind in HALT_ORDER and envelope.job_id:
            try:
                self.state.mark_waiting(envelope.job_id, failed.kind, scrub(failed.reason), wait.until)
            except StateUnavailable as exc:
                self.log.warning("could not mark the job as waiting", extra={"job_id": envelope.job_id, "error": str(exc)})
        return wait.requeued

    def _no_longer_waiting(self, job_id: str) -> None:
        try:
            self.state.clear_waiting(job_id)
        except StateUnavailable as exc:
            self.log.warning("could not clear the job's waiting mark", extra={"job_id": job_id, "error": str(exc)})

    # --- failure reasons -----------------------------------------------------------------------------

    def _log_failure(self, envelope: Envelope, failed: RecordFailed) -> None:
        extra = {"job_id": envelope.job_id, "chunk": envelope.chunk, "message_id": envelope.message_id,
                 "receive_count": envelope.receive_count, "kind": failed.kind, "reason": scrub(failed.reason)}
        if failed.kind == RETRYABLE:
            self.log.warning("record failed, will be retried", extra=extra)
        else:
            self.log.error(f"record failed ({failed.kind})", extra=extra)

    def _forget_failure(self, envelope: Envelope) -> None:
        try:
            self.state.clear_failure(envelope.message_id)
        except StateUnavailable as exc:
            self.log.warning("could not clear an old failure reason", extra={"message_id": envelope.message_id, "error": str(exc)})

    def _record_failure(self, envelope: Envelope, failed: RecordFailed) -> None:
        try:
            self.state.record_failure(
                envelope.message_id, envelope.job_id, envelope.chunk,
                f"{failed.kind}: {scrub(failed.reason)}", envelope.receive_count,
            )
        except StateUnavailable as exc:
            # The record fails anyway; losing the explanation must not change that.
            self.log.error("could not record why a record failed", extra={"message_id": envelope.message_id, "error": str(exc)})
