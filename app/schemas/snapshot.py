"""Wire models of ``GET /snapshot`` (SPEC §8, §11)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class IOTotals(BaseModel):
    """Sums of expected I/O figures."""

    read_bytes: int = 0
    write_bytes: int = 0
    net_rx_bytes: int = 0
    net_tx_bytes: int = 0


class TagValueStats(BaseModel):
    """One value of the ``by_tag`` key: tasks per status, and Σ expected_io of the
    pending and running ones."""

    statuses: dict[str, int]
    expected_io: IOTotals


class Snapshot(BaseModel):
    """Counts of every retained task by status, by type and status, by group and status."""

    statuses: dict[str, int] = Field(description="every status, zeros included")
    types: dict[str, dict[str, int]]
    groups: dict[str, dict[str, int]] = Field(description="tasks without a group are left out")
    tags: dict[str, dict[str, TagValueStats]] | None = Field(
        default=None, description="with by_tag=k: {k: {value: stats}}"
    )
    terminal_counted_at: datetime = Field(
        description="when the terminal counts were taken (live counts are exact, as of now)"
    )
