"""Small builders shared by tests: campaigns on disk and reading a queue back."""

from __future__ import annotations

import csv
import json
import time
import uuid
from pathlib import Path

from mail_sender.contract import (
    BundleRef, decode_chunk, encode_chunk_body, encode_recipient, idempotency_sort_key, job_partition, parse_pointer, recipient_key, shard_of,
)

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


POINTER = "software.amazon.payloadoffloading.PayloadS3Pointer"


def chunk_body(job_id: str, chunk: int, recipients: int | list[str]) -> str:
    emails = recipients if isinstance(recipients, list) else [f"user{chunk}-{i}@example.com" for i in range(recipients)]
    items = [encode_recipient(email, {"name": f"U{i}"}, row=i + 2) for i, email in enumerate(emails)]
    return encode_chunk_body(job_id, chunk, BundleRef("mailctl-payloads", "bundles/abc.json"), items)


def put_dead_letter(clients, stack, job_id: str, chunk: int, recipients: int | list[str] = 3, via_s3: bool = False,
                    reason: str | None = None, receive_count: int = 5) -> str:
    """A message as mailctl (or the extended client, for big ones) would have enqueued it, already in
    the DLQ; with `reason`, also the failure item the sender wrote at its last receive (the local
    stack's maxReceiveCount is 5)."""
    body = chunk_body(job_id, chunk, recipients)
    attributes = {
        "mailctl.job_id": {"DataType": "String", "StringValue": job_id},
        "mailctl.chunk": {"DataType": "Number", "StringValue": str(chunk)},
    }
    if via_s3:
        key = str(uuid.uuid4())
        clients.s3.put_object(Bucket=stack.bucket, Key=key, Body=body.encode())
        attributes["ExtendedPayloadSize"] = {"DataType": "Number", "StringValue": str(len(body.encode()))}
        body = json.dumps([POINTER, {"s3BucketName": stack.bucket, "s3Key": key}])
    message_id = clients.sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=body, MessageAttributes=attributes)["MessageId"]
    if reason:
        clients.dynamodb.put_item(TableName=stack.table, Item={
            "pk": {"S": "failures"}, "sk": {"S": message_id}, "job_id": {"S": job_id}, "chunk": {"N": str(chunk)},
            "reason": {"S": reason}, "receive_count": {"N": str(receive_count)}, "at": {"S": "2026-11-28T12:00:00+00:00"},
            "expiration": {"N": "2000000000"},
        })
    return message_id


def put_record(clients, table: str, job_id: str, email: str, row: int, status: str = "COMPLETED", outcome: str | None = "sent",
               reason: str | None = None, expires_in: float = 86400, in_progress_expires_in: float = 60, at: float | None = None, shards: int = 1) -> None:
    """One idempotency item exactly as Powertools' DynamoDBPersistenceLayer stores it."""
    now = time.time()
    item = {
        "pk": {"S": job_partition(job_id, shard_of(recipient_key(email), shards), shards)},
        "sk": {"S": idempotency_sort_key(job_id, email)},
        "expiration": {"N": str(int(now + expires_in))},
        "status": {"S": status},
        "in_progress_expiration": {"N": str(int((now + in_progress_expires_in) * 1000))},
    }
    if status == "COMPLETED":
        item["data"] = {"S": json.dumps({"outcome": outcome, "email": email, "row": row, "reason": reason,
                                         "ses_message_id": "0100-abc" if outcome == "sent" else None, "at": at or now - 10})}
    clients.dynamodb.put_item(TableName=table, Item=item)


