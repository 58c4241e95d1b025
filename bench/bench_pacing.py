"""Benchmark of the sender's pacing to the SES account's rate (issue 11).

Achieved send rate divided by the account's MaxSendRate, with DLQ depth, duplicates and the share of
sends SES refused as throttled.

1. Local stack, `--stack` (default): moto behind the local stack's SES account rules
   (`mailctl.local.ses_front`, what `mailctl local up --ses-rate R` runs) in this process, and the
   real sender in `mailctl local worker` child processes with the default sender settings (batch 5,
   2 invocations per worker, send concurrency 10, rate_per_second 50 as the upper bound). For each
   rate: a job of 2 chunks and one worker (one busy invocation), and a job of 24 chunks and three
   workers (three containers, every invocation busy). The workers share the account's rate only
   through the pacing counter in the state table.
2. In process, `--in-process`: rates moto cannot serve (100 to 1,000/s). Containers (a Pacer each,
   as a Lambda container holds one) with 10 sending threads each share a DynamoDB stand-in that
   applies the same conditional ADD; every send is checked by the local stack's `SesAccount` (token
   bucket of one second, TooManyRequestsException when over). Rendering and idempotency are not
   run here (bench_sender.py measures them): this measures the pacing alone at rates a 2-core VM
   cannot render and record.

    .venv/bin/python bench/bench_pacing.py [--rates 5 10 25] [--seconds 8]
    .venv/bin/python bench/bench_pacing.py --in-process [--rates 100 250 500 1000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
BUNDLE = {"subject": "Hello {{ name }}", "from": "News <news@example.com>", "text": "Hello {{ name }}\n",
          "html": "<p>Hello {{ name }}</p>", "unsubscribe_url": "https://example.com/u/{{ token }}"}


def figures(rate: float, accepted: list[float], refused: int, sent: Counter, expected: int, dlq: int) -> dict[str, Any]:
    span = accepted[-1] - accepted[0] if len(accepted) > 1 else 0.0
    achieved = (len(accepted) - 1) / span if span else 0.0
    return {"rate": rate, "sends": len(accepted), "achieved_per_second": round(achieved, 2), "ratio": round(achieved / rate, 3),
            "throttled": refused, "throttled_share": round(refused / max(1, len(accepted) + refused), 4),
            "duplicates": sum(1 for n in sent.values() if n > 1), "missing": expected - len(sent), "dlq": dlq}


# --- 1. the local stack ------------------------------------------------------------------------------

def stack_run(rate: float, chunks: int, workers: int, seconds: float) -> dict[str, Any]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import RawMessage, ses_backends

    from mail_sender import contract
    from mailctl.aws.session import Clients
    from mailctl.config import AwsSettings, Config
    from mailctl.local.provision import provision
    from mailctl.local.ses_front import AccountOptions, SesFront
    from mailctl.local.stack import moto_server
    from tests.conftest import free_port

    port = free_port()
    front = SesFront(AccountOptions(max_send_rate=rate))
    server = moto_server(port, front)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    accepted: list[float] = []
    refused = Counter()
    check = front.account.check_send

    def counting(from_address, recipients):
        refusal = check(from_address, recipients)
        if refusal is None:
            accepted.append(time.time())
        else:
            refused[refusal.code] += 1
        return refusal

    front.account.check_send = counting
    processes: list[subprocess.Popen] = []
    try:
        config = Config(aws=AwsSettings(region="us-east-1", endpoint_url=endpoint))
        clients = Clients(config)
        stack = provision(clients, sender_function=False)
        recipients = int(rate * seconds)
        body, digest = contract.encode_bundle(BUNDLE)
        bundle = contract.BundleRef(stack.bucket, contract.bundle_key(digest))
        clients.s3.put_object(Bucket=bundle.bucket, Key=bundle.key, Body=body)
        job = f"pace-{int(rate)}-{chunks}-{int(time.time())}"
        size = -(-recipients // chunks)
        for chunk, start in enumerate(range(0, recipients, size)):
            people = [contract.encode_recipient(f"{job}-user{i}@example.org", {"name": f"U{i}", "token": str(i)}, i + 2)
                      for i in range(start, min(recipients, start + size))]
            clients.sqs.send_message(
                QueueUrl=stack.queue_url, MessageBody=contract.encode_chunk_body(job, chunk, bundle, people),
                MessageAttributes={contract.JOB_ATTRIBUTE: {"DataType": "String", "StringValue": job},
                                   contract.CHUNK_ATTRIBUTE: {"DataType": "Number", "StringValue": str(chunk)}})
        with tempfile.TemporaryDirectory() as tmp:
            config_path = Path(tmp) / "mailctl.yaml"
            config_path.write_text(yaml.safe_dump({"aws": {"region": "us-east-1", "endpoint_url": endpoint}}))
            env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                   "MAILCTL_STATE_DIR": tmp}
            env.pop("AWS_PROFILE", None)
            for _ in range(workers):
                processes.append(subprocess.Popen([sys.executable, "-m", "mailctl", "--config", str(config_path), "local", "worker"],
                                                  env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            deadline = time.time() + seconds * 4 + 60
            while len(accepted) < recipients and time.time() < deadline:
                time.sleep(0.2)
        time.sleep(1.0)  # anything still in flight would show as a duplicate
        backend = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        parser = HeaderParser()
        sent = Counter(to for to in (parser.parsestr(m.raw_data)["To"].strip() for m in backend.sent_messages
                                     if isinstance(m, RawMessage)) if to.startswith(f"{job}-"))
        attributes = clients.sqs.get_queue_attributes(QueueUrl=stack.dlq_url, AttributeNames=["All"])["Attributes"]
        dlq = int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])
        return {"chunks": chunks, "workers": workers, **figures(rate, accepted, sum(refused.values()), sent, recipients, dlq)}
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        server.stop()


# --- 2. in process -----------------------------------------------------------------------------------

class CounterTable:
    """The state table's pacing counter, in memory: the same conditional ADD as DynamoDB."""

    def __init__(self):
        self.used: dict[tuple[str, int], int] = {}
        self.lock = threading.Lock()
        self.calls = 0

    def claim_slots(self, scope: str, window: int, window_seconds: float, count: int, limit: int) -> int | None:
        time.sleep(0.003)  # a DynamoDB UpdateItem's round trip, roughly
        with self.lock:
            self.calls += 1
            used = self.used.get((scope, window), 0)
            if used > limit - count:
                return None
            self.used[(scope, window)] = used + count
            return used


