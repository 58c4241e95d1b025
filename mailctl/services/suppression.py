"""The suppression list: addresses mailctl never mails again, in the state table.

Entries live under pk="suppression#<n>" (16 partitions by address hash), sk=<address, case-folded>,
with `reason` (BOUNCE, COMPLAINT, MANUAL or an imported reason), `source` (event, operator,
import, ses), `added_at` and, for an event, the job and the bounce details. The events function
adds permanent bounces and complaints; the operator adds, removes and imports; `mailctl send`
leaves listed addresses out, and the sender skips an address listed after its job was enqueued.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mailctl.aws.dynamodb import StateTable
from mailctl.aws.ses import SesAdapter
from mailctl.aws.sqs import SqsQueue
from mailctl.errors import UserError
from mailctl.recipients import RowProblem, normalize_address
from mail_sender.contract import (
    PK_ATTR,
    SK_ATTR,
    SUPPRESSION_REASON_MANUAL,
    recipient_key,
    suppression_partition,
)

WRITE_BATCH = 25 * 8  # entries handed to one worker: 8 BatchWriteItem calls
WRITERS = 16
REASONS = ("BOUNCE", "COMPLAINT", "MANUAL")


@dataclass(frozen=True)
class Entry:
    email: str
    reason: str
    source: str
    added_at: str
    detail: str | None = None
    job_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"email": self.email, "reason": self.reason, "source": self.source, "added_at": self.added_at,
                "detail": self.detail, "job_id": self.job_id}


def _entry(item: dict[str, Any]) -> Entry:
    def text(name: str) -> str | None:
        value = item.get(name)
        return value.get("S") if value else None

    return Entry(email=item[SK_ATTR]["S"], reason=text("reason") or "", source=text("source") or "",
                 added_at=text("added_at") or "", detail=text("detail"), job_id=text("job_id"))


def _now_iso(clock: Callable[[], float]) -> str:
    return datetime.fromtimestamp(clock(), timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _address(value: str, where: str) -> str:
    try:
        return recipient_key(normalize_address(value.strip()))
    except RowProblem as exc:
        raise UserError(f"{where}: not a valid address: {exc}", hint="nothing was written; fix it and run the command again") from None


class SuppressionList:
    def __init__(self, clients, config, clock: Callable[[], float] = time.time, writers: int = WRITERS):
        self.clients = clients
        self.table = StateTable(clients.dynamodb, config.table)
        self.clock = clock
        self.writers = writers

    # --- reading ------------------------------------------------------------------------------------

    def entries(self) -> Iterator[Entry]:
        for item in self.table.suppression_items():
            yield _entry(item)

    def lookup(self) -> dict[str, str]:
        """Every listed address -> its reason: `mailctl send` checks a whole list against it."""
        return {item[SK_ATTR]["S"]: item.get("reason", {}).get("S", "") for item in self.table.suppression_items()}

    def for_send(self, queue: str) -> dict[str, str]:
        """`lookup`, for `mailctl send`: the job queue is resolved first, so that against a stack
        that is not there the error names the queue, as send's own fail-fast check would."""
        SqsQueue(self.clients.sqs, queue).url
        return self.lookup()

    # --- changing -----------------------------------------------------------------------------------

    def add(self, addresses: list[str], reason: str = SUPPRESSION_REASON_MANUAL, source: str = "operator") -> int:
        keys = [_address(a, f"address {a!r}") for a in addresses]
        return self._write({k: reason for k in keys}, source)

    def remove(self, addresses: list[str]) -> list[str]:
        """Removes each address; returns the ones that were not listed."""
        keys = [_address(a, f"address {a!r}") for a in addresses]
        return [k for k in keys if not self.table.delete_suppression(suppression_partition(k), k)]

    def import_file(self, path: Path, reason: str = SUPPRESSION_REASON_MANUAL) -> int:
        """One address per line, or a CSV whose header names an `email` column (and optionally a
        `reason` column). Every line is checked before the first entry is written."""
        return self._write(_read_addresses(path, reason), "import")

    def import_from_ses(self, ses: SesAdapter) -> int:
        """SES's account-level suppression list (ListSuppressedDestinations, every page)."""
        entries: dict[str, str] = {}
        for page in ses.suppressed_destinations():
            for summary in page:
                address = summary.get("EmailAddress")
                if isinstance(address, str) and address:
                    entries[recipient_key(address)] = summary.get("Reason") or "BOUNCE"
        return self._write(entries, "ses")

    def _write(self, entries: dict[str, str], source: str) -> int:
        """BatchWriteItem, several workers at once: 100,000 entries are 4,000 calls."""
        at = _now_iso(self.clock)
        items = [{PK_ATTR: {"S": suppression_partition(key)}, SK_ATTR: {"S": key}, "reason": {"S": reason},
                  "source": {"S": source}, "added_at": {"S": at}} for key, reason in entries.items()]
        if len(items) <= WRITE_BATCH:
            self.table.put_suppressions(items)
            return len(items)
        with ThreadPoolExecutor(max_workers=self.writers, thread_name_prefix="suppression-import") as pool:
            # list(): re-raises the first worker's error here
            list(pool.map(self.table.put_suppressions, [items[i:i + WRITE_BATCH] for i in range(0, len(items), WRITE_BATCH)]))
        return len(items)


def _read_addresses(path: Path, default_reason: str) -> dict[str, str]:
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    entries: dict[str, str] = {}
    with handle:
        first = handle.readline()
        columns = [c.strip().lower() for c in next(csv.reader([first]), [])]
        if "email" in columns:
            email_at, reason_at = columns.index("email"), columns.index("reason") if "reason" in columns else None
            start = 2
            reader = csv.reader(handle)
        else:
            email_at, reason_at, start = 0, None, 1
            reader = csv.reader([first, *handle])
        for line, row in enumerate(reader, start=start):
            if not row or not any(cell.strip() for cell in row):
                continue
            if email_at >= len(row):
                raise UserError(f"{path}:{line}: no email column in this row", hint="nothing was written; fix it and import again")
            key = _address(row[email_at], f"{path}:{line}")
            reason = row[reason_at].strip().upper() if reason_at is not None and reason_at < len(row) and row[reason_at].strip() else default_reason
            entries[key] = reason
    if not entries:
        raise UserError(f"{path}: no addresses", hint="one address per line, or a CSV with an `email` column")
    return entries
