"""The sender through its real Lambda handler, on moto, with events shaped as Lambda delivers them.

Outcomes are read where an operator would find them: the raw MIME moto's SES stored, the
idempotency records and failure reasons in the table, the handler's batchItemFailures.
"""

from __future__ import annotations

import json
import time

import pytest

import importlib

from mail_sender import contract

_events = importlib.import_module("tests.lambda.events")
_harness = importlib.import_module("tests.lambda.harness")
LambdaContext, chunk_record, failed_ids, sqs_record = _events.LambdaContext, _events.chunk_record, _events.failed_ids, _events.sqs_record
client_error, faulty_ses = _harness.client_error, _harness.faulty_ses

JOB = "november-newsletter-3f9a2c1b"


def people(n: int, start: int = 0, domain: str = "example.org") -> list[dict]:
    return [
        {"email": f"user{i}@{domain}", "row": i + 2, "vars": {"name": f"User {i}", "token": f"t{i}"}}
        for i in range(start, start + n)
    ]


def test_a_chunk_becomes_one_complete_mime_message_per_recipient(sender_env):
    # Given a job of three recipients in one chunk
    h = sender_env
    h.put_job(JOB)
    record = h.record(JOB, 0, people(3))

    # When Lambda delivers it
    response = h.invoke(record)

    # Then nothing failed, and each recipient got exactly one multipart/alternative message
    assert response == {"batchItemFailures": []}
    mail = h.mail()
    assert sorted(m["To"] for m in mail) == ["user0@example.org", "user1@example.org", "user2@example.org"]
    message = h.mail_to("user1@example.org")[0]
    assert message.get_content_type() == "multipart/alternative"
    assert str(message["Subject"]) == "User 1さん、11月のお知らせ"
    assert message.get_body(("plain",)).get_content().replace("\r\n", "\n") == "こんにちは User 1\n"
    assert message.get_body(("html",)).get_content().rstrip() == "<p>こんにちは User 1</p>"
    assert message["Message-ID"].endswith("@example.com>")
    assert message["Date"].datetime.timestamp() == pytest.approx(time.time(), abs=60)
    assert str(message["Reply-To"]) == "support@example.com"
    assert message["X-Campaign"] == "november"
    assert str(message["List-Unsubscribe"]) == "<https://example.com/u/t1>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # And the idempotency record says so, under the job's partition
    record_item = h.outcome(JOB, "user1@example.org")
    assert record_item["status"] == "COMPLETED"
    assert record_item["data"]["outcome"] == "sent"
    assert record_item["data"]["row"] == 3
    assert record_item["data"]["ses_message_id"]
    assert record_item["expiration"] == pytest.approx(time.time() + 15 * 24 * 3600, abs=60)


def test_japanese_subject_and_display_name_are_rfc2047_encoded(sender_env):
    # Given a sender whose display name and subject are Japanese
    h = sender_env
    bundle = h.put_bundle(**{"from": "山田商店 <news@example.jp>", "subject": "{{ name }}様へ 冬のセールのお知らせ"})
    record = h.record(JOB, 0, [{"email": "taro@example.org", "vars": {"name": "太郎", "token": "x"}}], bundle=bundle)

    # When it is sent
    assert h.invoke(record)["batchItemFailures"] == []

    # Then the raw headers are 7-bit encoded words and decode back to the Japanese text
    raw = h.raw_messages()[0]["raw_data"]
    header_block = raw.split("\r\n\r\n", 1)[0]
    assert header_block.isascii()
    assert "=?utf-8?" in header_block.split("Subject:", 1)[1].split("\r\n", 1)[0]
    message = h.mail()[0]
    assert str(message["Subject"]) == "太郎様へ 冬のセールのお知らせ"
    assert message["From"].addresses[0].display_name == "山田商店"
    assert message["From"].addresses[0].addr_spec == "news@example.jp"
    assert message["Message-ID"].endswith("@example.jp>")


