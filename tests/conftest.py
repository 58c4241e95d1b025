"""Shared fixtures. Every test runs with the user's AWS profile and credentials blanked, so a test
can never reach a real account; AWS is a moto server on loopback."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from mailctl.aws.session import Clients
from mailctl.config import AwsSettings, Config
from mailctl.local.provision import provision

_AWS_VARS = (
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SESV2", "AWS_ENDPOINT_URL_LAMBDA", "MAILCTL_CONFIG",
)


@pytest.fixture(autouse=True)
def blank_aws_env(monkeypatch, tmp_path_factory):
    for name in _AWS_VARS:
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path_factory.getbasetemp() / "empty-aws-config"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # The sender's clients validate request shapes in tests (production skips it for speed).
    monkeypatch.setenv("MAILCTL_BOTO_PARAMETER_VALIDATION", "1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def _moto_server():
    """One moto server for the session, on a free loopback port, behind the local stack's SES
    account rules (mailctl.local.ses_front); tests reset it before use."""
    import logging

    from mailctl.local.ses_front import SesFront
    from mailctl.local.stack import moto_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    port = free_port()
    front = SesFront()
    server = moto_server(port, front)
    server.start()
    yield f"http://127.0.0.1:{port}", front
    server.stop()


@pytest.fixture(scope="session")
def moto_endpoint(_moto_server):
    return _moto_server[0]


@pytest.fixture
def ses_front(_moto_server, local_config):
    """The SES account of this test's (freshly reset) moto: set `ses_front.account`'s rate, quota,
    sandbox and identities, or move `ses_front.clock.offset` forward."""
    return _moto_server[1]


def reset_moto(endpoint: str) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).read()


@pytest.fixture
def local_config(moto_endpoint) -> Config:
    reset_moto(moto_endpoint)
    return Config(aws=AwsSettings(region="us-east-1", endpoint_url=moto_endpoint))


@pytest.fixture
def clients(local_config) -> Clients:
    return Clients(local_config)


@pytest.fixture
def stack(clients):
    """The provisioned local resources (queue, DLQ, bucket, table, verified SES domains)."""
    return provision(clients, visibility_timeout=2)


@pytest.fixture
def config_file(tmp_path, local_config, monkeypatch) -> str:
    """The local config as a file for the command line, and a private state dir for `send`."""
    import yaml

    monkeypatch.setenv("MAILCTL_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "mailctl.yaml"
    path.write_text(yaml.safe_dump(local_config.model_dump(mode="json", exclude_none=True)))
    return str(path)
