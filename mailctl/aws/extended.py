"""The one place that imports amazon-sqs-extended-client.

Importing it replaces boto3.Session globally, and it decides what is "large" by a module constant
(262144) rather than the queue's real limit. mailctl therefore decides itself, against the queue's
MaximumMessageSize, which messages are too large, and hands only those to a dedicated
extended-client SQS client with `always_through_s3` set: the pointer format and S3 layout stay the
library's, so any extended-client consumer can read them.
"""

from __future__ import annotations

import threading
from typing import Any

from mailctl.aws.errors import aws_call
from mailctl.aws.session import Clients, endpoint_for
from mailctl.errors import AwsError

_lock = threading.Lock()


def _extended_session_class():
    """Import the library without letting its global patch escape this module.

    On import it replaces boto3.Session (and the default session) with its own class, whose SQS
    clients resolve pointers on every ReceiveMessage through an S3 client built without our
    endpoint, and rewrite receipt handles. Every other SQS client in mailctl (DLQ peeking, the
    local worker) must see messages exactly as SQS holds them, so the patch is undone at once.
    """
    import boto3
    import boto3.session

    with _lock:
        saved = (boto3.session.Session, boto3.Session, boto3.DEFAULT_SESSION)
        try:
            from sqs_extended_client.client import SQSExtendedClientSession
            import sqs_extended_client  # noqa: F401
        finally:
            boto3.session.Session, boto3.Session, boto3.DEFAULT_SESSION = saved
    return SQSExtendedClientSession


class Offloader:
    """Sends one message through S3: the body goes to the bucket, a pointer goes to the queue."""

    def __init__(self, clients: Clients, bucket: str):
        SQSExtendedClientSession = _extended_session_class()

        base = clients.session
        credentials = base.get_credentials()
        if credentials is None:
            raise AwsError(f"bucket {bucket}: no AWS credentials found", hint="set AWS_PROFILE or run `aws configure`")
        frozen = credentials.get_frozen_credentials()
        # A session of its own: sharing botocore's would register boto3's handlers twice.
        session = SQSExtendedClientSession(
            aws_access_key_id=frozen.access_key,
            aws_secret_access_key=frozen.secret_key,
            aws_session_token=frozen.token,
            region_name=base.region_name,
        )
        client = session.client("sqs", endpoint_url=endpoint_for("sqs", clients.config.aws.endpoint_url), config=clients._boto_config)
        client.large_payload_support = bucket
        client.always_through_s3 = True
        # The library builds its S3 client from the session alone, without our endpoint.
        client.s3_client = clients.s3
        self.client = client
        self.bucket = bucket

    def send(self, queue_url: str, body: str, attributes: dict[str, Any]) -> str:
        with aws_call(f"queue {queue_url.rsplit('/', 1)[-1]} (S3 overflow to {self.bucket})"):
            response = self.client.send_message(QueueUrl=queue_url, MessageBody=body, MessageAttributes=dict(attributes))
        return response["MessageId"]
