"""Benchmark of the sender Lambda's handler (issue 3, "Speed").

Runs the real `mail_sender.handler.lambda_handler` on SQS events shaped as Lambda delivers them,
with S3, DynamoDB and SES answered by an in-process stand-in: real botocore clients whose
`before-send` hook answers each request from memory instead of the network, so request
serialisation, response parsing, Powertools idempotency (PutItem conditional + UpdateItem per
recipient), Jinja rendering, MIME building and the SES call are all paid as on Lambda; only the
network is not.

1. CPU per recipient, the stand-in answering at once (target < 3 ms, idempotency and send included).
2. Wall time for one chunk of 100 recipients with SES answering in 50 ms per call: concurrent (the
   sender's pool) against sequential (MAILCTL_SEND_CONCURRENCY=1), both measured in this run
   (targets: < 1 s, against ~5 s).

    .venv/bin/python bench/bench_sender.py [--recipients 2000] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import logging
import os
import threading
import time
import uuid
from typing import Any

import botocore.session
from botocore.awsrequest import AWSResponse

from mail_sender import contract, handler
from mail_sender.aws import boto_config
from mail_sender.payloads import PayloadStore
from mail_sender.sender import Sender
from mail_sender.ses import SesAdapter
from mail_sender.settings import Settings
from mail_sender.state import StateStore

BUCKET = "bench-payloads"
TABLE = "bench-state"
BUNDLE = {
    "subject": "{{ name }}さん、11月のお知らせ",
    "from": "Example News <news@example.com>",
    "reply_to": "support@example.com",
    "html": "<html><body><h1>こんにちは {{ name }}さん</h1>" + "<p>Lorem ipsum dolor sit amet.</p>" * 40
    + '<p><a href="https://example.com/u/{{ token }}">unsubscribe</a></p></body></html>',
    "text": "こんにちは {{ name }}さん\n" + "Lorem ipsum dolor sit amet.\n" * 40,
    "headers": {"X-Campaign": "november"},
    "unsubscribe_url": "https://example.com/u/{{ token }}",
}


class _Raw(io.BytesIO):
    """What botocore reads a response from: `stream()` for parsed bodies, `read()` for S3's."""

    def stream(self, **_: Any):
        yield self.getvalue()


