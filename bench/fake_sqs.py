"""A minimal SQS-compatible endpoint for the send benchmark (issue 2, "Speed and memory").

moto's SQS slows down as its queue fills, so the benchmark measures mailctl against this endpoint
instead. It speaks the protocol current boto3 uses for SQS (AWS JSON 1.0: `X-Amz-Target:
AmazonSQS.<Op>`, botocore's sqs/2012-11-05 model says `"protocol": "json"`), enforces the limits
that shape mailctl's packing, and counts what it accepts, so the benchmark's figures are honest:

- at most 10 entries per batch (TooManyEntriesInBatchRequest), distinct entry ids
  (BatchEntryIdsNotDistinct), valid entry ids (InvalidBatchEntryId), at least one entry
  (EmptyBatchRequest);
- one message (body + message attributes, each attribute counted as name + data type + value
  bytes, as SQS documents) at most the queue's MaximumMessageSize: SendMessage fails with
  InvalidParameterValue, a batch entry comes back in `Failed` with that code;
- a batch whose TOTAL exceeds the batch limit fails as a whole with BatchRequestTooLong. By default
  the batch limit is the queue's MaximumMessageSize (what mailctl packs against); pass
  `batch_limit=1048576` for the reading where the total is bounded by the service-wide 1 MiB only.
- message bodies limited to the characters SQS allows (InvalidMessageContents).

Errors have the JSON-protocol shape SQS documents (sqs-json-api-responses.html): a `__type` body
field plus the `x-amzn-query-error: <query code>;Sender` header, so boto3 raises the modelled
exception class (e.g. `client.exceptions.BatchRequestTooLong`) and `Error.Code` carries the
legacy query code (e.g. `AWS.SimpleQueueService.BatchRequestTooLong`), exactly as against AWS.

By default only counters are kept (the endpoint stays small and fast however much is sent);
`keep_bodies=True` keeps every accepted message so a test can read each one back, and makes
ReceiveMessage/DeleteMessage work. Standard queues only (no FIFO semantics).

In-process:   fake = FakeSqs(port=0); endpoint = fake.start(); ...; fake.stats(); fake.stop()
Own process:  proc = FakeSqsProcess(); endpoint = proc.start(); ...; proc.stats(); proc.stop()
              (keeps the endpoint's CPU and memory out of the measured process)
Command line: python bench/fake_sqs.py --port 9324 [--max-message-size N] [--keep-bodies]
              prints `FAKE_SQS_ENDPOINT http://127.0.0.1:PORT` first; GET /_stats returns the
              counters as JSON, POST /_reset clears queues and counters.

Throughput (2-core machine shared with other jobs, so rough): the endpoint spends about 0.3 ms of
CPU on a 10-entry, 13 KB SendMessageBatch (3,200 calls/s, 43 MB/s from a raw HTTP client) and about
8 ms on a 1 MB one (~100 MB/s). A boto3 client spends about 1.2 ms of CPU per 13 KB call itself
(serialising, signing, parsing), so with boto3 the client, not this endpoint, sets the pace.

Stdlib only, so it runs under any Python 3.11 without the project installed.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import hashlib
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from os import urandom as _urandom
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SERVICE_MAX_MESSAGE_SIZE = 1_048_576  # SQS since 2025-08: per message and per batch
MIN_MESSAGE_SIZE_ATTRIBUTE = 1024
MAX_BATCH_ENTRIES = 10
MAX_MESSAGE_ATTRIBUTES = 10
MAX_DELAY_SECONDS = 900
DEFAULT_ACCOUNT = "123456789012"
JSON_CONTENT_TYPE = "application/x-amz-json-1.0"
ENDPOINT_BANNER = "FAKE_SQS_ENDPOINT"

_ENTRY_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
# The characters SQS accepts in a body or string attribute (the W3C XML set, per the SendMessage docs).
_INVALID_CHARS = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ASCII_INVALID = bytes(c for c in range(32) if c not in (9, 10, 13))


def _valid_text(text: str) -> bool:
    if text.isascii():  # the common case, ten times faster than the regex below
        encoded = text.encode("ascii")
        return len(encoded.translate(None, _ASCII_INVALID)) == len(encoded)
    return _INVALID_CHARS.search(text) is None

# query code (the x-amzn-query-error header, which boto3 reports as Error.Code) and the `__type`
# shape, per the SQS Smithy model's awsQueryError traits. Codes with no trait use the shape name.
_ERRORS: dict[str, tuple[str, str]] = {
    "QueueDoesNotExist": ("AWS.SimpleQueueService.NonExistentQueue", "com.amazonaws.sqs#QueueDoesNotExist"),
    "QueueNameExists": ("QueueAlreadyExists", "com.amazonaws.sqs#QueueNameExists"),
    "TooManyEntriesInBatchRequest": (
        "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        "com.amazonaws.sqs#TooManyEntriesInBatchRequest",
    ),
    "BatchEntryIdsNotDistinct": (
        "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
        "com.amazonaws.sqs#BatchEntryIdsNotDistinct",
    ),
    "BatchRequestTooLong": ("AWS.SimpleQueueService.BatchRequestTooLong", "com.amazonaws.sqs#BatchRequestTooLong"),
    "EmptyBatchRequest": ("AWS.SimpleQueueService.EmptyBatchRequest", "com.amazonaws.sqs#EmptyBatchRequest"),
    "InvalidBatchEntryId": ("AWS.SimpleQueueService.InvalidBatchEntryId", "com.amazonaws.sqs#InvalidBatchEntryId"),
    "InvalidAttributeName": ("InvalidAttributeName", "com.amazonaws.sqs#InvalidAttributeName"),
    "InvalidAttributeValue": ("InvalidAttributeValue", "com.amazonaws.sqs#InvalidAttributeValue"),
    "InvalidMessageContents": ("InvalidMessageContents", "com.amazonaws.sqs#InvalidMessageContents"),
    "ReceiptHandleIsInvalid": ("ReceiptHandleIsInvalid", "com.amazonaws.sqs#ReceiptHandleIsInvalid"),
    "UnsupportedOperation": ("AWS.SimpleQueueService.UnsupportedOperation", "com.amazonaws.sqs#UnsupportedOperation"),
    # Not modelled in botocore; this is what SQS answers over JSON (seen in client logs).
    "InvalidParameterValue": ("InvalidParameterValue", "com.amazon.coral.service#InvalidParameterValueException"),
    "MissingParameter": ("MissingParameter", "com.amazon.coral.service#MissingRequiredParameterException"),
}


class SqsError(Exception):
    """A whole-call error, serialised in the JSON protocol's shape."""

    def __init__(self, name: str, message: str, status: int = 400):
        super().__init__(message)
        self.name = name
        self.message = message
        self.status = status

    @property
    def query_code(self) -> str:
        return _ERRORS[self.name][0]

    @property
    def type(self) -> str:
        return _ERRORS[self.name][1]


