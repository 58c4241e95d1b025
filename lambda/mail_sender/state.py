"""The DynamoDB adapter: job manifests, failure reasons, and the idempotency persistence layers.

All in the one table (pk/sk, TTL on `expiration`); see contract.py for the layout.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError

from mail_sender import canary
from mail_sender.aws import LazyClient, error_code
from mail_sender.contract import (
    JOB_PAUSED_AT,
    JOB_PAUSED_BY,
    JOB_PAUSED_REASON,
    JOB_STATE_CANCELLED,
    JOB_WAITING_FOR,
    JOB_WAITING_REASON,
    JOB_WAITING_UNTIL,
    JOBS_PK,
    PACING_PK,
    PK_ATTR,
    SK_ATTR,
    recipient_key,
    suppression_partition,
)

FAILURES_PK = "failures"
FAILURE_RETENTION_SECONDS = 15 * 24 * 3600  # as long as idempotency records: beyond the DLQ's 14 days
# A cancel takes effect within this long: the sender reads the job state again before each send
# once its copy is this old (one GetItem per job every 2 s per container, not one per recipient).
JOB_CACHE_SECONDS = 2.0


_CONDITION_FAILED = "ConditionalCheckFailedException"
BATCH_GET_LIMIT = 100


class StateUnavailable(Exception):
    """DynamoDB failed: the record should be retried."""


@dataclass(frozen=True)
class JobInfo:
    exists: bool
    state: str | None = None
    shards: int = 1
    paused_by: str | None = None  # set while the job is paused (mailctl pause JOB, the guard, a canary)
    canary: tuple[str, int] | None = None  # (seed, cutoff): canary.py

    @property
    def cancelled(self) -> bool:
        return self.state == JOB_STATE_CANCELLED

    @property
    def paused(self) -> bool:
        return self.paused_by is not None and not self.cancelled

    @property
    def holding_for_canary(self) -> bool:
        """Held for its canary: the canary's recipients are sent, the rest waits."""
        return self.paused and self.paused_by == canary.PAUSED_BY and self.canary is not None

    def sends(self, recipient_key: str) -> bool:
        """Whether this recipient may be sent now (a cancelled job's are skipped elsewhere)."""
        if not self.paused:
            return True
        return self.holding_for_canary and canary.is_canary(self.canary[0], self.canary[1], recipient_key)