class StandIn:
    """Answers S3 GetObject, DynamoDB Get/Put/Update/DeleteItem and BatchGetItem, and SES v2 SendEmail in memory."""

    def __init__(self, ses_latency: float = 0.0, max_send_rate: float = 1e9):
        self.ses_latency = ses_latency
        self.max_send_rate = max_send_rate
        self.objects: dict[tuple[str, str], bytes] = {}
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.sent = 0
        self.lock = threading.Lock()

    def client(self, service: str, max_pool_connections: int = 32):
        session = botocore.session.get_session()
        client = session.create_client(
            service, region_name="us-east-1", endpoint_url="https://stand-in.invalid",
            aws_access_key_id="bench", aws_secret_access_key="bench",
            config=boto_config(max_pool_connections),  # the sender's own client settings
        )
        client.meta.events.register("before-send", self.answer)
        return client

    @staticmethod
    def _response(request, status: int, body: bytes, headers: dict[str, str] | None = None) -> AWSResponse:
        return AWSResponse(request.url, status, {"Content-Length": str(len(body)), **(headers or {})}, _Raw(body))

    def answer(self, request, event_name: str, **_: Any) -> AWSResponse:
        operation = event_name.rsplit(".", 1)[-1]
        if operation == "GetObject":
            path = request.url.split("stand-in.invalid/", 1)[1].split("?", 1)[0]
            bucket, _, key = path.partition("/")
            body = self.objects.get((bucket, key))
            if body is None:
                return self._response(request, 404, b"<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>")
            return self._response(request, 200, body, {"Content-Type": "application/octet-stream"})
        if operation == "GetAccount":
            return self._response(request, 200, json.dumps({"SendQuota": {
                "MaxSendRate": self.max_send_rate, "Max24HourSend": 1e9, "SentLast24Hours": 0}}).encode())
        if operation == "SendEmail":
            if self.ses_latency:
                time.sleep(self.ses_latency)
            with self.lock:
                self.sent += 1
            return self._response(request, 200, json.dumps({"MessageId": uuid.uuid4().hex}).encode())
        params = json.loads(request.body)
        if operation == "BatchGetItem":  # the sender's suppression-list check, once per chunk
            with self.lock:
                found = {table: [self.items[(k["pk"]["S"], k["sk"]["S"])] for k in spec["Keys"] if (k["pk"]["S"], k["sk"]["S"]) in self.items]
                         for table, spec in params["RequestItems"].items()}
            return self._json(request, {"Responses": found, "UnprocessedKeys": {}})
        key = (params.get("Key") or params.get("Item"))
        key = (key["pk"]["S"], key["sk"]["S"])
        with self.lock:
            if operation == "GetItem":
                item = self.items.get(key)
                return self._json(request, {"Item": item} if item else {})
            if operation == "PutItem":
                if "ConditionExpression" in params and key in self.items:
                    return self._json(request, {
                        "__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
                        "message": "The conditional request failed", "Item": self.items[key]}, 400)
                self.items[key] = params["Item"]
                return self._json(request, {})
            if operation == "UpdateItem" and "ADD used" in params["UpdateExpression"]:  # the sender's pacing
                values = params["ExpressionAttributeValues"]
                item = self.items.setdefault(key, {"pk": {"S": key[0]}, "sk": {"S": key[1]}, "used": {"N": "0"}})
                used = int(item["used"]["N"])
                if used > int(values[":room"]["N"]):
                    return self._conditional_failed(request)
                item["used"] = {"N": str(used + int(values[":count"]["N"]))}
                return self._json(request, {"Attributes": {"used": item["used"]}})
            if operation == "UpdateItem" and params.get("ConditionExpression", "").startswith("attribute_exists"):
                return self._conditional_failed(request)  # no manifest in the benchmark
            if operation == "UpdateItem":
                item = self.items.setdefault(key, {"pk": {"S": key[0]}, "sk": {"S": key[1]}})
                values = params["ExpressionAttributeValues"]
                for name, placeholder in (("#response_data", ":response_data"), ("#expiry", ":expiry"), ("#status", ":status")):
                    if placeholder in values:
                        item[params["ExpressionAttributeNames"][name]] = values[placeholder]
                return self._json(request, {})
            if operation == "DeleteItem":
                self.items.pop(key, None)
                return self._json(request, {})
        raise NotImplementedError(operation)

    def _conditional_failed(self, request) -> AWSResponse:
        return self._json(request, {"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
                                    "message": "The conditional request failed"}, 400)

    def _json(self, request, document: dict[str, Any], status: int = 200) -> AWSResponse:
        return self._response(request, status, json.dumps(document).encode(), {"Content-Type": "application/x-amz-json-1.0"})


def record(body: str, job_id: str, chunk: int) -> dict[str, Any]:
    """One SQS record as Lambda delivers it (see tests/lambda/events.py)."""
    now = str(int(time.time() * 1000))
    return {
        "messageId": str(uuid.uuid4()), "receiptHandle": uuid.uuid4().hex, "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": now, "SenderId": "AIDABENCH",
                       "ApproximateFirstReceiveTimestamp": now},
        "messageAttributes": {
            "mailctl.job_id": {"stringValue": job_id, "stringListValues": [], "binaryListValues": [], "dataType": "String"},
            "mailctl.chunk": {"stringValue": str(chunk), "stringListValues": [], "binaryListValues": [], "dataType": "Number"},
        },
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(), "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:mailctl-jobs", "awsRegion": "us-east-1",
    }


class Context:
    function_name = "mailctl-sender"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:mailctl-sender"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def install(stand_in: StandIn, concurrency: int, rate: float) -> None:
    settings = Settings(table=TABLE, rate_per_second=rate, send_concurrency=concurrency)
    quiet = logging.getLogger("bench.sender")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    pool = max(10, concurrency + 4)
    handler.install(Sender(
        settings,
        ses=SesAdapter(client=stand_in.client("sesv2", pool)),
        payloads=PayloadStore(client=stand_in.client("s3", pool)),
        state=StateStore(TABLE, client=stand_in.client("dynamodb", pool)),
        logger=quiet,
    ))
    os.environ["MAILCTL_TABLE"] = TABLE
    os.environ["MAILCTL_RATE_PER_SECOND"] = str(rate)
    os.environ["MAILCTL_SEND_CONCURRENCY"] = str(concurrency)