def in_process_run(rate: float, containers: int, threads: int, seconds: float) -> dict[str, Any]:
    from mail_sender.pacing import Pacer
    from mailctl.local.ses_account import SesAccount

    account = SesAccount(max_send_rate=rate, verified=("example.com",))
    table = CounterTable()
    accepted: list[float] = []
    refused = Counter()
    lock = threading.Lock()
    stop = time.time() + seconds
    sent = Counter()

    def send(pacer: Pacer, name: str) -> None:
        n = 0
        while True:
            if not pacer.acquire(deadline=stop):
                return
            n += 1
            refusal = account.check_send("news@example.com", [f"{name}-{n}@example.org"])
            time.sleep(0.002)  # SES's answer
            with lock:
                if refusal is None:
                    accepted.append(time.time())
                    sent[f"{name}-{n}"] += 1
                else:
                    refused[refusal.code] += 1

    pacers = [Pacer(table, rate) for _ in range(containers)]
    workers = [threading.Thread(target=send, args=(pacer, f"c{c}t{t}")) for c, pacer in enumerate(pacers) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return {"containers": containers, "threads": threads, "claims": table.calls,
            **figures(rate, accepted, sum(refused.values()), sent, len(sent), 0)}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-process", action="store_true", help="the pacing alone, at rates moto cannot serve")
    parser.add_argument("--rates", type=float, nargs="+", help="MaxSendRate values (default 5 10 25, in process 100 250 500 1000)")
    parser.add_argument("--seconds", type=float, default=None, help="sending time per run (default 8, in process 5)")
    parser.add_argument("--json", action="store_true", help="one JSON line per run")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    results = []
    if args.in_process:
        seconds = args.seconds or 5
        for rate in args.rates or (100, 250, 500, 1000):
            for containers in (1, 10):
                results.append(in_process_run(rate, containers, 10, seconds))
    else:
        seconds = args.seconds or 8
        for rate in args.rates or (5, 10, 25):
            for chunks, workers in ((2, 1), (24, 3)):
                results.append(stack_run(rate, chunks, workers, seconds))
    for row in results:
        if args.json:
            print(json.dumps(row))
        else:
            shape = (f"{row['containers']:>2} container(s) x {row['threads']} threads" if args.in_process
                     else f"{row['chunks']:>2} chunks, {row['workers']} worker(s)")
            print(f"MaxSendRate {row['rate']:>6g}/s  {shape}: {row['sends']:>5} sends at {row['achieved_per_second']:>8.2f}/s = "
                  f"{row['ratio']:.3f} of the rate; throttled {row['throttled']} ({100 * row['throttled_share']:.2f}%), "
                  f"duplicates {row['duplicates']}, missing {row['missing']}, DLQ {row['dlq']}")
    return results


if __name__ == "__main__":
    main()
