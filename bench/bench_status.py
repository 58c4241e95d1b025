"""How long `mailctl status JOB --json` takes for big jobs (issue 5: "a 1,000,000-recipient job's
status answers in seconds, not minutes: no full-table Scan").

Two measurements, because moto cannot hold the big case:

1. moto (in-process `mock_aws`), end to end: manifest, idempotency records, queue counts and DLQ
   peek, with other jobs' records in the same table. moto serialises each Query page item by item
   (about 1 ms per item in moto 5.2) and re-reads the whole partition for every page, so its
   times grow faster than linearly and measure moto, not mailctl; this part checks the access
   pattern (Query only, never Scan) and gives small-N figures.
2. A DynamoDB-wire endpoint in its own process (bench-local, below) serving pre-built 1 MB Query
   pages in the exact JSON that DynamoDB returns, for 100k, 200k and 1M records. This times what
   mailctl itself does with a big job: HTTP on loopback, botocore's parsing, the 16 parallel
   sort-key ranges per shard, and the classification of every record. DynamoDB's own read time
   comes on top: see docs/benchmarks.md for the arithmetic.

Records are written in the exact Powertools shape (pk/sk/status/expiration/in_progress_expiration/
data) with BatchWriteItem.

    .venv/bin/python bench/bench_status.py                    # both parts, default sizes
    .venv/bin/python bench/bench_status.py --moto 5000 10000 --wire 100000 1000000 --shards 1 4
    .venv/bin/python bench/bench_status.py --moto --wire 1000000 --shards 1 --counters   # issue 14
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import sys
import time
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


def item_size(item: dict) -> int:
    """DynamoDB's item size: attribute names plus values (numbers counted roughly as their digits)."""
    return sum(len(name) + len(next(iter(value.values()))) for name, value in item.items())


def build_pages(job_id: str, size: int, shards: int, counter_shards: int = 0) -> tuple[dict, dict]:
    """{(partition, prefix, start_sk or ""): response bytes}, and the manifest item (wire shape).
    With `counter_shards`, the job's counter items too, holding exactly what its records say (as
    the sender's transactions leave them), and the manifest says so."""
    from mailctl.aws.dynamodb import to_item
    from mail_sender import counters

    rng = random.Random(size)
    groups: dict[tuple[str, str], list[dict]] = {}
    tallies: list[dict[str, float]] = [{} for _ in range(max(counter_shards, 1))]
    for n in range(size):
        item = record_item(job_id, n, shards, rng)
        if item:
            groups.setdefault((item["pk"]["S"], item["sk"]["S"][:11]), []).append(item)
            if counter_shards and item["status"]["S"] == "COMPLETED":
                outcome = json.loads(item["data"]["S"])
                tally = tallies[counters.counter_shard(item["sk"]["S"], counter_shards)]
                for name in counters.outcome_attributes(outcome):
                    tally[name] = tally.get(name, 0) + 1
                tally[counters.LAST_AT] = max(tally.get(counters.LAST_AT, 0), outcome["at"])
                tally[counters.FIRST_AT] = min(tally.get(counters.FIRST_AT, outcome["at"]), outcome["at"])
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
    the_manifest = manifest(job_id, size, shards)
    if counter_shards:
        for n, tally in enumerate(tallies):
            key = counters.counter_keys(job_id, counter_shards)[n]
            pages[("counter", key["pk"]["S"], "")] = {**key, **{name: {"N": repr(value)} for name, value in tally.items()}}
        the_manifest[counters.MANIFEST_ATTR] = counter_shards
    return pages, to_item({"pk": "jobs", "sk": job_id, **the_manifest})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    pages: dict = {}
    manifest: dict = {}

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        target = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
        if target == "GetItem":
            body = json.dumps({"Item": self.manifest}).encode()
        elif target == "BatchGetItem":  # the job's counter shards
            found = {table: [self.pages[("counter", k["pk"]["S"], "")] for k in spec["Keys"] if ("counter", k["pk"]["S"], "") in self.pages]
                     for table, spec in request["RequestItems"].items()}
            body = json.dumps({"Responses": found, "UnprocessedKeys": {}}).encode()
        elif target == "Query":
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
    pages, manifest_item = build_pages(JOB, size, shards, counter_shards)
    _Handler.pages, _Handler.manifest = pages, manifest_item
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    pages_only = [p for p in pages.values() if isinstance(p, bytes)]
    port_out.put((server.server_address[1], len(pages_only), sum(len(p) for p in pages_only)))
    server.serve_forever()


def bench_wire(sizes: list[int], shards_list: list[int], counter_shards: int = 0, verify: bool = False) -> list[dict]:
    """`status` against the wire stand-in: from the records (counter_shards 0: a job enqueued
    before counters), from the counters, or `verify` (both, and the comparison)."""
    from mailctl.aws.session import Clients
    from mailctl.config import AwsSettings, Config
    from mailctl.services.status import JobState

    results = []
    for shards in shards_list:
        for size in sizes:
            port_out: multiprocessing.Queue = multiprocessing.Queue()
            server = multiprocessing.Process(target=_serve, args=(size, shards, port_out, counter_shards), daemon=True)
            server.start()
            port, page_count, total_bytes = port_out.get(timeout=1800)
            read = {"calls": 0, "items": 0}

            def count_items(parsed, **_):
                read["calls"] += 1
                read["items"] += len(parsed.get("Items", [])) + ("Item" in parsed) + sum(len(v) for v in parsed.get("Responses", {}).values())

            try:
                config = Config(aws=AwsSettings(region="us-east-1", endpoint_url=f"http://127.0.0.1:{port}"))
                clients = Clients(config)
                clients.dynamodb.meta.events.register("after-call.dynamodb.*", count_items)
                started = time.perf_counter()
                status = JobState(clients, config).status(JOB, include_queues=False, verify=verify)
                elapsed = time.perf_counter() - started
            finally:
                server.terminate()
                server.join()
            results.append({
                "where": "DynamoDB-wire endpoint", "counted_from": status.counted_from, "recipients": size,
                "records": status.records, "shards": shards, "counter_shards": counter_shards,
                "items_read": read["items"], "dynamodb_calls": read["calls"],
                **({"counter_drift": status.counter_drift} if verify else {}),
                "pages": page_count, "megabytes": round(total_bytes / 1e6, 1), "seconds": round(elapsed, 2),
                "sent": status.sent, "failed": status.failed, "skipped": status.skipped, "in_progress": status.in_progress,
                "stale_in_progress": status.stale_in_progress, "not_started": status.not_started, "expired": status.expired,
            })
            print(json.dumps(results[-1]), flush=True)
    return results