def test_one_poison_record_fails_alone_and_its_reason_is_recorded(sender_env):
    # Given a batch where the middle record has a version this sender does not read
    h = sender_env
    good_a = h.record(JOB, 0, people(2))
    poison = chunk_record(json.dumps({"version": 99, "job_id": JOB}), JOB, 1, receive_count=3)
    good_b = h.record(JOB, 2, people(2, start=2))

    # When the batch is delivered
    response = h.invoke(good_a, poison, good_b)

    # Then only the poison record is reported failed, its batch-mates' mail went out
    assert failed_ids(response) == {poison["messageId"]}
    assert len(h.mail()) == 4
    # And the DLQ will be able to say why
    failure = h.failure(poison["messageId"])
    assert failure["job_id"] == JOB
    assert failure["chunk"] == 1
    assert failure["receive_count"] == 3
    assert failure["reason"].startswith("poison: ")
    assert "unsupported message version 99" in failure["reason"]
    assert failure["expiration"] == pytest.approx(time.time() + 15 * 24 * 3600, abs=60)


def test_a_body_that_is_not_json_is_poison_even_without_attributes(sender_env):
    # Given a record some other producer sent, without mailctl's attributes
    h = sender_env
    record = sqs_record("hello, not json")

    # When it is delivered
    response = h.invoke(record)

    # Then it fails, with a reason and an empty job id
    assert failed_ids(response) == {record["messageId"]}
    failure = h.failure(record["messageId"])
    assert failure["job_id"] == ""
    assert "chunk" not in failure
    assert "body is not JSON" in failure["reason"]


def emitted_metrics(output: str) -> dict[str, float]:
    """The CloudWatch embedded-metric-format lines the handler printed, summed by name."""
    totals: dict[str, float] = {}
    for line in output.splitlines():
        if line.startswith('{"_aws"'):
            document = json.loads(line)
            for metric in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                totals[metric["Name"]] = totals.get(metric["Name"], 0) + sum(document[metric["Name"]])
    return totals


def test_the_same_chunk_delivered_twice_sends_one_mail_per_recipient(sender_env, capsys):
    # Given a chunk already processed once
    h = sender_env
    record = h.record(JOB, 0, people(4))
    assert h.invoke(record)["batchItemFailures"] == []
    assert emitted_metrics(capsys.readouterr().out) == {"sent": 4, "records": 1}

    # When SQS delivers the very same message again
    again = dict(record, attributes={**record["attributes"], "ApproximateReceiveCount": "2"})
    response = h.invoke(again)

    # Then it succeeds without sending anything new, and says so in its metrics
    assert response["batchItemFailures"] == []
    assert len(h.mail()) == 4
    assert emitted_metrics(capsys.readouterr().out) == {"duplicates_skipped": 4, "records": 1}


def test_a_redriven_copy_with_a_new_message_id_sends_no_new_mail(sender_env):
    # Given a chunk that was sent, then (say) moved to the DLQ and redriven: same body, new id
    h = sender_env
    body = h.body(JOB, 0, people(3))
    first = chunk_record(body, JOB, 0)
    assert h.invoke(first)["batchItemFailures"] == []
    redriven = chunk_record(body, JOB, 0)
    assert redriven["messageId"] != first["messageId"]

    # When the redriven copy is delivered
    response = h.invoke(redriven)

    # Then nobody gets a second mail
    assert response["batchItemFailures"] == []
    assert len(h.mail()) == 3


def test_throttling_fails_the_record_and_the_retry_sends_only_the_rest(sender_env, capsys):
    # Given SES that throttles the first attempt to send to user3
    h = sender_env
    throttled_once = []

    def fault(to, n):
        if to == "user3@example.org" and not throttled_once:
            throttled_once.append(to)
            return client_error("TooManyRequestsException", "Maximum sending rate exceeded.", 429)
        return None

    faulty_ses(fault)
    record = h.record(JOB, 0, people(6))

    # When the chunk is delivered
    response = h.invoke(record)

    # Then the record fails (to be redelivered), user3 got nothing yet, the reason is on record
    assert failed_ids(response) == {record["messageId"]}
    metrics = emitted_metrics(capsys.readouterr().out)
    assert (metrics["throttled"], metrics["records_failed"]) == (1, 1)
    assert h.mail_to("user3@example.org") == []
    assert h.failure(record["messageId"])["reason"].startswith("rate: ")
    assert "TooManyRequestsException" in h.failure(record["messageId"])["reason"]

    # When SQS redelivers it
    retry = dict(record, attributes={**record["attributes"], "ApproximateReceiveCount": "2"})
    response = h.invoke(retry)

    # Then everyone has exactly one mail, and the stale failure reason is gone
    assert response["batchItemFailures"] == []
    assert sorted(m["To"] for m in h.mail()) == sorted(p["email"] for p in people(6))
    assert h.failure(record["messageId"]) is None


