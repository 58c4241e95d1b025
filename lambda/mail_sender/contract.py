"""The message contract between producers (mailctl send, the web application) and the sender.

One SQS message carries one chunk of one job's recipients. The body is JSON; see
docs/message-format.md for the full description other producers can follow. Version 1:

    {
      "version": 1,
      "job_id": "november-newsletter-3f9a2c1b",
      "chunk": 17,
      "bundle": {"bucket": "mailctl-payloads", "key": "bundles/<sha256>.json"},
      "recipients": [{"email": "a@example.com", "row": 19, "vars": {"name": "..."}}]
    }

The template bundle (subject, html, text, from, reply_to, headers, unsubscribe_url; from version
2 also attachments and inline images) lives in S3, uploaded once per job, content-addressed. A body too large for the queue travels through S3 as an
SQS extended client pointer; `parse_pointer` recognises both pointer formats.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})

# The SQS extended client's pointer body, current (Python/Java 2.x) and legacy (Java 1.x) formats.
POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"
LEGACY_POINTER_CLASS = "com.amazon.sqs.javamessaging.MessageS3Pointer"
POINTER_CLASSES = frozenset({POINTER_CLASS, LEGACY_POINTER_CLASS})
PAYLOAD_SIZE_ATTRIBUTE = "ExtendedPayloadSize"
LEGACY_PAYLOAD_SIZE_ATTRIBUTE = "SQSLargePayloadSize"

# Message attributes every mailctl message carries, so that a person (or `mailctl dlq`) can tell a
# job's messages apart without decoding bodies that may live in S3.
JOB_ATTRIBUTE = "mailctl.job_id"
CHUNK_ATTRIBUTE = "mailctl.chunk"


class ContractError(ValueError):
    """The body is not a message this sender understands: a poison message."""


@dataclass(frozen=True)
class BundleRef:
    bucket: str
    key: str


@dataclass(frozen=True)
class Recipient:
    email: str
    vars: dict[str, Any] = field(default_factory=dict)
    row: int | None = None

    @property
    def key(self) -> str:
        """The business identity within a job: the case-folded address."""
        return recipient_key(self.email)


@dataclass(frozen=True)
class Chunk:
    job_id: str
    chunk: int
    bundle: BundleRef
    recipients: tuple[Recipient, ...]
    version: int = VERSION


def recipient_key(email: str) -> str:
    return email.strip().lower()


def encode_recipient(email: str, vars: dict[str, Any], row: int | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"email": email, "vars": vars}
    if row is not None:
        item["row"] = row
    return item


def encode_chunk_body(job_id: str, chunk: int, bundle: BundleRef, recipients: list[dict[str, Any]]) -> str:
    """Serialise a chunk; `recipients` are items from `encode_recipient`."""
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    return assemble_chunk_body(job_id, chunk, bundle, [encoder.encode(r) for r in recipients])


def assemble_chunk_body(job_id: str, chunk: int, bundle: BundleRef, encoded_recipients: list[str]) -> str:
    """A chunk body from recipients already encoded as JSON text: `mailctl send` encodes each row
    once while checking it, and re-encoding a million of them here would cost seconds."""
    def text(value: str) -> str:
        return json.dumps(value, ensure_ascii=False)

    return (
        f'{{"version":{VERSION},"job_id":{text(job_id)},"chunk":{chunk},'
        f'"bundle":{{"bucket":{text(bundle.bucket)},"key":{text(bundle.key)}}},'
        f'"recipients":[{",".join(encoded_recipients)}]}}'
    )


def parse_pointer(body: str) -> BundleRef | None:
    """Return the S3 location if `body` is an extended-client pointer, else None."""
    if not body.startswith("["):
        return None
    try:
        value = json.loads(body)
    except ValueError:
        return None
    if (
        isinstance(value, list)
        and len(value) == 2
        and value[0] in POINTER_CLASSES
        and isinstance(value[1], dict)
        and isinstance(value[1].get("s3BucketName"), str)
        and isinstance(value[1].get("s3Key"), str)
    ):
        return BundleRef(bucket=value[1]["s3BucketName"], key=value[1]["s3Key"])
    return None


def decode_chunk(body: str | bytes) -> Chunk:
    """Parse and validate a chunk body. Raises ContractError with a reason a person can read."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractError(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ContractError("body is not a JSON object")
    version = data.get("version")
    if version not in SUPPORTED_VERSIONS:
        raise ContractError(
            f"unsupported message version {version!r} (this sender reads {sorted(SUPPORTED_VERSIONS)})"
        )
    job_id = data.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        raise ContractError("missing or empty 'job_id'")
    chunk = data.get("chunk", 0)
    if not isinstance(chunk, int) or isinstance(chunk, bool):
        raise ContractError("'chunk' must be an integer")
    bundle = data.get("bundle")
    if not isinstance(bundle, dict) or not isinstance(bundle.get("bucket"), str) or not isinstance(bundle.get("key"), str):
        raise ContractError("'bundle' must be an object with string 'bucket' and 'key'")
    raw_recipients = data.get("recipients")
    if not isinstance(raw_recipients, list):
        raise ContractError("'recipients' must be a list")
    recipients = [_recipient(index, item) for index, item in enumerate(raw_recipients)]
    return Chunk(
        job_id=job_id,
        chunk=chunk,
        bundle=BundleRef(bucket=bundle["bucket"], key=bundle["key"]),
        recipients=tuple(recipients),
        version=version,
    )


