"""``GET /snapshot``: live counts exact on every call, terminal counts reused for a while.

Terminal tasks can number millions and never change again (until retention deletes
them), so counting them on every call would make the snapshot as slow as the table is
big. Each replica keeps the last terminal counts for ``snapshot_terminal_max_age_seconds``
and recounts at most that often (one caller recounts, concurrent ones wait for it);
non-terminal tasks are counted on every call from the rows the partial indexes keep small.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from ..config import Settings
from ..schemas.common import TAG_KEY_RE
from ..schemas.snapshot import IOTotals, Snapshot, StatusCounts, TagValueStats
from ..store import snapshot as store
from ..store.db import Database
from .errors import InvalidInput
from .lifecycle import ALL

_IO = ("read_bytes", "write_bytes", "net_rx_bytes", "net_tx_bytes")
_MAX_TAG_CACHE = 64

Rows = list[dict[str, Any]]


class _Cached:
    """One cached terminal count with its single-flight refresh."""

    def __init__(self) -> None:
        self.rows: Rows = []
        self.at: datetime | None = None
        self.taken = -1e18  # loop time of the last refresh
        self.lock = asyncio.Lock()


class SnapshotService:
    """Counts by status, type, group and (``by_tag``) tag value."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._terminal = _Cached()
        self._tags: OrderedDict[str, _Cached] = OrderedDict()

    async def _fresh(
        self, cached: _Cached, load: Callable[[AsyncConnection], Awaitable[Iterable[Any]]]
    ) -> _Cached:
        loop = asyncio.get_running_loop()
        max_age = self.settings.snapshot_terminal_max_age_seconds
        if loop.time() - cached.taken < max_age:
            return cached
        async with cached.lock:
            if loop.time() - cached.taken < max_age:
                return cached  # someone refreshed it while we waited
            async with self.db.transaction() as conn:
                rows = await load(conn)
            cached.rows = [dict(r) for r in rows]
            cached.at = datetime.now(UTC)
            cached.taken = loop.time()
        return cached

    def _tag_cache(self, key: str) -> _Cached:
        cached = self._tags.pop(key, None) or _Cached()
        self._tags[key] = cached
        while len(self._tags) > _MAX_TAG_CACHE:
            self._tags.popitem(last=False)
        return cached

    async def snapshot(self, by_tag: str | None = None) -> Snapshot:
        """The counts; ``by_tag`` adds per-value stats of that tag key."""
        if by_tag is not None and not TAG_KEY_RE.fullmatch(by_tag):
            raise InvalidInput.at(
                "by_tag",
                "not a tag key",
                detail="by_tag must be a tag key (1-64 characters of [A-Za-z0-9_.:/-])",
            )
        terminal = await self._fresh(self._terminal, store.terminal_counts)
        tag_terminal = None
        if by_tag is not None:
            key = by_tag
            tag_terminal = await self._fresh(
                self._tag_cache(key), lambda c: store.terminal_tag_counts(c, key)
            )
        async with self.db.transaction() as conn:
            live = [dict(r) for r in await store.live_counts(conn)]
            tag_live = (
                [dict(r) for r in await store.live_tag_counts(conn, by_tag)]
                if by_tag is not None
                else []
            )
        statuses = dict.fromkeys(map(str, ALL), 0)
        types: dict[str, dict[str, int]] = defaultdict(dict)
        groups: dict[str, dict[str, int]] = defaultdict(dict)
        for row in [*terminal.rows, *live]:
            status, n = row["status"], int(row["n"])
            statuses[status] = statuses.get(status, 0) + n
            by_type = types[row["type"]]
            by_type[status] = by_type.get(status, 0) + n
            if row["group_name"] is not None:
                by_group = groups[row["group_name"]]
                by_group[status] = by_group.get(status, 0) + n
        tags = None
        if by_tag is not None and tag_terminal is not None:
            tags = {by_tag: self._tag_stats([*tag_terminal.rows, *tag_live])}
        assert terminal.at is not None
        return Snapshot(
            statuses=StatusCounts(**statuses),
            types={name: StatusCounts(**counts) for name, counts in types.items()},
            groups={name: StatusCounts(**counts) for name, counts in groups.items()},
            tags=tags,
            terminal_counted_at=terminal.at,
        )

    @staticmethod
    def _tag_stats(rows: Rows) -> dict[str, TagValueStats]:
        statuses: dict[str, dict[str, int]] = defaultdict(dict)
        io: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_IO, 0))
        for row in rows:
            value, status, n = row["value"], row["status"], int(row["n"])
            statuses[value][status] = statuses[value].get(status, 0) + n
            totals = io[value]
            if status in ("pending", "running"):
                for field in _IO:
                    totals[field] += int(row[field])
        return {
            value: TagValueStats(statuses=StatusCounts(**counts), expected_io=IOTotals(**io[value]))
            for value, counts in statuses.items()
        }
