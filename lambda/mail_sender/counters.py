"""Exact per-job counters, derived from the state table's stream.

Every outcome the system records already lands in the state table as an item: the recipient's
Powertools idempotency record (INPROGRESS, then COMPLETED with the outcome) and its delivery item
(the weightiest SES event, the first open and click). DynamoDB Streams carries each change of those
items once, in order per item, with the image before and after. The counters function
(counters_handler.py) adds, per stream record, what the item counts for after the change minus
what it counted for before. So the counters are a function of the items themselves: a redelivered
SQS message, a duplicate or reordered SES event, or a redrive that changes no item changes no
count, and a crash between any two of the sender's writes leaves a record whose change is in the
stream either way.

What makes applying the stream exact is the checkpoint. Lambda delivers a stream shard's records in
order, at least once: a failed batch is retried from its first record, and a retried record may
come again in any order. Each counter item keeps, per stream shard, the sequence number of the last
record it applied (`seq#<shard id>`); an update adds only records after it and moves it, under a
condition on its old value. A record applied once is never applied again, however it comes back.
The shard id reaches the function because the event source mapping has a tumbling window (the
window's events carry `shardId`); the function keeps no window state.

Layout: `counter_shards` (16) items per job, pk "counts#<job>#<n>", sk "counts", n = a hash of the
stream shard id. A counter item takes one write per batch of its job's records from a stream shard
(a batch is up to 1,000 records), not one per recipient: a job sending 5,000/s puts a few writes a
second on each, far under a partition key's ~1,000/s.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from botocore.exceptions import ClientError

from mail_sender.aws import ClientFactory, LazyClient, error_code
from mail_sender.contract import DELIVERY_KEY_PREFIX, IDEMPOTENCY_KEY_PREFIX

COUNTS_PK_PREFIX = "counts"
COUNTER_SHARDS = 16  # manifests of new jobs carry it; absent means "count from the records"
COUNTER_SK = "counts"
MANIFEST_ATTR = "counter_shards"
# Attribute names on a counter item.
OUTCOMES = ("sent", "failed", "skipped", "unknown")
FAILED_PREFIX = "failed:"  # failed:<reason key>: the reason without its addresses (reason_key)
SKIPPED_PREFIX = "skipped:"
EVENT_PREFIX = "event:"  # event:<delivery outcome> (the weightiest event recorded per recipient)
ENGAGEMENT = ("opened_at", "clicked_at")
# Outcome times (epoch s), for status's average rate: one pair per stream shard (`last_at#<shard
# id>`), each moved by its shard's writer alone, so the latest is the largest whichever shard wrote.
LAST_AT, FIRST_AT = "last_at", "first_at"
CHECKPOINT_PREFIX = "seq#"  # seq#<stream shard id>: the last sequence number applied from that shard
REASON_KEY_LIMIT = 160
# Anything with an @ and no spaces or quotes around it: full addresses and masked ones (u***@x.org).
_ADDRESS = re.compile(r"[^\s<>\"',;()\[\]]+@[^\s<>\"',;()\[\]]+")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
# Stream sequence numbers are decimal strings of varying length; zero-padded, DynamoDB's string
# order is their numeric order, so the checkpoint's condition can compare them.
SEQUENCE_WIDTH = 48
# DynamoDB's TTL deletes show this principal: an expired record leaves the table, not the counts.
TTL_PRINCIPAL = "dynamodb.amazonaws.com"
JOB_PARTITION_PREFIX = "job#"
RECORD_SK_PREFIX = IDEMPOTENCY_KEY_PREFIX + "#"
DELIVERY_SK_PREFIX = DELIVERY_KEY_PREFIX + "#"
CONDITION_FAILED = "ConditionalCheckFailedException"
VALIDATION = "ValidationException"  # e.g. "Item size to update has exceeded the maximum allowed size"
MANY_REASONS = "other reasons (too many to count apart: `status --recipients failed` lists them)"
APPLY_ATTEMPTS = 8


def counts_partition(job_id: str, shard: int) -> str:
    return f"{COUNTS_PK_PREFIX}#{job_id}#{shard}"


def counter_keys(job_id: str, shards: int) -> list[dict[str, Any]]:
    """Every counter item's key of a job (wire shape), for one BatchGetItem."""
    return [{"pk": {"S": counts_partition(job_id, n)}, "sk": {"S": COUNTER_SK}} for n in range(shards)]


