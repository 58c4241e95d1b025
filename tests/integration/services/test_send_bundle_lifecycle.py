"""A reused template bundle outlives the bucket's lifecycle for every job that uses it.

S3's lifecycle `Expiration` counts days from an object's last write; reading it does not reset the
age. The lifecycle is played here on moto by ageing the object (its LastModified) and deleting what
the bucket's rule would expire, as S3 would."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from mail_sender import handler
from mailctl.cli import main
from mailctl.local.worker import LocalWorker
from tests.helpers import people, write_campaign


def age_object(bucket: str, key: str, days: float) -> None:
    """Make the object `days` old, as if written then (moto keeps LastModified on its key)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    stored = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets[bucket].keys[key]
    stored.last_modified = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(days=days)


def run_lifecycle(s3, bucket: str, now: datetime) -> list[str]:
    """Delete what the bucket's Expiration rules expire at `now`; returns the keys deleted."""
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    days = min(r["Expiration"]["Days"] for r in rules if r["Status"] == "Enabled" and "Days" in r.get("Expiration", {}))
    expired = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
               if o["LastModified"] + timedelta(days=days) <= now]
    for key in expired:
        s3.delete_object(Bucket=bucket, Key=key)
    return expired


def bundle_keys(s3, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []) if o["Key"].startswith("bundles/")]


def test_a_job_that_reuses_an_old_bundle_refreshes_it_and_its_mail_goes_out_after_the_old_expiry(
        tmp_path, config_file, clients, stack, moto_endpoint):
    handler.install(None)
    try:
        # Given a campaign sent 14 days ago (its bundle is 14 days old; the bucket expires after 15)
        first = write_campaign(tmp_path / "first", people(2))
        assert main(["--config", config_file, "send", str(first), "--yes"]) == 0
        LocalWorker(clients, wait_seconds=1).run(until_empty=True)
        (bundle,) = bundle_keys(clients.s3, stack.bucket)
        age_object(stack.bucket, bundle, days=14)

        # When a new job with the same templates is enqueued today
        second = write_campaign(tmp_path / "second", people(3, start=10))
        assert main(["--config", config_file, "send", str(second), "--yes"]) == 0
        assert bundle_keys(clients.s3, stack.bucket) == [bundle]  # the same bundle, content-addressed

        # And two days pass before its messages are delivered (throttled, paused, waiting for quota)
        expired = run_lifecycle(clients.s3, stack.bucket, datetime.now(timezone.utc) + timedelta(days=2))

        # Then the lifecycle did not take the bundle: its age restarted with the new job
        assert bundle not in expired
        assert bundle_keys(clients.s3, stack.bucket) == [bundle]
        # And the second job's mail goes out, nothing in the DLQ
        stats = LocalWorker(clients, wait_seconds=1).run(until_empty=True)
        assert stats.deleted == 1
        dead = clients.sqs.get_queue_attributes(QueueUrl=stack.dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
        assert dead["Attributes"]["ApproximateNumberOfMessages"] == "0"
    finally:
        handler.install(None)


def test_the_lifecycle_simulation_does_expire_an_old_bundle(tmp_path, config_file, clients, stack):
    # The rig itself: a bundle left 14 days old is gone two days later (what happened before the fix)
    campaign = write_campaign(tmp_path / "c", people(1))
    assert main(["--config", config_file, "send", str(campaign), "--yes"]) == 0
    (bundle,) = bundle_keys(clients.s3, stack.bucket)
    age_object(stack.bucket, bundle, days=14)
    assert bundle in run_lifecycle(clients.s3, stack.bucket, datetime.now(timezone.utc) + timedelta(days=2))


def test_a_redrive_restarts_the_age_of_the_bundles_its_messages_use(tmp_path, config_file, clients, stack):
    # Given a job whose messages sit in the DLQ, its bundle 13 days old (the DLQ keeps them 14)
    campaign = write_campaign(tmp_path / "c", people(3))
    assert main(["--config", config_file, "send", str(campaign), "--yes"]) == 0
    for message in clients.sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10,
                                               MessageAttributeNames=["All"])["Messages"]:
        clients.sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=message["Body"],
                                 MessageAttributes=message["MessageAttributes"])
        clients.sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])
    (bundle,) = bundle_keys(clients.s3, stack.bucket)
    age_object(stack.bucket, bundle, days=13)

    # When the operator redrives them
    assert main(["--config", config_file, "dlq", "redrive", "--yes"]) == 0

    # Then the bundle's age restarted: the lifecycle does not take it while the redriven messages
    # may still be in the main queue (4 days)
    expired = run_lifecycle(clients.s3, stack.bucket, datetime.now(timezone.utc) + timedelta(days=4))
    assert bundle not in expired
    assert clients.s3.get_object(Bucket=stack.bucket, Key=bundle)["ContentType"] == "application/json"


def test_a_redrive_restarts_the_age_of_the_files_its_messages_attach(tmp_path, config_file, clients, stack):
    # Given a job with a shared file and one per recipient, its messages in the DLQ, every object 13 days old
    folder = tmp_path / "files"
    campaign = write_campaign(folder, people(2), extra="attachments:\n  - guide.pdf\n  - tickets/{{ token }}.pdf\n")
    (folder / "guide.pdf").write_bytes(b"%PDF guide")
    (folder / "tickets").mkdir()
    for person in people(2):
        (folder / "tickets" / f"{person['token']}.pdf").write_bytes(person["email"].encode())
    assert main(["--config", config_file, "send", str(campaign), "--yes"]) == 0
    for message in clients.sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10,
                                               MessageAttributeNames=["All"])["Messages"]:
        clients.sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=message["Body"], MessageAttributes=message["MessageAttributes"])
        clients.sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])
    files = [o["Key"] for o in clients.s3.list_objects_v2(Bucket=stack.bucket)["Contents"] if o["Key"].startswith(("files/", "jobs/"))
             and not o["Key"].endswith(".jsonl.gz")]
    assert len(files) == 3  # the shared file and two tickets
    for key in files:
        age_object(stack.bucket, key, days=13)

    # When the operator redrives them
    assert main(["--config", config_file, "dlq", "redrive", "--yes"]) == 0

    # Then no attached file expires while the redriven messages may still be waiting (4 days)
    expired = run_lifecycle(clients.s3, stack.bucket, datetime.now(timezone.utc) + timedelta(days=4))
    assert not set(files) & set(expired)
    # And the mail goes out with both files
    handler.install(None)
    try:
        LocalWorker(clients, wait_seconds=1).run(until_empty=True)
    finally:
        handler.install(None)
    dead = clients.sqs.get_queue_attributes(QueueUrl=stack.dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
    assert dead["Attributes"]["ApproximateNumberOfMessages"] == "0"