class StateStore(LazyClient):
    service = "dynamodb"

    def __init__(
        self,
        table: str,
        client: Any = None,
        factory: Any = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        job_cache_seconds: float = JOB_CACHE_SECONDS,
    ):
        super().__init__(client, factory)
        self.table = table
        self._monotonic = monotonic
        self._wall = wall
        self._job_cache_seconds = job_cache_seconds
        self._jobs: dict[str, tuple[float, JobInfo]] = {}
        self._lock = threading.Lock()

    def job(self, job_id: str) -> JobInfo:
        """The job's manifest state, cached a few seconds. A producer that keeps no manifest
        (the contract does not require one) gets an 'exists=False' job: sent, one shard."""
        now = self._monotonic()
        with self._lock:
            cached = self._jobs.get(job_id)
            if cached and now - cached[0] < self._job_cache_seconds:
                return cached[1]
        try:
            item = self.client.get_item(
                TableName=self.table,
                Key={PK_ATTR: {"S": JOBS_PK}, SK_ATTR: {"S": job_id}},
                ProjectionExpression="#state, idempotency_shards, #paused_at, #paused_by, #canary",
                ExpressionAttributeNames={"#state": "state", "#paused_at": JOB_PAUSED_AT, "#paused_by": JOB_PAUSED_BY,
                                          "#canary": canary.CANARY},
                ConsistentRead=True,
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise StateUnavailable(f"reading job {job_id!r} from table {self.table}: {exc}") from exc
        if item is None:
            info = JobInfo(exists=False)
        else:
            shards = item.get("idempotency_shards", {}).get("N")
            info = JobInfo(
                exists=True,
                state=item.get("state", {}).get("S"),
                shards=max(1, int(shards)) if shards else 1,
                paused_by=(item.get(JOB_PAUSED_BY, {}).get("S") or "someone") if JOB_PAUSED_AT in item else None,
                canary=_canary_of(item.get(canary.CANARY, {}).get("M")),
            )
        with self._lock:
            self._jobs[job_id] = (now, info)
            if len(self._jobs) > 256:
                self._jobs.pop(next(iter(self._jobs)))
        return info

    def record_failure(self, message_id: str, job_id: str | None, chunk: int | None, reason: str, receive_count: int) -> None:
        """Why a record failed, keyed by the SQS message id that the DLQ keeps."""
        wall = self._wall()
        item: dict[str, Any] = {
            PK_ATTR: {"S": FAILURES_PK},
            SK_ATTR: {"S": message_id},
            "job_id": {"S": job_id or ""},
            "reason": {"S": reason[:2000]},
            "receive_count": {"N": str(receive_count)},
            "at": {"S": datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")},
            "expiration": {"N": str(int(wall) + FAILURE_RETENTION_SECONDS)},
        }
        if chunk is not None:
            item["chunk"] = {"N": str(chunk)}
        try:
            self.client.put_item(TableName=self.table, Item=item)
        except (ClientError, BotoCoreError) as exc:
            raise StateUnavailable(f"recording the failure of message {message_id}: {exc}") from exc

    def clear_failure(self, message_id: str) -> None:
        """A record that failed before and has now succeeded no longer needs explaining."""
        try:
            self.client.delete_item(TableName=self.table, Key={PK_ATTR: {"S": FAILURES_PK}, SK_ATTR: {"S": message_id}})
        except (ClientError, BotoCoreError) as exc:
            raise StateUnavailable(f"clearing the failure of message {message_id}: {exc}") from exc

    def claim_slots(self, scope: str, window: int, window_seconds: float, count: int, limit: int) -> int | None:
        """Claim `count` of the `limit` send slots of one pacing window; the index of the first, or
        None when they no longer fit. One conditional ADD: claims from many invocations never
        overlap and never exceed the limit."""
        try:
            response = self.client.update_item(
                TableName=self.table,
                Key={PK_ATTR: {"S": PACING_PK}, SK_ATTR: {"S": f"{scope}#{window}"}},
                UpdateExpression="SET expiration = if_not_exists(expiration, :expires) ADD used :count",
                ConditionExpression="attribute_not_exists(used) OR used <= :room",
                ExpressionAttributeValues={
                    ":count": {"N": str(count)},
                    ":room": {"N": str(limit - count)},
                    ":expires": {"N": str(int((window + 1) * window_seconds) + 3600)},
                },
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise StateUnavailable(f"claiming send slots in table {self.table}: {exc}") from exc
        except BotoCoreError as exc:
            raise StateUnavailable(f"claiming send slots in table {self.table}: {exc}") from exc
        return int(response["Attributes"]["used"]["N"]) - count

    def mark_waiting(self, job_id: str, what: str, reason: str, until: float) -> None:
        """Say on the job's manifest (if it has one) that its records wait for SES, and until when."""
        self._update_manifest(
            job_id, f"SET {JOB_WAITING_FOR} = :what, {JOB_WAITING_REASON} = :reason, {JOB_WAITING_UNTIL} = :until",
            {":what": {"S": what}, ":reason": {"S": reason[:500]}, ":until": {"N": str(int(until))}},
        )

    def clear_waiting(self, job_id: str) -> None:
        self._update_manifest(job_id, f"REMOVE {JOB_WAITING_FOR}, {JOB_WAITING_REASON}, {JOB_WAITING_UNTIL}", None,
                              condition=f"attribute_exists({JOB_WAITING_FOR})")

    def _update_manifest(self, job_id: str, expression: str, values: dict[str, Any] | None,
                         condition: str = f"attribute_exists({PK_ATTR})") -> None:
        kwargs: dict[str, Any] = {"ExpressionAttributeValues": values} if values else {}
        try:
            self.client.update_item(
                TableName=self.table, Key={PK_ATTR: {"S": JOBS_PK}, SK_ATTR: {"S": job_id}},
                UpdateExpression=expression, ConditionExpression=condition, **kwargs,
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":  # no manifest, or nothing to clear
                raise StateUnavailable(f"updating job {job_id!r} in table {self.table}: {exc}") from exc
        except BotoCoreError as exc:
            raise StateUnavailable(f"updating job {job_id!r} in table {self.table}: {exc}") from exc

    def persistence_layer(self, partition: str):
        """A Powertools persistence layer whose records live under pk=<partition>, sk=<prefix>#<md5>."""
        from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

        return DynamoDBPersistenceLayer(
            table_name=self.table,
            key_attr=PK_ATTR,
            sort_key_attr=SK_ATTR,
            static_pk_value=partition,
            expiry_attr="expiration",
            boto3_client=self.client,
        )

    # --- delivery events (the events handler) ---------------------------------------------------------

    def record_delivery(self, partition: str, sort_key: str, rank: int, attributes: dict[str, str], expiration: int) -> bool:
        """Writes a recipient's delivery outcome unless one of equal or higher rank is already there.

        True if written; False if the item already holds this event or a weightier one (a
        duplicate, or a delivery arriving after the bounce). The rank makes the final state the
        same whatever order the events arrive in."""
        names = {"#rank": "rank", "#expiration": "expiration"}
        values: dict[str, Any] = {":rank": {"N": str(rank)}, ":expiration": {"N": str(expiration)}}
        sets = ["#rank = :rank", "#expiration = if_not_exists(#expiration, :expiration)"]
        removes = []
        for index, (name, value) in enumerate(attributes.items()):
            names[f"#a{index}"] = name
            if value is None:
                removes.append(f"#a{index}")  # a weightier event's item must not keep the lighter one's details
            else:
                values[f":a{index}"] = {"S": value}
                sets.append(f"#a{index} = :a{index}")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        try:
            self.client.update_item(
                TableName=self.table,
                Key={PK_ATTR: {"S": partition}, SK_ATTR: {"S": sort_key}},
                UpdateExpression=expression,
                ConditionExpression="attribute_not_exists(#rank) OR #rank < :rank",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == _CONDITION_FAILED:
                return False
            raise StateUnavailable(f"recording a delivery event in table {self.table}: {exc}") from exc
        except BotoCoreError as exc:
            raise StateUnavailable(f"recording a delivery event in table {self.table}: {exc}") from exc
        return True

    # --- the guard (guard_check.py): the job's thresholds and counters, and its pause ---------------

    def guard_manifest(self, job_id: str) -> dict[str, Any] | None:
        """The manifest's guard fields (thresholds, pause, override), strongly consistent."""
        from mail_sender.guard import GUARD, OVERRIDE

        try:
            item = self.client.get_item(
                TableName=self.table, Key={PK_ATTR: {"S": JOBS_PK}, SK_ATTR: {"S": job_id}}, ConsistentRead=True,
                ProjectionExpression="#guard, #paused_at, #override",
                ExpressionAttributeNames={"#guard": GUARD, "#paused_at": JOB_PAUSED_AT, "#override": OVERRIDE},
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise StateUnavailable(f"reading job {job_id}'s guard in table {self.table}: {exc}") from exc
        return _plain(item) if item else None

    def job_counters(self, job_id: str) -> list[dict[str, Any]]:
        """The job's counter items (counters.py), plain values: one strongly consistent BatchGetItem."""
        from mail_sender.counters import COUNTER_SHARDS, counter_keys

        request: dict[str, Any] = {self.table: {"Keys": counter_keys(job_id, COUNTER_SHARDS), "ConsistentRead": True}}
        found: list[dict[str, Any]] = []
        try:
            for _ in range(5):
                response = self.client.batch_get_item(RequestItems=request)
                found += [_plain(item) for item in response.get("Responses", {}).get(self.table, [])]
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    return found
                time.sleep(0.1)
        except (ClientError, BotoCoreError) as exc:
            raise StateUnavailable(f"reading job {job_id}'s counters in table {self.table}: {exc}") from exc
        raise StateUnavailable(f"reading job {job_id}'s counters in table {self.table}: keys left unprocessed")

    def guard_pause(self, job_id: str, reason: str, verdict: dict[str, Any], override: str, at: str) -> bool:
        """Pauses the job for the guard unless it is paused already, cancelled, or a manual resume
        overrode these thresholds. True if this call paused it."""
        from mail_sender.guard import OVERRIDE, PAUSED_BY, VERDICT

        try:
            self.client.update_item(
                TableName=self.table, Key={PK_ATTR: {"S": JOBS_PK}, SK_ATTR: {"S": job_id}},
                UpdateExpression="SET #at = :at, #by = :by, #reason = :reason, #verdict = :verdict",
                ConditionExpression=("attribute_exists(#sk) AND attribute_not_exists(#at) AND #state <> :cancelled"
                                     " AND (attribute_not_exists(#override) OR #override <> :override)"),
                ExpressionAttributeNames={"#at": JOB_PAUSED_AT, "#by": JOB_PAUSED_BY, "#reason": JOB_PAUSED_REASON,
                                          "#verdict": VERDICT, "#sk": SK_ATTR, "#state": "state", "#override": OVERRIDE},
                ExpressionAttributeValues={":at": {"S": at}, ":by": {"S": PAUSED_BY}, ":reason": {"S": reason},
                                           ":verdict": {"S": json.dumps(verdict, sort_keys=True)},
                                           ":cancelled": {"S": JOB_STATE_CANCELLED}, ":override": {"S": override}})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == _CONDITION_FAILED:
                return False
            raise StateUnavailable(f"pausing job {job_id} in table {self.table}: {exc}") from exc
        except BotoCoreError as exc:
            raise StateUnavailable(f"pausing job {job_id} in table {self.table}: {exc}") from exc
        with self._lock:
            self._jobs.pop(job_id, None)
        return True

    def record_engagement(self, partition: str, sort_key: str, attribute: str, at: str, expiration: int) -> None:
        """The first open or click; it never changes the recipient's delivery outcome."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key={PK_ATTR: {"S": partition}, SK_ATTR: {"S": sort_key}},
                UpdateExpression="SET #a = if_not_exists(#a, :at), #expiration = if_not_exists(#expiration, :expiration)",
                ExpressionAttributeNames={"#a": attribute, "#expiration": "expiration"},
                ExpressionAttributeValues={":at": {"S": at}, ":expiration": {"N": str(expiration)}},
            )
        except (ClientError, BotoCoreError) as exc:
            raise StateUnavailable(f"recording an {attribute} event in table {self.table}: {exc}") from exc

    # --- the suppression list ------------------------------------------------------------------------

    def suppress(self, email: str, reason: str, source: str, at: str, detail: str | None = None, job_id: str | None = None) -> bool:
        """Adds an address unless it is already listed (the first reason stays). True if added."""
        key = recipient_key(email)
        item: dict[str, Any] = {
            PK_ATTR: {"S": suppression_partition(key)},
            SK_ATTR: {"S": key},
            "reason": {"S": reason},
            "source": {"S": source},
            "added_at": {"S": at},
        }
        if detail:
            item["detail"] = {"S": detail[:1000]}
        if job_id:
            item["job_id"] = {"S": job_id}
        try:
            self.client.put_item(TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(#sk)",
                                 ExpressionAttributeNames={"#sk": SK_ATTR})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == _CONDITION_FAILED:
                return False
            raise StateUnavailable(f"adding to the suppression list in table {self.table}: {exc}") from exc
        except BotoCoreError as exc:
            raise StateUnavailable(f"adding to the suppression list in table {self.table}: {exc}") from exc
        return True

    def suppressed(self, emails: list[str]) -> dict[str, str]:
        """The listed ones among `emails`: recipient key -> reason. BatchGetItem, 100 keys a call."""
        keys = list(dict.fromkeys(recipient_key(e) for e in emails))
        found: dict[str, str] = {}
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            request: dict[str, Any] = {self.table: {
                "Keys": [{PK_ATTR: {"S": suppression_partition(k)}, SK_ATTR: {"S": k}} for k in keys[start:start + BATCH_GET_LIMIT]],
                "ProjectionExpression": "#sk, #reason",
                "ExpressionAttributeNames": {"#sk": SK_ATTR, "#reason": "reason"},
            }}
            for attempt in range(8):
                try:
                    response = self.client.batch_get_item(RequestItems=request)
                except (ClientError, BotoCoreError) as exc:
                    raise StateUnavailable(f"reading the suppression list in table {self.table}: {exc}") from exc
                for item in response.get("Responses", {}).get(self.table, []):
                    found[item[SK_ATTR]["S"]] = item.get("reason", {}).get("S", "")
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(0.05 * 2 ** attempt, 1.0))
            if request:
                raise StateUnavailable(f"reading the suppression list in table {self.table}: keys left unprocessed")
        return found


_deserializer = TypeDeserializer()


def _canary_of(value: dict[str, Any] | None) -> tuple[str, int] | None:
    try:
        return (value["seed"]["S"], int(value["cutoff"]["S"])) if value else None
    except (KeyError, TypeError, ValueError):
        return None


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in item.items()}