def events(stand_in: StandIn, recipients: int, chunk_size: int, batch_size: int = 10) -> list[dict[str, Any]]:
    body, digest = contract.encode_bundle(BUNDLE)
    ref = contract.BundleRef(BUCKET, contract.bundle_key(digest))
    stand_in.objects[(ref.bucket, ref.key)] = body
    job_id = f"bench-{uuid.uuid4().hex[:8]}"
    records = []
    for chunk, start in enumerate(range(0, recipients, chunk_size)):
        people = [contract.encode_recipient(f"user{i}@example.org", {"name": f"利用者{i}", "token": f"tok{i:08d}"}, i + 2)
                  for i in range(start, min(recipients, start + chunk_size))]
        records.append(record(contract.encode_chunk_body(job_id, chunk, ref, people), job_id, chunk))
    return [{"Records": records[i:i + batch_size]} for i in range(0, len(records), batch_size)]


def invoke_all(batches: list[dict[str, Any]]) -> None:
    for event in batches:
        with contextlib.redirect_stdout(io.StringIO()):  # the EMF metrics line
            response = handler.lambda_handler(event, Context())
        if response["batchItemFailures"]:
            raise SystemExit(f"bench: records failed: {response}")


def cpu_per_recipient(recipients: int, concurrency: int, rate: float) -> tuple[float, float]:
    stand_in = StandIn()
    install(stand_in, concurrency, rate)
    invoke_all(events(stand_in, 200, 100))  # warm: imports, clients, template compile
    batches = events(stand_in, recipients, 100)
    sent_before = stand_in.sent
    cpu, wall = time.process_time(), time.perf_counter()
    invoke_all(batches)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert stand_in.sent - sent_before == recipients
    return cpu / recipients * 1000, wall / recipients * 1000


def chunk_wall(latency: float, concurrency: int, rate: float) -> float:
    stand_in = StandIn(ses_latency=latency)
    install(stand_in, concurrency, rate)
    invoke_all(events(stand_in, 10, 10))  # warm
    batches = events(stand_in, 100, 100, batch_size=1)
    sent_before = stand_in.sent
    start = time.perf_counter()
    invoke_all(batches)
    elapsed = time.perf_counter() - start
    assert stand_in.sent - sent_before == 100
    return elapsed


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=2000, help="for the CPU measurement")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="SES latency for the wall-time measurement")
    parser.add_argument("--concurrency", type=int, default=10, help="MAILCTL_SEND_CONCURRENCY for the concurrent runs")
    parser.add_argument("--rate", type=float, default=200.0, help="MAILCTL_RATE_PER_SECOND for the concurrent runs")
    args = parser.parse_args(argv)
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "mailctl")
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "mailctl-sender")
    try:
        cpu_ms, wall_ms = cpu_per_recipient(args.recipients, args.concurrency, 1_000_000)
        cpu_seq_ms, _ = cpu_per_recipient(args.recipients, 1, 1_000_000)
        latency = args.latency_ms / 1000
        concurrent = chunk_wall(latency, args.concurrency, args.rate)
        sequential = chunk_wall(latency, 1, args.rate)
    finally:
        handler.install(None)
    figures = {
        "cpu_ms_per_recipient": cpu_ms, "wall_ms_per_recipient": wall_ms, "cpu_ms_per_recipient_sequential": cpu_seq_ms,
        "chunk_100_concurrent_s": concurrent, "chunk_100_sequential_s": sequential,
    }
    print(f"CPU per recipient, stand-in at no latency ({args.recipients} recipients, chunks of 100, batches of 10):")
    print(f"  send concurrency {args.concurrency}: {cpu_ms:.2f} ms CPU ({wall_ms:.2f} ms wall)   target < 3 ms")
    print(f"  send concurrency 1:  {cpu_seq_ms:.2f} ms CPU")
    print(f"One chunk of 100 recipients, SES answering in {args.latency_ms:.0f} ms per call:")
    print(f"  concurrent (send concurrency {args.concurrency}, rate cap {args.rate:.0f}/s): {concurrent:.2f} s   target < 1 s")
    print(f"  sequential (send concurrency 1):                  {sequential:.2f} s   ({sequential / concurrent:.1f}x slower)")
    return figures


if __name__ == "__main__":
    main()