# --- part 3: write units per recipient, before and after counters ---------------------------------

def _item_units(item: dict) -> int:
    return max(1, -(-item_size(item) // 1024))  # one write unit per started KB


def write_units(recipients: int, counter_shards: int) -> dict:
    """The real sender (bench_sender's in-process stand-in) sends `recipients`; every DynamoDB
    write on the job's records and counters is logged and priced as DynamoDB does: 1 unit per KB
    of item written, 2 per KB inside a transaction."""
    import bench_sender
    from mail_sender import contract, counters, handler

    stand_in = bench_sender.StandIn()
    bench_sender.install(stand_in, concurrency=4, rate=1e6)
    job_id = f"wcu-{counter_shards}"
    stand_in.items[(contract.JOBS_PK, job_id)] = {"pk": {"S": contract.JOBS_PK}, "sk": {"S": job_id}, "state": {"S": "enqueued"},
                                                  "idempotency_shards": {"N": "1"},
                                                  **({counters.MANIFEST_ATTR: {"N": str(counter_shards)}} if counter_shards else {})}
    body, digest = contract.encode_bundle(bench_sender.BUNDLE)
    ref = contract.BundleRef(bench_sender.BUCKET, contract.bundle_key(digest))
    stand_in.objects[(ref.bucket, ref.key)] = body
    writes: list[tuple[str, list[tuple[str, str]]]] = []

    def log(params, model, **_):
        if model.name in ("PutItem", "UpdateItem", "DeleteItem"):
            key = params.get("Key") or params.get("Item")
            writes.append((model.name, [(key["pk"]["S"], key["sk"]["S"])]))
        elif model.name == "TransactWriteItems":
            writes.append((model.name, [(e["Update"]["Key"]["pk"]["S"], e["Update"]["Key"]["sk"]["S"]) for e in params["TransactItems"]]))

    handler.sender().state.client.meta.events.register("before-parameter-build.dynamodb.*", log)
    records = []
    for chunk, start in enumerate(range(0, recipients, 100)):
        people = [contract.encode_recipient(f"user{i}@example.org", {"name": f"u{i}", "token": f"t{i}"}, i + 2)
                  for i in range(start, min(recipients, start + 100))]
        records.append(bench_sender.record(contract.encode_chunk_body(job_id, chunk, ref, people), job_id, chunk))
    bench_sender.invoke_all([{"Records": records[i:i + 10]} for i in range(0, len(records), 10)])
    units = {"records": 0, "counters": 0}
    for operation, keys in writes:
        for key in keys:
            where = "counters" if key[0].startswith(counters.COUNTS_PK_PREFIX + "#") else "records" if key[0].startswith("job#") else None
            if where:
                units[where] += _item_units(stand_in.items.get(key, {"pk": {"S": key[0]}})) * (2 if operation == "TransactWriteItems" else 1)
    calls: dict[str, int] = {}
    for operation, _ in writes:
        calls[operation] = calls.get(operation, 0) + 1
    return {"part": "write units per recipient", "counter_shards": counter_shards, "recipients": recipients, "sent": stand_in.sent,
            "write_calls": calls, "units_per_recipient": round((units["records"] + units["counters"]) / recipients, 2),
            "of_which_records": round(units["records"] / recipients, 2), "of_which_counters": round(units["counters"] / recipients, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moto", type=int, nargs="*", default=[2000, 5000, 10000], help="record counts for the moto part")
    parser.add_argument("--wire", type=int, nargs="*", default=[100_000, 200_000, 1_000_000], help="record counts for the wire part")
    parser.add_argument("--shards", type=int, nargs="*", default=[1, 4], help="idempotency shards for the wire part")
    parser.add_argument("--counters", action="store_true", help="issue 14: the wire part with counters (status, then --verify) "
                        "beside the records, and the write units per recipient before and after")
    parser.add_argument("--write-recipients", type=int, default=1000, help="recipients sent for the write-unit figures")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs", flush=True)
    if args.moto:
        bench_moto(args.moto, 1)
    if args.wire:
        bench_wire(args.wire, args.shards)
        if args.counters:
            from mail_sender.counters import COUNTER_SHARDS

            bench_wire(args.wire, args.shards, counter_shards=COUNTER_SHARDS)
            bench_wire(args.wire, args.shards, counter_shards=COUNTER_SHARDS, verify=True)
    if args.counters:
        from mail_sender.counters import COUNTER_SHARDS

        for shards in (0, COUNTER_SHARDS):
            print(json.dumps(write_units(args.write_recipients, shards)), flush=True)


if __name__ == "__main__":
    main()