class _EntryError(Exception):
    """Refuses one message; a batch reports it in `Failed`, SendMessage as a whole-call error."""

    def __init__(self, name: str, message: str, sender_fault: bool = True):
        super().__init__(message)
        self.name = name
        self.message = message
        self.sender_fault = sender_fault


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))  # isascii() is O(1)


# Validated attributes, by (name, data type, string value): a job's messages repeat most of theirs.
_SEGMENTS: dict[tuple[str, str, str], tuple[bytes, int]] = {}
_SEGMENTS_MAX = 100_000


def _attribute_segment(name: Any, value: Any) -> tuple[bytes, int]:
    """Validate one message attribute; return its MD5OfMessageAttributes input (name, data type,
    transport type 1=string/2=binary, value, each length-prefixed with 4 bytes) and the bytes it
    counts toward the message size (name + data type + value, as SQS documents)."""
    if isinstance(value, dict):
        string = value.get("StringValue")
        if type(string) is str and type(name) is str:
            hit = _SEGMENTS.get((name, value.get("DataType"), string))
            if hit is not None:
                return hit
    data_type = value.get("DataType") if isinstance(value, dict) else None
    if not isinstance(name, str) or not name or not isinstance(data_type, str) or not data_type:
        raise _EntryError("InvalidParameterValue", f"The message attribute '{name}' must contain a data type.")
    base = data_type.split(".", 1)[0]
    if base in ("String", "Number"):
        string = value.get("StringValue")
        if not isinstance(string, str) or not string:
            raise _EntryError(
                "InvalidParameterValue",
                f"The message attribute '{name}' must contain non-empty message attribute value "
                f"for message attribute type '{data_type}'.",
            )
        if not _valid_text(string):
            raise _EntryError("InvalidParameterValue", f"The message attribute '{name}' contains invalid characters.")
        raw, transport = string.encode("utf-8"), b"\x01"
    elif base == "Binary":
        try:
            raw = base64.b64decode(value.get("BinaryValue") or "", validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise _EntryError("InvalidParameterValue", f"The message attribute '{name}' is not valid base64.") from None
        if not raw:
            raise _EntryError(
                "InvalidParameterValue",
                f"The message attribute '{name}' must contain non-empty message attribute value "
                f"for message attribute type '{data_type}'.",
            )
        transport = b"\x02"
    else:
        raise _EntryError(
            "InvalidParameterValue",
            f"The message attribute '{name}' has an invalid message attribute type, the set of supported "
            "type prefixes is Binary, Number, and String.",
        )
    name_bytes, type_bytes = name.encode("utf-8"), data_type.encode("utf-8")
    segment = b"".join(
        (
            len(name_bytes).to_bytes(4, "big"), name_bytes,
            len(type_bytes).to_bytes(4, "big"), type_bytes,
            transport, len(raw).to_bytes(4, "big"), raw,
        )
    )  # fmt: skip
    result = (segment, len(name_bytes) + len(type_bytes) + len(raw))
    if transport == b"\x01":
        if len(_SEGMENTS) >= _SEGMENTS_MAX:
            _SEGMENTS.clear()
        _SEGMENTS[(name, data_type, value["StringValue"])] = result
    return result


def inspect_attributes(attributes: Any) -> tuple[str | None, int]:
    """Validate a message's attributes; return (MD5OfMessageAttributes or None, bytes counted)."""
    if not attributes:
        return None, 0
    if not isinstance(attributes, dict):
        raise _EntryError("InvalidParameterValue", "MessageAttributes must be a map.")
    if len(attributes) > MAX_MESSAGE_ATTRIBUTES:
        raise _EntryError(
            "InvalidParameterValue",
            f"Number of message attributes [{len(attributes)}] exceeds the allowed maximum [{MAX_MESSAGE_ATTRIBUTES}].",
        )
    segments = [_attribute_segment(name, attributes[name]) for name in sorted(attributes)]
    return hashlib.md5(b"".join(segment for segment, _ in segments)).hexdigest(), sum(size for _, size in segments)


def message_size(body: str, attributes: dict[str, Any] | None = None) -> int:
    """Bytes SQS counts against MaximumMessageSize: the UTF-8 body, plus, for every message
    attribute, its name, its data type and its value (documented on MessageAttributeValue)."""
    return _utf8_len(body) + inspect_attributes(attributes)[1]


def md5_of_attributes(attributes: dict[str, Any]) -> str | None:
    """MD5OfMessageAttributes as SQS computes it (attributes in name order)."""
    return inspect_attributes(attributes)[0]


def _new_message_id() -> str:
    # A random (version 4) UUID, formatted without uuid.UUID's overhead.
    h = bytearray(_urandom(16))
    h[6] = (h[6] & 0x0F) | 0x40
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


class _Queue:
    def __init__(self, name: str, url: str, arn: str, attributes: dict[str, str]):
        self.name = name
        self.url = url
        self.arn = arn
        self.attributes = attributes
        self.created = int(time.time())
        self.modified = self.created
        self.held = 0  # accepted and neither deleted nor purged (counted even without bodies)
        self.messages_accepted = 0
        self.bytes_accepted = 0
        self.visible: collections.deque[dict[str, Any]] = collections.deque()
        self.in_flight: dict[str, tuple[float, dict[str, Any]]] = {}

    @property
    def max_message_size(self) -> int:
        return int(self.attributes["MaximumMessageSize"])


class FakeSqs:
    """The endpoint, usable in-process: `endpoint = FakeSqs(port=0).start()`, then `.stop()`."""

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        max_message_size: int = SERVICE_MAX_MESSAGE_SIZE,
        batch_limit: int | None = None,
        keep_bodies: bool = False,
        account_id: str = DEFAULT_ACCOUNT,
        region: str = "us-east-1",
    ):
        if not MIN_MESSAGE_SIZE_ATTRIBUTE <= max_message_size <= SERVICE_MAX_MESSAGE_SIZE:
            raise ValueError(f"max_message_size must be {MIN_MESSAGE_SIZE_ATTRIBUTE}..{SERVICE_MAX_MESSAGE_SIZE}")
        self.host = host
        self.port = port
        self.default_max_message_size = max_message_size
        self.batch_limit = batch_limit
        self.keep_bodies = keep_bodies
        self.account_id = account_id
        self.region = region
        self._lock = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._fail_next: list[tuple[str, bool]] = []
        self.reset()

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeSqs is not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> str:
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        self._server = _Server((self.host, self.port), handler)
        # A short poll interval so that stop() returns promptly (shutdown waits for one poll).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-sqs", daemon=True
        )
        self._thread.start()
        return self.endpoint

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        # Keep-alive connections would otherwise keep their handler threads parked in readline.
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> FakeSqs:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- state seen by tests and the benchmark ---------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self._queues: dict[str, _Queue] = {}
            self._calls: collections.Counter[str] = collections.Counter()
            self._rejected: collections.Counter[str] = collections.Counter()
            self._failed_entries: collections.Counter[str] = collections.Counter()
            self._messages_accepted = 0
            self._bytes_accepted = 0
            self._body_bytes_accepted = 0
            self._batches_accepted = 0
            self._largest_message = 0
            self._largest_batch = 0
            self._request_bytes = 0
            self._started = time.monotonic()

    def stats(self) -> dict[str, Any]:
        """Counters as plain JSON-able values (the same document GET /_stats returns)."""
        with self._lock:
            return {
                "calls_total": sum(self._calls.values()),
                "calls": dict(self._calls),
                "rejected_calls": sum(self._rejected.values()),
                "rejected_by_code": dict(self._rejected),
                "failed_entries": sum(self._failed_entries.values()),
                "failed_entries_by_code": dict(self._failed_entries),
                "messages_accepted": self._messages_accepted,
                "bytes_accepted": self._bytes_accepted,
                "body_bytes_accepted": self._body_bytes_accepted,
                "batches_accepted": self._batches_accepted,
                "largest_message_bytes": self._largest_message,
                "largest_batch_bytes": self._largest_batch,
                "request_bytes": self._request_bytes,
                # CPU of the whole process hosting the endpoint (all threads): meaningful when it
                # runs in its own process (FakeSqsProcess or the command line).
                "process_cpu_seconds": round(time.process_time(), 3),
                "queues": {
                    q.name: {
                        "messages_accepted": q.messages_accepted,
                        "bytes_accepted": q.bytes_accepted,
                        "held": q.held,
                        "max_message_size": q.max_message_size,
                    }
                    for q in self._queues.values()
                },
            }

    def messages(self, queue_name: str) -> list[dict[str, Any]]:
        """Every message the queue holds (visible or in flight), in the order accepted."""
        if not self.keep_bodies:
            raise RuntimeError("FakeSqs(keep_bodies=True) is needed to read messages back")
        with self._lock:
            queue = self._queues[queue_name]
            held = list(queue.visible) + [message for _, message in queue.in_flight.values()]
        held.sort(key=lambda m: m["seq"])
        return [
            {
                "MessageId": m["MessageId"],
                "Body": m["Body"],
                "MessageAttributes": m["MessageAttributes"],
            }
            for m in held
        ]

    def create_queue(self, name: str, attributes: dict[str, str] | None = None) -> str:
        """Create (or find) a queue without going through HTTP; returns its URL."""
        with self._lock:
            return self._create_queue(name, dict(attributes or {}), base_url=self._base_url()).url

    def fail_next_entries(self, count: int, code: str = "InternalError", sender_fault: bool = False) -> None:
        """Make the next `count` batch entries come back in `Failed` (to exercise retries)."""
        with self._lock:
            self._fail_next.extend([(code, sender_fault)] * count)

    # ---- operations ------------------------------------------------------------------------

    def _base_url(self) -> str:
        return self.endpoint if self._server is not None else f"http://{self.host}:{self.port}"

    def dispatch(self, operation: str, params: dict[str, Any], base_url: str) -> dict[str, Any]:
        handler = self._OPERATIONS.get(operation)
        if handler is None:
            raise SqsError("UnsupportedOperation", f"Operation {operation} is not supported by this fake endpoint.")
        return handler(self, params, base_url)

    def _queue(self, params: dict[str, Any]) -> _Queue:
        url = params.get("QueueUrl")
        if not url:
            raise SqsError("MissingParameter", "The request must contain the parameter QueueUrl.")
        queue = self._queues.get(url.rstrip("/").rsplit("/", 1)[-1])
        if queue is None:
            raise SqsError("QueueDoesNotExist", "The specified queue does not exist.")
        return queue

    def _create_queue(self, name: str, attributes: dict[str, str], base_url: str) -> _Queue:
        if not re.match(r"^[A-Za-z0-9_-]{1,80}(\.fifo)?$", name or ""):
            raise SqsError(
                "InvalidParameterValue",
                "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
            )
        if "MaximumMessageSize" in attributes:
            try:
                size = int(attributes["MaximumMessageSize"])
            except ValueError:
                size = -1
            if not MIN_MESSAGE_SIZE_ATTRIBUTE <= size <= SERVICE_MAX_MESSAGE_SIZE:
                raise SqsError("InvalidAttributeValue", "Invalid value for the parameter MaximumMessageSize.")
        existing = self._queues.get(name)
        if existing is not None:
            if any(existing.attributes.get(k) != str(v) for k, v in attributes.items()):
                raise SqsError(
                    "QueueNameExists",
                    f"A queue already exists with the same name and a different value for attribute(s) "
                    f"{', '.join(attributes)}",
                )
            return existing
        merged = {
            "MaximumMessageSize": str(self.default_max_message_size),
            "VisibilityTimeout": "30",
            "MessageRetentionPeriod": "345600",
            "DelaySeconds": "0",
            "ReceiveMessageWaitTimeSeconds": "0",
            "SqsManagedSseEnabled": "true",
        }
        merged.update({k: str(v) for k, v in attributes.items()})
        queue = _Queue(
            name,
            f"{base_url}/{self.account_id}/{name}",
            f"arn:aws:sqs:{self.region}:{self.account_id}:{name}",
            merged,
        )
        self._queues[name] = queue
        return queue

    def _op_create_queue(self, params, base_url):
        queue = self._create_queue(params.get("QueueName", ""), dict(params.get("Attributes") or {}), base_url)
        return {"QueueUrl": queue.url}

    def _op_get_queue_url(self, params, base_url):
        queue = self._queues.get(params.get("QueueName", ""))
        if queue is None:
            raise SqsError("QueueDoesNotExist", "The specified queue does not exist.")
        return {"QueueUrl": queue.url}

    def _op_list_queues(self, params, base_url):
        prefix = params.get("QueueNamePrefix") or ""
        return {"QueueUrls": [q.url for q in self._queues.values() if q.name.startswith(prefix)]}

    def _op_delete_queue(self, params, base_url):
        del self._queues[self._queue(params).name]
        return {}

    _COMPUTED = (
        "QueueArn",
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
        "CreatedTimestamp",
        "LastModifiedTimestamp",
    )

    def _op_get_queue_attributes(self, params, base_url):
        queue = self._queue(params)
        self._expire_in_flight(queue)
        in_flight = len(queue.in_flight)
        everything = dict(queue.attributes)
        everything.update(
            {
                "QueueArn": queue.arn,
                "ApproximateNumberOfMessages": str(queue.held - in_flight),
                "ApproximateNumberOfMessagesNotVisible": str(in_flight),
                "ApproximateNumberOfMessagesDelayed": "0",
                "CreatedTimestamp": str(queue.created),
                "LastModifiedTimestamp": str(queue.modified),
            }
        )
        names = params.get("AttributeNames") or []
        if "All" in names:
            return {"Attributes": everything}
        known = set(everything) | {
            "Policy", "RedrivePolicy", "RedriveAllowPolicy", "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds",
            "FifoQueue", "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit",
        }  # fmt: skip
        for name in names:
            if name not in known:
                raise SqsError("InvalidAttributeName", f"Unknown Attribute {name}.")
        chosen = {name: everything[name] for name in names if name in everything}
        return {"Attributes": chosen} if chosen else {}

    def _op_set_queue_attributes(self, params, base_url):
        queue = self._queue(params)
        attributes = {k: str(v) for k, v in (params.get("Attributes") or {}).items()}
        if "MaximumMessageSize" in attributes:
            size = int(attributes["MaximumMessageSize"]) if attributes["MaximumMessageSize"].isdigit() else -1
            if not MIN_MESSAGE_SIZE_ATTRIBUTE <= size <= SERVICE_MAX_MESSAGE_SIZE:
                raise SqsError("InvalidAttributeValue", "Invalid value for the parameter MaximumMessageSize.")
        queue.attributes.update(attributes)
        queue.modified = int(time.time())
        return {}

    def _op_purge_queue(self, params, base_url):
        queue = self._queue(params)
        queue.held = 0
        queue.visible.clear()
        queue.in_flight.clear()
        return {}

    def _inspect(self, entry: dict[str, Any]) -> tuple[str, dict[str, Any], int, str | None]:
        """Validate one message apart from the queue's size limit; returns (body, attributes,
        counted size, MD5OfMessageAttributes) or raises _EntryError."""
        body = entry.get("MessageBody")
        if not isinstance(body, str) or body == "":
            raise _EntryError("MissingParameter", "The request must contain the parameter MessageBody.")
        attributes = entry.get("MessageAttributes") or {}
        attributes_md5, attributes_size = inspect_attributes(attributes)
        delay = entry.get("DelaySeconds")
        if delay is not None and not (type(delay) is int and 0 <= delay <= MAX_DELAY_SECONDS):
            raise _EntryError(
                "InvalidParameterValue",
                f"Value {delay} for parameter DelaySeconds is invalid. "
                f"Reason: DelaySeconds must be >= 0 and <= {MAX_DELAY_SECONDS}.",
            )
        if not _valid_text(body):
            raise _EntryError(
                "InvalidMessageContents",
                "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | "
                "#xE000 to #xFFFD | #x10000 to #x10FFFF",
            )
        return body, attributes, _utf8_len(body) + attributes_size, attributes_md5

    @staticmethod
    def _check_size(queue: _Queue, size: int) -> None:
        if size > queue.max_message_size:
            raise _EntryError(
                "InvalidParameterValue",
                f"One or more parameters are invalid. Reason: Message must be shorter than {queue.max_message_size} bytes.",
            )

    def _accept(
        self, queue: _Queue, body: str, attributes: dict[str, Any], size: int, attributes_md5: str | None
    ) -> dict[str, str]:
        encoded = body.encode("utf-8")
        result = {"MessageId": _new_message_id(), "MD5OfMessageBody": hashlib.md5(encoded).hexdigest()}
        if attributes_md5 is not None:
            result["MD5OfMessageAttributes"] = attributes_md5
        queue.held += 1
        queue.messages_accepted += 1
        queue.bytes_accepted += size
        self._messages_accepted += 1
        self._bytes_accepted += size
        self._body_bytes_accepted += len(encoded)
        if size > self._largest_message:
            self._largest_message = size
        if self.keep_bodies:
            queue.visible.append(
                {
                    "seq": self._messages_accepted,
                    "MessageId": result["MessageId"],
                    "Body": body,
                    "MD5OfBody": result["MD5OfMessageBody"],
                    "MessageAttributes": attributes,
                    "SentTimestamp": str(int(time.time() * 1000)),
                    "ReceiveCount": 0,
                    "FirstReceive": None,
                }
            )
            self._lock.notify_all()
        return result

    def _op_send_message(self, params, base_url):
        queue = self._queue(params)
        try:
            body, attributes, size, attributes_md5 = self._inspect(params)
            self._check_size(queue, size)
        except _EntryError as exc:
            raise SqsError(exc.name, exc.message) from None
        return self._accept(queue, body, attributes, size, attributes_md5)

    def _op_send_message_batch(self, params, base_url):
        queue = self._queue(params)
        entries = params.get("Entries") or []
        if not isinstance(entries, list) or not entries:
            raise SqsError("EmptyBatchRequest", "There should be at least one SendMessageBatchRequestEntry in the request.")
        if len(entries) > MAX_BATCH_ENTRIES:
            raise SqsError(
                "TooManyEntriesInBatchRequest",
                f"Maximum number of entries per request are {MAX_BATCH_ENTRIES}. You have sent {len(entries)}.",
            )
        seen: set[str] = set()
        for entry in entries:
            entry_id = entry.get("Id") if isinstance(entry, dict) else None
            if not isinstance(entry_id, str) or not _ENTRY_ID.match(entry_id):
                raise SqsError(
                    "InvalidBatchEntryId",
                    "A batch entry id can only contain alphanumeric characters, hyphens and underscores. "
                    "It can be at most 80 letters long.",
                )
            if entry_id in seen:
                raise SqsError("BatchEntryIdsNotDistinct", f"Id {entry_id} repeated.")
            seen.add(entry_id)
        inspected: list[Any] = []
        total = 0
        for entry in entries:
            try:
                checked = self._inspect(entry)
                total += checked[2]
            except _EntryError as exc:
                checked = exc  # fails its own entry below; its body still counts toward the total
                body = entry.get("MessageBody")
                total += _utf8_len(body) if isinstance(body, str) else 0
            inspected.append(checked)
        limit = self.batch_limit if self.batch_limit is not None else queue.max_message_size
        if total > limit:
            raise SqsError(
                "BatchRequestTooLong", f"Batch requests cannot be longer than {limit} bytes. You have sent {total} bytes."
            )
        successful, failed = [], []
        for entry, checked in zip(entries, inspected):
            try:
                if self._fail_next:
                    code, sender_fault = self._fail_next.pop(0)
                    raise _EntryError(code, "Injected failure.", sender_fault)
                if isinstance(checked, _EntryError):
                    raise checked
                body, attributes, size, attributes_md5 = checked
                self._check_size(queue, size)
            except _EntryError as exc:
                failed.append({"Id": entry["Id"], "SenderFault": exc.sender_fault, "Code": exc.name, "Message": exc.message})
                self._failed_entries[exc.name] += 1
                continue
            successful.append({"Id": entry["Id"], **self._accept(queue, body, attributes, size, attributes_md5)})
        if successful:
            self._batches_accepted += 1
            self._largest_batch = max(self._largest_batch, total)
        return {"Successful": successful, "Failed": failed}

    def _expire_in_flight(self, queue: _Queue) -> None:
        if not queue.in_flight:
            return
        now = time.monotonic()
        for handle, (deadline, message) in list(queue.in_flight.items()):
            if deadline <= now:
                del queue.in_flight[handle]
                queue.visible.appendleft(message)

    def _op_receive_message(self, params, base_url):
        queue = self._queue(params)
        count = params.get("MaxNumberOfMessages", 1)
        if not isinstance(count, int) or not 1 <= count <= 10:
            raise SqsError(
                "InvalidParameterValue",
                f"Value {count} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.",
            )
        visibility = params.get("VisibilityTimeout")
        visibility = int(queue.attributes["VisibilityTimeout"]) if visibility is None else int(visibility)
        wait = params.get("WaitTimeSeconds")
        wait = int(queue.attributes["ReceiveMessageWaitTimeSeconds"]) if wait is None else int(wait)
        deadline = time.monotonic() + min(wait, 20)
        self._expire_in_flight(queue)
        while not queue.visible and self.keep_bodies and time.monotonic() < deadline:
            self._lock.wait(timeout=min(0.2, deadline - time.monotonic()))
            self._expire_in_flight(queue)
        wanted_attrs = set(params.get("MessageAttributeNames") or [])
        wanted_system = set(params.get("MessageSystemAttributeNames") or []) | set(params.get("AttributeNames") or [])
        out = []
        while queue.visible and len(out) < count:
            message = queue.visible.popleft()
            message["ReceiveCount"] += 1
            if message["FirstReceive"] is None:
                message["FirstReceive"] = str(int(time.time() * 1000))
            handle = uuid.uuid4().hex
            queue.in_flight[handle] = (time.monotonic() + visibility, message)
            item: dict[str, Any] = {
                "MessageId": message["MessageId"],
                "ReceiptHandle": handle,
                "MD5OfBody": message["MD5OfBody"],
                "Body": message["Body"],
            }
            system = {
                "SentTimestamp": message["SentTimestamp"],
                "ApproximateReceiveCount": str(message["ReceiveCount"]),
                "ApproximateFirstReceiveTimestamp": message["FirstReceive"],
                "SenderId": "AIDAFAKESQSENDPOINT",
            }
            if "All" in wanted_system:
                item["Attributes"] = system
            elif wanted_system & set(system):
                item["Attributes"] = {k: v for k, v in system.items() if k in wanted_system}
            attrs = message["MessageAttributes"]
            if attrs and wanted_attrs:
                if wanted_attrs & {"All", ".*"}:
                    chosen = attrs
                else:
                    chosen = {
                        k: v
                        for k, v in attrs.items()
                        if k in wanted_attrs or any(p.endswith(".*") and k.startswith(p[:-1]) for p in wanted_attrs)
                    }
                if chosen:
                    item["MessageAttributes"] = chosen
                    item["MD5OfMessageAttributes"] = md5_of_attributes(chosen)
            out.append(item)
        return {"Messages": out} if out else {}

    def _delete(self, queue: _Queue, handle: str) -> None:
        if handle in queue.in_flight:
            del queue.in_flight[handle]
            queue.held -= 1
        elif not handle:
            raise _EntryError("ReceiptHandleIsInvalid", f'The input receipt handle "{handle}" is not a valid receipt handle.')
        # SQS accepts a stale handle of a message already deleted or redelivered: nothing to do.

    def _op_delete_message(self, params, base_url):
        queue = self._queue(params)
        try:
            self._delete(queue, params.get("ReceiptHandle") or "")
        except _EntryError as exc:
            raise SqsError(exc.name, exc.message) from None
        return {}

    def _op_delete_message_batch(self, params, base_url):
        queue = self._queue(params)
        entries = params.get("Entries") or []
        if not entries:
            raise SqsError("EmptyBatchRequest", "There should be at least one DeleteMessageBatchRequestEntry in the request.")
        if len(entries) > MAX_BATCH_ENTRIES:
            raise SqsError(
                "TooManyEntriesInBatchRequest",
                f"Maximum number of entries per request are {MAX_BATCH_ENTRIES}. You have sent {len(entries)}.",
            )
        if len({e.get("Id") for e in entries}) != len(entries):
            raise SqsError("BatchEntryIdsNotDistinct", "Ids repeated.")
        successful, failed = [], []
        for entry in entries:
            try:
                self._delete(queue, entry.get("ReceiptHandle") or "")
                successful.append({"Id": entry["Id"]})
            except _EntryError as exc:
                failed.append({"Id": entry["Id"], "SenderFault": True, "Code": exc.name, "Message": exc.message})
        return {"Successful": successful, "Failed": failed}

    _OPERATIONS = {
        "CreateQueue": _op_create_queue,
        "GetQueueUrl": _op_get_queue_url,
        "ListQueues": _op_list_queues,
        "DeleteQueue": _op_delete_queue,
        "GetQueueAttributes": _op_get_queue_attributes,
        "SetQueueAttributes": _op_set_queue_attributes,
        "PurgeQueue": _op_purge_queue,
        "SendMessage": _op_send_message,
        "SendMessageBatch": _op_send_message_batch,
        "ReceiveMessage": _op_receive_message,
        "DeleteMessage": _op_delete_message,
        "DeleteMessageBatch": _op_delete_message_batch,
    }

    def handle(self, target: str, raw: bytes, base_url: str) -> tuple[int, dict[str, str], bytes]:
        """One JSON-protocol request -> (status, extra headers, body). Counts everything."""
        operation = target.split(".", 1)[1] if target.startswith("AmazonSQS.") else ""
        with self._lock:
            self._calls[operation or "(none)"] += 1
            self._request_bytes += len(raw)
        try:
            # Parsed outside the lock: the biggest cost of a call, and it needs no shared state.
            params = self._parse(operation, raw)
            with self._lock:
                result = self.dispatch(operation, params, base_url)
        except SqsError as exc:
            with self._lock:
                self._rejected[exc.query_code] += 1
            body = json.dumps({"__type": exc.type, "message": exc.message}).encode()
            return exc.status, {"x-amzn-query-error": f"{exc.query_code};Sender"}, body
        return 200, {}, json.dumps(result, separators=(",", ":")).encode()

    @staticmethod
    def _parse(operation: str, raw: bytes) -> dict[str, Any]:
        if not operation:
            raise SqsError(
                "UnsupportedOperation",
                "Only the AWS JSON 1.0 protocol is spoken here (X-Amz-Target: AmazonSQS.<Operation>).",
            )
        try:
            params = json.loads(raw) if raw else {}
        except ValueError:
            raise SqsError("InvalidParameterValue", "The request body is not valid JSON.") from None
        if not isinstance(params, dict):
            raise SqsError("InvalidParameterValue", "The request body must be a JSON object.")
        return params


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSqs  # bound per server
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    # Headers and body go out in one write, but without this a small response can still wait on
    # Nagle + the client's delayed ACK (~40 ms per call on loopback).
    disable_nagle_algorithm = True
    server_version = "fake-sqs"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        with self.fake._lock:
            self.fake._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.fake._lock:
                self.fake._connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # a line per request would cost more than the request

    def _reply(self, status: int, headers: dict[str, str], body: bytes, content_type: str = JSON_CONTENT_TYPE) -> None:
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\nx-amzn-RequestId: {_new_message_id()}\r\n"
        )
        for key, value in headers.items():
            head += f"{key}: {value}\r\n"
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write((head + "\r\n").encode("latin-1") + body)

    def handle_one_request(self) -> None:
        """A lean HTTP/1.1 request reader: the stdlib's parse_request (email-package header
        parsing, a Date header per response) costs more than the SQS work of a 10-entry batch."""
        self.close_connection = True
        line = self.rfile.readline(65537)
        if not line:
            return
        parts = line.split()
        if len(parts) != 3 or len(line) > 65536:
            self._reply(400, {}, b'{"message": "bad request line"}')
            return
        method, path, version = parts
        headers: dict[bytes, bytes] = {}
        while True:
            header = self.rfile.readline(65537)
            if header in (b"\r\n", b"\n", b""):
                break
            key, _, value = header.partition(b":")
            headers[key.strip().lower()] = value.strip()
            if len(headers) > 100:
                self._reply(400, {}, b'{"message": "too many headers"}')
                return
        self.close_connection = version != b"HTTP/1.1" or headers.get(b"connection", b"").lower() == b"close"
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            self.close_connection = True
            self._reply(411, {}, b'{"message": "chunked bodies are not supported; send Content-Length"}')
            return
        if headers.get(b"expect", b"").lower() == b"100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        length = int(headers.get(b"content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        if method == b"POST" and path.startswith(b"/_reset"):
            self.fake.reset()
            self._reply(200, {}, b"{}", "application/json")
        elif method == b"GET" and path.startswith(b"/_stats"):
            self._reply(200, {}, json.dumps(self.fake.stats()).encode(), "application/json")
        elif method == b"POST":
            host = headers.get(b"host", b"").decode("latin-1") or f"{self.fake.host}:{self.server.server_address[1]}"
            target = headers.get(b"x-amz-target", b"").decode("latin-1")
            status, extra, body = self.fake.handle(target, raw, f"http://{host}")
            self._reply(status, extra, body)
        else:
            self._reply(200, {}, b'{"service": "fake-sqs"}', "application/json")


