"""DynamoDB adapter: job manifests and the sender's per-recipient idempotency records.

Layout (see lambda/mail_sender/contract.py): manifests under pk="jobs", a job's records under
pk="job#<id>" (or sharded), failure reasons under pk="failures". Every read is a GetItem or a
Query on one partition: never a Scan.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from mailctl.aws.errors import aws_call
from mail_sender.contract import JOBS_PK, PK_ATTR, SK_ATTR, job_partition

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

    def update_manifest(self, job_id: str, **fields: Any) -> None:
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = {f":v{i}": _serializer.serialize(value) for i, value in enumerate(fields.values())}
        expression = "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)))
        with aws_call(f"table {self.table}"):
            self.client.update_item(
                TableName=self.table,
                Key=to_item({PK_ATTR: JOBS_PK, SK_ATTR: job_id}),
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )

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

    def _query(self, partition: str) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": PK_ATTR},
            "ExpressionAttributeValues": {":pk": {"S": partition}},
        }
        while True:
            with aws_call(f"table {self.table}"):
                response = self.client.query(**kwargs)
            yield from response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
