"""Exact per-job counters, written in the same DynamoDB transaction as the outcome they count.

A job enqueued with `counter_shards` N on its manifest keeps N counter items, each its own
partition key "counts#<job>#<n>" (sk "counts"; n = the recipient's record hash mod N), so that
`mailctl status` reads N items (one BatchGetItem) instead of every record. A partition key takes
about 1,000 write units/s and a transactional write costs 2 units: N = 16 carries a job sending
at 5,000/s with ~310 writes (~625 units) a second on each.

Exactness: a counter moves only inside a TransactWriteItems whose other write is the outcome's own
transition, conditional on the previous state:
- the sender's outcome: Powertools' INPROGRESS -> COMPLETED update of the idempotency record
  (subclassed below), conditional on the record still being INPROGRESS. A replay (redelivery,
  duplicate, redrive) is answered from the COMPLETED record by Powertools without this write; a
  crash before the transaction leaves the record INPROGRESS and the counter untouched, and the
  retry counts it; a second invocation that took over an expired INPROGRESS record loses the
  condition and changes neither (the first outcome stands in both).
- a delivery event: the delivery item's rank update, conditional on the rank and event read just
  before (a concurrent writer makes the condition fail; we read again). The old event's counter
  goes down and the new one's up in the same transaction, so duplicates and reordering (a lower
  rank arriving later changes nothing) leave the counts equal to the items.
- the first open/click: conditional on the attribute being absent.
Cost per recipient sent: a transaction of two items is 2 x 2 = 4 write units, against the 1 unit
of Powertools' plain update it replaces: 5 instead of 2 for the outcome (see docs/benchmarks.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

COUNTS_PK_PREFIX = "counts"
COUNTER_SHARDS = 16  # manifests of new jobs carry it; absent means "count from the records"
COUNTER_SK = "counts"
MANIFEST_ATTR = "counter_shards"
# Attribute names on a counter item.
OUTCOMES = ("sent", "failed", "skipped", "unknown")
FAILED_PREFIX = "failed:"  # failed:<reason code>: the reason up to its first ':' (no addresses)
SKIPPED_PREFIX = "skipped:"
EVENT_PREFIX = "event:"  # event:<delivery outcome> (the weightiest event recorded per recipient)
ENGAGEMENT = ("opened_at", "clicked_at")
LAST_AT, FIRST_AT = "last_at", "first_at"  # outcome times (epoch s): status's average rate
REASON_CODE_LIMIT = 80
TRANSACTION_CANCELLED = "TransactionCanceledException"
CONDITION_FAILED = "ConditionalCheckFailed"
EVENT_ATTEMPTS = 8


def counts_partition(job_id: str, shard: int) -> str:
    return f"{COUNTS_PK_PREFIX}#{job_id}#{shard}"


def counter_keys(job_id: str, shards: int) -> list[dict[str, Any]]:
    """Every counter item's key of a job (wire shape), for one BatchGetItem."""
    return [{"pk": {"S": counts_partition(job_id, n)}, "sk": {"S": COUNTER_SK}} for n in range(shards)]


def counter_shard(sort_key: str, shards: int) -> int:
    """The recipient's counter item: from the md5 that ends its record or delivery sort key."""
    digest = sort_key.rsplit("#", 1)[-1]
    try:
        return int(digest[-8:], 16) % shards
    except ValueError:
        return 0


def reason_code(reason: str | None) -> str:
    """What a failure counter is named by: the reason's code (e.g. MessageRejected), never the
    rest, which may name an address and would make one attribute per recipient."""
    code = (reason or "no reason recorded").split(":", 1)[0].strip() or "no reason recorded"
    return code[:REASON_CODE_LIMIT]


