"""Use cases over tags: aggregates, value counts, key discovery, bulk cancel (SPEC §7)."""

from __future__ import annotations

from collections.abc import Sequence

from ..schemas.common import MAX_TAG_VALUE, TAG_KEY_RE
from ..schemas.tags import (
    AggregateGroup,
    AggregateResult,
    CancelFilter,
    CancelMatchingResult,
    TagKeys,
    TagValue,
    TagValues,
)
from ..store import queries, tree
from ..store.db import Database
from .errors import InvalidInput
from .retry import retry_aborted

TaskFilter = queries.TaskFilter

#: Most groups an aggregate may return.
MAX_GROUPS = 10_000


def check_tag_filter(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """Validate ``tag.<key>=<value>`` pairs; group repeated keys (OR) in first-seen order."""
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        field = f"tag.{key}"
        if not TAG_KEY_RE.fullmatch(key):
            raise InvalidInput.at(field, "tag keys are 1-64 characters of [A-Za-z0-9_.:/-]")
        if len(value) > MAX_TAG_VALUE or "\x00" in value:
            raise InvalidInput.at(
                field, f"tag values are at most {MAX_TAG_VALUE} characters, no NUL"
            )
        values = grouped.setdefault(key, [])
        if value not in values:
            values.append(value)
    return list(grouped.items())


class TagService:
    """Reading tasks by their tags, and cancelling by filter."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def aggregate(
        self,
        flt: TaskFilter,
        group_by: Sequence[str],
        metrics: Sequence[tuple[str, str]],
        limit: int,
    ) -> AggregateResult:
        """Exact count and metrics per group of the matching tasks."""
        for name in group_by:
            if name.startswith("tag."):
                if not TAG_KEY_RE.fullmatch(name[4:]):
                    raise InvalidInput.at("group_by", f"{name!r}: not a valid tag key")
            elif name not in queries.GROUP_COLUMNS:
                raise InvalidInput.at("group_by", f"{name!r}: use tag.<key>, status, type or group")
        if len(set(group_by)) != len(group_by):
            raise InvalidInput.at("group_by", "each name at most once")
        for function, field in metrics:
            if field not in queries.METRIC_COLUMNS:
                known = ", ".join(queries.METRIC_COLUMNS)
                raise InvalidInput.at(function, f"{field!r} is not a numeric field ({known})")
        async with self.db.transaction(custom_plans=True) as conn:
            rows = await queries.aggregate(conn, flt, group_by, metrics, limit + 1)
        groups = []
        for row in rows[:limit]:
            group = AggregateGroup(key=dict(zip(group_by, row.key, strict=True)), count=row.count)
            for (function, field), value in row.metrics.items():
                getattr(group, function)[field] = value
            groups.append(group)
        return AggregateResult(groups=groups, truncated=len(rows) > limit)

    async def values(
        self, key: str, statuses: Sequence[str], prefix: str | None, limit: int
    ) -> TagValues:
        """Each value of ``key`` with its task count, count descending."""
        if not TAG_KEY_RE.fullmatch(key):
            raise InvalidInput.at("key", "tag keys are 1-64 characters of [A-Za-z0-9_.:/-]")
        async with self.db.transaction(custom_plans=True) as conn:
            rows = await queries.tag_values(conn, key, statuses, prefix, limit)
        return TagValues(values=[TagValue(value=v, count=n) for v, n in rows])

    async def keys(self, prefix: str | None, limit: int) -> TagKeys:
        """Distinct tag keys starting with ``prefix`` (compared literally)."""
        async with self.db.transaction() as conn:
            return TagKeys(keys=await queries.tag_keys(conn, prefix, limit))

    @retry_aborted
    async def cancel_matching(self, body: CancelFilter) -> CancelMatchingResult:
        """Cancel every live task matching the filter, in one transaction, with cascades."""
        pairs = [
            (key, value)
            for key, values in body.tags.items()
            for value in ([values] if isinstance(values, str) else values)
        ]
        flt = TaskFilter(
            statuses=body.status,
            types=body.type,
            groups=body.group,
            tags=check_tag_filter(pairs),
        )
        if flt.is_empty():
            raise InvalidInput.at("filter", "give at least one of tags, status, type, group")
        async with self.db.transaction(custom_plans=True) as conn:
            ids = await queries.live_ids(conn, flt)
            rows = await tree.cancel(conn, ids) if ids else {}
        cancelling = sum(1 for r in rows.values() if r["status"] == "cancelling")
        return CancelMatchingResult(cancelled=len(rows) - cancelling, cancelling=cancelling)
