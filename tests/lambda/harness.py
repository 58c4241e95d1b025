"""The sender tests' harness: uploads bundles, writes manifests, invokes the real handler, reads what
arrived (raw MIME from moto, records from the table), and stands in for a misbehaving SES.

Import it as `importlib.import_module("tests.lambda.harness")`: `lambda` is a keyword."""

from __future__ import annotations

import email
import importlib
import json
import threading
import urllib.error
import urllib.request
from email import policy
from email.message import EmailMessage
from typing import Any

from botocore.exceptions import ClientError

from mail_sender import contract, handler

events = importlib.import_module("tests.lambda.events")
LambdaContext, chunk_record, sqs_event = events.LambdaContext, events.chunk_record, events.sqs_event

DEFAULT_BUNDLE = {
    "subject": "{{ name }}さん、11月のお知らせ",
    "from": "Example News <news@example.com>",
    "reply_to": "support@example.com",
    "html": "<p>こんにちは {{ name }}</p>",
    "text": "こんにちは {{ name }}\n",
    "headers": {"X-Campaign": "november"},
    "unsubscribe_url": "https://example.com/u/{{ token }}",
}


class Harness:
    data_json_broken = False

    def __init__(self, clients, stack, endpoint: str):
        self.clients = clients
        self.stack = stack
        self.endpoint = endpoint
        self.s3 = clients.s3
        self.ddb = clients.dynamodb

    # --- given ---
    def put_bundle(self, **overrides: Any) -> contract.BundleRef:
        bundle = {**DEFAULT_BUNDLE, **overrides}
        bundle = {k: v for k, v in bundle.items() if v is not None}
        body, digest = contract.encode_bundle(bundle)
        key = contract.bundle_key(digest)
        self.s3.put_object(Bucket=self.stack.bucket, Key=key, Body=body)
        return contract.BundleRef(self.stack.bucket, key)

    def put_job(self, job_id: str, state: str = contract.JOB_STATE_ENQUEUED, shards: int = 1, counter_shards: int = 0) -> None:
        item = {
            "pk": {"S": contract.JOBS_PK}, "sk": {"S": job_id}, "job_id": {"S": job_id},
            "state": {"S": state}, "idempotency_shards": {"N": str(shards)},
        }
        if counter_shards:
            item["counter_shards"] = {"N": str(counter_shards)}
        self.ddb.put_item(TableName=self.stack.table, Item=item)

    def counters(self, job_id: str) -> dict[str, Any]:
        """The job's counter shards summed (numbers only), as status reads them, once the counters
        function has had every change in the table's stream (as the local worker leaves them)."""
        from mailctl.aws.dynamodb import StateTable
        from mailctl.local.counter_stream import CounterStream
        from mailctl.services import counters

        CounterStream(self.clients).drain()

        table = StateTable(self.ddb, self.stack.table)
        return counters.read(table, table.get_manifest(job_id)).to_json()

    def body(self, job_id: str, chunk: int, recipients: list[dict[str, Any]], bundle: contract.BundleRef | None = None) -> str:
        bundle = bundle or self.put_bundle()
        items = [contract.encode_recipient(r["email"], r.get("vars", {}), r.get("row")) for r in recipients]
        return contract.encode_chunk_body(job_id, chunk, bundle, items)

    def record(self, job_id: str, chunk: int, recipients: list[dict[str, Any]], bundle=None, **kwargs: Any) -> dict[str, Any]:
        return chunk_record(self.body(job_id, chunk, recipients, bundle), job_id, chunk, **kwargs)

    # --- when ---
    def invoke(self, *records: dict[str, Any], context: Any = None) -> dict[str, Any]:
        return handler.lambda_handler(sqs_event(*records), context or LambdaContext())

    # --- then ---
    def raw_messages(self) -> list[dict[str, Any]]:
        """The raw messages moto's SES stored, oldest first: from /moto-api/data.json (ses ->
        RawMessage -> raw_data), or, when that endpoint fails, from the same in-process backend.
        It fails (500) once the local stack holds a Lambda function record: moto serialises every
        model attribute and LambdaFunction.docker_client raises without Docker."""
        if not Harness.data_json_broken:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=10) as response:
                    return json.load(response).get("ses", {}).get("RawMessage", [])
            except urllib.error.HTTPError:
                Harness.data_json_broken = True
        # The moto server of tests/conftest.py runs in this process: same backend, read directly.
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import RawMessage, ses_backends

        backend = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        return [{"id": m.id, "destinations": m.destinations, "raw_data": m.raw_data}
                for m in backend.sent_messages if isinstance(m, RawMessage)]

    def mail(self) -> list[EmailMessage]:
        return [email.message_from_string(m["raw_data"], policy=policy.default) for m in self.raw_messages()]

    def mail_to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.mail() if m["To"].addresses[0].addr_spec == address]

    def records_of(self, job_id: str, partition: str | None = None) -> dict[str, dict[str, Any]]:
        """The job's idempotency records by sk, `data` decoded."""
        items = self.ddb.query(
            TableName=self.stack.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": partition or contract.job_partition(job_id)}},
            ConsistentRead=True,
        )["Items"]
        out = {}
        for item in items:
            plain = {k: (v.get("S") if "S" in v else int(v["N"])) for k, v in item.items()}
            if plain.get("data"):
                plain["data"] = json.loads(plain["data"])
            out[plain["sk"]] = plain
        return out

    def outcome(self, job_id: str, address: str) -> dict[str, Any] | None:
        record = self.records_of(job_id).get(contract.idempotency_sort_key(job_id, address))
        return record

    def failure(self, message_id: str) -> dict[str, Any] | None:
        item = self.ddb.get_item(
            TableName=self.stack.table, Key={"pk": {"S": "failures"}, "sk": {"S": message_id}}, ConsistentRead=True
        ).get("Item")
        if item is None:
            return None
        return {k: (v.get("S") if "S" in v else int(v["N"])) for k, v in item.items()}


def client_error(code: str, message: str, status: int = 400, operation: str = "SendEmail") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


class FaultySes:
    """Stands in for the sesv2 client: `fault(to)` decides, per call, whether to raise instead of
    delegating to the real (moto) client. Thread-safe: the sender calls it from its pool."""

    def __init__(self, real, fault):
        self.real = real
        self.fault = fault
        self.lock = threading.Lock()
        self.calls = 0
        self.requests: list[dict] = []  # what SES was asked (moto drops tags and configuration sets)

    def __getattr__(self, name):  # GetAccount and the rest: the real client's
        return getattr(self.real, name)

    def send_email(self, **params):
        with self.lock:
            self.calls += 1
            self.requests.append(params)
            error = self.fault(params["Destination"]["ToAddresses"][0], self.calls)
        if error is not None:
            raise error
        return self.real.send_email(**params)


def faulty_ses(fault) -> FaultySes:
    """Install a FaultySes into the handler's Sender (the one built from the current environment)."""
    current = handler.sender()
    replacement = FaultySes(current.ses.client, fault)
    current.ses.client = replacement
    return replacement