_REASONS = {200: "OK", 400: "Bad Request", 411: "Length Required", 500: "Internal Server Error"}


class FakeSqsProcess:
    """The endpoint in a child process, so that its CPU time and memory stay out of the process
    being measured; counters come over HTTP (GET /_stats)."""

    def __init__(self, port: int = 0, **options: Any):
        self.port = port
        self.options = options
        self.endpoint: str | None = None
        self._proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> str:
        args = [sys.executable, __file__, "--port", str(self.port)]
        for key, value in self.options.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                args.append(flag)
            elif value not in (None, False):
                args += [flag, str(value)]
        self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        assert self._proc.stdout is not None
        while time.monotonic() < deadline:
            line = self._proc.stdout.readline()
            if not line:
                break
            if line.startswith(ENDPOINT_BANNER):
                self.endpoint = line.split()[1]
                return self.endpoint
        self.stop()
        raise RuntimeError("fake SQS endpoint did not start")

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.endpoint}/_stats", timeout=10) as response:
            return json.loads(response.read())

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/_reset", method="POST"), timeout=10).read()

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None

    def __enter__(self) -> FakeSqsProcess:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Minimal SQS-compatible endpoint (AWS JSON 1.0) for benchmarks.")
    parser.add_argument("--port", type=int, default=9324)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--max-message-size", type=int, default=SERVICE_MAX_MESSAGE_SIZE,
                        help="MaximumMessageSize of queues created without one (default 1048576)")  # fmt: skip
    parser.add_argument("--batch-limit", type=int, default=None,
                        help="total bytes of one SendMessageBatch (default: the queue's MaximumMessageSize)")  # fmt: skip
    parser.add_argument("--keep-bodies", action="store_true", help="keep messages so ReceiveMessage returns them")
    parser.add_argument("--queue", action="append", default=[], help="create this queue at start (repeatable)")
    args = parser.parse_args(argv)
    fake = FakeSqs(
        port=args.port,
        host=args.host,
        max_message_size=args.max_message_size,
        batch_limit=args.batch_limit,
        keep_bodies=args.keep_bodies,
    )
    endpoint = fake.start()
    for name in args.queue:
        fake.create_queue(name)
    print(f"{ENDPOINT_BANNER} {endpoint}", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    while not stopped.wait(timeout=0.5):
        pass
    fake.stop()
    print(json.dumps(fake.stats()), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
