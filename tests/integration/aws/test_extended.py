"""The SQS extended client is used for S3 overflow only; its global boto3 patch must not leak."""

from mailctl.aws.extended import Offloader
from mailctl.aws.session import Clients
from mail_sender.contract import parse_pointer


def test_offloaded_message_is_a_pointer_and_other_clients_see_it_raw(clients, stack, local_config):
    # Given a message sent through the offloader
    offloader = Offloader(clients, stack.bucket)
    body = '{"big": "' + "x" * 300_000 + '"}'
    offloader.send(stack.queue_url, body, {"mailctl.job_id": {"DataType": "String", "StringValue": "j1"}})

    # When a client created afterwards receives it
    fresh = Clients(local_config)
    message = fresh.sqs.receive_message(QueueUrl=stack.queue_url, MessageAttributeNames=["All"])["Messages"][0]

    # Then it sees the pointer exactly as SQS holds it, and the payload is in our bucket
    pointer = parse_pointer(message["Body"])
    assert pointer is not None and pointer.bucket == stack.bucket
    assert message["MessageAttributes"]["ExtendedPayloadSize"]["StringValue"] == str(len(body))
    assert "-..s3BucketName..-" not in message["ReceiptHandle"]
    assert fresh.s3.get_object(Bucket=pointer.bucket, Key=pointer.key)["Body"].read().decode() == body
