"""`taskmill bench` end to end: every mode runs, with tiny settings, against the test server.

Only that they finish and report every row is checked; speed is the bench's business.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from taskmill_bench.fence import VARIANTS
from taskmill_bench.scenarios import SCENARIOS
from taskmill_bench.tags import LAYOUT_ROWS, QUERIES, TAG_COUNTS


def _bench(pg_admin_url: str, *args: str) -> str:
    """Run the bench CLI in its own process (it runs its own event loops); return stdout."""
    scratch = f"taskmill_bench_{uuid.uuid4().hex[:12]}"
    # A wide console, so that rich does not wrap or shorten the row titles.
    env = dict(os.environ, DATABASE_URL=pg_admin_url, COLUMNS="200")
    command = [sys.executable, "-m", "app", "bench", "--seconds=0.5", "--concurrency=2"]
    result = subprocess.run(
        [*command, f"--scratch-db={scratch}", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_bench_reports_every_scenario_over_http_and_direct(pg_admin_url: str) -> None:
    out = _bench(pg_admin_url)
    assert "HTTP/direct" in out
    for scenario in SCENARIOS:
        assert scenario.title in out
    for title in ("plain submit (baseline)", "one hot key", "many keys", "running holders"):
        assert title in out


def test_bench_terminal_rows_reports_both_layouts(pg_admin_url: str) -> None:
    out = _bench(pg_admin_url, "--terminal-rows=2000")
    for layout in ("empty (reference)", "kept in tasks", "moved to history"):
        assert layout in out


def test_bench_fence_reports_every_variant(pg_admin_url: str) -> None:
    out = _bench(pg_admin_url, "--fence")
    for variant in VARIANTS:
        assert variant.title in out
    assert "vs shipped" in out


def test_bench_tags_reports_queries_submits_and_both_layouts(pg_admin_url: str) -> None:
    out = _bench(pg_admin_url, "--tags=2000")
    for query in QUERIES:
        assert query.title in out
    for count in TAG_COUNTS:
        assert f"{count} tags" in out
    for row in LAYOUT_ROWS:
        assert row in out
    assert "(a) JSONB + GIN" in out
    assert "(b) task_tags" in out
