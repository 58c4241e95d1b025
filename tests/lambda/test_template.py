"""lambda/template.yaml: valid for CloudFormation (cfn-lint) and true to what production taught."""

from __future__ import annotations

from pathlib import Path

import pytest
from cfnlint.api import ManualArgs, lint_file
from cfnlint.decode import decode

TEMPLATE = Path(__file__).resolve().parents[2] / "lambda" / "template.yaml"
DLQ_RETENTION = 14 * 24 * 3600


@pytest.fixture(scope="module")
def template() -> dict:
    parsed, problems = decode(str(TEMPLATE))
    assert not problems, [str(p) for p in problems]
    return parsed


def resources_of(template: dict, type_: str) -> dict[str, dict]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == type_}


def one(template: dict, type_: str) -> dict:
    found = resources_of(template, type_)
    assert len(found) == 1, f"expected one {type_}, found {sorted(found)}"
    return next(iter(found.values()))["Properties"]


def main_queue(template: dict) -> dict:
    return template["Resources"]["Queue"]["Properties"]


def dead_letter_queue(template: dict) -> dict:
    target = main_queue(template)["RedrivePolicy"]["deadLetterTargetArn"]
    assert "Fn::GetAtt" in target, "the redrive target must be the template's own DLQ"
    return template["Resources"][target["Fn::GetAtt"][0]]["Properties"]


def sender_function(template: dict) -> dict:
    return template["Resources"]["SenderFunction"]["Properties"]


def events_function(template: dict) -> dict:
    return template["Resources"]["EventsFunction"]["Properties"]


def test_cfn_lint_reports_no_error():
    # Given the SAM template
    # When cfn-lint checks it (SAM transform included)
    matches = lint_file(TEMPLATE, config=ManualArgs(regions=["us-east-1"]))
    # Then it finds no error (warnings are reported too, and there are none either)
    assert [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches] == []


def test_queue_visibility_is_at_least_six_times_every_allowed_function_timeout(template):
    # Given the function timeout parameter and the queue's visibility timeout
    timeout = template["Parameters"]["FunctionTimeout"]
    visibility = main_queue(template)["VisibilityTimeout"]
    # When the visibility is looked up for each timeout the template accepts
    mapping_name, key, attribute = visibility["Fn::FindInMap"]
    assert key == {"Ref": "FunctionTimeout"}
    assert sender_function(template)["Timeout"] == {"Ref": "FunctionTimeout"}
    # Then it is at least 6x that timeout (and within SQS's 12-hour maximum)
    for allowed in timeout["AllowedValues"]:
        seconds = template["Mappings"][mapping_name][str(allowed)][attribute]
        assert 6 * int(allowed) <= seconds <= 43200, allowed


def test_redrive_policy_sends_to_a_dlq_that_keeps_messages_14_days_longer_than_the_main_queue(template):
    # Given the two queues
    queue, dlq = main_queue(template), dead_letter_queue(template)
    # Then messages move after 5 receives, and the DLQ outlives the main queue
    assert int(queue["RedrivePolicy"]["maxReceiveCount"]) == 5
    assert int(dlq["MessageRetentionPeriod"]) == DLQ_RETENTION
    assert int(queue["MessageRetentionPeriod"]) < DLQ_RETENTION
    # And the DLQ allows the redrive back to the main queue
    assert dlq["RedriveAllowPolicy"]["redrivePermission"] in {"byQueue", "allowAll"}
    # And the main queue takes the 1 MiB messages SQS accepts since 2025-08
    assert int(queue["MaximumMessageSize"]) == 1048576


