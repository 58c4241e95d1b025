"""How long `mailctl status JOB --json` takes for big jobs (issue 5: "a 1,000,000-recipient job's
status answers in seconds, not minutes: no full-table Scan"), and what the job counters of issue 14
cost and save.

Three measurements, because moto cannot hold the big case:

1. moto (in-process `mock_aws`), end to end: manifest, idempotency records, queue counts and DLQ
   peek, with other jobs' records in the same table. moto serialises each Query page item by item
   (about 1 ms per item in moto 5.2) and re-reads the whole partition for every page, so its
   times grow faster than linearly and measure moto, not mailctl; this part checks the access
   pattern (Query only, never Scan) and gives small-N figures.
2. A DynamoDB-wire endpoint in its own process (bench-local, below) serving pre-built 1 MB Query
   pages in the exact JSON that DynamoDB returns, for 100k, 200k and 1M records. This times what
   mailctl itself does with a big job: HTTP on loopback, botocore's parsing, the 16 parallel
   sort-key ranges per shard, and the classification of every record. DynamoDB's own read time
   comes on top: see docs/benchmarks.md for the arithmetic. With --counters the same endpoint also
   holds the job's counter items laid out as the counters function leaves them (a few stream
   shards, each adding to the item `counter_shard(<stream shard id>)` and leaving its
   `seq#<stream shard id>` checkpoint), and status is timed from the records (a job enqueued
   before counters), from the counters, and with --verify (target: under 1 s, fewer than 100 items
   read, for 1,000,000 recipients).
3. With --counters: DynamoDB writes per recipient sent. The real sender handler sends
   --write-recipients recipients (2,000 by default: moto is slow) through a moto server whose state
   table has its stream (NEW_AND_OLD_IMAGES, as `mailctl local` provisions it); the real counters
   function is fed by `mailctl.local.counter_stream.CounterStream` (the local stand-in for Lambda's
   stream mapping) in two regimes: polling while the sender sends (small batches: the local worst
   case) and draining after the send (full batches of 1,000 stream records). Every DynamoDB request
   reaching moto is counted by operation and by the item it targets, and priced at 1 write unit per
   started KB of the largest item of its kind (DynamoDB bills an update by the larger of the item
   before and after, and a write refused by its condition all the same). An analytic figure for AWS
   (Lambda polls a stream shard 4 times a second) closes the part.

Records are written in the exact Powertools shape (pk/sk/status/expiration/in_progress_expiration/
data) with BatchWriteItem.

    .venv/bin/python bench/bench_status.py                    # parts 1 and 2, default sizes
    .venv/bin/python bench/bench_status.py --moto 5000 10000 --wire 100000 1000000 --shards 1 4
    .venv/bin/python bench/bench_status.py --moto --wire 1000000 --shards 1 --counters   # issue 14: parts 2 and 3
    .venv/bin/python bench/bench_status.py --moto --wire --counters --write-recipients 500   # part 3 only
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import multiprocessing
import os
import random
import socket
import sys
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lambda"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_sender's stand-in

from mail_sender.contract import idempotency_sort_key, job_partition, recipient_key, shard_of  # noqa: E402

JOB = "bench-job-0001"
NOW = time.time()


def record_item(job_id: str, n: int, shards: int, rng: random.Random) -> dict | None:
    """The n-th recipient's Powertools item (wire shape), or None for a recipient not started yet."""
    roll = rng.random()
    if roll < 0.05:
        return None
    email = f"recipient{n}@example.com"
    item = {
        "pk": {"S": job_partition(job_id, shard_of(recipient_key(email), shards), shards)},
        "sk": {"S": idempotency_sort_key(job_id, email)},
        "expiration": {"N": str(int(NOW + (-100 if roll > 0.995 else 15 * 86400)))},
        "in_progress_expiration": {"N": str(int((NOW + (3600 if roll < 0.065 else -60)) * 1000))},
    }
    if 0.06 <= roll < 0.07:
        item["status"] = {"S": "INPROGRESS"}
        return item
    outcome, reason = "sent", None
    if roll < 0.06:
        outcome, reason = "failed", "MessageRejected: Email address is not verified." if n % 2 else "MailFromDomainNotVerified"
    elif 0.07 <= roll < 0.08:
        outcome, reason = "skipped", "job cancelled"
    item["status"] = {"S": "COMPLETED"}
    item["data"] = {"S": json.dumps({
        "outcome": outcome, "email": email, "row": n + 2, "reason": reason,
        "ses_message_id": f"010001{n:08x}-5f3a-4b1c-9d2e-{n:012x}-000000" if outcome == "sent" else None,
        "at": NOW - 600 + (n % 600),
    })}
    return item


