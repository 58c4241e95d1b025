"""`mailctl local up` as a person runs it: a subprocess, no AWS credentials, stopped with Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import boto3
import pytest

pytestmark = pytest.mark.e2e


def read_until(stream, prefix: str, timeout: float) -> list[str]:
    """Lines of `stream` up to and including the first starting with `prefix` (reader thread: no hang)."""
    lines: list[str] = []
    found = threading.Event()

    def reader():
        for line in stream:
            lines.append(line.rstrip("\n"))
            if line.startswith(prefix):
                found.set()
                return

    threading.Thread(target=reader, daemon=True).start()
    found.wait(timeout)
    return lines


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def no_aws_env(tmp_path) -> dict[str, str]:
    """The environment of a machine that has never seen AWS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAILCTL_"))}
    env.update({"AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                "AWS_EC2_METADATA_DISABLED": "true"})
    return env


def port_free(port: int) -> bool:
    """Nothing listens there: bindable as `local up` binds (SO_REUSEADDR), so that a connection the
    server closed first, lingering in TIME_WAIT as TCP requires, does not count as taken."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_local_up_serves_the_provisioned_stack_and_stops_on_ctrl_c(tmp_path):
    # Given a machine with no AWS credentials or config, and a free port
    env = no_aws_env(tmp_path)
    port = free_port()

    # When `mailctl local up --no-worker` starts
    process = subprocess.Popen(
        [sys.executable, "-m", "mailctl", "local", "up", "--port", str(port), "--no-worker"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = read_until(process.stdout, "export AWS_ENDPOINT_URL=", timeout=30)

        # Then it prints the environment a second shell needs
        endpoint = f"http://127.0.0.1:{port}"
        assert f"export AWS_ENDPOINT_URL={endpoint}" in lines, (lines, process.poll())
        # And the resources exist on that endpoint
        kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
        queues = boto3.client("sqs", **kw).list_queues()["QueueUrls"]
        assert {q.rsplit("/", 1)[-1] for q in queues} == {"mailctl-jobs", "mailctl-jobs-dlq", "mailctl-ses-events", "mailctl-ses-events-dlq"}
        assert "mailctl-state" in boto3.client("dynamodb", **kw).list_tables()["TableNames"]
        assert "mailctl-payloads" in [b["Name"] for b in boto3.client("s3", **kw).list_buckets()["Buckets"]]
        (mapping,) = boto3.client("lambda", **kw).list_event_source_mappings(FunctionName="mailctl-sender")["EventSourceMappings"]
        assert mapping["State"] == "Enabled"

        # When Ctrl-C arrives
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    # Then it stops cleanly, saying so, and leaves nothing listening
    stderr = process.stderr.read()
    assert code in (0, 130), stderr
    assert "stopping" in stderr
    assert "Traceback" not in stderr
    deadline = time.monotonic() + 5
    while not port_free(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert port_free(port)


def test_local_up_refuses_a_port_in_use(tmp_path):
    # Given a port something already listens on
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        # When local up is asked to use it
        result = subprocess.run(
            [sys.executable, "-m", "mailctl", "local", "up", "--port", str(port), "--no-worker"],
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )

    # Then it fails with one line naming the port, and a hint
    assert result.returncode == 1
    assert f"127.0.0.1:{port} is already in use" in result.stderr
    assert "hint:" in result.stderr


def test_local_up_plays_the_ses_account_its_flags_describe(tmp_path):
    # Given `mailctl local up` started as a new sandbox account with one extra verified address
    env = no_aws_env(tmp_path)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mailctl", "local", "up", "--port", str(port), "--no-worker",
         "--ses-rate", "1", "--ses-quota", "200", "--sandbox", "--verify", "me@example.org"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = read_until(process.stdout, "export AWS_ENDPOINT_URL=", timeout=30)
        assert any(line.startswith("export AWS_ENDPOINT_URL=") for line in lines), (lines, process.poll())
        ses = boto3.client("sesv2", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x")

        # Then SES answers as that account: GetAccount, the identity, and a send to it
        account = ses.get_account()
        assert (account["ProductionAccessEnabled"], account["SendQuota"]["MaxSendRate"], account["SendQuota"]["Max24HourSend"]) == (False, 1.0, 200.0)
        assert ses.get_email_identity(EmailIdentity="me@example.org")["VerifiedForSendingStatus"] is True
        raw = b"From: news@example.com\r\nTo: me@example.org\r\nSubject: hi\r\n\r\nhi\r\n"
        ses.send_email(Destination={"ToAddresses": ["me@example.org"]}, Content={"Raw": {"Data": raw}})
        assert ses.get_account()["SendQuota"]["SentLast24Hours"] == 1.0
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert "SES: 1/s, 200 per 24 hours, sandbox" in process.stderr.read()
