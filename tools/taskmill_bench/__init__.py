"""``taskmill bench``: throughput of the hot paths, and the cost of keeping finished tasks.

Five modes, each in fresh scratch databases (dropped and re-created, then migrated):

* :func:`run_scenarios` measures submit, lease+complete and the whole cycle, unbatched
  and in batches, over HTTP against a real uvicorn process and directly through the
  domain services, and prints both figures with their ratio;
* :func:`run_terminal_rows` measures the claim path with many finished tasks kept in
  ``tasks`` against a model of moving them to a history table;
* :func:`run_tags` measures tag queries and tagged submits over many seeded tasks, and
  the JSONB + GIN tag layout against a model of a ``task_tags`` table;
* :func:`run_fence` measures what the lifecycle's database guards cost the claim path;
* :func:`run_compare` measures single submits and end-to-end cycles (unbatched and in
  batches) of taskmill over HTTP, in one or more uvicorn processes, against the raw SQL
  limit (pgbench scripts on a minimal queue table) and against PgQueuer, in interleaved
  repetitions, with the CPU per task and per request of the server and of PostgreSQL.

Nothing here is used by the service; the bench only drives it. It lives in
``tools/taskmill_bench``, outside the runtime package ``app``, and needs the ``bench``
extra (``pip install -e '.[bench]'``; the ``dev`` extra includes it) for aiohttp and
PgQueuer.
"""

from __future__ import annotations

from .compare import parse_replicas, run_compare
from .fence import run_fence
from .scenarios import run_scenarios
from .scratch import SCRATCH_PREFIX
from .tags import run_tags
from .terminal import run_terminal_rows

__all__ = [
    "SCRATCH_PREFIX",
    "parse_replicas",
    "run_compare",
    "run_fence",
    "run_scenarios",
    "run_tags",
    "run_terminal_rows",
]
