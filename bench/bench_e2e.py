"""20,000 recipients through the local stack end to end: `mailctl send`, a drain by the local worker
running the real sender, `mailctl status`. Prints wall time, recipients per second and where the time
goes (per phase, and CPU of the moto process vs this process during the drain).

    .venv/bin/python bench/bench_e2e.py                      # 20,000 recipients
    .venv/bin/python bench/bench_e2e.py --recipients 5000 --profile

The stack is `mailctl local up --no-worker` in its own process (as an operator runs it); `send` and
`status` run as `mailctl` subprocesses; the drain runs `mailctl.local.worker.LocalWorker` in this
process so that its CPU can be measured (and profiled with --profile). The sender's rate cap is set
high (--rate) so that the stack, not the cap, sets the pace; see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGN = """\
name: bench-e2e
from: "Example News <news@example.com>"
subject: "{{ name }}さん、11月のお知らせ"
html: body.html
text: body.txt
recipients: recipients.csv
unsubscribe_url: "https://example.com/u/{{ token }}"
headers: {X-Campaign: bench}
"""
HTML = "<html><body><h1>{{ name }}さん</h1>" + "<p>今月のお知らせです。Lorem ipsum dolor sit amet.</p>" * 20 + "</body></html>\n"
TEXT = "{{ name }}さん\n" + "今月のお知らせです。Lorem ipsum dolor sit amet.\n" * 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "MAILCTL_CONFIG"}
    env.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"})
    env.update(extra)
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--chunk-size", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=5)
    parser.add_argument("--max-concurrency", type=int, default=2)
    parser.add_argument("--send-concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--profile", action="store_true", help="cProfile the drain; print the top functions")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mailctl-bench-e2e-"))
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    config = work / "mailctl.yaml"
    config.write_text(yaml.safe_dump({
        "aws": {"region": "us-east-1", "endpoint_url": endpoint},
        "sending": {"chunk_size": args.chunk_size},
        "sender": {"batch_size": args.batch_size, "max_concurrency": args.max_concurrency, "rate_per_second": args.rate,
                   "send_concurrency": args.send_concurrency, "timeout_seconds": 300},
    }))
    env = clean_env(MAILCTL_STATE_DIR=str(work / "state"), MAILCTL_CONFIG=str(config))
    (work / "body.html").write_text(HTML, encoding="utf-8")
    (work / "body.txt").write_text(TEXT, encoding="utf-8")
    (work / "campaign.yaml").write_text(CAMPAIGN, encoding="utf-8")
    with (work / "recipients.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "token"])
        writer.writerows([f"user{i}@example.com", f"山田 {i}", f"t{i}"] for i in range(args.recipients))

    phases: dict[str, float] = {}
    t0 = time.monotonic()
    stack = subprocess.Popen([sys.executable, "-m", "mailctl", "local", "up", "--no-worker", "--port", str(port)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=work)
    try:
        stack.stdout.readline()  # the environment lines come once the stack is provisioned
        phases["local up (moto start + provisioning)"] = time.monotonic() - t0

        t = time.monotonic()
        send = subprocess.run([sys.executable, "-m", "mailctl", "send", str(work / "campaign.yaml"), "--yes", "--json"],
                              env=env, capture_output=True, text=True, cwd=work)
        phases["mailctl send (check + enqueue)"] = time.monotonic() - t
        if send.returncode != 0:
            print(send.stderr, file=sys.stderr)
            return 1
        job = json.loads(send.stdout)

        os.environ.update({k: v for k, v in env.items() if k.startswith(("AWS_", "MAILCTL_"))})
        from mailctl.aws.session import Clients
        from mailctl.config import load_config
        from mailctl.local.worker import LocalWorker

        logging.disable(logging.CRITICAL)
        worker = LocalWorker(Clients(load_config(str(config))), wait_seconds=1)
        moto_cpu, own_cpu, t = cpu_seconds(stack.pid), time.process_time(), time.monotonic()
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        # The sender logs a JSON line per chunk on stdout (CloudWatch, on Lambda): not bench output.
        with contextlib.redirect_stdout(io.StringIO()):
            stats = worker.run(until_empty=True)
        if profiler:
            profiler.disable()
        drain = time.monotonic() - t
        phases["drain (local worker + real sender)"] = drain
        moto_cpu, own_cpu = cpu_seconds(stack.pid) - moto_cpu, time.process_time() - own_cpu

        t = time.monotonic()
        status = subprocess.run([sys.executable, "-m", "mailctl", "status", job["job_id"], "--json"],
                                env=env, capture_output=True, text=True, cwd=work)
        phases["mailctl status"] = time.monotonic() - t
        if status.returncode != 0:
            print(f"mailctl status failed (exit {status.returncode}) after {phases['mailctl status']:.1f} s: {status.stderr.strip()}", file=sys.stderr)
            print(f"phases so far: {phases}", file=sys.stderr)
            return 1
        result = json.loads(status.stdout)
    finally:
        stack.send_signal(signal.SIGINT)
        try:
            stack.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stack.kill()

    total = sum(phases.values())
    end_to_end = phases["mailctl send (check + enqueue)"] + drain + phases["mailctl status"]
    print(f"recipients: {args.recipients:,} in {job['messages']:,} messages; status says sent={result['sent']:,} "
          f"failed={result['failed']:,} not_started={result['not_started']:,}")
    print(f"worker: {stats.summary()}")
    print(f"wall time send + drain + status: {end_to_end:.1f} s -> {args.recipients / end_to_end:,.0f} recipients/s end to end; "
          f"drain alone {args.recipients / drain:,.0f} recipients/s")
    print("where the time goes:")
    for name, seconds in phases.items():
        print(f"  {name:<40} {seconds:8.1f} s  {100 * seconds / total:5.1f}%")
    print(f"  during the drain: moto process CPU {moto_cpu:.1f} s ({1000 * moto_cpu / args.recipients:.2f} ms/recipient), "
          f"worker+sender CPU {own_cpu:.1f} s ({1000 * own_cpu / args.recipients:.2f} ms/recipient), "
          f"max RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if profiler:
        import pstats

        pstats.Stats(profiler).sort_stats("cumulative").print_stats(15)
    return 0 if result["sent"] == args.recipients else 1


if __name__ == "__main__":
    sys.exit(main())
