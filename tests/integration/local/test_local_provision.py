"""Provisioning the local stack: the sender's function record and mapping, as the SAM template has them."""

import json
import urllib.request

from mailctl.aws.lambda_ import LambdaAdapter
from mailctl.local.provision import provision


def test_the_sender_function_and_its_mapping_exist_as_on_aws(clients):
    # Given an empty endpoint / When the local stack is provisioned (twice: it is idempotent)
    provision(clients, visibility_timeout=1)
    stack = provision(clients, visibility_timeout=1)

    # Then the function record carries the sender's configuration and environment
    lambda_ = LambdaAdapter(clients.lambda_)
    function = lambda_.function_configuration(clients.config.sender_function)
    assert function["Handler"] == "mail_sender.handler.lambda_handler"
    assert function["Timeout"] == clients.config.sender.timeout_seconds
    assert function["Environment"]["Variables"]["MAILCTL_TABLE"] == clients.config.table
    # And one mapping from the queue, with partial batch responses, the batch size and the concurrency cap
    mapping = lambda_.event_source_mapping(clients.config.sender_function, stack.queue_arn)
    assert mapping["UUID"] == stack.mapping_uuid
    assert mapping["State"] == "Enabled"
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == clients.config.sender.batch_size
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": clients.config.sender.max_concurrency}
    assert len(clients.lambda_.list_event_source_mappings(FunctionName=clients.config.sender_function)["EventSourceMappings"]) == 1
    assert stack.warnings == ()
    # And the DLQ keeps messages 14 days, the queue redrives there
    dlq = clients.sqs.get_queue_attributes(QueueUrl=stack.dlq_url, AttributeNames=["All"])["Attributes"]
    assert dlq["MessageRetentionPeriod"] == str(14 * 24 * 3600)
    queue = clients.sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"])["Attributes"]
    assert json.loads(queue["RedrivePolicy"])["deadLetterTargetArn"] == stack.dlq_arn
    assert queue["VisibilityTimeout"] == "1"
    # And both example sender domains are verified
    identities = clients.client("ses").list_identities()["Identities"]
    assert {"example.com", "example.jp"} <= set(identities)


def test_moto_does_not_deliver_to_the_function_itself(clients):
    # Given the provisioned stack with an enabled mapping
    stack = provision(clients, visibility_timeout=1)

    # When a message is sent to the queue
    clients.sqs.send_message(QueueUrl=stack.queue_url, MessageBody="for the worker")

    # Then it waits, never received, for the local worker (moto did not try to run the function)
    (message,) = clients.sqs.receive_message(QueueUrl=stack.queue_url, MessageSystemAttributeNames=["All"])["Messages"]
    assert message["Body"] == "for the worker"
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"


def test_moto_still_reports_its_data_with_a_function_record(clients, moto_endpoint):
    # Given the provisioned stack, which holds a Lambda function record
    provision(clients, visibility_timeout=1)

    # When moto's data dump (where tests read what SES received) is read
    with urllib.request.urlopen(f"{moto_endpoint}/moto-api/data.json", timeout=10) as response:
        data = json.load(response)

    # Then it answers, and lists the functions
    assert [f["function_name"] for f in data["awslambda"]["LambdaFunction"]] == [clients.config.sender_function, clients.config.events_function]


def test_pause_survives_reprovisioning(clients):
    # Given a provisioned stack whose mapping was paused
    stack = provision(clients, visibility_timeout=1)
    LambdaAdapter(clients.lambda_).set_mapping_enabled(clients.config.sender_function, stack.queue_arn, False)

    # When provisioning runs again
    provision(clients, visibility_timeout=1)

    # Then the mapping is still paused
    mapping = LambdaAdapter(clients.lambda_).event_source_mapping(clients.config.sender_function, stack.queue_arn)
    assert mapping["State"] == "Disabled"