def test_event_source_mapping_reports_batch_item_failures_with_bounded_concurrency(template):
    # Given the function's SQS event
    events = sender_function(template)["Events"]
    sqs_events = [e["Properties"] for e in events.values() if e["Type"] == "SQS"]
    assert len(sqs_events) == 1
    mapping = sqs_events[0]
    # Then it reads the main queue, reports partial failures, and caps its concurrency
    assert mapping["Queue"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert "BatchSize" in mapping
    assert mapping["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "MaximumConcurrency"}


def test_function_runs_the_sender_with_its_environment(template):
    # Given the function
    function = sender_function(template)
    # Then it runs the sender's handler from the lambda/ folder with every setting the sender reads
    assert function["Handler"] == "mail_sender.handler.lambda_handler"
    assert function["CodeUri"] == "."
    assert function["Runtime"].startswith("python3.")
    assert "MemorySize" in function
    variables = function["Environment"]["Variables"]
    assert set(variables) >= {
        "MAILCTL_TABLE", "MAILCTL_RATE_PER_SECOND", "MAILCTL_SEND_CONCURRENCY", "MAILCTL_IDEMPOTENCY_EXPIRY_SECONDS",
        "MAILCTL_CONFIGURATION_SET", "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE",
    }
    # And its idempotency expiry can never be shorter than the DLQ's retention
    expiry = template["Parameters"][variables["MAILCTL_IDEMPOTENCY_EXPIRY_SECONDS"]["Ref"]]
    assert int(expiry["Default"]) == 1296000
    assert int(expiry["MinValue"]) >= DLQ_RETENTION


def test_payload_bucket_is_encrypted_private_tls_only_and_outlives_the_dlq(template):
    # Given the bucket and its policy
    bucket = one(template, "AWS::S3::Bucket")
    policy = one(template, "AWS::S3::BucketPolicy")["PolicyDocument"]
    # Then it is encrypted and blocks every kind of public access
    encryption = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert encryption["SSEAlgorithm"] in {"AES256", "aws:kms"}
    assert all(value is True for value in bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    # And it refuses plain HTTP
    denials = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    assert any(s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False) for s in denials)
    # And its lifecycle keeps payloads at least as long as the DLQ keeps their messages
    rules = [r for r in bucket["LifecycleConfiguration"]["Rules"] if r["Status"] == "Enabled" and "ExpirationInDays" in r]
    assert rules
    for rule in rules:
        days = rule["ExpirationInDays"]
        if isinstance(days, dict):
            parameter = template["Parameters"][days["Ref"]]
            assert int(parameter["MinValue"]) * 86400 >= DLQ_RETENTION
            days = parameter["Default"]
        assert int(days) * 86400 >= DLQ_RETENTION


def test_table_is_on_demand_with_pk_sk_and_ttl_on_expiration(template):
    # Given the table
    table = one(template, "AWS::DynamoDB::Table")
    # Then it has the shared key schema, on-demand billing, and TTL on `expiration`
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert {(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]} == {("pk", "HASH"), ("sk", "RANGE")}
    assert {(a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]} == {("pk", "S"), ("sk", "S")}
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}


def test_function_role_is_least_privilege(template):
    # Given the function's role (explicit, so SAM adds no managed policy of its own)
    function = sender_function(template)
    assert function["Role"] == {"Fn::GetAtt": ["SenderRole", "Arn"]}
    assert "Policies" not in function
    role = template["Resources"]["SenderRole"]["Properties"]
    assert "ManagedPolicyArns" not in role
    statements = []
    for statement in (s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]):
        if "Fn::If" in statement:  # only the attachment sources the operator names, or nothing
            condition, when_true, when_false = statement["Fn::If"]
            assert (condition, when_false) == ("HasAttachmentSources", {"Ref": "AWS::NoValue"})
            assert (when_true["Action"], when_true["Resource"]) == (["s3:GetObject"], {"Ref": "AttachmentSources"})
            statement = when_true
        statements.append(statement)
    # Then no statement allows a wildcard action
    actions = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        listed = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not any("*" in action for action in listed), listed
        # ses:GetAccount has no resource type in IAM: "*" is the only resource it takes
        assert statement.get("Resource") is not None
        assert statement["Resource"] != "*" or listed == ["ses:GetAccount"], listed
        for action in listed:
            resource = statement["Resource"]
            actions.setdefault(action, []).extend(resource if isinstance(resource, list) else [resource])
    # And each service gets only the verbs the sender uses, on its own resource
    assert {a for a in actions if a.startswith("sqs:")} == {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                                                           "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl", "sqs:SendMessage"}
    assert actions["sqs:SendMessage"] == [{"Fn::GetAtt": ["Queue", "Arn"]}]
    assert actions["sqs:ReceiveMessage"] == [{"Fn::GetAtt": ["Queue", "Arn"]}]
    assert {a for a in actions if a.startswith("s3:")} == {"s3:GetObject"}
    assert {a for a in actions if a.startswith("dynamodb:")} == {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchGetItem"}
    assert actions["dynamodb:GetItem"] == [{"Fn::GetAtt": ["StateTable", "Arn"]}]
    assert {a for a in actions if a.startswith("ses:")} == {"ses:SendEmail", "ses:SendRawEmail", "ses:GetAccount"}
    assert all("identity/" in str(r) or "configuration-set/" in str(r) for r in actions["ses:SendEmail"])


def test_the_role_may_send_through_every_allowed_configuration_set(template):
    # Given the operator's list of configuration sets campaigns may name
    assert template["Parameters"]["AllowedConfigurationSets"]["Type"] == "CommaDelimitedList"
    statements = [s for p in template["Resources"]["SenderRole"]["Properties"]["Policies"]
                  for s in p["PolicyDocument"]["Statement"]]
    (statement,) = [s for s in statements if s.get("Sid") == "SendThroughAllowedConfigurationSets"]
    # Then each name becomes a configuration-set ARN the role may send through, in this account and region
    def resolve(value, names):
        if isinstance(value, dict) and "Ref" in value:
            return names
        if isinstance(value, dict) and "Fn::Join" in value:
            delimiter, parts = value["Fn::Join"]
            resolved = resolve(parts, names)
            return delimiter.join(resolved if parts == {"Ref": "AllowedConfigurationSets"} else [resolve(p, names) for p in parts])
        if isinstance(value, dict) and "Fn::Split" in value:
            delimiter, source = value["Fn::Split"]
            return resolve(source, names).split(delimiter)
        return value

    assert resolve(statement["Resource"], ["newsletter", "transactional-events"]) == [
        "arn:*:ses:*:*:configuration-set/newsletter", "arn:*:ses:*:*:configuration-set/transactional-events"]
    assert resolve(statement["Resource"], [""]) == ["arn:*:ses:*:*:configuration-set/"]  # the default grants no set
    assert statement["Condition"]["StringEquals"] == {"aws:ResourceAccount": {"Ref": "AWS::AccountId"},
                                                      "aws:RequestedRegion": {"Ref": "AWS::Region"}}


def test_outputs_name_every_value_mailctl_yaml_needs(template):
    # Then the stack outputs are what docs/deploy.md copies into mailctl.yaml
    assert set(template["Outputs"]) >= {"QueueName", "QueueUrl", "DeadLetterQueueName", "BucketName", "TableName", "FunctionName", "Region"}


def statements_of(template: dict, role: str) -> list[dict]:
    properties = template["Resources"][role]["Properties"]
    assert "ManagedPolicyArns" not in properties
    return [s for p in properties["Policies"] for s in p["PolicyDocument"]["Statement"]]


def test_a_default_configuration_set_publishes_delivery_events_to_sns(template):
    # Given the configuration set and its event destination
    destination = one(template, "AWS::SES::ConfigurationSetEventDestination")
    assert destination["ConfigurationSetName"] == {"Ref": "SesConfigurationSet"}
    event_destination = destination["EventDestination"]
    # Then every delivery event type goes to the events topic, OPEN and CLICK only when asked for
    condition, with_engagement, without = event_destination["MatchingEventTypes"]["Fn::If"]
    assert condition == "TrackEngagement"
    assert set(without) == {"send", "reject", "bounce", "complaint", "delivery", "deliveryDelay", "renderingFailure"}
    assert set(with_engagement) == set(without) | {"open", "click"}
    assert event_destination["SnsDestination"]["TopicARN"] == {"Ref": "SesEventsTopic"}
    # And the sender uses that configuration set by default, and may send through it
    assert sender_function(template)["Environment"]["Variables"]["MAILCTL_CONFIGURATION_SET"] == {"Ref": "SesConfigurationSet"}
    send = next(s for s in statements_of(template, "SenderRole") if "ses:SendRawEmail" in s.get("Action", ()))
    assert any("configuration-set/${SesConfigurationSet}" in str(r) for r in send["Resource"])


def test_sns_delivers_the_envelope_to_an_events_queue_with_its_own_dlq(template):
    subscription = one(template, "AWS::SNS::Subscription")
    assert subscription["Protocol"] == "sqs" and subscription["RawMessageDelivery"] is False
    assert subscription["Endpoint"] == {"Fn::GetAtt": ["EventsQueue", "Arn"]}
    queue = template["Resources"]["EventsQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}
    assert int(template["Resources"]["EventsDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"]) == DLQ_RETENTION
    assert int(queue["VisibilityTimeout"]) >= 6 * int(events_function(template)["Timeout"])
    # Only the topic may send to the queue, and only SES (for this configuration set) to the topic
    [queue_statement] = one(template, "AWS::SQS::QueuePolicy")["PolicyDocument"]["Statement"]
    assert queue_statement["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Ref": "SesEventsTopic"}
    [topic_statement] = one(template, "AWS::SNS::TopicPolicy")["PolicyDocument"]["Statement"]
    assert topic_statement["Principal"] == {"Service": "ses.amazonaws.com"}
    assert "configuration-set/${ConfigurationSet}" in str(topic_statement["Condition"]["ArnLike"])


def test_the_events_function_reads_the_events_queue_with_least_privilege(template):
    function = events_function(template)
    assert function["Handler"] == "mail_sender.events_handler.lambda_handler"
    assert function["CodeUri"] == "."
    [mapping] = [e["Properties"] for e in function["Events"].values() if e["Type"] == "SQS"]
    assert mapping["Queue"] == {"Fn::GetAtt": ["EventsQueue", "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    actions = {}
    for statement in statements_of(template, "EventsRole"):
        assert statement["Effect"] == "Allow"
        for action in statement["Action"]:
            assert "*" not in action
            actions[action] = statement["Resource"]
    assert {a for a in actions if a.startswith("dynamodb:")} == {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}
    assert actions["dynamodb:UpdateItem"] == {"Fn::GetAtt": ["StateTable", "Arn"]}
    assert actions["sqs:ReceiveMessage"] == {"Fn::GetAtt": ["EventsQueue", "Arn"]}
    assert not [a for a in actions if a.startswith(("ses:", "s3:"))]
    assert set(template["Outputs"]) >= {"ConfigurationSetName", "EventsQueueName", "EventsDeadLetterQueueName", "EventsFunctionName"}


def test_the_counters_function_reads_the_table_stream_one_exact_batch_at_a_time(template):
    # The counters are exact only if every change reaches the function with its shard id, in order,
    # retried whole (mail_sender/counters.py); and only records and delivery items count.
    import json

    from mail_sender import counters

    table = template["Resources"]["StateTable"]["Properties"]
    assert table["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    function = template["Resources"]["CountersFunction"]["Properties"]
    assert function["Handler"] == "mail_sender.counters_handler.lambda_handler"
    mapping = function["Events"]["StateChanges"]["Properties"]
    assert mapping["Stream"] == {"Fn::GetAtt": ["StateTable", "StreamArn"]}
    assert mapping["TumblingWindowInSeconds"] > 0
    assert mapping["ParallelizationFactor"] == 1 and mapping["BisectBatchOnFunctionError"] is False
    assert mapping["MaximumRetryAttempts"] == -1 and mapping["StartingPosition"] == "TRIM_HORIZON"
    pattern = json.loads(mapping["FilterCriteria"]["Filters"][0]["Pattern"])
    assert pattern["dynamodb"]["Keys"]["sk"]["S"] == [{"prefix": counters.RECORD_SK_PREFIX}, {"prefix": counters.DELIVERY_SK_PREFIX}]
