import json


def test_provision_creates_the_template_resources_and_is_idempotent(clients, stack):
    # Given a provisioned local stack / When provisioning runs again
    from mailctl.local.provision import provision

    again = provision(clients, visibility_timeout=2)

    # Then the same queue exists, with its redrive policy pointing at the DLQ
    assert again.queue_url == stack.queue_url
    attrs = clients.sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"])["Attributes"]
    policy = json.loads(attrs["RedrivePolicy"])
    assert policy["deadLetterTargetArn"] == stack.dlq_arn
    assert int(policy["maxReceiveCount"]) == 5
    ttl = clients.dynamodb.describe_time_to_live(TableName=stack.table)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expiration"
