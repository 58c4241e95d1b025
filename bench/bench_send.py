"""Benchmark `mailctl send`: 1,000,000 recipients from CSV to a local SQS endpoint.

    .venv/bin/python bench/bench_send.py [--rows 1000000] [--naive-sample 5000]

What it measures, in one run:
- `mailctl send --yes --json` as a child process (its wall time and peak RSS): every row checked
  (address, duplicates, control characters, template variables, size), the rows file and
  template bundle uploaded, the manifest written, every chunk enqueued.
- SQS is bench/fake_sqs.py: moto's SQS slows down as its queue fills, so the figures would
  measure moto. The fake enforces SQS's real count and size limits (10 entries, 1 MiB per message
  and per batch) and counts what it accepts; S3 and DynamoDB are a moto server. Both run in this
  process, on the same 2 cores as the child.
- The naive way, one SendMessage per recipient (what a Celery `delay()` per recipient does),
  measured over a sample against the same endpoint and extrapolated; the ratio is printed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_sqs import FakeSqs  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
# The child's own peak RSS (VmHWM of its address space after exec), written as it exits.
# getrusage(RUSAGE_CHILDREN) would not do: Linux carries the high-water mark across exec, so it
# reports this benchmark process's size at fork time rather than mailctl's.
PEAK_RSS_WRAPPER = """
import atexit, os, sys
def _peak():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            open(os.environ['BENCH_VMHWM_FILE'], 'w').write(line.split()[1])
atexit.register(_peak)
from mailctl.cli import main
sys.exit(main(sys.argv[1:]))
"""
CAMPAIGN = """\
name: bench
from: "Bench <news@example.com>"
subject: "{{ name }}さん、お知らせ"
html: body.html
text: body.txt
recipients: recipients.csv
unsubscribe_url: "https://example.com/u/{{ token }}"
"""


def make_campaign(rows: int) -> Path:
    directory = OUT / f"campaign-{rows}"
    csv_path = directory / "recipients.csv"
    if not csv_path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        rng = random.Random(rows)
        tmp = csv_path.with_suffix(".tmp")
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["email", "name", "token"])
            for i in range(rows):
                # ~60 bytes of variables per recipient: address, a name, a 24-hex token
                writer.writerow([f"user{i}@example{i % 97}.com", f"Name Surname {i}", f"{rng.getrandbits(96):024x}"])
        tmp.rename(csv_path)
    (directory / "body.html").write_text("<p>{{ name }}さん、こんにちは</p><a href='https://example.com/u/{{ token }}'>unsubscribe</a>\n")
    (directory / "body.txt").write_text("{{ name }}さん、こんにちは\nhttps://example.com/u/{{ token }}\n")
    (directory / "campaign.yaml").write_text(CAMPAIGN)
    return directory / "campaign.yaml"


def naive(endpoint: str, queue_url: str, sample: int) -> float:
    """Seconds per recipient for one SendMessage each, sequentially."""
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    start = time.perf_counter()
    for i in range(sample):
        body = json.dumps({"email": f"user{i}@example.com", "vars": {"name": f"Name Surname {i}", "token": f"{i:024x}"}})
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    return (time.perf_counter() - start) / sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--naive-sample", type=int, default=5000)
    parser.add_argument("--chunk-size", type=int, default=100)
    args = parser.parse_args()

    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS"):
        os.environ.pop(name, None)
    campaign = make_campaign(args.rows)
    print(f"recipients file: {campaign.parent / 'recipients.csv'} ({(campaign.parent / 'recipients.csv').stat().st_size / 1e6:.1f} MB, {args.rows:,} rows)")

    import logging

    from mailctl.aws.session import Clients
    from mailctl.config import AwsSettings, Config
    from mailctl.local.provision import provision
    from mailctl.local.ses_front import SesFront
    from mailctl.local.stack import moto_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # The local stack's moto, SES account rules in front: `send` checks the From with SES first.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    moto = moto_server(port, SesFront())
    moto.start()
    moto_endpoint = f"http://127.0.0.1:{port}"
    provision(Clients(Config(aws=AwsSettings(endpoint_url=moto_endpoint))))

    fake = FakeSqs(port=0)
    sqs_endpoint = fake.start()
    queue_url = fake.create_queue("mailctl-jobs", {"MaximumMessageSize": "1048576"})

    with tempfile.TemporaryDirectory() as state:
        config = Path(state) / "mailctl.yaml"
        config.write_text(f"aws:\n  endpoint_url: {moto_endpoint}\nsending:\n  chunk_size: {args.chunk_size}\n")
        env = dict(os.environ, AWS_ENDPOINT_URL_SQS=sqs_endpoint, MAILCTL_STATE_DIR=state)
        start = time.perf_counter()
        hwm_file = Path(state) / "vmhwm"
        env["BENCH_VMHWM_FILE"] = str(hwm_file)
        child = subprocess.run(
            [sys.executable, "-c", PEAK_RSS_WRAPPER, "--config", str(config), "send", str(campaign), "--yes", "--json", "--new-job"],
            env=env, capture_output=True, text=True,
        )
        wall = time.perf_counter() - start
        peak_mb = int(hwm_file.read_text()) / 1024 if hwm_file.exists() else float("nan")
    if child.returncode != 0:
        print(child.stderr, file=sys.stderr)
        raise SystemExit(f"mailctl send failed with exit {child.returncode}")
    result = json.loads(child.stdout)
    stats = fake.stats()

    per_recipient = naive(sqs_endpoint, queue_url, args.naive_sample)
    naive_total = per_recipient * args.rows
    fake.stop()
    moto.stop()

    print(f"mailctl send: {result['recipients']:,} recipients in {result['messages']:,} messages, wall {wall:.2f} s, "
          f"{result['recipients'] / wall:,.0f} recipients/s, peak RSS {peak_mb:.0f} MB")
    print(f"fake SQS accepted: {json.dumps(stats)}")
    print(f"naive (one SendMessage per recipient, sequential, sample {args.naive_sample:,}): "
          f"{per_recipient * 1e3:.2f} ms each, {naive_total:,.0f} s extrapolated to {args.rows:,}")
    print(f"ratio naive / mailctl: {naive_total / wall:,.0f}x")
    targets = {"wall < 15 s": wall < 15, "peak RSS < 150 MB": peak_mb < 150}
    print("targets: " + ", ".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in targets.items()))


if __name__ == "__main__":
    main()
