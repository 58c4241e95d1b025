"""Which job a `mailctl send` is, where it goes, and what this machine remembers of it.

A job's id follows from its inputs AND its target (the SQS endpoint, region and queue it is sent
to), so a rehearsal on the local stack can never be mistaken for the production job. What a job
has enqueued is kept in AWS, in its manifest (the contiguous `enqueued_through` watermark, written
while it enqueues); the local checkpoint file only refines that, and is trusted only when it was
written for the very manifest found now (its `nonce`): a file from another stack or an older job
of the same id is ignored.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from mailctl.aws.session import effective_endpoint
from mailctl.campaign import Campaign
from mailctl.config import Config


@dataclass(frozen=True)
class Target:
    """Where a job's mail goes: the queue, and the endpoint and region that hold it."""

    endpoint: str | None  # the SQS endpoint really used (AWS_ENDPOINT_URL* win); None: AWS's own
    region: str
    queue: str

    @classmethod
    def of(cls, config: Config) -> Target:
        return cls(effective_endpoint("sqs", config.aws.endpoint_url), config.aws.region, config.queue)

    @property
    def key(self) -> str:
        return f"{self.endpoint or 'aws'}|{self.region}|{self.queue}"

    def describe(self) -> str:
        return f"{self.queue} at {self.endpoint or 'AWS'} ({self.region})"


def state_dir() -> Path:
    root = os.environ.get("MAILCTL_STATE_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "mailctl"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "job"


def job_id_for(campaign: Campaign, recipients_sha256: str, target: Target, *, limit: int | None, to: str | None,
               resend: bool, new_job: bool) -> str:
    """The same inputs sent to the same target are the same job, so running the same command
    again resumes it. Settings that only shape the job (chunk size, shards) are not part of it:
    a resume takes them from the manifest."""
    digest = hashlib.sha256()
    for part in (campaign.fingerprint, recipients_sha256, str(limit), str(to), str(resend), target.key):
        digest.update(part.encode())
        digest.update(b"\0")
    fingerprint = digest.hexdigest()
    suffix = fingerprint[:12] if not new_job else fingerprint[:4] + secrets.token_hex(4)
    return f"{slug(campaign.name)}-{'test-' if to else ''}{suffix}"


def new_nonce() -> str:
    return secrets.token_hex(8)


class Checkpoint:
    """Chunks SQS has accepted for a job, appended as they are accepted. A line written with
    os.write survives a kill -9 of this process: the kernel holds it. The first line names the
    manifest (its nonce) the chunks belong to; a file for another manifest starts over."""

    def __init__(self, job_id: str, nonce: str):
        self.path = state_dir() / f"{job_id}.chunks"
        self.done: set[int] = set()
        lines = self.path.read_text().split() if self.path.exists() else []
        if lines[:1] == [f"nonce:{nonce}"]:
            self.done.update(int(line) for line in lines[1:] if line.isdigit())
        else:
            self.path.write_text(f"nonce:{nonce}\n")
        self._mark = 0
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._lock = threading.Lock()

    def record(self, chunks: list[int]) -> None:
        with self._lock:
            os.write(self._fd, "".join(f"{c}\n" for c in chunks).encode())
            self.done.update(chunks)

    def add_prefix(self, through: int) -> None:
        """Chunks 0..through-1 are known enqueued (from the manifest): no need to write them here."""
        with self._lock:
            self.done.update(range(through))

    def watermark(self) -> int:
        """The first chunk not known to be enqueued: every chunk below it is."""
        with self._lock:
            while self._mark in self.done:
                self._mark += 1
            return self._mark

    def close(self) -> None:
        os.close(self._fd)