def counter_shard(stream_shard_id: str, shards: int = COUNTER_SHARDS) -> int:
    """The counter item a stream shard writes a job's counts to."""
    return int.from_bytes(hashlib.blake2b(stream_shard_id.encode(), digest_size=4).digest(), "big") % shards


def reason_key(reason: str | None) -> str:
    """What a failure counter is named by: the reason with every address in it replaced by
    `<address>` and every quoted value (a file name, a template variable's value) by '…',
    whitespace folded, at most REASON_KEY_LIMIT characters. The same failure for many recipients
    is one counter, and no counter names a recipient."""
    text = _QUOTED.sub("'…'", _ADDRESS.sub("<address>", " ".join((reason or "").split())))
    return text[:REASON_KEY_LIMIT] or "no reason recorded"


def outcome_attributes(outcome: dict[str, Any]) -> list[str]:
    """The counter attributes one outcome adds 1 to."""
    kind = outcome.get("outcome")
    if kind not in OUTCOMES:
        kind = "failed"
    names = [kind]
    if kind == "failed":
        names.append(FAILED_PREFIX + reason_key(outcome.get("reason")))
    elif kind == "skipped":
        names.append(SKIPPED_PREFIX + reason_key(outcome.get("reason")))
    return names


@dataclass
class Totals:
    """A job's counter items summed: every count, and the first and last outcome times."""

    counts: Counter = field(default_factory=Counter)
    first_at: float | None = None
    last_at: float | None = None

    def by_prefix(self, prefix: str) -> dict[str, int]:
        """The counts named `<prefix><name>`, by name, largest first (zeros left out)."""
        found = {name[len(prefix):]: n for name, n in self.counts.items() if name.startswith(prefix) and n}
        return dict(sorted(found.items(), key=lambda pair: (-pair[1], pair[0])))


def sum_items(items: Iterable[dict[str, Any]]) -> Totals:
    """A job's counter items (plain values) summed. Checkpoints are strings and left out."""
    totals = Totals()
    for item in items:
        for name, value in item.items():
            if isinstance(value, (str, bool)) or value is None:
                continue
            kind = name.split("#", 1)[0]
            if kind == LAST_AT:
                totals.last_at = max(totals.last_at or 0.0, float(value))
            elif kind == FIRST_AT:
                totals.first_at = float(value) if totals.first_at is None else min(totals.first_at, float(value))
            else:
                totals.counts[name] += int(value)
    return totals


def jobs_with_delivery_changes(records: Iterable[dict[str, Any]]) -> list[str]:
    """The jobs whose delivery items changed in these records: the guard judges them again."""
    jobs: dict[str, None] = {}
    for record in records:
        keys = (record.get("dynamodb") or {}).get("Keys") or {}
        job_id = job_of(keys.get("pk", {}).get("S", ""))
        if job_id is not None and keys.get("sk", {}).get("S", "").startswith(DELIVERY_SK_PREFIX):
            jobs[job_id] = None
    return list(jobs)


def job_of(partition: str) -> str | None:
    """The job of a record or delivery item's partition: "job#<job>" or "job#<job>#<shard>"."""
    if not partition.startswith(JOB_PARTITION_PREFIX):
        return None
    rest = partition[len(JOB_PARTITION_PREFIX):]
    head, _, tail = rest.rpartition("#")
    return head if head and tail.isdigit() else rest


