"""Creating the sender's boto3 clients: lazily, never at import time, one session per runtime.

boto3 finds the endpoint (AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_<SERVICE>) and region itself; the
Lambda runtime provides credentials.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

# Codes that mean "not now" whatever the service.
THROTTLING_CODES = frozenset(
    {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded",
     "ProvisionedThroughputExceededException", "SlowDown", "RequestThrottled", "LimitExceededException"}
)


# Set to "1" by the test suite: a request shape real AWS would refuse then fails a test first.
PARAMETER_VALIDATION_ENV = "MAILCTL_BOTO_PARAMETER_VALIDATION"


def boto_config(max_pool_connections: int = 32) -> BotoConfig:
    """The sender's client settings. Client-side parameter validation is off in production: the
    sender's request shapes are fixed, the services validate anyway, and it is ~10% of the CPU of a
    send."""
    return BotoConfig(
        retries={"mode": "standard", "max_attempts": 3},
        max_pool_connections=max_pool_connections,
        connect_timeout=5,
        read_timeout=20,
        parameter_validation=os.environ.get(PARAMETER_VALIDATION_ENV) == "1",
    )


def send_config(max_pool_connections: int, connect_timeout: float, read_timeout: float) -> BotoConfig:
    """The SES client's settings: one attempt per call. botocore's standard retry would send a
    SendEmail again after a read timeout, when SES may already have accepted it; the sender decides."""
    return boto_config(max_pool_connections).merge(BotoConfig(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    ))


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "") or ""


def http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


class ClientFactory:
    """Thread-safe, lazily created clients sharing one boto3 session."""

    def __init__(self, max_pool_connections: int = 32, region: str | None = None,
                 ses_timeouts: tuple[float, float] = (2.0, 8.0)):
        self._lock = threading.Lock()
        self._session: boto3.session.Session | None = None
        self._clients: dict[str, Any] = {}
        self._config = boto_config(max_pool_connections)
        self._send_config = send_config(max_pool_connections, *ses_timeouts)
        self._region = region

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                if self._session is None:
                    self._session = boto3.session.Session()
                config = self._send_config if service == "sesv2" else self._config
                self._clients[service] = self._session.client(service, config=config, region_name=self._region)
            return self._clients[service]


class LazyClient:
    """Base for adapters: the client is injected, or made by a factory on first use."""

    service = ""

    def __init__(self, client: Any = None, factory: ClientFactory | None = None):
        self._client = client
        self._factory = factory

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = (self._factory or ClientFactory()).client(self.service)
        return self._client

    @client.setter
    def client(self, value: Any) -> None:
        self._client = value
