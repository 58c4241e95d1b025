"""Create the resources the SAM template defines, on any endpoint (the local stack, in practice).

Idempotent: running it twice changes nothing. Local timeouts are short so that a retry or a move
to the DLQ takes seconds, not the minutes AWS would use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from mailctl.aws.session import Clients
from mail_sender.contract import PK_ATTR, SK_ATTR

DLQ_RETENTION_SECONDS = 14 * 24 * 3600
MAIN_RETENTION_SECONDS = 4 * 24 * 3600
MAX_RECEIVE_COUNT = 5
# Verified for the example campaigns; moto refuses mail from unverified senders, as SES does.
LOCAL_SENDER_DOMAINS = ("example.com", "example.jp")


@dataclass(frozen=True)
class Provisioned:
    queue_url: str
    dlq_url: str
    dlq_arn: str
    bucket: str
    table: str


def provision(clients: Clients, visibility_timeout: int = 5, max_receive_count: int = MAX_RECEIVE_COUNT) -> Provisioned:
    config = clients.config
    sqs = clients.sqs
    dlq_url = sqs.create_queue(
        QueueName=config.dead_letter_queue,
        Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)},
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=config.queue,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "MessageRetentionPeriod": str(MAIN_RETENTION_SECONDS),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}),
        },
    )["QueueUrl"]
    sqs.set_queue_attributes(
        QueueUrl=dlq_url,
        Attributes={"RedriveAllowPolicy": json.dumps({"redrivePermission": "allowAll"})},
    )

    s3 = clients.s3
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if config.bucket not in existing:
        if config.aws.region == "us-east-1":
            s3.create_bucket(Bucket=config.bucket)
        else:
            s3.create_bucket(Bucket=config.bucket, CreateBucketConfiguration={"LocationConstraint": config.aws.region})

    ddb = clients.dynamodb
    if config.table not in ddb.list_tables().get("TableNames", []):
        ddb.create_table(
            TableName=config.table,
            AttributeDefinitions=[
                {"AttributeName": PK_ATTR, "AttributeType": "S"},
                {"AttributeName": SK_ATTR, "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": PK_ATTR, "KeyType": "HASH"},
                {"AttributeName": SK_ATTR, "KeyType": "RANGE"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.update_time_to_live(
            TableName=config.table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"},
        )

    ses = clients.client("ses")
    for domain in LOCAL_SENDER_DOMAINS:
        ses.verify_domain_identity(Domain=domain)

    return Provisioned(queue_url=queue_url, dlq_url=dlq_url, dlq_arn=dlq_arn, bucket=config.bucket, table=config.table)