def contribution(image: dict[str, Any] | None) -> tuple[Counter, float | None]:
    """What one item (wire shape) counts for in its job's counters, and its outcome's time."""
    counts: Counter = Counter()
    if not image:
        return counts, None
    sort_key = image.get("sk", {}).get("S", "")
    if sort_key.startswith(RECORD_SK_PREFIX):
        if image.get("status", {}).get("S") != "COMPLETED":
            return counts, None  # in progress: not an outcome yet
        try:
            outcome = json.loads(image.get("data", {}).get("S") or "")
        except ValueError:
            outcome = None
        if not isinstance(outcome, dict):
            outcome = {"outcome": "failed", "reason": "completed record without a readable outcome"}
        counts.update(outcome_attributes(outcome))
        at = outcome.get("at")
        return counts, float(at) if isinstance(at, (int, float)) else None
    if sort_key.startswith(DELIVERY_SK_PREFIX):
        event = image.get("event", {}).get("S")
        if event:
            counts[EVENT_PREFIX + event] += 1
        for name in ENGAGEMENT:
            if name in image:
                counts[name] += 1
    return counts, None


@dataclass
class JobDelta:
    """What a run of stream records changes in one job's counts from one stream shard."""

    counts: Counter = field(default_factory=Counter)
    first_sequence: str = ""
    last_sequence: str = ""
    first_at: float | None = None
    last_at: float | None = None

    def add(self, sequence: str, change: Counter, at: float | None) -> None:
        self.first_sequence = self.first_sequence or sequence
        self.last_sequence = sequence
        self.counts.update(change)
        if at is not None:
            self.first_at = at if self.first_at is None else min(self.first_at, at)
            self.last_at = at if self.last_at is None else max(self.last_at, at)


def padded(sequence: str) -> str:
    return sequence.zfill(SEQUENCE_WIDTH)


def record_change(record: dict[str, Any]) -> tuple[str, str, Counter, float | None] | None:
    """One stream record as (job, padded sequence number, count changes, outcome time); None for
    a record that counts for nothing (another kind of item, or DynamoDB's TTL deleting one)."""
    stream = record.get("dynamodb") or {}
    partition = (stream.get("Keys") or {}).get("pk", {}).get("S", "")
    job_id = job_of(partition)
    if job_id is None:
        return None
    identity = record.get("userIdentity") or {}
    if record.get("eventName") == "REMOVE" and identity.get("principalId") == TTL_PRINCIPAL:
        return None
    after, at = contribution(stream.get("NewImage"))
    before, _ = contribution(stream.get("OldImage"))
    change = Counter(after)
    change.subtract(before)
    return job_id, padded(str(stream.get("SequenceNumber", "0"))), Counter({k: v for k, v in change.items() if v}), at


def job_deltas(records: Iterable[dict[str, Any]]) -> dict[str, list[tuple[str, Counter, float | None]]]:
    """The batch's records that change a count, grouped by job, in stream order. (A record that
    changes none, such as an INPROGRESS insert, needs no write: skipping it never lets a later
    record be counted twice, since the checkpoint only moves past records that were applied.)"""
    grouped: dict[str, list[tuple[str, Counter, float | None]]] = {}
    for record in records:
        found = record_change(record)
        if found is None:
            continue
        job_id, sequence, change, at = found
        if change:
            grouped.setdefault(job_id, []).append((sequence, change, at))
    return grouped


def fold(changes: list[tuple[str, Counter, float | None]], after: str = "") -> JobDelta | None:
    """The changes after sequence `after` (padded), summed; None if none is left."""
    delta = JobDelta()
    for sequence, change, at in changes:
        if sequence > after:
            delta.add(sequence, change, at)
    return delta if delta.last_sequence else None


