"""A campaign never silently mails an address twice.

Every job of a campaign (same campaign name, same target) after the first continues it: addresses
an earlier job mailed or enqueued are left out, counted, and named in the plan; `--resend` mails
them again, and the plan counts those instead. Each job's manifest records which earlier jobs it
continued (`continues`), so a resume leaves out exactly what its first run left out.

What "mailed or enqueued" means, per earlier job:
- enqueued or still enqueueing: every address of its rows file (`jobs/<id>/recipients.jsonl.gz`,
  everything it enqueued or will enqueue when resumed), and, when it has no rows file (another
  producer, or an enqueue cut off before the upload), the addresses in its idempotency records;
- cancelled: only the addresses its records show as mailed, failed or in progress (not those it
  skipped).

Cost at 1,000,000 recipients: a rows file is one GetObject (~26 MB gzip) and one JSON parse per
line; records are read with the parallel range Queries `mailctl status` uses, and only when a job
has no rows file or was cancelled. Addresses are held as two independent 64-bit hashes in flat
tables (~32 MB for a million), so a false "already mailed" needs a collision of both (odds ~1e-26).
Both steps are a few microseconds of Python per address (see docs/benchmarks.md).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailctl.aws.dynamodb import StateTable
from mailctl.aws.s3 import S3Store
from mailctl.errors import NotFound
from mailctl.recipients import SeenHashes
from mail_sender.contract import JOB_STATE_CANCELLED, JOB_STATE_ENQUEUEING, decode_recipient, recipient_key

_EMAIL_IN_DATA = re.compile(r'"email":\s*("(?:[^"\\]|\\.)*")')
_SKIPPED = re.compile(r'"outcome":\s*"skipped"')


def _second_hash(key: str) -> int:
    # SipHash of another string: independent of hash(key) for collisions, at a tenth of blake2b's cost.
    return hash(key + "\0")


# mailctl's own encoder writes the address first; anything else (or an escaped address) is decoded.
_LEADING_EMAIL = re.compile(r'\{"email":"([^"\\]*)"')


def email_of(line: str) -> str:
    match = _LEADING_EMAIL.match(line)
    return match.group(1) if match else decode_recipient(line).email


@dataclass
class History:
    """The addresses earlier jobs of a campaign mailed or enqueued."""

    jobs: list[str] = field(default_factory=list)  # the earlier jobs, oldest first
    unfinished: list[str] = field(default_factory=list)  # of those, still enqueueing
    expected: int = 1024  # addresses expected: sizes the tables once instead of growing them
    addresses: int = 0

    def __post_init__(self) -> None:
        self._first = SeenHashes(self.expected)
        self._second = SeenHashes(self.expected)

    def add(self, email: str) -> None:
        key = recipient_key(email)
        new_first = self._first.add(hash(key))
        new_second = self._second.add(_second_hash(key))
        self.addresses += new_first or new_second

    def __contains__(self, key: str) -> bool:
        return self._first.contains(hash(key)) and self._second.contains(_second_hash(key))


def earlier_jobs(table: StateTable, campaign: str, target_key: str, this_job: str) -> list[dict[str, Any]]:
    """The manifests of the campaign's other jobs on this target, oldest first (test sends aside)."""
    jobs = [
        m for m in table.list_manifests()
        if m.get("name") == campaign and m.get("job_id") != this_job and not m.get("test_send")
        and m.get("target", target_key) == target_key
    ]
    return sorted(jobs, key=lambda m: str(m.get("created_at", "")))


def manifests_of(table: StateTable, job_ids: list[str]) -> list[dict[str, Any]]:
    """The manifests a resumed job continued, as its first run found them."""
    found = []
    for job_id in job_ids:
        manifest = table.get_manifest(job_id)
        if manifest is None:
            raise NotFound(f"job {job_id}, which this job continues, is no longer in the table",
                           hint="start a new job with --new-job: it leaves out what the remaining jobs mailed")
        found.append(manifest)
    return found


def load(clients, default_bucket: str, manifests: list[dict[str, Any]]) -> History:
    table = StateTable(clients.dynamodb, clients.config.table)
    history = History(jobs=[m["job_id"] for m in manifests],
                      unfinished=[m["job_id"] for m in manifests if m.get("state") == JOB_STATE_ENQUEUEING],
                      expected=sum(int(m.get("recipients") or 0) for m in manifests))
    for manifest in manifests:
        cancelled = manifest.get("state") == JOB_STATE_CANCELLED
        rows = None if cancelled else _rows(S3Store(clients.s3, manifest.get("bucket") or default_bucket), manifest)
        if rows is not None:
            for email in rows:
                history.add(email)
        else:
            for email in _recorded(table, manifest, skip_skipped=cancelled):
                history.add(email)
    return history


def _rows(store: S3Store, manifest: dict[str, Any]) -> Iterator[str] | None:
    key = manifest.get("rows_key")
    if not key or not store.exists(key):
        return None
    packed = store.get(key)

    def emails() -> Iterator[str]:
        for line in io.TextIOWrapper(gzip.GzipFile(fileobj=io.BytesIO(packed)), encoding="utf-8"):
            if line.strip():
                yield email_of(line)
    return emails()


def _recorded(table: StateTable, manifest: dict[str, Any], skip_skipped: bool) -> Iterator[str]:
    for page in table.job_record_items(manifest["job_id"], shards=int(manifest.get("idempotency_shards") or 1)):
        for item in page:
            data = item.get("data", {}).get("S")
            if not data or (skip_skipped and _SKIPPED.search(data)):
                continue
            match = _EMAIL_IN_DATA.search(data)
            if match:
                yield json.loads(match.group(1))


@dataclass
class Selection:
    recipients: int = 0  # what the job will send
    left_out: int = 0  # accepted, but mailed or enqueued by an earlier job
    resent: int = 0  # mailed or enqueued before, and sent again (--resend)
    beyond_limit: int = 0


def select(spool: Path, history: History | None, limit: int | None, resend: bool) -> Selection:
    """Rewrite the spool to what this job sends: addresses of earlier jobs left out (unless
    `resend`), then the first `limit` of the rest. Streams: constant memory."""
    selection = Selection()
    if history is None or not history.jobs:
        history = None
    if history is None and limit is None:
        with spool.open("rb") as handle:
            selection.recipients = sum(1 for line in handle if line.strip())
        return selection
    kept = spool.with_suffix(".selected")
    with spool.open("r", encoding="utf-8") as source, kept.open("w", encoding="utf-8") as out:
        for line in source:
            mailed_before = history is not None and recipient_key(email_of(line)) in history
            if mailed_before and not resend:
                selection.left_out += 1
                continue
            if limit is not None and selection.recipients >= limit:
                if history is None:
                    break  # nothing more to count
                selection.beyond_limit += 1
                continue
            out.write(line)
            selection.recipients += 1
            selection.resent += mailed_before
    os.replace(kept, spool)
    return selection
