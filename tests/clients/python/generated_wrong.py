"""Deliberately wrong uses of the generated client: mypy --strict must refuse each line
marked ``# type: ignore[<code>]`` with exactly that error code (strict mode reports an
ignore that is not needed, and an ignore of another code does not hide the error).
Type-checked only, never run.
"""

from __future__ import annotations

from taskmill_generated.models import (
    BatchSubmitResult,
    CompleteBatchResult,
    HeartbeatResult,
    Problem,
    Snapshot,
    SubmitCreated,
    SubmitDeduplicated,
    SubmitSuperseded,
    TaskSubmit,
)


def wrong_submits() -> list[TaskSubmit]:
    return [
        TaskSubmit(priority=5),  # type: ignore[call-arg]
        TaskSubmit(type_="t", priority="5"),  # type: ignore[arg-type]
        TaskSubmit(type_="t", on_duplicate="replace"),  # type: ignore[arg-type]
        TaskSubmit(type_="t", on_duplicat="reject"),  # type: ignore[call-arg]
    ]


def wrong_reads(
    submitted: SubmitCreated | SubmitSuperseded | SubmitDeduplicated,
    batch: BatchSubmitResult,
    heartbeat: HeartbeatResult,
    snapshot: Snapshot,
    done: CompleteBatchResult,
    problem: Problem,
) -> list[object]:
    item = batch.results[0]
    read: list[object] = [
        submitted.replaced_task_id,  # type: ignore[union-attr]
        item.existing_task_id,  # type: ignore[union-attr]
        item.task,  # type: ignore[union-attr]
        heartbeat.cancel.superseded_by,  # type: ignore[union-attr]
        snapshot.statuses.runing,  # type: ignore[attr-defined]
        done.results[0].task,  # type: ignore[union-attr]
    ]
    if heartbeat.cancel is not None:
        read.append(heartbeat.cancel.superseded_by)  # type: ignore[union-attr]
    if submitted.outcome == "created":
        read.append(submitted.replaced_task_id)  # type: ignore[attr-defined]
    problem.type_ = "urn:taskmill:problem:teapot"  # type: ignore[assignment]
    return read
