"""Creating boto3 clients from the operator config. No client is created at import time."""

from __future__ import annotations

import os
import threading
from urllib.parse import urlparse

import boto3
from botocore.config import Config as BotoConfig

from mailctl.config import Config

# Environment variable suffix per boto3 service name, as the AWS SDKs spell them.
_SERVICE_ENV = {"sqs": "SQS", "s3": "S3", "dynamodb": "DYNAMODB", "sesv2": "SESV2", "lambda": "LAMBDA", "sts": "STS"}
LOCAL_CREDENTIALS = {"aws_access_key_id": "mailctl-local", "aws_secret_access_key": "mailctl-local"}


def endpoint_for(service: str, configured: str | None) -> str | None:
    """The endpoint to pass to boto3, or None to let boto3 decide.

    AWS_ENDPOINT_URL_<SERVICE> and AWS_ENDPOINT_URL win over the config file, as in the SDKs;
    boto3 reads them itself when we pass nothing.
    """
    if os.environ.get(f"AWS_ENDPOINT_URL_{_SERVICE_ENV.get(service, service.upper())}") or os.environ.get("AWS_ENDPOINT_URL"):
        return None
    return configured


def effective_endpoint(service: str, configured: str | None) -> str | None:
    return (
        os.environ.get(f"AWS_ENDPOINT_URL_{_SERVICE_ENV.get(service, service.upper())}")
        or os.environ.get("AWS_ENDPOINT_URL")
        or configured
    )


def is_loopback(url: str | None) -> bool:
    if not url:
        return False
    host = urlparse(url).hostname or ""
    return host == "localhost" or host.startswith("127.") or host == "::1"


class Clients:
    """Lazily created, thread-safe boto3 clients for one config."""

    def __init__(self, config: Config, max_pool_connections: int = 32):
        self.config = config
        self._lock = threading.Lock()
        self._clients: dict[str, object] = {}
        self._session: boto3.session.Session | None = None
        local = is_loopback(effective_endpoint("sqs", config.aws.endpoint_url))
        self._boto_config = BotoConfig(
            region_name=config.aws.region,
            retries={"mode": "standard", "max_attempts": 4},
            max_pool_connections=max_pool_connections,
            connect_timeout=5,
            # moto answers a Query page of a large partition in tens of seconds (it re-reads the
            # partition and serialises item by item); AWS answers in milliseconds.
            read_timeout=180 if local else 30,
        )

    @property
    def session(self) -> boto3.session.Session:
        if self._session is None:
            session = boto3.session.Session(profile_name=self.config.aws.profile, region_name=self.config.aws.region)
            local = is_loopback(effective_endpoint("sqs", self.config.aws.endpoint_url))
            if local and session.get_credentials() is None:
                # The local stack accepts any credentials; a machine without any must still work.
                session = boto3.session.Session(region_name=self.config.aws.region, **LOCAL_CREDENTIALS)
            self._session = session
        return self._session

    def client(self, service: str):
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self.session.client(
                    service,
                    endpoint_url=endpoint_for(service, self.config.aws.endpoint_url),
                    config=self._boto_config,
                )
            return self._clients[service]

    @property
    def sqs(self):
        return self.client("sqs")

    @property
    def s3(self):
        return self.client("s3")

    @property
    def dynamodb(self):
        return self.client("dynamodb")

    @property
    def sesv2(self):
        return self.client("sesv2")

    @property
    def lambda_(self):
        return self.client("lambda")