def test_a_server_error_is_retried_like_throttling(sender_env):
    # Given SES failing once with a 5xx for one address
    h = sender_env
    faulty_ses(lambda to, n: client_error("InternalFailure", "oops", 500) if to == "user1@example.org" and n <= 3 else None)
    record = h.record(JOB, 0, people(3))

    # When delivered twice (the first fails)
    assert failed_ids(h.invoke(record)) == {record["messageId"]}
    assert h.outcome(JOB, "user1@example.org") is None  # the INPROGRESS record was removed
    assert h.invoke(record)["batchItemFailures"] == []

    # Then each got one mail
    assert sorted(m["To"] for m in h.mail()) == ["user0@example.org", "user1@example.org", "user2@example.org"]


def test_a_permanent_rejection_is_recorded_as_failed_and_never_retried(sender_env):
    # Given SES that rejects one address for good
    h = sender_env
    faulty_ses(lambda to, n: client_error("MessageRejected", f"Address blacklisted: {to}") if to == "user1@example.org" else None)
    record = h.record(JOB, 0, people(3))

    # When the chunk is delivered
    response = h.invoke(record)

    # Then the record succeeds: the rejection is that recipient's outcome, with its reason
    assert response["batchItemFailures"] == []
    outcome = h.outcome(JOB, "user1@example.org")
    assert outcome["status"] == "COMPLETED"
    assert outcome["data"]["outcome"] == "failed"
    assert outcome["data"]["reason"].startswith("MessageRejected: Address blacklisted")
    assert sorted(m["To"] for m in h.mail()) == ["user0@example.org", "user2@example.org"]

    # When the same chunk comes again (a redrive) and SES would now accept it
    h.invoke(chunk_record(record["body"], JOB, 0))

    # Then the rejected address is still not retried
    assert h.mail_to("user1@example.org") == []


def test_an_unverified_sender_blames_no_recipient_and_the_record_waits(sender_env):
    # Given a job whose bundle's From domain SES has not verified (moto refuses it, as SES does)
    h = sender_env
    h.put_job(JOB)
    bundle = h.put_bundle(**{"from": "news@unverified.example.net"})
    record = h.record(JOB, 0, people(2), bundle=bundle)

    # When delivered
    response = h.invoke(record)

    # Then the record fails as account-level, nothing was sent, no recipient is recorded at all
    assert failed_ids(response) == {record["messageId"]}
    assert h.mail() == []
    assert h.records_of(JOB) == {}
    reason = h.failure(record["messageId"])["reason"]
    assert reason.startswith("account: ") and "MessageRejected" in reason
    # And the job's manifest says what it waits for, and until when
    manifest = h.ddb.get_item(TableName=h.stack.table, Key={"pk": {"S": "jobs"}, "sk": {"S": JOB}})["Item"]
    assert manifest["waiting_for"]["S"] == "account"
    assert "MessageRejected" in manifest["waiting_reason"]["S"]
    assert int(manifest["waiting_until"]["N"]) > time.time()


@pytest.mark.parametrize("pointer_class", [contract.POINTER_CLASS, contract.LEGACY_POINTER_CLASS])
def test_an_s3_pointer_record_is_resolved(sender_env, pointer_class):
    # Given a chunk offloaded to S3 by the extended client, in the current or legacy format
    h = sender_env
    body = h.body(JOB, 5, people(2))
    h.s3.put_object(Bucket=h.stack.bucket, Key="payloads/abc", Body=body.encode())
    pointer = json.dumps([pointer_class, {"s3BucketName": h.stack.bucket, "s3Key": "payloads/abc"}])
    size_attribute = contract.PAYLOAD_SIZE_ATTRIBUTE if pointer_class == contract.POINTER_CLASS else contract.LEGACY_PAYLOAD_SIZE_ATTRIBUTE
    record = chunk_record(pointer, JOB, 5, attributes={size_attribute: len(body)})

    # When delivered
    response = h.invoke(record)

    # Then the recipients inside the S3 payload got their mail
    assert response["batchItemFailures"] == []
    assert sorted(m["To"] for m in h.mail()) == ["user0@example.org", "user1@example.org"]


