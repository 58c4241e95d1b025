"""Create the resources the SAM template defines, on any endpoint (the local stack, in practice).

Idempotent: running it twice changes nothing. Local timeouts are short so that a retry or a move
to the DLQ takes seconds, not the minutes AWS would use.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from mailctl.aws.errors import aws_call, error_code
from mailctl.aws.lambda_ import LambdaAdapter
from mailctl.aws.session import Clients
from mailctl.local.worker import LOCAL_MEMORY_MB, sender_environment
from mail_sender.contract import PK_ATTR, SK_ATTR

DLQ_RETENTION_SECONDS = 14 * 24 * 3600
MAIN_RETENTION_SECONDS = 4 * 24 * 3600
MAX_RECEIVE_COUNT = 5
SHORT_VISIBILITY_TAG = "mailctl:short-visibility"
PAYLOAD_RETENTION_DAYS = 15
# Verified for the example campaigns; moto refuses mail from unverified senders, as SES does.
LOCAL_SENDER_DOMAINS = ("example.com", "example.jp")
SENDER_ROLE = "mailctl-sender-role"
SENDER_HANDLER = "mail_sender.handler.lambda_handler"
EVENTS_HANDLER = "mail_sender.events_handler.lambda_handler"
EVENTS_TIMEOUT_SECONDS = 30
EVENTS_BATCH_SIZE = 10
EVENTS_MAXIMUM_CONCURRENCY = 2  # the template's ScalingConfig
EVENT_DESTINATION = "mailctl-events"
# The template's event types (OPEN and CLICK are off there by default), in SES v1's spelling.
EVENT_TYPES = ("send", "reject", "bounce", "complaint", "delivery", "deliveryDelay", "renderingFailure")
# AWS's lower bound for ScalingConfig.MaximumConcurrency; the local worker uses the config's value.
MIN_MAXIMUM_CONCURRENCY = 2
_LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
# The function record's code. Nothing runs it: `mailctl local worker` calls the real handler in-process.
_PLACEHOLDER_SOURCE = (
    "# Placeholder for the local stack's function record; `mailctl local worker` runs the real\n"
    "# mail_sender.handler in-process instead.\n"
    "def lambda_handler(event, context):\n"
    "    raise RuntimeError('run `mailctl local worker`: this record is never invoked')\n"
)


@dataclass(frozen=True)
class Provisioned:
    queue_url: str
    dlq_url: str
    dlq_arn: str
    bucket: str
    table: str
    queue_arn: str = ""
    function_arn: str | None = None
    mapping_uuid: str | None = None
    events_queue_url: str = ""
    events_dlq_url: str = ""
    events_topic_arn: str = ""
    events_mapping_uuid: str | None = None
    # Things provisioning could not do on this endpoint, for the operator to read.
    warnings: tuple[str, ...] = field(default_factory=tuple)


def provision(
    clients: Clients,
    visibility_timeout: int = 5,
    max_receive_count: int = MAX_RECEIVE_COUNT,
    sender_function: bool = True,
) -> Provisioned:
    """Creates what is missing. With `sender_function`, also the sender's IAM role, function record
    and event source mapping, so that `mailctl pause/resume/doctor` work on the local stack."""
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
    if visibility_timeout < 6 * config.sender.timeout_seconds:
        # Retries in seconds rather than minutes, on purpose: `mailctl doctor` reads this tag and
        # reports the short visibility timeout as a warning, not a problem.
        sqs.tag_queue(QueueUrl=queue_url, Tags={SHORT_VISIBILITY_TAG: "local stack: short retries on purpose"})

    s3 = clients.s3
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if config.bucket not in existing:
        if config.aws.region == "us-east-1":
            s3.create_bucket(Bucket=config.bucket)
        else:
            s3.create_bucket(Bucket=config.bucket, CreateBucketConfiguration={"LocationConstraint": config.aws.region})
    # As the template: payloads outlive the DLQ's 14 days, so a dead letter can still be redriven.
    s3.put_bucket_lifecycle_configuration(
        Bucket=config.bucket,
        LifecycleConfiguration={"Rules": [{
            "ID": "expire-payloads", "Status": "Enabled", "Filter": {"Prefix": ""},
            "Expiration": {"Days": PAYLOAD_RETENTION_DAYS},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }]},
    )

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
            # As the template: the counters function reads every change (mail_sender/counters.py).
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        ddb.update_time_to_live(
            TableName=config.table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"},
        )

    ses = clients.client("ses")
    for domain in LOCAL_SENDER_DOMAINS:
        ses.verify_domain_identity(Domain=domain)
    events = _provision_events(clients, visibility_timeout, max_receive_count)

    queue_attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn", "CreatedTimestamp"])["Attributes"]
    queue_arn = queue_attributes["QueueArn"]
    function_arn = mapping_uuid = events_mapping_uuid = None
    warnings: list[str] = []
    if sender_function:
        moto_queue = _in_process_moto_queue(queue_arn, queue_attributes.get("CreatedTimestamp"))
        if moto_queue is None:
            # A moto in another process would try to run the function itself (through Docker) on
            # every SendMessage, taking messages from the local worker: better no record at all.
            warnings.append(
                "the endpoint is not a moto running in this process: no sender function or event source "
                "mapping was created, so `mailctl pause/resume` have nothing to switch there"
            )
        else:
            function_arn = _provision_function(clients, config.sender_function, SENDER_HANDLER, config.sender.timeout_seconds,
                                               sender_environment(config))
            mapping_uuid = _provision_mapping(clients, config.sender_function, queue_arn, config.queue, config.sender.batch_size,
                                              config.sender.max_concurrency)
            _tame_moto(moto_queue, queue_arn, config.sender_function)
            _provision_function(clients, config.events_function, EVENTS_HANDLER, EVENTS_TIMEOUT_SECONDS, events_environment(config))
            events_mapping_uuid = _provision_mapping(clients, config.events_function, events["queue_arn"], config.events_queue,
                                                     EVENTS_BATCH_SIZE, EVENTS_MAXIMUM_CONCURRENCY)
            events_moto_queue = _in_process_moto_queue(events["queue_arn"], None)
            if events_moto_queue is not None:
                _tame_moto(events_moto_queue, events["queue_arn"], config.events_function)

    return Provisioned(
        queue_url=queue_url, dlq_url=dlq_url, dlq_arn=dlq_arn, bucket=config.bucket, table=config.table,
        queue_arn=queue_arn, function_arn=function_arn, mapping_uuid=mapping_uuid, warnings=tuple(warnings),
        events_queue_url=events["queue_url"], events_dlq_url=events["dlq_url"], events_topic_arn=events["topic_arn"],
        events_mapping_uuid=events_mapping_uuid,
    )


def _provision_events(clients: Clients, visibility_timeout: int, max_receive_count: int) -> dict[str, str]:
    """As the template: configuration set -> event destination -> SNS topic -> events queue (+ DLQ).

    moto keeps configuration sets and their event destinations in its SES v1 model (SES v2 has no
    event destination calls there), and delivers SNS to SQS with the same envelope as AWS."""
    config = clients.config
    sqs = clients.sqs
    dlq_url = sqs.create_queue(
        QueueName=config.events_dead_letter_queue, Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)},
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=config.events_queue,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "MessageRetentionPeriod": str(MAIN_RETENTION_SECONDS),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}),
        },
    )["QueueUrl"]
    if visibility_timeout < 6 * EVENTS_TIMEOUT_SECONDS:
        sqs.tag_queue(QueueUrl=queue_url, Tags={SHORT_VISIBILITY_TAG: "local stack: short retries on purpose"})
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns = clients.client("sns")
    topic_arn = sns.create_topic(Name=config.events_queue)["TopicArn"]
    subscribed = any(s.get("Endpoint") == queue_arn for s in sns.list_subscriptions_by_topic(TopicArn=topic_arn).get("Subscriptions", []))
    if not subscribed:
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "false"})
    if config.sending.configuration_set:
        ses = clients.client("ses")
        name = config.sending.configuration_set
        existing = {c["Name"] for c in ses.list_configuration_sets().get("ConfigurationSets", [])}
        if name not in existing:
            ses.create_configuration_set(ConfigurationSet={"Name": name})
            ses.create_configuration_set_event_destination(ConfigurationSetName=name, EventDestination={
                "Name": EVENT_DESTINATION, "Enabled": True, "MatchingEventTypes": list(EVENT_TYPES),
                "SNSDestination": {"TopicARN": topic_arn},
            })
    return {"queue_url": queue_url, "queue_arn": queue_arn, "dlq_url": dlq_url, "topic_arn": topic_arn}


def events_environment(config) -> dict[str, str]:
    """The events function's variables, as the template sets them."""
    return {"MAILCTL_TABLE": config.table, "POWERTOOLS_SERVICE_NAME": "mailctl-events", "POWERTOOLS_METRICS_NAMESPACE": "mailctl"}


