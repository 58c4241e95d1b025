"""The local stand-in for the Lambda SQS event source mapping.

It long-polls the queue, turns ReceiveMessage results into the event Lambda would deliver, calls
the sender's handler in-process, and deletes only what the handler did not report in
`batchItemFailures`. Everything else is left to reappear after the visibility timeout, so SQS's own
RedrivePolicy moves poison messages to the DLQ, exactly as it does under a real Lambda.

Deliberate differences from AWS (see docs/local-stack.md):
- While an invocation runs, the worker keeps its messages invisible (ChangeMessageVisibility), which
  stands in for AWS's rule "visibility timeout >= 6x the function timeout" while letting the local
  queue use a visibility timeout of seconds, so retries and moves to the DLQ are quick. A message
  whose visibility the sender set itself (its backoff) is left alone from then on, as on AWS.
- A handler that overruns the configured timeout cannot be killed in-process; its batch is treated
  as failed, as Lambda treats a timed-out invocation.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mailctl.aws.lambda_ import LambdaAdapter
from mailctl.aws.session import LOCAL_CREDENTIALS, Clients, effective_endpoint, is_loopback
from mailctl.aws.sqs import SqsQueue
from mailctl.config import Config
from mailctl.errors import MailctlError, OperationalError
from mailctl.local.counter_stream import CounterStream

Handler = Callable[[dict[str, Any], Any], Any]
Log = Callable[[str], None]

HANDLER_PATH = "mail_sender.handler.lambda_handler"
# The memory size the local function record is created with; reported to the handler's context.
LOCAL_MEMORY_MB = 512
# Long-poll length: short enough that Ctrl-C and a pause take effect within a couple of seconds.
DEFAULT_WAIT_SECONDS = 2
# How long a pause/resume decision is trusted before the mapping is read again.
PAUSE_CHECK_SECONDS = 2.0
# System attributes a Lambda SQS record carries (the FIFO ones and AWSTraceHeader only when present).
_RECORD_ATTRIBUTES = ("ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp")
_OPTIONAL_RECORD_ATTRIBUTES = ("SequenceNumber", "MessageGroupId", "MessageDeduplicationId", "AWSTraceHeader")


# --- the event, as Lambda builds it -----------------------------------------------------------------


def _b64(value: bytes | str) -> str:
    raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return base64.b64encode(raw).decode("ascii")


def to_lambda_message_attribute(api_value: Mapping[str, Any]) -> dict[str, Any]:
    """`{StringValue|BinaryValue, DataType}` (BinaryValue as bytes, as boto3 returns it) ->
    `{stringValue|binaryValue (base64), stringListValues, binaryListValues, dataType}`."""
    converted: dict[str, Any] = {}
    if "StringValue" in api_value:
        converted["stringValue"] = api_value["StringValue"]
    if "BinaryValue" in api_value:
        converted["binaryValue"] = _b64(api_value["BinaryValue"])
    converted["stringListValues"] = list(api_value.get("StringListValues") or [])
    converted["binaryListValues"] = [_b64(v) for v in api_value.get("BinaryListValues") or []]
    converted["dataType"] = api_value["DataType"]
    return converted


def to_lambda_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One ReceiveMessage `Messages[]` entry -> one Lambda SQS event record."""
    api_attributes = message.get("Attributes") or {}
    attributes = {name: str(api_attributes[name]) for name in _RECORD_ATTRIBUTES if name in api_attributes}
    attributes.update({name: str(api_attributes[name]) for name in _OPTIONAL_RECORD_ATTRIBUTES if name in api_attributes})
    body = message.get("Body", "")
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": body,
        "attributes": attributes,
        "messageAttributes": {
            name: to_lambda_message_attribute(value) for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(body.encode("utf-8")).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def to_lambda_event(messages: list[Mapping[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    return {"Records": [to_lambda_record(m, queue_arn, region) for m in messages]}


def failed_message_ids(result: Any, records: list[dict[str, Any]]) -> set[str]:
    """The message ids to keep, under Lambda's ReportBatchItemFailures rules.

    A null/empty response or an empty/null list is full success. A response Lambda cannot read (not
    an object, a list that is not a list, an entry without a valid itemIdentifier or naming a message
    not in the batch) fails the whole batch.
    """
    every = {r["messageId"] for r in records}
    if result is None:
        return set()
    if not isinstance(result, Mapping):
        return every
    items = result.get("batchItemFailures")
    if items is None:
        return set()
    if not isinstance(items, list):
        return every
    failed: set[str] = set()
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, Mapping) else None
        if not isinstance(identifier, str) or not identifier or identifier not in every:
            return every
        failed.add(identifier)
    return failed


class LocalContext:
    """What the Lambda runtime's context object offers a Python handler."""

    def __init__(self, function_name: str, invoked_function_arn: str, timeout_seconds: float,
                 memory_limit_in_mb: int = LOCAL_MEMORY_MB, clock: Callable[[], float] = time.monotonic):
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = invoked_function_arn
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"local/{self.aws_request_id}"
        self.identity = None
        self.client_context = None
        self._clock = clock
        self._deadline = clock() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self._clock()) * 1000))