def test_a_pointer_to_a_missing_payload_is_poison(sender_env):
    # Given a pointer whose S3 object is gone
    h = sender_env
    pointer = json.dumps([contract.POINTER_CLASS, {"s3BucketName": h.stack.bucket, "s3Key": "payloads/gone"}])
    record = chunk_record(pointer, JOB, 7)

    # When delivered
    response = h.invoke(record)

    # Then the record fails and the reason names the object
    assert failed_ids(response) == {record["messageId"]}
    reason = h.failure(record["messageId"])["reason"]
    assert reason.startswith("poison: ")
    assert "payloads/gone" in reason


def test_a_missing_template_bundle_is_poison(sender_env):
    # Given a chunk whose bundle was never uploaded
    h = sender_env
    body = contract.encode_chunk_body(JOB, 0, contract.BundleRef(h.stack.bucket, "bundles/nope.json"), [contract.encode_recipient("a@example.org", {})])
    record = chunk_record(body, JOB, 0)

    # When delivered
    response = h.invoke(record)

    # Then the record fails with a reason naming the bundle, and nothing is sent
    assert failed_ids(response) == {record["messageId"]}
    assert "bundles/nope.json" in h.failure(record["messageId"])["reason"]
    assert h.mail() == []


class SimulatedTimeout(BaseException):
    """What Lambda does at the timeout: the process stops, no `except Exception` runs."""


def test_a_timed_out_invocation_does_not_block_the_retry(sender_env, monkeypatch):
    # Given an invocation with just enough time left for one SES call's worst case (connect + read
    # timeout, 1 s + 1 s here) plus the margin, killed in the middle of sending
    h = sender_env
    monkeypatch.setenv("MAILCTL_SES_CONNECT_TIMEOUT", "1")
    monkeypatch.setenv("MAILCTL_SES_READ_TIMEOUT", "1")
    ses = faulty_ses(lambda to, n: SimulatedTimeout())
    record = h.record(JOB, 0, people(3))
    with pytest.raises(SimulatedTimeout):
        h.invoke(record, context=LambdaContext(remaining_ms=3200))

    # Then INPROGRESS records were left behind, each expiring with the invocation
    left = h.records_of(JOB)
    assert left and all(item["status"] == "INPROGRESS" for item in left.values())
    assert all(item["in_progress_expiration"] <= (time.time() + 3.3) * 1000 for item in left.values())

    # When SQS redelivers after the invocation's deadline has passed
    ses.fault = lambda to, n: None
    time.sleep(3.3)
    response = h.invoke(record)

    # Then the retry sends everything, once
    assert response["batchItemFailures"] == []
    assert sorted(m["To"] for m in h.mail()) == ["user0@example.org", "user1@example.org", "user2@example.org"]


def test_an_invocation_about_to_time_out_defers_instead_of_starting_sends(sender_env):
    # Given an invocation with less time left than the sender's safety margin
    h = sender_env
    record = h.record(JOB, 0, people(2))

    # When delivered
    response = h.invoke(record, context=LambdaContext(remaining_ms=200))

    # Then nothing is sent, nothing is left INPROGRESS, and the record fails to be retried
    assert failed_ids(response) == {record["messageId"]}
    assert h.mail() == []
    assert h.records_of(JOB) == {}
    assert "retryable" in h.failure(record["messageId"])["reason"]


def test_a_cancelled_job_records_its_recipients_as_skipped(sender_env):
    # Given a job an operator cancelled
    h = sender_env
    h.put_job(JOB, state=contract.JOB_STATE_CANCELLED)
    record = h.record(JOB, 3, people(2))

    # When one of its chunks is delivered
    response = h.invoke(record)

    # Then no mail goes out and the recipients are recorded skipped
    assert response["batchItemFailures"] == []
    assert h.mail() == []
    for person in people(2):
        item = h.outcome(JOB, person["email"])
        assert item["status"] == "COMPLETED"
        assert item["data"]["outcome"] == "skipped"
        assert item["data"]["reason"] == "job cancelled"


