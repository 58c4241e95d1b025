"""A 100,000-entry suppression import (issue 12: "100,000 entries in well under a minute").

Runs `mailctl suppression import FILE --json` as a child process, as an operator would, from a
file of 100,000 addresses. DynamoDB is a DynamoDB-wire endpoint in its own process (bench-local,
below) that answers BatchWriteItem as DynamoDB does and keeps every item, so the figure is
mailctl's own work: reading and checking every address, building the items, 4,000 BatchWriteItem
calls of 25 from 16 threads (botocore serialisation, HTTP on loopback). The endpoint then counts
what it holds, by partition. DynamoDB's own write capacity comes on top: see docs/benchmarks.md.

moto is not used: it stores each BatchWriteItem item by item under one lock, so against moto the
figure would measure moto.

    .venv/bin/python bench/bench_suppression.py [--entries 100000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class _Handler(BaseHTTPRequestHandler):
    items: dict = {}
    calls = Counter()

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        target = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
        self.calls[target] += 1
        if target == "BatchWriteItem":
            for table, requests in body["RequestItems"].items():
                assert len(requests) <= 25, "BatchWriteItem takes at most 25 requests"
                for request in requests:
                    item = request["PutRequest"]["Item"]
                    self.items[(item["pk"]["S"], item["sk"]["S"])] = item
            answer = {"UnprocessedItems": {}}
        elif target == "Report":
            answer = {"items": len(self.items), "partitions": Counter(pk for pk, _ in self.items),
                      "calls": dict(self.calls)}
        else:
            answer = {}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _serve(port_out) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port_out.put(server.server_address[1])
    server.serve_forever()


def report(port: int) -> dict:
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=b"{}", headers={"X-Amz-Target": "DynamoDB_20120810.Report"})
    return json.load(urllib.request.urlopen(request, timeout=30))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args()
    ports: multiprocessing.Queue = multiprocessing.Queue()
    server = multiprocessing.Process(target=_serve, args=(ports,), daemon=True)
    server.start()
    port = ports.get(timeout=10)
    try:
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "suppressed.csv"
            with path.open("w", encoding="utf-8") as handle:
                handle.write("email,reason\n")
                for n in range(args.entries):
                    handle.write(f"former.customer.{n}@example-{n % 97}.com,{'COMPLAINT' if n % 10 == 0 else 'BOUNCE'}\n")
            config = Path(directory) / "mailctl.yaml"
            config.write_text(f"aws:\n  region: us-east-1\n  endpoint_url: http://127.0.0.1:{port}\ntable: bench-state\n", encoding="utf-8")
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
            env.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"})
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            result = subprocess.run([sys.executable, "-m", "mailctl", "--config", str(config), "suppression", "import", str(path), "--json"],
                                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        if result.returncode != 0:
            raise SystemExit(f"import failed ({result.returncode}): {result.stderr[-2000:]}")
        output = json.loads(result.stdout)
        held = report(port)
    finally:
        server.terminate()
    partitions = held["partitions"]
    print(f"suppression import: {output['imported']:,} entries in {wall:.1f} s wall for the whole command "
          f"({output['seconds']:.1f} s inside it), {cpu:.1f} s of mailctl's CPU, {held['calls'].get('BatchWriteItem', 0):,} BatchWriteItem calls")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"the endpoint holds {held['items']:,} items in {len(partitions)} partitions "
          f"({min(partitions.values()):,} to {max(partitions.values()):,} each)")


if __name__ == "__main__":
    main()
