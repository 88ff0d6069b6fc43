"""Wire models of the event stream (``GET /events``)."""

from __future__ import annotations

from typing import Literal

#: Every event name the stream sends (SPEC §8); a test keeps it equal to the lifecycle's
#: list and to what the SQL writes.
EventName = Literal[
    "task.created",
    "task.deduplicated",
    "task.superseded",
    "task.cancelling",
    "task.leased",
    "task.progress",
    "task.completed",
    "task.failed",
    "task.retrying",
    "task.cancelled",
    "task.expired",
    "task.waiting",
    "task.unblocked",
    "task.finalizing",
    "task.released",
    "task.due",
    "lease.expired",
    "group.paused",
    "group.resumed",
]
