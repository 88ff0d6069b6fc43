"""Rows of the store turned into wire models."""

from __future__ import annotations

from ..schemas.common import IO
from ..schemas.leases import (
    CancelDirective,
    CancelledDirective,
    Lease,
    LeasedTask,
    SupersededDirective,
)
from ..schemas.tasks import Children, LeaseInfo, Progress, RetryPolicy, Task
from ..store.common import Row
from .ids import lease_id

# The columns of expected ("exp") and actual ("act") I/O, named once: views are built
# for every item of a batch answer.
_IO_COLUMNS = {
    prefix: tuple(f"{prefix}_{k}_bytes" for k in ("read", "write", "net_rx", "net_tx"))
    for prefix in ("exp", "act")
}


def _io(row: Row, prefix: str) -> IO | None:
    read, write, rx, tx = (row[column] for column in _IO_COLUMNS[prefix])
    if read is None and write is None and rx is None and tx is None:
        return None
    return IO(
        read_bytes=read or 0, write_bytes=write or 0, net_rx_bytes=rx or 0, net_tx_bytes=tx or 0
    )


def task_view(row: Row) -> Task:
    """The full task record."""
    lease = None
    if row["lease_expires_at"] is not None:  # held now (a cancel-phase task may await one)
        lease = LeaseInfo(
            id=lease_id(row["id"], str(row["lease_token"])),
            worker=row["lease_worker"],
            expires_at=row["lease_expires_at"],
        )
    return Task(
        id=row["id"],
        type=row["type"],
        status=row["status"],
        priority=row["priority"],
        payload=row["payload"],
        dedup_key=row["dedup_key"],
        group=row["group_name"],
        tags=row["tags"],
        label=row["label"],
        expected_io=_io(row, "exp") or IO(),
        actual_io=_io(row, "act"),
        retry=RetryPolicy(
            max_attempts=row["max_attempts"],
            backoff=row["backoff"],
            base_seconds=row["backoff_base_seconds"],
            max_seconds=row["backoff_max_seconds"],
        ),
        attempt=row["attempt"],
        run_after=row["run_after"],
        ttl_deadline=row["ttl_deadline"],
        parent_id=row["parent_id"],
        phase=row["phase"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        lease=lease,
        progress=Progress.model_validate(row["progress"]) if row["progress"] else None,
        state=row["state"],
        result=row["result"],
        error=row["error"],
        cancel_reason=row["cancel_reason"],
        superseded_by=row["superseded_by"],
        supersedes=row["supersedes"],
        blocked_on=row["blocked_on"],
        fail_fast=row["fail_fast"],
        children=Children(
            total=row["children_total"],
            live=row["children_live"],
            completed=row["children_completed"],
            failed=row["children_failed"],
        ),
    )


def cancel_directive(row: Row) -> CancelDirective | None:
    """The server's request to stop, for a revoked (cancelling) task; else None."""
    if row["status"] != "cancelling":
        return None
    if row["cancel_reason"] == "superseded":
        return SupersededDirective(reason="superseded", superseded_by=row["superseded_by"])
    return CancelledDirective(reason="cancelled")


def lease_view(row: Row) -> Lease:
    """A granted lease as the worker receives it (a cancel-phase one says why)."""
    return Lease(
        lease_id=lease_id(row["id"], str(row["lease_token"])),
        expires_at=row["lease_expires_at"],
        phase=row["phase"],
        cancel=cancel_directive(row),
        task=LeasedTask(
            id=row["id"],
            type=row["type"],
            payload=row["payload"],
            tags=row["tags"],
            priority=row["priority"],
            group=row["group_name"],
            dedup_key=row["dedup_key"],
            label=row["label"],
            attempt=row["attempt"],
            max_attempts=row["max_attempts"],
            expected_io=_io(row, "exp") or IO(),
            state=row["state"],
            previous_state=row.get("previous_state"),
        ),
    )