def _recipient(index: int, item: Any) -> Recipient:
    if not isinstance(item, dict) or not isinstance(item.get("email"), str) or not item["email"]:
        raise ContractError(f"recipients[{index}] has no 'email'")
    vars_ = item.get("vars", {})
    if not isinstance(vars_, dict):
        raise ContractError(f"recipients[{index}].vars must be an object")
    row = item.get("row")
    return Recipient(email=item["email"], vars=vars_, row=row if isinstance(row, int) else None)


def decode_recipient(encoded: str) -> Recipient:
    """One recipient item (JSON text, as in a chunk's `recipients`), read as the sender reads it."""
    try:
        return _recipient(0, json.loads(encoded))
    except ValueError as exc:
        raise ContractError(f"recipient is not JSON: {exc}") from None


# --- the template bundle -------------------------------------------------------------------------

# Version 2 adds `attachments` and `inline` (mail_sender.attachments). A producer writes the
# lowest version that holds its bundle, so a bundle without files stays readable by senders that
# predate them, and one with files is refused (poison, DLQ) by such a sender instead of going out
# without its files.
BUNDLE_VERSION = 1
BUNDLE_FILES_VERSION = 2
SUPPORTED_BUNDLE_VERSIONS = frozenset({BUNDLE_VERSION, BUNDLE_FILES_VERSION})
BUNDLE_FILE_FIELDS = ("attachments", "inline")
BUNDLE_FIELDS = ("subject", "html", "text", "from", "reply_to", "headers", "unsubscribe_url", "configuration_set", *BUNDLE_FILE_FIELDS)


def encode_bundle(bundle: dict[str, Any]) -> tuple[bytes, str]:
    """Serialise a template bundle; returns the bytes and their content address (sha256 hex)."""
    bundle = {k: v for k, v in bundle.items() if k not in BUNDLE_FILE_FIELDS or v}
    version = BUNDLE_FILES_VERSION if any(k in bundle for k in BUNDLE_FILE_FIELDS) else BUNDLE_VERSION
    body = json.dumps({**bundle, "version": version}, ensure_ascii=False, sort_keys=True).encode()
    return body, hashlib.sha256(body).hexdigest()


def bundle_key(digest: str) -> str:
    return f"bundles/{digest}.json"


