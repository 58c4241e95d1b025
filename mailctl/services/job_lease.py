"""One process at a time enqueues a job, and every change of a job's state is conditional.

`claim` takes a lease on the manifest (owner + expiry, a conditional write): a second `mailctl
send` of the same job stops with a message naming the job and the holder instead of putting every
chunk on the queue again. While enqueueing, a heartbeat renews the lease every HEARTBEAT_SECONDS
and records how far the enqueue got (`enqueued_through`, and for `status` the
`enqueue_heartbeat_at` stamp and `chunks_enqueued`; see enqueue_heartbeat.py), on condition that the job is still
`enqueueing` and still ours: a cancel (or a lease taken over after ours expired) is seen within
seconds and stops the enqueue, and the final `enqueued` write can never overwrite a cancel.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from mailctl.aws.dynamodb import StateTable
from mailctl.errors import NotFound, OperationalError
from mailctl.services.job_identity import Checkpoint
from mail_sender.contract import JOB_STATE_CANCELLED, JOB_STATE_ENQUEUED, JOB_STATE_ENQUEUEING, JOB_STATES_FULLY_ENQUEUED

LEASE_SECONDS = 30.0
HEARTBEAT_SECONDS = 2.0
_OURS = "#state = :enqueueing AND #lease_owner = :me"


_ACTIVE: set[str] = set()  # the leases this process holds


def _died_here(owner: str) -> bool:
    """Whether a lease owner ("host:pid:token") was a process of this machine that is gone."""
    host, _, rest = owner.partition(":")
    pid, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return owner not in _ACTIVE
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


class JobBusy(OperationalError):
    """Another process holds the job's enqueue lease."""


class JobCancelled(OperationalError):
    """The job was cancelled while this process enqueued it."""


class Lease:
    def __init__(self, table: StateTable, job_id: str, clock: Callable[[], float] = time.time,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS, lease_seconds: float = LEASE_SECONDS):
        self.table = table
        self.job_id = job_id
        self.clock = clock
        self.heartbeat_seconds = heartbeat_seconds
        self.lease_seconds = lease_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.stopped: str | None = None  # why the enqueue must stop, once the heartbeat saw it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        _ACTIVE.add(self.owner)

    def _values(self, **extra: Any) -> dict[str, Any]:
        return {":enqueueing": JOB_STATE_ENQUEUEING, ":me": self.owner, **extra}

    def claim(self) -> dict[str, Any]:
        """The manifest, leased to us; raises JobBusy or JobCancelled. A job already enqueued in
        full is returned as it is (nothing to claim)."""
        now = self.clock()
        manifest = self.table.update_manifest_if(
            self.job_id, {"lease_owner": self.owner, "lease_expires": int(now + self.lease_seconds), "enqueue_heartbeat_at": int(now)},
            "#state = :enqueueing AND (attribute_not_exists(#lease_owner) OR #lease_expires < :now OR #lease_owner = :me)",
            self._values(**{":now": int(now)}),
        )
        if manifest is not None:
            return manifest
        manifest = self.table.get_manifest(self.job_id)
        if manifest is None:
            raise NotFound(f"job {self.job_id}: no such job in table {self.table.table}")
        if manifest.get("state") in JOB_STATES_FULLY_ENQUEUED:
            return manifest
        holder = str(manifest.get("lease_owner") or "")
        if manifest.get("state") == JOB_STATE_ENQUEUEING and _died_here(holder):
            # Its holder was a mailctl on this machine that is gone (killed, or its last write lost
            # with the network): no need to wait for the lease to expire.
            taken = self.table.update_manifest_if(
                self.job_id, {"lease_owner": self.owner, "lease_expires": int(now + self.lease_seconds), "enqueue_heartbeat_at": int(now)},
                "#state = :enqueueing AND #lease_owner = :holder", self._values(**{":holder": holder}))
            if taken is not None:
                return taken
        self._raise_for(manifest)
        raise AssertionError("unreachable")

    def _raise_for(self, manifest: dict[str, Any]) -> None:
        if manifest.get("state") == JOB_STATE_CANCELLED:
            raise JobCancelled(f"job {self.job_id} was cancelled", hint="its recipients not mailed yet can go out in a new job: "
                               "run the same command with --new-job (addresses this campaign already mailed are left out)")
        left = max(0, int(float(manifest.get("lease_expires") or 0) - self.clock()))
        raise JobBusy(
            f"job {self.job_id} is being enqueued by another mailctl ({manifest.get('lease_owner')}); nothing was enqueued by this one",
            hint=f"wait for it to finish (`mailctl status {self.job_id}`); if that process died, run the same command again in {left} s, when its lease expires",
        )

    def start_heartbeat(self, checkpoint: Checkpoint) -> None:
        def beat() -> None:
            while not self._stop.wait(self.heartbeat_seconds):
                self.renew(checkpoint)
                if self.stopped:
                    return
        self._thread = threading.Thread(target=beat, name="enqueue-lease", daemon=True)
        self._thread.start()

    def renew(self, checkpoint: Checkpoint) -> None:
        """Extend the lease and record progress; sets `stopped` when the job is no longer ours."""
        now = self.clock()
        try:
            manifest = self.table.update_manifest_if(self.job_id, {
                "lease_expires": int(now + self.lease_seconds), "enqueue_heartbeat_at": int(now),
                "enqueued_through": checkpoint.watermark(), "chunks_enqueued": len(checkpoint.done),
            }, _OURS, self._values())
        except OperationalError:
            return  # a missed beat: the lease outlives several of them
        if manifest is None:
            current = self.table.get_manifest(self.job_id) or {}
            self.stopped = ("cancelled" if current.get("state") == JOB_STATE_CANCELLED
                            else f"its lease was taken over by {current.get('lease_owner')}")

    def stop_heartbeat(self) -> None:
        _ACTIVE.discard(self.owner)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def release(self, checkpoint: Checkpoint) -> None:
        """After an interruption or error: record how far we got, say the enqueue stopped (for
        `status`), and free the job at once."""
        self.stop_heartbeat()
        self.table.update_manifest_if(self.job_id, {
            "enqueued_through": checkpoint.watermark(), "chunks_enqueued": len(checkpoint.done),
            "enqueue_stopped_at": int(self.clock()),
        }, _OURS, self._values(), remove=("lease_owner", "lease_expires"))

    def finish(self, **fields: Any) -> dict[str, Any]:
        """enqueueing -> enqueued, only if the job is still ours and not cancelled."""
        self.stop_heartbeat()
        manifest = self.table.update_manifest_if(
            self.job_id, {"state": JOB_STATE_ENQUEUED, **fields}, _OURS, self._values(), remove=("lease_owner", "lease_expires"))
        if manifest is None:
            current = self.table.get_manifest(self.job_id) or {}
            if current.get("state") == JOB_STATE_CANCELLED:
                raise JobCancelled(f"job {self.job_id} was cancelled while it was being enqueued; the sender skips its recipients not mailed yet")
            raise JobBusy(f"job {self.job_id}: its lease was taken over by {current.get('lease_owner')} before the enqueue finished",
                          hint=f"`mailctl status {self.job_id}` shows how far it got")
        return manifest
