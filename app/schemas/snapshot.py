"""Wire models of ``GET /snapshot`` (SPEC §8, §11)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, get_args

from pydantic import Field, create_model

from .common import Out, absent_if_none
from .tasks import Status

if TYPE_CHECKING:
    StatusCounts = Out
else:
    #: Tasks per status: every status is a property (zeros included), so a misspelt
    #: status is a type error in a generated client, not a silent ``undefined``.
    StatusCounts = create_model(
        "StatusCounts",
        __base__=Out,
        __doc__="Tasks per status, every status present (zeros included).",
        **{status: (int, 0) for status in get_args(Status)},
    )


class IOTotals(Out):
    """Sums of expected I/O figures."""

    read_bytes: int = 0
    write_bytes: int = 0
    net_rx_bytes: int = 0
    net_tx_bytes: int = 0


class TagValueStats(Out):
    """One value of the ``by_tag`` key: tasks per status, and Σ expected_io of the
    pending and running ones."""

    statuses: StatusCounts
    expected_io: IOTotals


class Snapshot(Out):
    """Counts of every retained task by status, by type and status, by group and status."""

    statuses: StatusCounts
    types: dict[str, StatusCounts]
    groups: dict[str, StatusCounts] = Field(description="tasks without a group are left out")
    tags: dict[str, dict[str, TagValueStats]] | None = absent_if_none(
        "with by_tag=k: {k: {value: stats}}"
    )
    terminal_counted_at: datetime = Field(
        description="when the terminal counts were taken (live counts are exact, as of now)"
    )