def test_a_header_injection_attempt_rejects_that_recipient_only(sender_env):
    # Given a row whose variable would smuggle a Bcc header into the subject
    h = sender_env
    recipients = [
        {"email": "mallory@example.org", "row": 2, "vars": {"name": "x\r\nBcc: victim@example.net", "token": "t"}},
        {"email": "alice@example.org", "row": 3, "vars": {"name": "Alice", "token": "t"}},
    ]
    record = h.record(JOB, 0, recipients)

    # When delivered
    response = h.invoke(record)

    # Then that recipient is failed with the reason, no message carries an extra header
    assert response["batchItemFailures"] == []
    outcome = h.outcome(JOB, "mallory@example.org")["data"]
    assert outcome["outcome"] == "failed"
    assert "header injection refused" in outcome["reason"]
    mail = h.mail()
    assert [m["To"] for m in mail] == ["alice@example.org"]
    assert all(m["Bcc"] is None for m in mail)
    assert all("victim@example.net" not in raw["raw_data"] for raw in h.raw_messages())


def test_a_bundle_with_a_multiline_extra_header_is_poison(sender_env):
    # Given a bundle (from another producer) with CR/LF inside an extra header
    h = sender_env
    bundle = h.put_bundle(headers={"X-Campaign": "nov\r\nBcc: victim@example.net"})
    record = h.record(JOB, 0, people(1), bundle=bundle)

    # When delivered
    response = h.invoke(record)

    # Then the record fails as poison and nothing is sent
    assert failed_ids(response) == {record["messageId"]}
    assert h.mail() == []
    assert "X-Campaign" in h.failure(record["messageId"])["reason"]


def test_sending_paused_fails_the_records_without_blaming_recipients(sender_env):
    # Given an account whose sending SES has paused
    h = sender_env
    faulty_ses(lambda to, n: client_error("SendingPausedException", "Sending is paused for this account."))
    first = h.record(JOB, 0, people(2))
    second = h.record(JOB, 1, people(2, start=2))

    # When a batch is delivered
    response = h.invoke(first, second)

    # Then both records fail, no recipient is marked failed (nothing is recorded at all)
    assert failed_ids(response) == {first["messageId"], second["messageId"]}
    assert h.records_of(JOB) == {}
    assert h.mail() == []
    assert h.failure(first["messageId"])["reason"].startswith("account: ")
    assert "SendingPausedException" in h.failure(first["messageId"])["reason"]
    assert "SendingPausedException" in h.failure(second["messageId"])["reason"]


def test_the_configuration_set_and_job_tag_reach_ses(sender_env, monkeypatch):
    # Given a configured configuration set that exists (SES refuses one that does not), and SES
    # that records what it is asked to do
    h = sender_env
    monkeypatch.setenv("MAILCTL_CONFIGURATION_SET", "mailctl-events")
    h.clients.client("sesv2").create_configuration_set(ConfigurationSetName="mailctl-events")
    ses = faulty_ses(lambda to, n: None)
    record = h.record("job with spaces/1", 0, people(1))

    # When sent
    assert h.invoke(record)["batchItemFailures"] == []

    # Then the request carried the configuration set and a sanitised job id tag
    assert [(r.get("ConfigurationSetName"), r["EmailTags"]) for r in ses.requests] == [
        ("mailctl-events", [{"Name": "job_id", "Value": "job_with_spaces_1"}])
    ]
    assert len(h.mail()) == 1


def test_sent_mail_is_also_written_to_the_outbox(sender_env, monkeypatch, tmp_path):
    # Given an outbox directory
    h = sender_env
    monkeypatch.setenv("MAILCTL_OUTBOX", str(tmp_path))
    record = h.record(JOB, 0, people(2) + [{"email": "norow@example.org", "vars": {"name": "N", "token": "n"}}])

    # When sent
    assert h.invoke(record)["batchItemFailures"] == []

    # Then each message is there as .eml, named by row (or by a hash when there is no row)
    files = sorted(p.name for p in (tmp_path / JOB).iterdir())
    assert files[:2] == ["2.eml", "3.eml"] and len(files) == 3 and files[2].endswith(".eml")
    import email
    from email import policy

    assert email.message_from_bytes((tmp_path / JOB / "2.eml").read_bytes(), policy=policy.default)["To"] == "user0@example.org"


def test_duplicate_addresses_inside_one_chunk_get_one_mail(sender_env):
    # Given a chunk (from another producer) listing the same address twice, in different case
    h = sender_env
    record = h.record(JOB, 0, [{"email": "Dup@example.org", "vars": {"name": "a", "token": "a"}},
                                {"email": "dup@example.org", "vars": {"name": "b", "token": "b"}}])

    # When delivered
    assert h.invoke(record)["batchItemFailures"] == []

    # Then one mail went out
    assert len(h.mail()) == 1
