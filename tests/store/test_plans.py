"""The hot statements' plans, as the service's sessions run them (generic plans).

app/store/db.py makes every statement but the filtered reads run a generic plan, planned
once per connection. A generic plan does not know the claim's ``n`` or the worker's
types, so it must still be the index scan of ``ix_tasks_claim`` over a long queue, never
a sequential scan and sort of every pending row.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.store.db import Database, Statement
from app.store.leases import _CLAIM_SQL, _COMPLETE_SQL

BACKLOG = 20_000


async def _generic_plan(db: Database, statement: Statement, params: dict[str, Any]) -> str:
    """The plan the service's session would run (EXPLAIN alone executes nothing)."""
    async with db.autocommit() as conn:
        assert await conn.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        explain = await conn.prepare("EXPLAIN (COSTS OFF) " + statement._sql)
        rows = await explain.fetch(*(params[n] for n in statement._names))
        return "\n".join(r[0] for r in rows)


@pytest.mark.parametrize("types", [False, True])
async def test_the_claim_keeps_its_index_scan_under_a_generic_plan(
    db_url: str, types: bool
) -> None:
    db = Database(db_url)
    try:
        async with db.autocommit() as conn:
            await conn.execute(
                """
                INSERT INTO tasks (id, type, status, payload, seq, run_after, priority,
                    max_attempts, backoff, backoff_base_seconds, backoff_max_seconds, tags)
                SELECT 'plan' || g, 't' || (g % 7), 'pending', '{}', nextval('task_seq'),
                    now(), g % 3, 3, 'exponential', 1, 60, '{}'
                FROM generate_series(1, $1) g
                """,
                BACKLOG,
            )
            await conn.execute("ANALYZE tasks")
        params: dict[str, Any] = {"worker": "w", "n": 10, "secs": 30.0, "types": ["t1", "t2"]}
        claim = await _generic_plan(db, _CLAIM_SQL[(types, False)], params)
        assert "Index Scan using ix_tasks_claim on tasks" in claim, claim
        assert "Seq Scan on tasks" not in claim, claim

        completion = {
            "ids": ["plan1"],
            "tokens": ["00000000-0000-4000-8000-000000000000"],
            "results": ["null"],
            "states": [None],
            "has_states": [False],
            **{k: [None] for k in ("act_read", "act_write", "act_rx", "act_tx")},
        }
        complete = await _generic_plan(db, _COMPLETE_SQL, completion)
        assert "Seq Scan on tasks" not in complete, complete
    finally:
        await db.dispose()