def outcome_attributes(outcome: dict[str, Any]) -> list[str]:
    """The counter attributes one outcome adds 1 to."""
    kind = outcome.get("outcome")
    if kind not in OUTCOMES:
        kind = "failed"
    names = [kind]
    if kind == "failed":
        names.append(FAILED_PREFIX + reason_code(outcome.get("reason")))
    elif kind == "skipped":
        names.append(SKIPPED_PREFIX + reason_code(outcome.get("reason")))
    return names


@dataclass(frozen=True)
class CounterTarget:
    """Where one job's counters live."""

    table: str
    job_id: str
    shards: int

    def key(self, sort_key: str) -> dict[str, Any]:
        return {"pk": {"S": counts_partition(self.job_id, counter_shard(sort_key, self.shards))}, "sk": {"S": COUNTER_SK}}

    def update(self, sort_key: str, deltas: dict[str, int], at: float | None = None) -> dict[str, Any]:
        """The counter half of a transaction: ADD each delta (and keep the latest outcome time)."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        adds = []
        for index, (name, delta) in enumerate(deltas.items()):
            names[f"#c{index}"] = name
            values[f":c{index}"] = {"N": str(delta)}
            adds.append(f"#c{index} :c{index}")
        expression = "ADD " + ", ".join(adds)
        if at is not None:
            names["#last"], names["#first"] = LAST_AT, FIRST_AT
            values[":at"] = {"N": repr(float(at))}
            expression = "SET #last = :at, #first = if_not_exists(#first, :at) " + expression
        return {"Update": {"TableName": self.table, "Key": self.key(sort_key), "UpdateExpression": expression,
                           "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}}


def condition_failed_first(exc: Exception) -> bool:
    """A cancelled transaction whose first item (the outcome's own write) lost its condition."""
    response = getattr(exc, "response", {}) or {}
    if response.get("Error", {}).get("Code") != TRANSACTION_CANCELLED:
        return False
    reasons = response.get("CancellationReasons") or []
    if reasons:
        return (reasons[0] or {}).get("Code") == CONDITION_FAILED
    # Some clients give only the message: "... [ConditionalCheckFailed, None]"
    message = response.get("Error", {}).get("Message", "")
    return "[ConditionalCheckFailed" in message


class CountingPersistenceLayer(DynamoDBPersistenceLayer):
    """Powertools' DynamoDB layer whose INPROGRESS -> COMPLETED update also counts the outcome.

    Only `_update_record` changes (Powertools calls it from save_success, once per fresh
    execution; replays never reach it). INPROGRESS puts and deletes stay Powertools' own."""

    def __init__(self, *args: Any, counters: CounterTarget, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.counters = counters

    def _update_record(self, data_record) -> None:
        try:
            outcome = json.loads(data_record.response_data)
        except (TypeError, ValueError):
            outcome = {}
        key = self._get_key(data_record.idempotency_key)
        sort_key = key[self.sort_key_attr]["S"]
        at = outcome.get("at") if isinstance(outcome.get("at"), (int, float)) else None
        record_update = {
            "TableName": self.table_name,
            "Key": key,
            "UpdateExpression": "SET #response_data = :response_data, #expiry = :expiry, #status = :status",
            "ConditionExpression": "#status = :in_progress",
            "ExpressionAttributeNames": {"#expiry": self.expiry_attr, "#response_data": self.data_attr, "#status": self.status_attr},
            "ExpressionAttributeValues": {
                ":expiry": {"N": str(data_record.expiry_timestamp)},
                ":response_data": {"S": data_record.response_data},
                ":status": {"S": data_record.status},
                ":in_progress": {"S": "INPROGRESS"},
            },
        }
        deltas = {name: 1 for name in outcome_attributes(outcome if isinstance(outcome, dict) else {})}
        try:
            self.client.transact_write_items(TransactItems=[{"Update": record_update}, self.counters.update(sort_key, deltas, at)])
        except Exception as exc:  # botocore's ClientError; anything else propagates as Powertools expects
            if condition_failed_first(exc):
                # Not INPROGRESS any more: another invocation completed (and counted) it first.
                return
            raise

