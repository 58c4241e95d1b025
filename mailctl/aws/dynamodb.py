"""DynamoDB adapter: job manifests and the sender's per-recipient idempotency records.

Layout (see lambda/mail_sender/contract.py): manifests under pk="jobs", a job's records under
pk="job#<id>" (or sharded), failure reasons under pk="failures", what `dlq purge` removed from a
job under pk="purged#<id>", its counters under pk="counts#<id>#<n>". Every read is a GetItem or a
Query on one partition: never a Scan.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from botocore.exceptions import ClientError

from mailctl.aws.errors import aws_call, error_code
from mailctl.errors import OperationalError
from mail_sender.contract import JOBS_PK, PK_ATTR, SK_ATTR, job_partition
from mail_sender.state import FAILURES_PK

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    values = {k: _deserializer.deserialize(v) for k, v in item.items()}
    # Numbers come back as Decimal; the callers want plain ints and floats.
    for key, value in values.items():
        if type(value).__name__ == "Decimal":
            values[key] = int(value) if value == value.to_integral_value() else float(value)
    return values


def epoch_of(iso: Any) -> float | None:
    """An item's ISO 8601 timestamp (manifests' created_at, failure items' at; "Z" for UTC) as epoch seconds."""
    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def purged_partition(job_id: str) -> str:
    return f"purged#{job_id}"