def decode_bundle(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ContractError(f"template bundle is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("version") not in SUPPORTED_BUNDLE_VERSIONS:
        raise ContractError(f"unsupported template bundle version {data.get('version') if isinstance(data, dict) else None!r}")
    if data["version"] < BUNDLE_FILES_VERSION and any(data.get(k) for k in BUNDLE_FILE_FIELDS):
        raise ContractError(f"template bundle version {data['version']} cannot carry attachments: write version {BUNDLE_FILES_VERSION}")
    if not data.get("html") and not data.get("text"):
        raise ContractError("template bundle has neither 'html' nor 'text'")
    if not data.get("subject") or not data.get("from"):
        raise ContractError("template bundle needs 'subject' and 'from'")
    return data


# --- the job manifest and idempotency records, in the one DynamoDB table ---------------------------

# Table key schema: partition key `pk`, sort key `sk` (both strings), TTL on `expiration`.
# Job manifests live under pk=JOBS_PK, sk=<job_id>, so `mailctl jobs` is one Query.
# A job's idempotency records live under pk=job_partition(job_id, shard), sk=<hashed key>, so
# `mailctl status` reads one job with one Query per shard and never scans the table.
PK_ATTR = "pk"
SK_ATTR = "sk"
JOBS_PK = "jobs"
IDEMPOTENCY_KEY_PREFIX = "recipient"

# Set on a job's manifest by the sender while its records wait for SES (quota, rate, identity):
# what it waits for, the reason SES gave, and until when (epoch seconds); removed once mail flows.
JOB_WAITING_FOR = "waiting_for"
JOB_WAITING_REASON = "waiting_reason"
JOB_WAITING_UNTIL = "waiting_until"
# A paused job (mailctl pause JOB, or the guard): its manifest carries who or what paused it, when
# and why. The sender sends none of its recipients while `paused_at` is set; the state itself
# (enqueueing/enqueued/...) is left alone, so a pause never races the enqueue's conditional writes.
JOB_PAUSED_AT = "paused_at"
JOB_PAUSED_BY = "paused_by"
JOB_PAUSED_REASON = "paused_reason"
# The sender's shared send budget: pk=PACING_PK, sk=<scope>#<window>, a counter `used` per window.
PACING_PK = "pacing"

JOB_STATE_ENQUEUEING = "enqueueing"
JOB_STATE_ENQUEUED = "enqueued"
JOB_STATE_CANCELLED = "cancelled"


def job_partition(job_id: str, shard: int = 0, shards: int = 1) -> str:
    return f"job#{job_id}" if shards <= 1 else f"job#{job_id}#{shard}"


def shard_of(key: str, shards: int) -> int:
    if shards <= 1:
        return 0
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big") % shards


def idempotency_data(job_id: str, email: str) -> dict[str, str]:
    """What the sender's idempotency is keyed on: the job and the recipient, never the SQS message."""
    return {"job_id": job_id, "recipient": recipient_key(email)}


def idempotency_sort_key(job_id: str, email: str) -> str:
    """The sort key Powertools writes for this recipient (md5 of the sorted-key JSON of the data).

    Kept in step with Powertools by tests/lambda/test_idempotency_key.py, which compares it with what
    the persistence layer actually stores.
    """
    data = json.dumps(idempotency_data(job_id, email), sort_keys=True)
    return f"{IDEMPOTENCY_KEY_PREFIX}#{hashlib.md5(data.encode()).hexdigest()}"


# --- delivery events and the suppression list, in the same table ----------------------------------

# What SES said happened after it accepted a recipient's mail lives in an item of its own, next to
# the recipient's idempotency record (same partition, sort key "delivery#<same md5>"), never on
# that record: Powertools replaces the record whole with PutItem when it (re)starts a send and
# deletes it when a send raises, either of which would erase an event that arrived first.
DELIVERY_KEY_PREFIX = "delivery"

# The suppression list: pk="suppression#<n>", sk=<recipient key>. Sixteen partitions, because one
# partition key takes about 1,000 writes/s and an import of 100,000 addresses must not take minutes.
SUPPRESSION_PK_PREFIX = "suppression"
SUPPRESSION_SHARDS = 16
SUPPRESSION_REASON_BOUNCE = "BOUNCE"
SUPPRESSION_REASON_COMPLAINT = "COMPLAINT"
SUPPRESSION_REASON_MANUAL = "MANUAL"

JOB_STATE_SENDING = "sending"
JOB_STATE_COMPLETE = "complete"
JOB_STATE_PAUSED = "paused"
# Every chunk is on the queue: `enqueued`, or `complete` once every recipient has an outcome.
JOB_STATES_FULLY_ENQUEUED = (JOB_STATE_ENQUEUED, JOB_STATE_COMPLETE)

# The SES message tag the sender puts on every mail, and the events handler reads back.
JOB_TAG = "job_id"


def delivery_sort_key(job_id: str, email: str) -> str:
    """The sort key of a recipient's delivery item: the idempotency record's hash, another prefix."""
    return DELIVERY_KEY_PREFIX + idempotency_sort_key(job_id, email)[len(IDEMPOTENCY_KEY_PREFIX):]


def suppression_partition(email: str) -> str:
    return f"{SUPPRESSION_PK_PREFIX}#{shard_of(recipient_key(email), SUPPRESSION_SHARDS)}"


def suppression_partitions() -> list[str]:
    return [f"{SUPPRESSION_PK_PREFIX}#{n}" for n in range(SUPPRESSION_SHARDS)]
