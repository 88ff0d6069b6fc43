"""The raw SQL limit: pgbench on a minimal queue table, no service and no library.

The table is what a queue needs at the least (a status, a payload, who holds it) with a
partial index on pending ids, the claim a ``FOR UPDATE SKIP LOCKED`` pick. Each script
statement is its own transaction (autocommit), as each request of the service commits
its own: the same commits (and WAL flushes) per task, without anything around them.
pgbench runs ``-M prepared``, so the statements are planned once per connection.
"""

from __future__ import annotations

import asyncio
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from .cpu import CpuWindow, Sample

SCHEMA = """
CREATE TABLE jobs (
    id bigserial PRIMARY KEY,
    status text NOT NULL DEFAULT 'pending',
    payload jsonb,
    worker text,
    created_at timestamptz DEFAULT now()
);
CREATE INDEX jobs_pending ON jobs (id) WHERE status = 'pending';
"""

# A claim that finds nothing (every pending row locked by other clients' claims) must
# still answer one row for \gset, or pgbench aborts the client: the CTE answers 0 (no
# such id) and the completion then updates nothing. Tasks are counted in the table
# afterwards, so such a turn counts no task.
_CLAIM_ONE = (
    "WITH claimed AS (UPDATE jobs SET status = 'running', worker = 'pgbench' "
    "WHERE id = (SELECT id FROM jobs WHERE status = 'pending' ORDER BY id LIMIT 1 "
    "FOR UPDATE SKIP LOCKED) RETURNING id) "
    "SELECT coalesce(max(id), 0) AS claimed FROM claimed \\gset"
)
_CLAIM_100 = (
    "WITH claimed AS (UPDATE jobs SET status = 'running', worker = 'pgbench' "
    "WHERE id IN (SELECT id FROM jobs WHERE status = 'pending' ORDER BY id LIMIT 100 "
    "FOR UPDATE SKIP LOCKED) RETURNING id) "
    "SELECT coalesce(array_agg(id), '{}') AS claimed FROM claimed \\gset"
)


@dataclass(frozen=True)
class Script:
    """One pgbench transaction script and how to count the tasks it finished."""

    name: str
    text: str
    #: Statements (round trips, each its own transaction) per script run.
    statements: int
    #: Counts the tasks done, after a run into an emptied table.
    done_sql: str


INSERT_ONE = Script(
    "insert_one",
    "INSERT INTO jobs (payload) VALUES ('{\"n\": 1}');\n",
    statements=1,
    done_sql="SELECT count(*) FROM jobs",
)
CYCLE_ONE = Script(
    "cycle_one",
    "INSERT INTO jobs (payload) VALUES ('{\"n\": 1}');\n"
    f"{_CLAIM_ONE}\n"
    "UPDATE jobs SET status = 'completed' WHERE id = :claimed;\n",
    statements=3,
    done_sql="SELECT count(*) FROM jobs WHERE status = 'completed'",
)
CYCLE_100 = Script(
    "cycle_100",
    "INSERT INTO jobs (payload) SELECT '{\"n\": 1}' FROM generate_series(1, 100);\n"
    f"{_CLAIM_100}\n"
    "UPDATE jobs SET status = 'completed' WHERE id = ANY (:claimed::bigint[]);\n",
    statements=3,
    done_sql="SELECT count(*) FROM jobs WHERE status = 'completed'",
)


def pgbench_binary() -> str:
    """pgbench from the pgserver wheel (always installed with taskmill), else from PATH."""
    import pgserver  # only here: importing it sets up its platform directories

    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"
    if bundled.is_file():
        return str(bundled)
    found = shutil.which("pgbench")
    if found is None:
        raise FileNotFoundError("pgbench: neither in the pgserver wheel nor on PATH")
    return found


def run_seconds(seconds: float) -> int:
    """pgbench's ``-T``: whole seconds, at least one."""
    return max(1, math.ceil(seconds))


_TPS = re.compile(r"^tps = ([\d.]+) \(without initial connection time\)$", re.MULTILINE)
_TRANSACTIONS = re.compile(r"^number of transactions actually processed: (\d+)", re.MULTILINE)


def parse_report(report: str) -> tuple[float, int]:
    """pgbench's transactions per second (without connection set-up) and transactions."""
    tps, transactions = _TPS.search(report), _TRANSACTIONS.search(report)
    if tps is None or transactions is None:
        raise RuntimeError(f"unexpected pgbench report:\n{report}")
    return float(tps.group(1)), int(transactions.group(1))


class PgBench:
    """Runs the scripts against a scratch database holding :data:`SCHEMA`.

    ``conn`` is a connection to that database (to empty the table and count the done
    tasks), ``url`` its libpq URL for pgbench, ``script_dir`` where the scripts are
    written.
    """

    def __init__(self, conn: asyncpg.Connection, url: str, script_dir: Path) -> None:
        self._conn = conn
        self._url = url
        self._dir = script_dir
        self._binary = pgbench_binary()

    async def install(self) -> None:
        """Create the table."""
        await self._conn.execute(SCHEMA)

    async def run(
        self, script: Script, *, clients: int, seconds: float, window: CpuWindow
    ) -> Sample:
        """One pgbench run of ``script``; ``window`` spans the whole pgbench process.

        Tasks/s is pgbench's tps scaled by the tasks the table shows done per
        transaction (a claim of 100 can come back short when other clients hold rows).
        The CPU window includes the clients' connection set-up (a backend fork each,
        a few ms against the seconds measured), which pgbench's tps leaves out.
        """
        path = self._dir / f"{script.name}.sql"
        path.write_text(script.text)
        await self._conn.execute("TRUNCATE jobs RESTART IDENTITY")
        command = [
            self._binary,
            "--no-vacuum",
            "--protocol=prepared",
            f"--client={clients}",
            f"--jobs={min(2, clients)}",
            f"--time={run_seconds(seconds)}",
            f"--file={path}",
            self._url,
        ]
        window.opened()
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await process.communicate()
        window.closed()
        if process.returncode != 0:
            raise RuntimeError(
                f"pgbench exited with {process.returncode}:\n{err.decode(errors='replace')}"
            )
        tps, transactions = parse_report(out.decode())
        done = int(await self._conn.fetchval(script.done_sql))
        return Sample(
            rate=tps * done / transactions if transactions else 0.0,
            tasks=done,
            requests=transactions * script.statements,
            cpu=window.use,
        )