class StateTable:
    def __init__(self, client, table: str):
        self.client = client
        self.table = table

    # --- job manifests ---------------------------------------------------------------------------

    def put_manifest(self, manifest: dict[str, Any]) -> None:
        item = {PK_ATTR: JOBS_PK, SK_ATTR: manifest["job_id"], **manifest}
        with aws_call(f"table {self.table}"):
            self.client.put_item(TableName=self.table, Item=to_item(item))

    def get_manifest(self, job_id: str) -> dict[str, Any] | None:
        with aws_call(f"table {self.table}"):
            response = self.client.get_item(
                TableName=self.table, Key=to_item({PK_ATTR: JOBS_PK, SK_ATTR: job_id}), ConsistentRead=True
            )
        item = response.get("Item")
        return from_item(item) if item else None

    def create_manifest(self, manifest: dict[str, Any]) -> bool:
        """Writes a new job's manifest; False (and nothing written) if the job already exists."""
        item = {PK_ATTR: JOBS_PK, SK_ATTR: manifest["job_id"], **manifest}
        with aws_call(f"table {self.table}"):
            try:
                self.client.put_item(TableName=self.table, Item=to_item(item), ConditionExpression="attribute_not_exists(#sk)",
                                     ExpressionAttributeNames={"#sk": SK_ATTR})
            except ClientError as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    return False
                raise
        return True

    def update_manifest_if(self, job_id: str, fields: dict[str, Any], condition: str, values: dict[str, Any] | None = None,
                           remove: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """Sets `fields` (and removes `remove`) only if `condition` holds; the updated manifest, or None.

        Every change of a job's state goes through here: a write that does not see the state it
        expects (a cancel, another process's lease) changes nothing. In `condition`, `#state`,
        `#sk` and `#<field>` name attributes; `values` gives its `:placeholders`."""
        names = {f"#f{i}": name for i, name in enumerate([*fields, *remove])}
        names.update({"#sk": SK_ATTR, "#state": "state"})
        for word in re.findall(r"#(\w+)", condition):
            names.setdefault(f"#{word}", word)
        expression_values = {f":v{i}": _serializer.serialize(value) for i, value in enumerate(fields.values())}
        expression_values.update({key: _serializer.serialize(value) for key, value in (values or {}).items() if key in condition})
        expression = ""
        if fields:
            expression += "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)))
        if remove:
            expression += " REMOVE " + ", ".join(f"#f{len(fields) + i}" for i in range(len(remove)))
        used = set(re.findall(r"#\w+", expression + " " + condition)) | {"#sk"}
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "Key": to_item({PK_ATTR: JOBS_PK, SK_ATTR: job_id}),
            "UpdateExpression": expression.strip(),
            "ConditionExpression": f"attribute_exists(#sk) AND ({condition})",
            "ExpressionAttributeNames": {k: v for k, v in names.items() if k in used},
            "ReturnValues": "ALL_NEW",
        }
        if expression_values:
            kwargs["ExpressionAttributeValues"] = expression_values
        with aws_call(f"table {self.table}"):
            try:
                response = self.client.update_item(**kwargs)
            except ClientError as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    return None
                raise
        return from_item(response["Attributes"])

    def list_manifests(self) -> list[dict[str, Any]]:
        return [from_item(item) for item in self._query(JOBS_PK)]

    # --- idempotency records -----------------------------------------------------------------------

    def job_records(self, job_id: str, shards: int = 1) -> Iterator[dict[str, Any]]:
        """Every idempotency record of one job, `data` decoded: one Query per shard."""
        for shard in range(max(shards, 1)):
            for item in self._query(job_partition(job_id, shard, shards)):
                record = from_item(item)
                data = record.get("data")
                if isinstance(data, str):
                    try:
                        record["data"] = json.loads(data)
                    except ValueError:
                        pass
                yield record

    def _query(self, partition: str, **extra: Any) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": PK_ATTR},
            "ExpressionAttributeValues": {":pk": {"S": partition}},
            **extra,
        }
        while True:
            with aws_call(f"table {self.table}"):
                response = self.client.query(**kwargs)
            yield from response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def set_manifest_state(self, job_id: str, state: str, **fields: Any) -> dict[str, Any] | None:
        """Sets a job's state (and `fields`) only if its manifest exists; the updated manifest, or None.

        Conditional: a cancel racing a typo must not create a job.
        """
        from botocore.exceptions import ClientError  # local: the module's other verbs never need it

        updates = {"state": state, **fields}
        names = {f"#f{i}": name for i, name in enumerate(updates)}
        names["#sk"] = SK_ATTR
        values = {f":v{i}": _serializer.serialize(value) for i, value in enumerate(updates.values())}
        with aws_call(f"table {self.table}"):
            try:
                response = self.client.update_item(
                    TableName=self.table,
                    Key=to_item({PK_ATTR: JOBS_PK, SK_ATTR: job_id}),
                    UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(updates))),
                    ConditionExpression="attribute_exists(#sk)",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    return None
                raise
        return from_item(response["Attributes"])

    def time_to_live(self) -> dict[str, Any]:
        """DescribeTimeToLive: {"TimeToLiveStatus": "ENABLED"|"DISABLED"|..., "AttributeName": ...}."""
        with aws_call(f"table {self.table}"):
            return self.client.describe_time_to_live(TableName=self.table).get("TimeToLiveDescription", {})

    def change_stream(self) -> str | None:
        """The ARN of the table's stream when it carries its items' old and new images (what the
        counters function reads), else None."""
        with aws_call(f"table {self.table}"):
            table = self.client.describe_table(TableName=self.table)["Table"]
        spec = table.get("StreamSpecification") or {}
        if spec.get("StreamEnabled") and spec.get("StreamViewType") == "NEW_AND_OLD_IMAGES":
            return table.get("LatestStreamArn")
        return None

    def streams_changes(self) -> bool:
        """Whether a new job gets counters. False also when DescribeTable is not allowed: the job
        is then counted from its records, slower but never wrong."""
        try:
            return self.change_stream() is not None
        except OperationalError:
            return False

    def failure_reasons(self, message_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The sender's failure items (pk="failures", sk=<SQS message id>) for these ids, by id.

        BatchGetItem, 100 keys a call, retrying what DynamoDB leaves unprocessed."""
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(message_ids))
        for start in range(0, len(unique), 100):
            request: dict[str, Any] = {
                self.table: {"Keys": [to_item({PK_ATTR: FAILURES_PK, SK_ATTR: mid}) for mid in unique[start:start + 100]]}
            }
            for _attempt in range(8):
                with aws_call(f"table {self.table}"):
                    response = self.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table, []):
                    values = from_item(item)
                    found[values[SK_ATTR]] = values
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
        return found

    def failures(self) -> list[dict[str, Any]]:
        """Every failure item the sender keeps (one per failing SQS message, all jobs): one Query.

        Only the fields that say where a message stands, not the (long) reasons."""
        projection = {"ProjectionExpression": "#sk, job_id, receive_count, #at", "ExpressionAttributeNames": {"#pk": PK_ATTR, "#sk": SK_ATTR, "#at": "at"}}
        return [from_item(item) for item in self._query(FAILURES_PK, **projection)]

    def delete_failures(self, message_ids: list[str]) -> None:
        """Forgets the failure items of messages that left the DLQ (moved or purged)."""
        self._delete_keys([(FAILURES_PK, message_id) for message_id in message_ids])

    def put_purged(self, job_id: str, message_id: str, chunk: int | None, record_keys: list[str], expiration: int) -> None:
        """What `dlq purge` removed from a job: the idempotency sort keys (hashes, no addresses) of
        one purged message's recipients, so that `status` counts them as purged, not not started."""
        item = {PK_ATTR: purged_partition(job_id), SK_ATTR: message_id, "chunk": chunk, "keys": record_keys, "expiration": expiration}
        with aws_call(f"table {self.table}"):
            self.client.put_item(TableName=self.table, Item=to_item(item))

    def counter_items(self, job_id: str, shards: int) -> list[dict[str, Any]]:
        """A job's counter shards (mail_sender.counters), plain values: one strongly consistent
        BatchGetItem (a shard never written yet is simply absent)."""
        import time

        from mail_sender.counters import counter_keys

        found: list[dict[str, Any]] = []
        request: dict[str, Any] = {self.table: {"Keys": counter_keys(job_id, shards), "ConsistentRead": True}}
        for attempt in range(8):
            with aws_call(f"table {self.table}"):
                response = self.client.batch_get_item(RequestItems=request)
            found += [from_item(item) for item in response.get("Responses", {}).get(self.table, [])]
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return found
            time.sleep(min(0.05 * 2 ** attempt, 1.0))
        raise OperationalError(f"table {self.table}: reading job {job_id}'s counters: keys left unprocessed",
                               hint="DynamoDB is throttling reads; try again")

    def purged_keys(self, job_id: str) -> set[str]:
        keys: set[str] = set()
        for item in self._query(purged_partition(job_id)):
            keys.update(value["S"] for value in item.get("keys", {}).get("L", []))
        return keys

    def _delete_keys(self, keys: list[tuple[str, str]]) -> None:
        self._batch_write([{"DeleteRequest": {"Key": to_item({PK_ATTR: pk, SK_ATTR: sk})}} for pk, sk in keys])

    def _batch_write(self, requests: list[dict[str, Any]]) -> bool:
        """BatchWriteItem, 25 requests a call, retrying (with backoff) what DynamoDB leaves
        unprocessed. False if some are still unprocessed after the retries."""
        import time

        for start in range(0, len(requests), 25):
            request: dict[str, Any] = {self.table: requests[start:start + 25]}
            for attempt in range(8):
                with aws_call(f"table {self.table}"):
                    response = self.client.batch_write_item(RequestItems=request)
                request = response.get("UnprocessedItems") or {}
                if not request:
                    break
                time.sleep(min(0.05 * 2 ** attempt, 2.0))
            if request:
                return False
        return True

    def job_record_items(self, job_id: str, shards: int = 1, segments: int = 16, workers: int = 16,
                         prefix: str | None = None) -> Iterator[list[dict[str, Any]]]:
        """A job's idempotency records as raw low-level items, page by page, fetched in parallel.

        Every record's sort key is "<IDEMPOTENCY_KEY_PREFIX>#<md5 hex>", so one partition splits into
        16 `begins_with` ranges that are queried concurrently: a 1M-record job is ~250 Query pages,
        and reading them one after another would take most of a minute. Items are not
        deserialised here: callers read the few attributes they need (this is the hot path of
        `mailctl status`)."""
        import queue
        import threading
        from concurrent.futures import ThreadPoolExecutor

        from mail_sender.contract import IDEMPOTENCY_KEY_PREFIX

        # `prefix` DELIVERY_KEY_PREFIX reads the job's delivery items (SES events) instead.
        prefix = prefix or IDEMPOTENCY_KEY_PREFIX
        prefixes = [f"{prefix}#{digit:x}" for digit in range(16)] if segments > 1 else [f"{prefix}#"]
        tasks = [(job_partition(job_id, shard, shards), prefix) for shard in range(max(shards, 1)) for prefix in prefixes]

        # botocore walks its shape model for every attribute of every item (~35 µs an item, a
        # minute for a big job); these pages are read in DynamoDB's wire shape anyway, so the
        # items are taken from the raw JSON before botocore parses the rest of the response.
        raw_pages = threading.local()

        def take_items(response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any) -> None:
            if not getattr(raw_pages, "active", False) or response_dict.get("status_code", 200) >= 300:
                return
            body = json.loads(response_dict["body"])
            customized_response_dict["Items"] = body.pop("Items", [])
            response_dict["body"] = json.dumps(body).encode()

        self.client.meta.events.register("before-parse.dynamodb.Query", take_items, unique_id=f"mailctl-raw-items-{id(raw_pages)}")

        def fetch(task: tuple[str, str | None]) -> None:
            raw_pages.active = True
            partition, prefix = task
            kwargs: dict[str, Any] = {
                "TableName": self.table,
                "KeyConditionExpression": "#pk = :pk" + (" AND begins_with(#sk, :prefix)" if prefix else ""),
                "ExpressionAttributeNames": {"#pk": PK_ATTR, **({"#sk": SK_ATTR} if prefix else {})},
                "ExpressionAttributeValues": {":pk": {"S": partition}, **({":prefix": {"S": prefix}} if prefix else {})},
            }
            try:
                while not stop.is_set():
                    with aws_call(f"table {self.table}"):
                        response = self.client.query(**kwargs)
                    put(response.get("Items", []))
                    if "LastEvaluatedKey" not in response:
                        break
                    kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
            except BaseException as exc:  # handed to the consumer, which re-raises it
                put(exc)
            finally:
                put(done)

        # Pages stream through a bounded queue so that memory holds a few pages, not the job.
        pages: queue.Queue = queue.Queue(maxsize=max(4, workers * 2))
        stop = threading.Event()
        done = object()

        def put(value: Any) -> None:
            while not stop.is_set():
                try:
                    pages.put(value, timeout=0.2)
                    return
                except queue.Full:
                    continue

        pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(tasks))))
        futures = [pool.submit(fetch, task) for task in tasks]
        try:
            finished = 0
            while finished < len(futures):
                value = pages.get()
                if value is done:
                    finished += 1
                elif isinstance(value, BaseException):
                    raise value
                else:
                    yield value
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            self.client.meta.events.unregister("before-parse.dynamodb.Query", unique_id=f"mailctl-raw-items-{id(raw_pages)}")

    # --- the suppression list ------------------------------------------------------------------------

    def suppression_items(self) -> Iterator[dict[str, Any]]:
        """Every entry of the suppression list (raw items), partition after partition."""
        from mail_sender.contract import suppression_partitions

        for partition in suppression_partitions():
            yield from self._query(partition)

    def put_suppressions(self, items: list[dict[str, Any]]) -> None:
        """Writes suppression entries (DynamoDB's wire shape, keys included), 25 a call."""
        if not self._batch_write([{"PutRequest": {"Item": item}} for item in items]):
            from mailctl.errors import AwsError

            raise AwsError(f"table {self.table}: DynamoDB left suppression entries unwritten after retries",
                           hint="rerun the same import: it writes every entry again")

    def delete_suppression(self, partition: str, key: str) -> bool:
        """True if the address was listed."""
        with aws_call(f"table {self.table}"):
            response = self.client.delete_item(
                TableName=self.table, Key={PK_ATTR: {"S": partition}, SK_ATTR: {"S": key}}, ReturnValues="ALL_OLD",
            )
        return bool(response.get("Attributes"))

    # --- job progress ----------------------------------------------------------------------------------

    def count_outcomes(self, job_id: str, shards: int = 1) -> tuple[int, int]:
        """(idempotency records, of them COMPLETED) of one job: Select=COUNT Queries, no items."""
        from mail_sender.contract import IDEMPOTENCY_KEY_PREFIX

        records = completed = 0
        for shard in range(max(shards, 1)):
            kwargs: dict[str, Any] = {
                "TableName": self.table,
                "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
                "FilterExpression": "#status = :completed",
                "ExpressionAttributeNames": {"#pk": PK_ATTR, "#sk": SK_ATTR, "#status": "status"},
                "ExpressionAttributeValues": {":pk": {"S": job_partition(job_id, shard, shards)},
                                              ":prefix": {"S": f"{IDEMPOTENCY_KEY_PREFIX}#"}, ":completed": {"S": "COMPLETED"}},
                "Select": "COUNT",
            }
            while True:
                with aws_call(f"table {self.table}"):
                    response = self.client.query(**kwargs)
                records += response.get("ScannedCount", 0)
                completed += response.get("Count", 0)
                if "LastEvaluatedKey" not in response:
                    break
                kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return records, completed

    def set_manifest_state_if(self, job_id: str, state: str, expected: str) -> bool:
        """Sets the job's state only if it is `expected` now. True if it was set."""
        from botocore.exceptions import ClientError

        with aws_call(f"table {self.table}"):
            try:
                self.client.update_item(
                    TableName=self.table,
                    Key=to_item({PK_ATTR: JOBS_PK, SK_ATTR: job_id}),
                    UpdateExpression="SET #state = :state",
                    ConditionExpression="#state = :expected",
                    ExpressionAttributeNames={"#state": "state"},
                    ExpressionAttributeValues={":state": {"S": state}, ":expected": {"S": expected}},
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    return False
                raise
        return True