# --- the sender's environment -----------------------------------------------------------------------


def sender_environment(config: Config, outbox: str | None = None) -> dict[str, str]:
    """The sender's own variables, as the Lambda's configuration sets them (no AWS_* ones)."""
    env = {
        "MAILCTL_TABLE": config.table,
        "MAILCTL_RATE_PER_SECOND": repr(float(config.sender.rate_per_second)),
        "MAILCTL_SEND_CONCURRENCY": str(config.sender.send_concurrency),
        "MAILCTL_IDEMPOTENCY_EXPIRY_SECONDS": str(config.sender.idempotency_expiry_seconds),
        "MAILCTL_SES_READ_TIMEOUT": repr(float(config.sender.ses_read_timeout_seconds)),
        "MAILCTL_MAX_BACKOFF_SECONDS": str(config.sender.max_backoff_seconds),
        "POWERTOOLS_SERVICE_NAME": "mailctl-sender",
        "POWERTOOLS_METRICS_NAMESPACE": "mailctl",
    }
    if config.sending.configuration_set:
        env["MAILCTL_CONFIGURATION_SET"] = config.sending.configuration_set
    if outbox:
        env["MAILCTL_OUTBOX"] = str(outbox)
    return env


def runtime_environment(config: Config, outbox: str | None = None) -> dict[str, str | None]:
    """Everything the worker sets before the handler runs: the sender's variables plus the ones the
    Lambda runtime provides (region, function name) and the endpoint boto3 should use.

    A value of None removes the variable (MAILCTL_OUTBOX without --outbox, so a stale one from the
    shell does not silently fill a folder)."""
    env: dict[str, str | None] = {"MAILCTL_OUTBOX": None, "MAILCTL_CONFIGURATION_SET": None}
    env.update(sender_environment(config, outbox))
    env.update({
        "AWS_REGION": config.aws.region,
        "AWS_DEFAULT_REGION": config.aws.region,
        "AWS_LAMBDA_FUNCTION_NAME": config.sender_function,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(LOCAL_MEMORY_MB),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        # No X-Ray daemon runs locally.
        "POWERTOOLS_TRACE_DISABLED": "true",
    })
    # The shell's AWS_ENDPOINT_URL wins over the config, as it does for mailctl itself.
    if config.aws.endpoint_url and not os.environ.get("AWS_ENDPOINT_URL"):
        env["AWS_ENDPOINT_URL"] = config.aws.endpoint_url
    endpoint = effective_endpoint("sqs", config.aws.endpoint_url)
    if is_loopback(endpoint) and not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE") or config.aws.profile):
        # The local stack accepts any credentials; the handler's boto3 must find some.
        env["AWS_ACCESS_KEY_ID"] = LOCAL_CREDENTIALS["aws_access_key_id"]
        env["AWS_SECRET_ACCESS_KEY"] = LOCAL_CREDENTIALS["aws_secret_access_key"]
    if config.aws.profile and not os.environ.get("AWS_PROFILE"):
        env["AWS_PROFILE"] = config.aws.profile
    return env