def write_xlsx(path: Path, rows: list[list], *, formats: dict[str, str] | None = None, cached: dict[str, object] | None = None,
               sheets: dict[str, list[list]] | None = None, errors: dict[str, str] | None = None) -> Path:
    """A workbook as openpyxl writes it: `rows` on the first sheet ("名簿"), `sheets` more sheets after
    it, `formats` number formats by cell ("D2", or "宛先!D2" on another sheet). openpyxl stores
    formulas without their results (as any script does); `cached` writes the result Excel would have
    saved next to the formula in a cell, keyed the same way, and `errors` an error result (#N/A)."""
    import re
    import zipfile
    from xml.sax.saxutils import escape

    from openpyxl import Workbook

    workbook = Workbook()
    workbook.active.title = "名簿"
    for title, content in {"名簿": rows, **(sheets or {})}.items():
        sheet = workbook[title] if title in workbook.sheetnames else workbook.create_sheet(title)
        for row in content:
            sheet.append(row)

    def place(key: str) -> tuple[str, str]:
        title, _, coordinate = key.rpartition("!")
        return title or "名簿", coordinate

    for key, number_format in (formats or {}).items():
        title, coordinate = place(key)
        workbook[title][coordinate].number_format = number_format
    workbook.save(path)
    results = {key: (value, ' t="str"' if isinstance(value, str) else (' t="b"' if isinstance(value, bool) else ""))
               for key, value in (cached or {}).items()} | {key: (value, ' t="e"') for key, value in (errors or {}).items()}
    if results:
        with zipfile.ZipFile(path) as archive:
            parts = {name: archive.read(name) for name in archive.namelist()}
        for key, (value, kind) in results.items():
            title, coordinate = place(key)
            part = f"xl/worksheets/sheet{workbook.sheetnames.index(title) + 1}.xml"
            text = escape(str(int(value) if isinstance(value, bool) else value))
            # openpyxl writes the empty value as <v /> with its own XML writer, <v></v> with lxml's.
            xml, count = re.subn(rf'<c r="{coordinate}"([^>]*)>(<f>.*?</f>)(?:<v ?/>|<v></v>)', rf'<c r="{coordinate}"{kind}\1>\2<v>{text}</v>',
                                 parts[part].decode("utf-8"))
            assert count == 1, f"no formula in {key}"
            parts[part] = xml.encode("utf-8")
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in parts.items():
                archive.writestr(name, data)
    return path


def share_strings(path: Path, furigana: dict[str, str] | None = None) -> Path:
    """Rewrite a workbook's inline strings as Excel saves text: a shared-string table, entries with
    the phonetic guide (furigana) Japanese Excel records as names are typed."""
    import html
    import re
    import zipfile
    from xml.sax.saxutils import escape

    furigana = furigana or {}
    with zipfile.ZipFile(path) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    table: dict[str, int] = {}

    def shared(match: re.Match) -> str:
        # html.unescape: openpyxl writes non-ASCII text as character references when lxml is installed.
        text = html.unescape(match.group(2))
        return f'{match.group(1)} t="s"><v>{table.setdefault(text, len(table))}</v></c>'

    for name in [n for n in parts if n.startswith("xl/worksheets/sheet")]:
        parts[name] = re.sub(r'(<c r="[A-Z]+[0-9]+"(?: s="[0-9]+")?) t="inlineStr"><is><t(?: [^>]*)?>([^<]*)</t></is></c>', shared,
                             parts[name].decode("utf-8")).encode("utf-8")
    items = []
    for text in table:
        guide = f'<rPh sb="0" eb="{len(text)}"><t>{escape(furigana[text])}</t></rPh><phoneticPr fontId="1"/>' if text in furigana else ""
        items.append(f"<si><t>{escape(text)}</t>{guide}</si>")
    parts["xl/sharedStrings.xml"] = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="{len(table)}" uniqueCount="{len(table)}">'
        + "".join(items) + "</sst>").encode("utf-8")
    parts["[Content_Types].xml"] = parts["[Content_Types].xml"].replace(b"</Types>", (
        b'<Override PartName="/xl/sharedStrings.xml" '
        b'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>'))
    parts["xl/_rels/workbook.xml.rels"] = parts["xl/_rels/workbook.xml.rels"].replace(b"</Relationships>", (
        b'<Relationship Id="rIdShared" Target="sharedStrings.xml" '
        b'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings"/></Relationships>'))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return path


def stream_records(clients, table: str) -> tuple[str, list[dict]]:
    """Every record in the table's stream (moto keeps one shard), and that shard's id."""
    streams = clients.client("dynamodbstreams")
    arn = clients.dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    found: list[dict] = []
    while iterator:
        page = streams.get_records(ShardIterator=iterator)
        if not page["Records"]:
            break
        found += page["Records"]
        iterator = page.get("NextShardIterator")
    return shard, found