def counter_update(table: str, job_id: str, stream_shard_id: str, delta: JobDelta,
                   expected: str | None) -> dict[str, Any]:
    """The UpdateItem that applies `delta` to the job's counter item for this stream shard, if its
    checkpoint is still `expected` (None: the optimistic first try, "before the delta's first
    record")."""
    names: dict[str, str] = {"#ck": CHECKPOINT_PREFIX + stream_shard_id}
    values: dict[str, Any] = {":last": {"S": delta.last_sequence}}
    sets = ["#ck = :last"]
    adds = []
    for index, (name, n) in enumerate(sorted(delta.counts.items())):
        names[f"#c{index}"] = name
        values[f":c{index}"] = {"N": str(n)}
        adds.append(f"#c{index} :c{index}")
    if delta.last_at is not None:
        names["#last"], names["#first"] = f"{LAST_AT}#{stream_shard_id}", f"{FIRST_AT}#{stream_shard_id}"
        values[":last_at"], values[":first_at"] = {"N": repr(delta.last_at)}, {"N": repr(delta.first_at)}
        sets += ["#last = :last_at", "#first = if_not_exists(#first, :first_at)"]
    if expected is None:
        condition = "attribute_not_exists(#ck) OR #ck < :first"
        values[":first"] = {"S": delta.first_sequence}
    elif expected == "":
        condition = "attribute_not_exists(#ck)"
    else:
        condition = "#ck = :expected"
        values[":expected"] = {"S": expected}
    expression = "SET " + ", ".join(sets) + (" ADD " + ", ".join(adds) if adds else "")
    return {"TableName": table, "Key": counter_keys(job_id, COUNTER_SHARDS)[counter_shard(stream_shard_id)],
            "UpdateExpression": expression, "ConditionExpression": condition,
            "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}


def coarsened_counts(change: Counter) -> Counter:
    """Every failed:/skipped: reason counted under one name (see CounterWriter._apply_job)."""
    found: Counter = Counter()
    for name, n in change.items():
        for prefix in (FAILED_PREFIX, SKIPPED_PREFIX):
            if name.startswith(prefix):
                name = prefix + MANY_REASONS
        found[name] += n
    return found


def coarsened(delta: JobDelta) -> JobDelta:
    return JobDelta(coarsened_counts(delta.counts), delta.first_sequence, delta.last_sequence, delta.first_at, delta.last_at)


class CounterWriter(LazyClient):
    """Applies stream batches to the counters, exactly once per record (see the module's doc)."""

    service = "dynamodb"

    def __init__(self, table: str, client: Any = None, factory: ClientFactory | None = None):
        super().__init__(client, factory)
        self.table = table
        self.writes = 0
        self.reads = 0

    def apply(self, stream_shard_id: str, records: list[dict[str, Any]]) -> int:
        """Applies one batch from one stream shard; the number of counter items written."""
        written = 0
        for job_id, changes in job_deltas(records).items():
            written += self._apply_job(stream_shard_id, job_id, changes)
        return written

    def _apply_job(self, stream_shard_id: str, job_id: str, changes: list[tuple[str, Counter, float | None]]) -> int:
        delta = fold(changes)
        expected: str | None = None  # first try: the checkpoint is before this batch (the usual case)
        coarse = False
        for _ in range(APPLY_ATTEMPTS):
            if delta is None:
                return 0  # every record of this job in the batch was applied before
            try:
                self.client.update_item(**counter_update(self.table, job_id, stream_shard_id, delta, expected))
                self.writes += 1
                return 1
            except ClientError as exc:
                if error_code(exc) == VALIDATION and "size" in str(exc).lower() and not coarse:
                    # The counter item reached DynamoDB's 400 KB: too many distinct reasons. This
                    # batch's reasons are counted together rather than stall the shard for good
                    # (outcomes stay exact; verify shows the reasons it could not keep apart).
                    coarse = True
                    delta = coarsened(delta)
                    changes = [(sequence, coarsened_counts(change), at) for sequence, change, at in changes]
                    continue
                if error_code(exc) != CONDITION_FAILED:
                    raise
            # A retried batch: some of its records were applied. Add only those after the checkpoint.
            expected = self._checkpoint(job_id, stream_shard_id)
            delta = fold(changes, after=expected)
        raise RuntimeError(f"job {job_id}: the counter checkpoint of stream shard {stream_shard_id} kept moving")

    def _checkpoint(self, job_id: str, stream_shard_id: str) -> str:
        name = CHECKPOINT_PREFIX + stream_shard_id
        item = self.client.get_item(TableName=self.table, Key=counter_keys(job_id, COUNTER_SHARDS)[counter_shard(stream_shard_id)],
                                    ConsistentRead=True, ProjectionExpression="#ck",
                                    ExpressionAttributeNames={"#ck": name}).get("Item") or {}
        self.reads += 1
        return item.get(name, {}).get("S", "")
