"""Use cases of groups: concurrency limits and pause."""

from __future__ import annotations

from ..schemas.groups import Group, GroupList, GroupUpdate
from ..store import groups as store
from ..store.db import Database
from .retry import retry_aborted


class GroupService:
    """``PUT /groups/{name}`` and ``GET /groups``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @retry_aborted
    async def update(self, name: str, body: GroupUpdate) -> Group:
        """Set the given fields (omitted ones keep their value); pause/resume its tasks."""
        async with self.db.transaction() as conn:
            current = await store.lock_group(conn, name)
            was_paused = bool(current and current["paused"])
            max_c = current["max_concurrency"] if current else None
            if "max_concurrency" in body.model_fields_set:
                max_c = body.max_concurrency
            paused = was_paused if body.paused is None else body.paused
            await store.upsert_group(conn, name, max_c, paused)
            if paused != was_paused:
                await store.set_tasks_paused(conn, name, paused)
            old_max = current["max_concurrency"] if current else None
            if old_max is not None and (max_c is None or max_c > old_max) and not paused:
                await store.notify_work(conn)  # a raised limit admits waiting work now
            (row,) = await store.list_groups(conn, name)
        return Group.model_validate(dict(row))

    async def list(self) -> GroupList:
        """Every configured group and every group with live tasks."""
        async with self.db.transaction() as conn:
            rows = await store.list_groups(conn)
        return GroupList(groups=[Group.model_validate(dict(r)) for r in rows])