def _placeholder_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mail_sender/__init__.py", "")
        archive.writestr("mail_sender/handler.py", _PLACEHOLDER_SOURCE)
    return buffer.getvalue()


def _provision_function(clients: Clients, name: str, handler: str, timeout: int, environment: dict[str, str]) -> str:
    """A function's role and record, configured as the SAM template configures them."""
    iam = clients.client("iam")
    with aws_call(f"role {SENDER_ROLE}"):
        try:
            role_arn = iam.get_role(RoleName=SENDER_ROLE)["Role"]["Arn"]
        except ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
            role_arn = iam.create_role(RoleName=SENDER_ROLE, AssumeRolePolicyDocument=json.dumps(_LAMBDA_TRUST))["Role"]["Arn"]

    settings = {
        "Role": role_arn,
        "Handler": handler,
        "Runtime": "python3.12",
        "Timeout": timeout,
        "MemorySize": LOCAL_MEMORY_MB,
        "Environment": {"Variables": environment},
    }
    lambda_ = LambdaAdapter(clients.lambda_)
    existing = lambda_.function_configuration(name)
    with aws_call(f"function {name}"):
        if existing is None:
            created = clients.lambda_.create_function(FunctionName=name, Code={"ZipFile": _placeholder_zip()}, **settings)
            return created["FunctionArn"]
        clients.lambda_.update_function_configuration(FunctionName=name, **settings)
        return existing["FunctionArn"]