@contextmanager
def environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """Sets (None: unsets) process environment variables, and restores them afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_handler() -> Handler:
    """The real sender entry point. Imported late: the sender reads its environment at import."""
    try:
        from mail_sender.handler import lambda_handler
    except ImportError as exc:
        raise OperationalError(
            f"sender handler {HANDLER_PATH}: cannot import: {exc}",
            hint="reinstall the project (`pip install -e .`): the sender ships in lambda/mail_sender",
        ) from exc
    return lambda_handler


# --- the worker -------------------------------------------------------------------------------------


@dataclass
class WorkerStats:
    invocations: int = 0
    received: int = 0
    deleted: int = 0
    failed_records: int = 0
    failed_invocations: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def summary(self) -> str:
        return (
            f"{self.invocations} invocation(s), {self.received} message(s) received, {self.deleted} deleted, "
            f"{self.failed_records} left for retry, {self.failed_invocations} failed invocation(s)"
        )


@dataclass(frozen=True)
class EventSource:
    """One event source mapping the worker plays: which queue feeds which function, and how."""

    queue: str
    function: str
    batch_size: int
    concurrency: int
    timeout_seconds: int
    # Whether the worker sets the sender's runtime environment around its invocations: the events
    # function's handler is installed with its clients instead (see stack.LocalStack).
    sender_environment: bool = True
    # Whether the worker also plays the state table's stream -> counters function mapping
    # (counter_stream.py): the sender's worker does, so its outcomes are counted wherever it runs.
    counts: bool = True

    @classmethod
    def sender(cls, config: Config) -> EventSource:
        return cls(config.queue, config.sender_function, config.sender.batch_size, config.sender.max_concurrency,
                   config.sender.timeout_seconds)

    @classmethod
    def events(cls, config: Config) -> EventSource:
        from mailctl.local.provision import EVENTS_BATCH_SIZE, EVENTS_MAXIMUM_CONCURRENCY, EVENTS_TIMEOUT_SECONDS

        return cls(config.events_queue, config.events_function, EVENTS_BATCH_SIZE, EVENTS_MAXIMUM_CONCURRENCY, EVENTS_TIMEOUT_SECONDS,
                   sender_environment=False, counts=False)


class LocalWorker:
    """Polls a queue (the config's job queue by default) and invokes the handler, `concurrency`
    invocations at a time."""

    def __init__(
        self,
        clients: Clients,
        handler: Handler | None = None,
        outbox: str | None = None,
        wait_seconds: int = DEFAULT_WAIT_SECONDS,
        log: Log | None = None,
        source: EventSource | None = None,
    ):
        self.clients = clients
        self.config = clients.config
        self.source = source or EventSource.sender(self.config)
        self._handler = handler
        self.outbox = outbox
        self.wait_seconds = wait_seconds
        self.log = log or (lambda message: None)
        self.queue = SqsQueue(clients.sqs, self.source.queue)
        self.stats = WorkerStats()
        self._queue_arn: str | None = None
        self._visibility_timeout = 30
        self._paused_until = 0.0
        self._paused = False
        self._pause_lock = threading.Lock()
        self._mapping_unreadable = False
        self._busy = 0
        self._busy_lock = threading.Lock()
        self.errors: list[BaseException] = []

    # The queue's ARN and region identify the event source, as in Lambda's records.
    @property
    def queue_arn(self) -> str:
        if self._queue_arn is None:
            attributes = self.queue.attributes(["QueueArn", "VisibilityTimeout"])
            self._queue_arn = attributes["QueueArn"]
            self._visibility_timeout = int(attributes.get("VisibilityTimeout", 30))
        return self._queue_arn

    @property
    def function_arn(self) -> str:
        parts = self.queue_arn.split(":")
        partition, region, account = parts[1], parts[3], parts[4]
        return f"arn:{partition}:lambda:{region}:{account}:function:{self.source.function}"

    def paused(self) -> bool:
        """True when the event source mapping exists and is not enabled (`mailctl pause`).

        No mapping (an endpoint without Lambda, or a stack made without it) means: not paused."""
        with self._pause_lock:
            now = time.monotonic()
            if now < self._paused_until:
                return self._paused
            try:
                mapping = LambdaAdapter(self.clients.lambda_).event_source_mapping(self.source.function, self.queue_arn)
            except MailctlError as exc:
                if not self._mapping_unreadable:
                    self.log(f"cannot read the event source mapping ({exc.message}); polling as if enabled")
                    self._mapping_unreadable = True
                mapping = None
            state = (mapping or {}).get("State", "Enabled")
            paused = state in ("Disabled", "Disabling")
            if paused != self._paused:
                self.log("event source mapping disabled: paused, not polling" if paused else "event source mapping enabled: polling")
            self._paused = paused
            self._paused_until = now + PAUSE_CHECK_SECONDS
            return paused

    def handler(self) -> Handler:
        if self._handler is None:
            self._handler = load_handler()
        return self._handler

    # --- one batch ---

    def poll_once(self) -> int:
        """One receive + invocation + delete. Returns the number of messages received."""
        messages = self.queue.receive(self.source.batch_size, self.wait_seconds)
        if not messages:
            return 0
        with self._busy_lock:
            self._busy += 1
        try:
            self._invoke(messages)
        finally:
            with self._busy_lock:
                self._busy -= 1
        return len(messages)

    def _invoke(self, messages: list[dict[str, Any]]) -> None:
        event = to_lambda_event(messages, self.queue_arn, self.config.aws.region)
        records = event["Records"]
        timeout = self.source.timeout_seconds
        context = LocalContext(self.source.function, self.function_arn, timeout)
        handles = [r["receiptHandle"] for r in records]
        started = time.monotonic()
        keeper = _VisibilityKeeper(self.queue, handles, self._visibility_timeout)
        keeper.start()
        try:
            result = self.handler()(event, context)
        except Exception as exc:  # Lambda: an unhandled error fails the whole batch
            keeper.stop()
            where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            at = f" at {os.path.basename(where.filename)}:{where.lineno}" if where else ""
            self.log(f"invocation failed: {type(exc).__name__}: {exc}{at}; {len(records)} message(s) will reappear")
            self.stats.add(invocations=1, received=len(records), failed_records=len(records), failed_invocations=1)
            return
        keeper.stop()
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            self.log(f"invocation ran {elapsed:.1f}s, over the {timeout}s timeout: the batch fails, as on Lambda")
            self.stats.add(invocations=1, received=len(records), failed_records=len(records), failed_invocations=1)
            return
        failed = failed_message_ids(result, records)
        done = [r["receiptHandle"] for r in records if r["messageId"] not in failed]
        not_deleted = self.queue.delete_batch(done) if done else []
        if not_deleted:
            self.log(f"{len(not_deleted)} message(s) could not be deleted: {not_deleted[0].get('Code', '?')}")
        self.stats.add(invocations=1, received=len(records), deleted=len(done) - len(not_deleted), failed_records=len(failed))
        self.log(f"batch of {len(records)}: {len(done) - len(not_deleted)} deleted, {len(failed)} left for retry ({elapsed:.1f}s)")

    # --- the loop ---

    def _poller(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                if self.paused():
                    stop.wait(min(PAUSE_CHECK_SECONDS, 1.0))
                    continue
                self.poll_once()
            except MailctlError as exc:
                self.log(f"{exc.message}; retrying")
                stop.wait(1.0)
            except Exception as exc:  # a bug in the worker must not silently kill a poller
                self.errors.append(exc)
                self.log(f"worker error: {type(exc).__name__}: {exc}")
                stop.wait(1.0)

    def drained(self) -> bool:
        counts = self.queue.counts()
        with self._busy_lock:
            busy = self._busy
        return busy == 0 and counts.visible == 0 and counts.in_flight == 0 and counts.delayed == 0

    def run(self, stop: threading.Event | None = None, until_empty: bool = False,
            confirmations: int = 3, check_interval: float = 0.3) -> WorkerStats:
        """Poll with max_concurrency threads until `stop` is set (or, with until_empty, until the
        queue has had no visible, in-flight or delayed message for `confirmations` checks in a row)."""
        stop = stop or threading.Event()
        _ = self.queue_arn  # fail fast, in the caller's thread, when the queue does not exist
        with environment(runtime_environment(self.config, self.outbox) if self.source.sender_environment else {}):
            if self._handler is None:
                self.handler()
            threads = [
                threading.Thread(target=self._poller, args=(stop,), name=f"mailctl-worker-{n}", daemon=True)
                for n in range(self.source.concurrency)
            ]
            counter_stream = CounterStream(self.clients, log=self.log) if self.source.counts else None
            if counter_stream is not None and not until_empty:
                # A worker that runs until stopped counts as it goes (the guard acts on the counts);
                # one that drains the queue counts once, at the end, rather than beside the sender.
                threads.append(threading.Thread(target=counter_stream.run, args=(stop,), name="mailctl-counters", daemon=True))
            for thread in threads:
                thread.start()
            try:
                quiet = 0
                while not stop.is_set():
                    if until_empty:
                        quiet = quiet + 1 if self.drained() else 0
                        if quiet >= confirmations:
                            break
                        if quiet == 0 and self._paused and self.queue.counts().visible:
                            raise OperationalError(
                                f"queue {self.source.queue}: the event source mapping of {self.source.function} is disabled, "
                                "so --until-empty would wait forever",
                                hint="`mailctl resume`, then run the worker again",
                            )
                    stop.wait(check_interval)
            finally:
                stop.set()
                for thread in threads:
                    thread.join()
            if until_empty and counter_stream is not None:
                self._count_the_rest(counter_stream)
        return self.stats

    def _count_the_rest(self, counter_stream: CounterStream) -> None:
        """The queue is empty: the outcomes still in the stream are counted before returning, so
        a status taken next reads complete counters."""
        try:
            counter_stream.drain()
        except Exception as exc:  # no table or no stream here: nothing to count
            self.log(f"counters stream: {type(exc).__name__}: {exc}")


class _VisibilityKeeper:
    """Keeps a batch invisible while its invocation runs (see the module docstring)."""

    def __init__(self, queue: SqsQueue, handles: list[str], visibility_timeout: int):
        self.queue = queue
        self.handles = handles
        self.visibility_timeout = max(1, visibility_timeout)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from mail_sender.queue import visibility_listeners

        visibility_listeners.append(self.release)
        self._thread = threading.Thread(target=self._run, name="mailctl-visibility", daemon=True)
        self._thread.start()

    def release(self, handle: str) -> None:
        """The sender set this message's visibility (its backoff): extending it would undo that."""
        with self._lock:
            if handle in self.handles:
                self.handles = [h for h in self.handles if h != handle]

    def _run(self) -> None:
        interval = max(0.3, self.visibility_timeout / 3)
        while not self._stop.wait(interval):
            with self._lock:  # held across the call, so a release never races an extension
                try:
                    if self.handles:
                        self.queue.extend_visibility(self.handles, self.visibility_timeout)
                except MailctlError:
                    pass  # the message may already be gone; SQS then decides, as it would on AWS

    def stop(self) -> None:
        from mail_sender.queue import visibility_listeners

        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.release in visibility_listeners:
            visibility_listeners.remove(self.release)