def manifest(job_id: str, recipients: int, shards: int) -> dict:
    return {
        "job_id": job_id, "name": "bench", "state": "enqueued", "created_at": "2026-11-28T00:00:00+00:00",
        "updated_at": "2026-11-28T00:00:00+00:00", "recipients": recipients, "rejected": 0,
        "messages": recipients // 100, "bucket": "mailctl-payloads", "bundle_key": "bundles/x.json",
        "rows_key": f"jobs/{job_id}/recipients.jsonl.gz", "idempotency_shards": shards,
    }


# --- part 1: moto -----------------------------------------------------------------------------------

def bench_moto(sizes: list[int], shards: int) -> list[dict]:
    from moto import mock_aws

    from mailctl.aws.dynamodb import StateTable
    from mailctl.aws.session import Clients
    from mailctl.config import AwsSettings, Config
    from mailctl.services.status import JobState

    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"})
    results = []
    for size in sizes:
        with mock_aws():
            config = Config(aws=AwsSettings(region="us-east-1"))
            clients = Clients(config)
            ddb = clients.dynamodb
            ddb.create_table(
                TableName=config.table, BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            )
            dlq = clients.sqs.create_queue(QueueName=config.dead_letter_queue)["QueueUrl"]
            clients.sqs.create_queue(QueueName=config.queue)
            clients.sqs.send_message(QueueUrl=dlq, MessageBody="{}", MessageAttributes={"mailctl.job_id": {"DataType": "String", "StringValue": JOB}})
            StateTable(ddb, config.table).put_manifest(manifest(JOB, size, shards))
            rng = random.Random(size)
            started = time.perf_counter()
            items = [i for i in (record_item(JOB, n, shards, rng) for n in range(size)) if i]
            # Other jobs' records share the table: a Scan would have to read them too.
            items += [i for i in (record_item("other-job", n, 1, rng) for n in range(size // 2)) if i]
            for start in range(0, len(items), 25):
                ddb.batch_write_item(RequestItems={config.table: [{"PutRequest": {"Item": i}} for i in items[start:start + 25]]})
            load = time.perf_counter() - started

            calls: dict[str, int] = {}
            ddb.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.__setitem__(model.name, calls.get(model.name, 0) + 1))
            started = time.perf_counter()
            status = JobState(clients, config).status(JOB)
            elapsed = time.perf_counter() - started
            results.append({
                "where": "moto (mock_aws)", "records": status.records, "recipients": size, "shards": shards,
                "seconds": round(elapsed, 2), "load_seconds": round(load, 1), "calls": calls,
                "sent": status.sent, "failed": status.failed, "not_started": status.not_started, "dlq_messages": status.dlq_messages,
            })
            print(json.dumps(results[-1]), flush=True)
    return results


# --- part 2: a DynamoDB-wire endpoint with pre-built pages -----------------------------------------

PAGE_BYTES = 1024 * 1024
# The state table's stream shards the job's records fall on, in the endpoint's counter items: a
# partition's stream shard, as DynamoDB's (made-up ids in DynamoDB's format).
STREAM_SHARDS = 4
STATUS_TARGET_SECONDS, STATUS_TARGET_ITEMS = 1.0, 100  # issue 14, for 1,000,000 recipients


def item_size(item: dict) -> int:
    """DynamoDB's item size: attribute names plus values (numbers counted roughly as their digits,
    an overestimate: DynamoDB stores about one byte per two digits)."""
    return sum(len(name.encode()) + len(str(next(iter(value.values()))).encode()) for name, value in item.items())


def stream_shard_ids(count: int = STREAM_SHARDS) -> list[str]:
    return [f"shardId-{1764400000000 + n:020d}-{0x5eed0000 + n:08x}" for n in range(count)]


def counter_items(job_id: str, completed: list[dict], counter_shards: int) -> dict[str, dict]:
    """The job's counter items (wire shape, by pk) as the counters function leaves them once it has
    applied every record in `completed`: each record's change reaches the stream shard of its
    partition (here: the sort-key range, as a split item collection's), the function adds each
    shard's records to the item `counter_shard(shard id)` and moves that item's `seq#<shard id>`."""
    from mail_sender import counters

    shard_ids = stream_shard_ids()
    tallies: dict[int, dict[str, float]] = {}
    checkpoints: dict[int, dict[str, str]] = {}
    sequence = {shard_id: 4_421_584_500_000_000_017_450_439_091 for shard_id in shard_ids}
    for item in completed:
        shard_id = shard_ids[int(item["sk"]["S"].split("#", 1)[1][0], 16) * len(shard_ids) // 16]
        sequence[shard_id] += 2  # its INPROGRESS insert, then the COMPLETED update
        n = counters.counter_shard(shard_id, counter_shards)
        outcome = json.loads(item["data"]["S"])
        tally = tallies.setdefault(n, {})
        for name in counters.outcome_attributes(outcome):
            tally[name] = tally.get(name, 0) + 1
        tally[counters.LAST_AT] = max(tally.get(counters.LAST_AT, 0), outcome["at"])
        tally[counters.FIRST_AT] = min(tally.get(counters.FIRST_AT, outcome["at"]), outcome["at"])
        checkpoints.setdefault(n, {})[counters.CHECKPOINT_PREFIX + shard_id] = counters.padded(str(sequence[shard_id]))
    keys = counters.counter_keys(job_id, counter_shards)
    return {keys[n]["pk"]["S"]: {**keys[n], **{name: {"N": repr(value)} for name, value in tally.items()},
                                 **{name: {"S": value} for name, value in checkpoints[n].items()}}
            for n, tally in tallies.items()}


def build_pages(job_id: str, size: int, shards: int, counter_shards: int = 0) -> tuple[dict, dict, dict]:
    """{(partition, prefix, start_sk or ""): response bytes}, the job's counter items by pk (with
    `counter_shards`; else none), and the manifest item (wire shape) as a job enqueued before
    counters has it (`counter_shards` is added to it when status should count from the counters)."""
    from mailctl.aws.dynamodb import to_item

    rng = random.Random(size)
    groups: dict[tuple[str, str], list[dict]] = {}
    completed: list[dict] = []
    for n in range(size):
        item = record_item(job_id, n, shards, rng)
        if item:
            groups.setdefault((item["pk"]["S"], item["sk"]["S"][:11]), []).append(item)
            if counter_shards and item["status"]["S"] == "COMPLETED":
                completed.append(item)
    pages: dict[tuple[str, str, str], bytes] = {}
    for (partition, prefix), items in groups.items():
        items.sort(key=lambda i: i["sk"]["S"])
        start, after = 0, ""
        while start < len(items):
            end, used = start, 0
            while end < len(items) and used + item_size(items[end]) <= PAGE_BYTES:
                used += item_size(items[end])
                end += 1
            body: dict = {"Items": items[start:end], "Count": end - start, "ScannedCount": end - start}
            if end < len(items):
                body["LastEvaluatedKey"] = {"pk": items[end - 1]["pk"], "sk": items[end - 1]["sk"]}
            pages[(partition, prefix, after)] = json.dumps(body).encode()
            after = items[end - 1]["sk"]["S"]
            start = end
    counted = counter_items(job_id, completed, counter_shards) if counter_shards else {}
    return pages, counted, to_item({"pk": "jobs", "sk": job_id, **manifest(job_id, size, shards)})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    pages: dict = {}
    counters: dict = {}
    manifest: dict = {}
    counter_shards = 0  # what the manifest says: 0 = a job enqueued before counters
    USE_COUNTERS = "MailctlBench.UseCounters"  # the bench's own request: {"counter_shards": n}

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        target = self.headers.get("X-Amz-Target", "")
        operation = target.rsplit(".", 1)[-1]
        if target == self.USE_COUNTERS:
            type(self).counter_shards = int(request["counter_shards"])
            body = b"{}"
        elif operation == "GetItem":
            from mail_sender.counters import MANIFEST_ATTR

            shown = {**self.manifest, **({MANIFEST_ATTR: {"N": str(self.counter_shards)}} if self.counter_shards else {})}
            body = json.dumps({"Item": shown}).encode()
        elif operation == "BatchGetItem":  # the job's counter items
            found = {table: [self.counters[k["pk"]["S"]] for k in spec["Keys"] if k["pk"]["S"] in self.counters]
                     for table, spec in request["RequestItems"].items()}
            body = json.dumps({"Responses": found, "UnprocessedKeys": {}}).encode()
        elif operation == "Query":
            values = request["ExpressionAttributeValues"]
            key = (values[":pk"]["S"], values.get(":prefix", {}).get("S", ""), request.get("ExclusiveStartKey", {}).get("sk", {}).get("S", ""))
            body = self.pages.get(key, b'{"Items": [], "Count": 0, "ScannedCount": 0}')
        else:
            body = json.dumps({"__type": "com.amazon.coral.service#UnknownOperationException"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(size: int, shards: int, port_out, counter_shards: int = 0) -> None:
    _Handler.pages, _Handler.counters, _Handler.manifest = build_pages(JOB, size, shards, counter_shards)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port_out.put((server.server_address[1], len(_Handler.pages), sum(len(p) for p in _Handler.pages.values()),
                  len(_Handler.counters)))
    server.serve_forever()


def _use_counters(port: int, counter_shards: int) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=json.dumps({"counter_shards": counter_shards}).encode(),
                                     headers={"X-Amz-Target": _Handler.USE_COUNTERS}, method="POST")
    urllib.request.urlopen(request, timeout=10).read()


def bench_wire(sizes: list[int], shards_list: list[int], counter_shards: int = 0) -> list[dict]:
    """`status` against the wire stand-in: from the records (a job enqueued before counters); with
    `counter_shards`, also from the counters, and `--verify` (both, and the comparison), all three
    against the same pages (built once per size)."""
    from mailctl.aws.session import Clients
    from mailctl.config import AwsSettings, Config
    from mailctl.services.status import JobState

    modes = [("records", 0, False)] + ([("counters", counter_shards, False), ("verify", counter_shards, True)] if counter_shards else [])
    results = []
    for shards in shards_list:
        for size in sizes:
            port_out: multiprocessing.Queue = multiprocessing.Queue()
            server = multiprocessing.Process(target=_serve, args=(size, shards, port_out, counter_shards), daemon=True)
            server.start()
            try:
                port, page_count, total_bytes, counter_item_count = port_out.get(timeout=1800)
                for mode, manifest_counter_shards, verify in modes:
                    _use_counters(port, manifest_counter_shards)
                    read = {"calls": 0, "items": 0}
                    calls: dict[str, int] = {}
                    counting = threading.Lock()  # status queries 16 sort-key ranges in parallel

                    def count_items(parsed, model, **_):
                        items = len(parsed.get("Items", [])) + ("Item" in parsed) + sum(len(v) for v in parsed.get("Responses", {}).values())
                        with counting:
                            read["calls"] += 1
                            calls[model.name] = calls.get(model.name, 0) + 1
                            read["items"] += items

                    config = Config(aws=AwsSettings(region="us-east-1", endpoint_url=f"http://127.0.0.1:{port}"))
                    clients = Clients(config)
                    clients.dynamodb.meta.events.register("after-call.dynamodb.*", count_items)
                    started = time.perf_counter()
                    status = JobState(clients, config).status(JOB, include_queues=False, verify=verify)
                    elapsed = time.perf_counter() - started
                    results.append({
                        "where": "DynamoDB-wire endpoint", "mode": mode, "counted_from": status.counted_from, "recipients": size,
                        "records": status.records, "shards": shards, "counter_shards": manifest_counter_shards,
                        **({"counter_items_stored": counter_item_count, "stream_shards": STREAM_SHARDS} if manifest_counter_shards else {}),
                        "items_read": read["items"], "dynamodb_calls": read["calls"], "calls": calls,
                        **({"counter_drift": status.counter_drift} if verify else {}),
                        "pages": page_count, "megabytes": round(total_bytes / 1e6, 1), "seconds": round(elapsed, 2),
                        "sent": status.sent, "failed": status.failed, "skipped": status.skipped, "in_progress": status.in_progress,
                        "stale_in_progress": status.stale_in_progress, "not_started": status.not_started, "expired": status.expired,
                    })
                    print(json.dumps(results[-1]), flush=True)
                    if mode == "counters":
                        met = elapsed < STATUS_TARGET_SECONDS and read["items"] < STATUS_TARGET_ITEMS
                        verdict = ("met" if met else "NOT met") if size == 1_000_000 else "set for 1,000,000 recipients"
                        print(f"  status from the counters, {size:,} recipients: {elapsed:.2f} s, {read['items']} items read "
                              f"(issue 14's target, under {STATUS_TARGET_SECONDS:.0f} s and {STATUS_TARGET_ITEMS} items: {verdict})", flush=True)
            finally:
                server.terminate()
                server.join()
    return results


# --- part 3: DynamoDB writes per recipient: the sender, and the counters function on the stream ----

WRITE_OPERATIONS = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
BATCH_SIZE_CAP = 1000  # the mapping's BatchSize (lambda/template.yaml)
POLLS_PER_SECOND = 4  # Lambda polls each stream shard 4 times a second (Lambda developer guide, with-ddb)
STREAM_RECORDS_PER_RECIPIENT = 2  # the record's INPROGRESS insert and its COMPLETED update


def item_kind(key: dict) -> str:
    """What an item is, by its key (wire shape): the sender's idempotency record, a delivery item,
    a counter item, a manifest, or another item by its partition's prefix (e.g. pacing)."""
    from mail_sender import contract, counters

    pk, sk = key.get("pk", {}).get("S", ""), key.get("sk", {}).get("S", "")
    if pk.startswith(counters.COUNTS_PK_PREFIX + "#"):
        return "counter"
    if pk.startswith(counters.JOB_PARTITION_PREFIX):
        return "record" if sk.startswith(counters.RECORD_SK_PREFIX) else "delivery" if sk.startswith(counters.DELIVERY_SK_PREFIX) else "job other"
    if pk == contract.JOBS_PK:
        return "manifest"
    return pk.split("#", 1)[0] or "?"


def request_kinds(operation: str, params: dict) -> list[str]:
    """The kind of every item a DynamoDB request names."""
    if "Key" in params or "Item" in params:
        return [item_kind(params.get("Key") or params["Item"])]
    if operation == "BatchGetItem":
        return [item_kind(k) for spec in params.get("RequestItems", {}).values() for k in spec["Keys"]]
    if operation == "BatchWriteItem":
        return [item_kind(w.get("PutRequest", {}).get("Item") or w.get("DeleteRequest", {}).get("Key") or {})
                for writes in params.get("RequestItems", {}).values() for w in writes]
    if operation == "TransactWriteItems":
        return [item_kind(next(iter(e.values())).get("Key") or next(iter(e.values())).get("Item") or {}) for e in params.get("TransactItems", [])]
    return ["table"]  # DescribeTable, Query, Scan...


class DynamoDbTally:
    """WSGI middleware in front of moto: every DynamoDB request by (operation, item kind, refused
    by its condition or not). Sees every client's requests: the sender's, the counters function's."""

    def __init__(self, front):
        self.front = front
        self.lock = threading.Lock()
        self.requests: Counter = Counter()

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()

    def snapshot(self) -> dict:
        with self.lock:
            return dict(self.requests)

    def wrap(self, app):  # what mailctl.local.stack.moto_server calls on its front
        inner = self.front.wrap(app)

        def counted(environ, start_response):
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            if not target.startswith("DynamoDB_20120810."):
                return inner(environ, start_response)
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            statuses: list[str] = []

            def start(status, headers, exc_info=None):
                statuses.append(status)
                return start_response(status, headers, exc_info)

            response = inner(environ, start)
            operation = target.split(".", 1)[1]
            refused = bool(statuses) and not statuses[0].startswith("200")
            with self.lock:
                for kind in request_kinds(operation, json.loads(body or b"{}")):
                    self.requests[(operation, kind, refused)] += 1
            return response

        return counted


def _recording_stream(clients, resume: bool = True):
    """CounterStream, also noting how many of the job's stream records each invocation carried.
    `resume=False`: from the stream's oldest record, whatever this process applied before."""
    from mail_sender import counters
    from mailctl.local.counter_stream import CounterStream

    class RecordingStream(CounterStream):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.batches: list[int] = []

        def _invoke(self, arn, shard_id, records):
            super()._invoke(arn, shard_id, records)
            counted = sum(1 for r in records if r["dynamodb"]["Keys"]["sk"]["S"].startswith(counters.RECORD_SK_PREFIX))
            if counted:
                self.batches.append(counted)

    failures: list[str] = []

    def log(message: str) -> None:  # the first failure is enough: send_and_count stops on any
        if not failures:
            print(f"  counters stream: {message}", file=sys.stderr, flush=True)
        failures.append(message)

    return RecordingStream(clients, log=log, resume=resume)


def _largest_items(clients, table: str) -> dict[str, int]:
    """The largest item of each kind in the table, in bytes (DynamoDB's rules, numbers rounded up)."""
    largest: dict[str, int] = {}
    for page in clients.dynamodb.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            kind = item_kind(item)
            largest[kind] = max(largest.get(kind, 0), item_size(item))
    return largest


def send_and_count(endpoint: str, tally: DynamoDbTally, recipients: int, regime: str) -> dict:
    """One job of `recipients` sent by the real sender handler on a fresh moto, the counters
    function fed from the table's stream while it sends ("polling") or after ("drained")."""
    import bench_sender
    from mail_sender import contract, counters, handler
    from mailctl.aws.dynamodb import StateTable
    from mailctl.aws.session import Clients
    from mailctl.config import AwsSettings, Config
    from mailctl.local.provision import provision
    from mailctl.services import counters as counts_reader

    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=30).read()
    config = Config(aws=AwsSettings(region="us-east-1", endpoint_url=endpoint))
    clients = Clients(config)
    provision(clients, sender_function=False)  # the state table with its stream, as the template
    job_id = f"wcu-{regime}"
    clients.dynamodb.put_item(TableName=config.table, Item={
        "pk": {"S": contract.JOBS_PK}, "sk": {"S": job_id}, "job_id": {"S": job_id}, "state": {"S": contract.JOB_STATE_ENQUEUED},
        "recipients": {"N": str(recipients)}, "idempotency_shards": {"N": "1"},
        counters.MANIFEST_ATTR: {"N": str(counters.COUNTER_SHARDS)}})
    body, digest = contract.encode_bundle(bench_sender.BUNDLE)
    ref = contract.BundleRef(config.bucket, contract.bundle_key(digest))
    clients.s3.put_object(Bucket=ref.bucket, Key=ref.key, Body=body)
    records = []
    for chunk, start in enumerate(range(0, recipients, 100)):
        people = [contract.encode_recipient(f"user{i}@example.org", {"name": f"u{i}", "token": f"t{i}"}, i + 2)
                  for i in range(start, min(recipients, start + 100))]
        records.append(bench_sender.record(contract.encode_chunk_body(job_id, chunk, ref, people), job_id, chunk))
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, "MAILCTL_TABLE": config.table, "MAILCTL_RATE_PER_SECOND": "100000",
                       "MAILCTL_SEND_CONCURRENCY": "4"})
    handler.install(None)  # the handler builds its sender from the environment, as on Lambda

    stream = _recording_stream(clients)
    tally.reset()
    started = time.perf_counter()
    if regime == "polling":
        stop = threading.Event()
        poller = threading.Thread(target=stream.run, args=(stop,), daemon=True)
        poller.start()
        bench_sender.invoke_all([{"Records": records[i:i + 10]} for i in range(0, len(records), 10)])
        stop.set()
        poller.join()
    else:
        bench_sender.invoke_all([{"Records": records[i:i + 10]} for i in range(0, len(records), 10)])
    stream.drain()  # what the stream still holds (polling: the tail after the last poll)
    elapsed = time.perf_counter() - started
    if stream.errors:
        raise SystemExit(f"bench: the counters function failed {stream.errors} times ({regime}): its figures would mean nothing")
    requests = tally.snapshot()
    handler.install(None)
    table = StateTable(clients.dynamodb, config.table)
    counted = counts_reader.read(table, table.get_manifest(job_id))
    replay = None
    if regime == "drained":
        # A new poller starts at the stream's oldest record (as a retried batch, or a mapping
        # recreated with TRIM_HORIZON): what applying the whole stream again costs, and that it
        # changes no count.
        tally.reset()
        again = _recording_stream(clients, resume=False)
        again.drain()
        replayed = tally.snapshot()
        replay = {"batches": len(again.batches), "errors": again.errors,
                  "counter_writes_refused": sum(n for (op, k, r), n in replayed.items() if op in WRITE_OPERATIONS and k == "counter" and r),
                  "counter_writes_applied": sum(n for (op, k, r), n in replayed.items() if op in WRITE_OPERATIONS and k == "counter" and not r),
                  "counter_reads": sum(n for (op, k, _), n in replayed.items() if op == "GetItem" and k == "counter"),
                  "counts_unchanged": counts_reader.read(table, table.get_manifest(job_id)).to_json() == counted.to_json()}
    largest = _largest_items(clients, config.table)

    def total(operations, kind, refused=None) -> int:
        return sum(n for (op, k, r), n in requests.items() if op in operations and k == kind and (refused is None or r == refused))

    def units(kind) -> int:  # write units: every write request on `kind`, refused or not
        return total(WRITE_OPERATIONS, kind) * max(1, -(-largest.get(kind, 0) // 1024))

    writes = {f"{op} {kind}{' (refused by its condition)' if refused else ''}": n
              for (op, kind, refused), n in sorted(requests.items()) if op in WRITE_OPERATIONS}
    return {
        "part": "DynamoDB writes per recipient", "regime": regime, "recipients": recipients, "seconds": round(elapsed, 1),
        "counted": {"sent": counted.sent, "failed": counted.failed, "skipped": counted.skipped, "unknown": counted.unknown},
        "counters_exact": counted.done == recipients and counted.sent == recipients, "stream_errors": stream.errors,
        "batches": len(stream.batches), "job_records_per_batch": round(sum(stream.batches) / max(len(stream.batches), 1), 1),
        "largest_item_bytes": {k: largest[k] for k in ("record", "counter", "manifest") if k in largest},
        "write_requests": writes,
        "sender_writes_per_recipient": round(total(WRITE_OPERATIONS, "record") / recipients, 3),
        "sender_units_per_recipient": round(units("record") / recipients, 3),
        "counter_writes_per_recipient": round(total(WRITE_OPERATIONS, "counter") / recipients, 4),
        "counter_units_per_recipient": round(units("counter") / recipients, 4),
        "counter_writes_refused": total(WRITE_OPERATIONS, "counter", refused=True),
        "counter_reads_per_recipient": round(total(("GetItem",), "counter") / recipients, 4),
        "other_writes": (other := {k: v for k, v in writes.items() if not k.split(" (")[0].endswith((" record", " counter"))}),
        "other_writes_per_recipient": round(sum(other.values()) / recipients, 3),
        **({"replay_of_the_whole_stream": replay} if replay else {}),
    }


def analytic_counter_cost() -> list[dict]:
    """The counters function's write units per recipient on AWS: one conditional UpdateItem per job
    per batch from a stream shard, i.e. 1 / (the job's recipients in a batch) = 1 / (B / 2), a
    recipient leaving two stream records. Assumes one job on the shard, counter items under 1 KB
    and no retried batch. B: what one poll finds (Lambda polls a shard 4 times a second), capped
    by the mapping's BatchSize (1,000); the template's 1 s batching window (MaximumBatchingWindow-
    InSeconds) lets a batch gather up to a second's records, which only matters below ~500 sends/s.
    A stream shard follows a table partition (~1,000 writes/s), so 5,000 sends/s (10,000 record
    writes/s) really spread over 10 or more stream shards: the 500/s row."""
    rows = []
    for sends_per_second in (100, 500, 5000):
        records_per_second = sends_per_second * STREAM_RECORDS_PER_RECIPIENT
        row: dict = {"part": "AWS, analytic", "sends_per_second_on_one_stream_shard": sends_per_second}
        for name, gathered in (("polls", records_per_second / POLLS_PER_SECOND), ("window_1s", records_per_second * 1.0)):
            batch = min(gathered, BATCH_SIZE_CAP)
            row[f"batch_records_{name}"] = batch
            row[f"counter_units_per_recipient_{name}"] = round(STREAM_RECORDS_PER_RECIPIENT / batch, 4)
            row[f"writes_per_second_per_counter_item_{name}"] = round(records_per_second / batch, 1)
        rows.append(row)
    return rows


def bench_writes(recipients: int) -> list[dict]:
    from mailctl.local.ses_front import AccountOptions, SesFront
    from mailctl.local.stack import moto_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true",
                       "POWERTOOLS_SERVICE_NAME": "mailctl-sender", "POWERTOOLS_METRICS_NAMESPACE": "mailctl",
                       "POWERTOOLS_LOG_LEVEL": "WARNING"})  # the sender's "chunk processed" lines would bury the figures
    os.environ.pop("MAILCTL_CONFIGURATION_SET", None)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tally = DynamoDbTally(SesFront(options=AccountOptions(max_send_rate=100_000)))
    server = moto_server(port, tally)
    server.start()
    results = []
    try:
        for regime in ("polling", "drained"):
            results.append(send_and_count(f"http://127.0.0.1:{port}", tally, recipients, regime))
            print(json.dumps(results[-1]), flush=True)
    finally:
        server.stop()
    analytic = analytic_counter_cost()
    for row in analytic:
        print(json.dumps(row), flush=True)
    sender = results[0]["sender_units_per_recipient"]
    print(f"Write units per recipient ({recipients:,} recipients sent by the real sender on moto; items under 1 KB: "
          f"largest record {results[0]['largest_item_bytes'].get('record')} B, counter item {results[0]['largest_item_bytes'].get('counter')} B):")
    print(f"  before counters: sender {sender}")
    for row in results:
        print(f"  with counters, {row['regime']:<8} ({row['batches']} batches, {row['job_records_per_batch']} job records each): "
              f"sender {row['sender_units_per_recipient']} + counters {row['counter_units_per_recipient']} "
              f"({row['counter_writes_refused']} refused by the checkpoint), counter reads {row['counter_reads_per_recipient']}; "
              f"counters exact: {row['counters_exact']}")
        replay = row.get("replay_of_the_whole_stream")
        if replay:
            print(f"    the whole stream applied again by a new poller: {replay['batches']} batches, {replay['counter_writes_refused']} "
                  f"writes refused, {replay['counter_writes_applied']} applied, {replay['counter_reads']} GetItem; counts unchanged: "
                  f"{replay['counts_unchanged']}")
    print("  other writes of the sender, with or without counters (pacing claims, conditional manifest updates), per recipient "
          "at the bench's rate cap of 100,000/s: " + ", ".join(f"{row['regime']} {row['other_writes_per_recipient']}" for row in results))
    for row in analytic:
        print(f"  AWS (analytic): {row['sends_per_second_on_one_stream_shard']:,} sends/s on one stream shard -> batches of "
              f"{row['batch_records_polls']:.0f} records at 4 polls/s: counters {row['counter_units_per_recipient_polls']} "
              f"write units per recipient, {row['writes_per_second_per_counter_item_polls']} writes/s on the item "
              f"(1 s batching window: batches of {row['batch_records_window_1s']:.0f}, {row['counter_units_per_recipient_window_1s']})")
    return results + analytic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--moto", type=int, nargs="*", default=[2000, 5000, 10000],
                        help="record counts for part 1, moto (none: skip it)")
    parser.add_argument("--wire", type=int, nargs="*", default=[100_000, 200_000, 1_000_000],
                        help="recipient counts for part 2, the wire endpoint (none: skip it)")
    parser.add_argument("--shards", type=int, nargs="*", default=[1, 4], help="idempotency shards for part 2")
    parser.add_argument("--counters", action="store_true", help="issue 14: part 2 also from the counters and with --verify "
                        "(same pages), and part 3, the DynamoDB writes per recipient with and without the counters function")
    parser.add_argument("--write-recipients", type=int, default=2000, help="recipients sent in each regime of part 3 (default 2000)")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    if args.moto:
        bench_moto(args.moto, 1)
    if args.wire:
        from mail_sender.counters import COUNTER_SHARDS

        bench_wire(args.wire, args.shards, counter_shards=COUNTER_SHARDS if args.counters else 0)
    if args.counters:
        bench_writes(args.write_recipients)


if __name__ == "__main__":
    main()