def _provision_mapping(clients: Clients, function: str, queue_arn: str, queue_name: str, batch_size: int, max_concurrency: int) -> str:
    wanted = {
        "BatchSize": batch_size,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "ScalingConfig": {"MaximumConcurrency": max(MIN_MAXIMUM_CONCURRENCY, max_concurrency)},
    }
    mapping = LambdaAdapter(clients.lambda_).event_source_mapping(function, queue_arn)
    with aws_call(f"event source mapping {function} <- {queue_name}"):
        if mapping is None:
            return clients.lambda_.create_event_source_mapping(
                FunctionName=function, EventSourceArn=queue_arn, Enabled=True, **wanted
            )["UUID"]
        # Keep the pause switch as the operator left it; bring the rest in line with the config.
        clients.lambda_.update_event_source_mapping(UUID=mapping["UUID"], **wanted)
        return mapping["UUID"]


def _in_process_moto_queue(queue_arn: str, created_timestamp: str | None):
    """moto's own model of the queue, when the endpoint is a moto server in this process (as in
    `mailctl local up` and the tests), else None. The creation time tells it apart from a
    same-named queue of another moto in this process."""
    try:
        from moto.sqs.models import sqs_backends
    except ImportError:
        return None
    _, _, _, region, account, queue_name = queue_arn.split(":", 5)
    try:
        queue = sqs_backends[account][region].queues.get(queue_name)
    except (KeyError, AttributeError):
        return None
    if queue is None or queue.queue_arn != queue_arn:
        return None
    if created_timestamp is not None and str(queue.created_timestamp) != str(created_timestamp):
        return None
    return queue


class _NoDocker:
    """Where moto looks for its Docker client. Not JSON-serialisable, so /moto-api/data.json skips it
    instead of failing with 500 while trying to connect to a Docker that is not there."""

    def __getattr__(self, name: str):
        raise RuntimeError("the local stack never runs the sender function: `mailctl local worker` does")


def _tame_moto(moto_queue, queue_arn: str, function_name: str) -> None:
    """Keeps moto from acting on the function record; the records stay readable and switchable.

    moto itself runs a mapped function on every SendMessage while the mapping is enabled (in Docker,
    which these machines lack: the message is received, bumping its receive count, and put back),
    and its /moto-api/data.json (where the tests read what SES received) fails on a function record
    because it tries to reach Docker. Cutting the queue's link to the mapping and giving the function
    a stand-in Docker client fixes both; `mailctl pause/resume/doctor` still read and switch the
    mapping through the Lambda API, and the local worker delivers instead.
    """
    from moto.awslambda.models import lambda_backends

    moto_queue.lambda_event_source_mappings.clear()
    _, _, _, region, account, _ = queue_arn.split(":", 5)
    function = lambda_backends[account][region].get_function(function_name)
    function._DockerModel__docker_client = _NoDocker()
