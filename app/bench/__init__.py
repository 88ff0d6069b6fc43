"""``taskmill bench``: throughput of the hot paths, and the cost of keeping finished tasks.

Two modes, each in a fresh scratch database (dropped and re-created, then migrated):

* :func:`run_scenarios` measures submit, lease+complete and the whole cycle, unbatched
  and in batches, over HTTP against a real uvicorn process and directly through the
  domain services, and prints both figures with their ratio;
* :func:`run_terminal_rows` measures the claim path with many finished tasks kept in
  ``tasks`` against a model of moving them to a history table.

Nothing here is used by the service; the bench only drives it.
"""

from __future__ import annotations

from .scenarios import run_scenarios
from .scratch import SCRATCH_PREFIX
from .terminal import run_terminal_rows

__all__ = ["SCRATCH_PREFIX", "run_scenarios", "run_terminal_rows"]
