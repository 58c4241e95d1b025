"""Small builders shared by tests: campaigns on disk and reading a queue back."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from mail_sender.contract import decode_chunk, parse_pointer

CAMPAIGN = """\
name: test-campaign
from: "Example News <news@example.com>"
reply_to: support@example.com
subject: "{{{{ name }}}}さん、お知らせ"
html: body.html
text: body.txt
recipients: {recipients}
unsubscribe_url: "https://example.com/u/{{{{ token }}}}"
headers: {{X-Campaign: test}}
"""


def write_campaign(directory: Path, rows: list[dict] | None = None, *, recipients_text: str | None = None,
                   name: str = "recipients.csv", extra: str = "", html: str = "<p>Hello {{ name }}</p>\n",
                   text: str = "Hello {{ name }}\n") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "body.html").write_text(html, encoding="utf-8")
    (directory / "body.txt").write_text(text, encoding="utf-8")
    path = directory / name
    if recipients_text is not None:
        path.write_text(recipients_text, encoding="utf-8")
    elif name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows or []), encoding="utf-8")
    else:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["email", "name", "token"])
            writer.writeheader()
            writer.writerows(rows or [])
    campaign = directory / "campaign.yaml"
    campaign.write_text(CAMPAIGN.format(recipients=name) + extra, encoding="utf-8")
    return campaign


def people(count: int, start: int = 0, domain: str = "example.com") -> list[dict]:
    return [{"email": f"user{i}@{domain}", "name": f"名前{i}", "token": f"tok{i}"} for i in range(start, start + count)]


def drain_queue(sqs, s3, queue_url: str) -> list[dict]:
    """Every message on the queue (deleted as read), bodies resolved from S3 when they are pointers."""
    messages = []
    while True:
        response = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0)
        batch = response.get("Messages", [])
        if not batch:
            return messages
        for message in batch:
            body = message["Body"]
            pointer = parse_pointer(body)
            if pointer:
                body = s3.get_object(Bucket=pointer.bucket, Key=pointer.key)["Body"].read().decode()
            messages.append({"chunk": decode_chunk(body), "pointer": pointer, "attributes": message.get("MessageAttributes", {})})
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
