"""BENCHMARK-ONLY MODEL of the design not taken: finished tasks moved to a history table.

Nothing in the service uses this. taskmill keeps terminal tasks in ``tasks`` and makes
every hot index partial on the live statuses; the usual alternative moves each task to
a history table when it finishes, so ``tasks`` only ever holds live work. To compare the
two under the same claim workload, ``taskmill bench --terminal-rows`` creates the table
below in its scratch database and completes leases with :data:`_MOVE_SQL`: the service's
completion statement (``app/store/leases.py``) with its UPDATE replaced by a DELETE …
RETURNING feeding an INSERT into the history table, in the same single statement (so
the same one round trip and one transaction as the real completion).
"""

from __future__ import annotations

from sqlalchemy import text

from app.domain.ids import parse_lease_id
from app.domain.service import Taskmill
from app.domain.views import task_view
from app.schemas.tasks import Task
from app.store.common import dumps, event_data
from app.store.tables import tasks

from .drivers import BenchError

HISTORY_TABLE = "tasks_history"

#: The history table: the task columns and a primary key (``GET /tasks/{id}`` would
#: still have to find finished tasks by id), nothing else.
CREATE_HISTORY_SQL = (
    f"CREATE TABLE {HISTORY_TABLE} (LIKE tasks INCLUDING DEFAULTS, PRIMARY KEY (id))"
)

# The columns the real completion sets (see _COMPLETE_SQL in app/store/leases.py),
# computed from the deleted row ``d``; every other column is copied unchanged.
_COMPLETED = {
    "status": "'completed'",
    "finished_at": "now()",
    "updated_at": "now()",
    "result": "CAST(d.new_result AS jsonb)",
    "state": "CASE WHEN d.new_has_state THEN CAST(d.new_state AS jsonb) ELSE d.state END",
    "act_read_bytes": "d.new_act_read",
    "act_write_bytes": "d.new_act_write",
    "act_net_rx_bytes": "d.new_act_rx",
    "act_net_tx_bytes": "d.new_act_tx",
}
_COLUMNS = [column.name for column in tasks.columns]

_MOVE_SQL = text(
    f"""
WITH src AS (
    SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:tokens AS uuid[]),
        CAST(:results AS text[]), CAST(:states AS text[]), CAST(:has_states AS boolean[]),
        CAST(:act_read AS bigint[]), CAST(:act_write AS bigint[]),
        CAST(:act_rx AS bigint[]), CAST(:act_tx AS bigint[]))
        AS s(id, token, result, state, has_state, act_read, act_write, act_rx, act_tx)
), del AS (
    DELETE FROM tasks t USING src s
    WHERE t.id = s.id AND t.lease_token = s.token AND t.status = 'running'
      AND t.lease_expires_at > now()
    RETURNING t.*, s.result AS new_result, s.state AS new_state,
        s.has_state AS new_has_state, s.act_read AS new_act_read,
        s.act_write AS new_act_write, s.act_rx AS new_act_rx, s.act_tx AS new_act_tx
), moved AS (
    INSERT INTO {HISTORY_TABLE} AS h ({", ".join(_COLUMNS)})
    SELECT {", ".join(_COMPLETED.get(c, f"d.{c}") for c in _COLUMNS)}
    FROM del d
    RETURNING h.*
), ev AS (
    INSERT INTO events (event, task_id, type, group_name, tags, data)
    SELECT 'task.completed', u.id, u.type, u.group_name, u.tags, {event_data("u")}
    FROM moved u
)
SELECT * FROM moved
"""
)


async def complete_moving(taskmill: Taskmill, lease_id: str) -> Task:
    """``LeaseService.complete`` with an empty body, completing by moving the row.

    Same steps as the service: parse the lease id, one transaction, one statement,
    the task record built from the returned row.
    """
    parsed = parse_lease_id(lease_id)
    if parsed is None:
        raise BenchError(f"not a lease id: {lease_id!r}")
    task_id, token = parsed
    params = {
        "ids": [task_id],
        "tokens": [token],
        "results": [dumps(None)],
        "states": [None],
        "has_states": [False],
        "act_read": [None],
        "act_write": [None],
        "act_rx": [None],
        "act_tx": [None],
    }
    async with taskmill.db.transaction() as conn:
        row = (await conn.execute(_MOVE_SQL, params)).mappings().first()
    if row is None:
        raise BenchError(f"lease {lease_id} was not held")
    return task_view(row)
