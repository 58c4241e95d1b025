"""CPU per SES event of the events function (issue 12).

Runs the real `mail_sender.events_handler.lambda_handler` on SQS events shaped as Lambda delivers
them: batches of 10 records, each body the SNS envelope around a documented SES event (the mix the
mailbox simulator produces: Send and Delivery for most recipients, Bounce, Complaint). DynamoDB is
answered by bench_sender's in-process stand-in (real botocore clients, requests serialised and
responses parsed as on Lambda; only the network is missing), so the figure is the handler's own
CPU: parsing the envelope and the event, the conditional UpdateItem per recipient (and a PutItem
for each permanent bounce or complaint), Powertools' batch processing. The stand-in accepts every
write: conditional failures (duplicates) cost the same request and a parsed error.

    .venv/bin/python bench/bench_events.py [--events 20000]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_sender import StandIn  # noqa: E402
from mail_sender import events_handler  # noqa: E402
from mail_sender.events import EventRecorder  # noqa: E402
from mail_sender.state import StateStore  # noqa: E402
from mailctl.local.simulator import events_for_send  # noqa: E402

TABLE = "bench-state"
JOB = "bench-events-job"
# One in ten recipients is a simulator address: bounce, complaint, suppression list, out of office.
SCENARIOS = ["reader{n}@example.org"] * 6 + ["bounce+{n}@simulator.amazonses.com", "complaint+{n}@simulator.amazonses.com",
                                             "suppressionlist+{n}@simulator.amazonses.com", "ooto+{n}@simulator.amazonses.com"]


def bodies(count: int) -> list[str]:
    out: list[str] = []
    n = 0
    while len(out) < count:
        address = SCENARIOS[n % len(SCENARIOS)].format(n=n)
        for event in events_for_send(uuid.uuid4().hex, "news@example.com", [address], {"job_id": JOB}, configuration_set="mailctl"):
            out.append(json.dumps({"Type": "Notification", "MessageId": str(uuid.uuid4()),
                                   "TopicArn": "arn:aws:sns:us-east-1:123456789012:mailctl-ses-events",
                                   "Message": json.dumps(event), "Timestamp": "2026-11-29T00:00:00.000Z",
                                   "SignatureVersion": "1", "Signature": "x", "SigningCertURL": "https://x", "UnsubscribeURL": "https://x"}))
        n += 1
    return out[:count]


def record(body: str) -> dict:
    now = str(int(time.time() * 1000))
    return {"messageId": str(uuid.uuid4()), "receiptHandle": "r", "body": body,
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": now, "SenderId": "x", "ApproximateFirstReceiveTimestamp": now},
            "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:mailctl-ses-events", "awsRegion": "us-east-1"}


class Context:
    function_name = "mailctl-events"
    aws_request_id = "bench"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:mailctl-events"
    memory_limit_in_mb = 256

    def get_remaining_time_in_millis(self) -> int:
        return 30000


def run(count: int) -> dict:
    stand_in = StandIn()
    events_handler.install(EventRecorder(StateStore(TABLE, client=stand_in.client("dynamodb"))))
    batches = [{"Records": [record(b) for b in chunk]} for chunk in (lambda all_: [all_[i:i + 10] for i in range(0, len(all_), 10)])(bodies(count))]
    failures = 0
    # The handler logs one line per metric flush; keep the terminal for the figures.
    with contextlib.redirect_stdout(io.StringIO()):
        events_handler.lambda_handler(batches[0], Context())  # warm-up: imports, clients
        cpu, wall = time.process_time(), time.perf_counter()
        for batch in batches[1:]:
            failures += len(events_handler.lambda_handler(batch, Context())["batchItemFailures"])
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    measured = sum(len(b["Records"]) for b in batches[1:])
    writes = len(stand_in.items)
    return {"events": measured, "failed": failures, "cpu_ms_per_event": 1000 * cpu / measured,
            "events_per_second": measured / wall, "items_written": writes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "mailctl")
    result = run(args.events)
    print(f"events handler: {result['events']:,} events in batches of 10, {result['failed']} failed, "
          f"{result['items_written']:,} items written to the stand-in")
    print(f"CPU per event: {result['cpu_ms_per_event']:.3f} ms; {result['events_per_second']:,.0f} events/s on one core")


if __name__ == "__main__":
    main()
