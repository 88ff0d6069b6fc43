"""`taskmill bench` end to end: every mode runs, with tiny settings, against the test server.

Only that they finish and report every row is checked; speed is the bench's business.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from taskmill_bench.compare import ITEMS, Kind, contenders
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


def _table_rows(out: str) -> list[list[str]]:
    """The cells of every table row of ``out``, stripped (headers and rules left out)."""
    rows = [line for line in out.splitlines() if line.startswith("│")]
    return [[cell.strip() for cell in row.strip("│").split("│")] for row in rows]


def _git(*args: str) -> str:
    """Run git on this repository; return its output."""
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


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


def test_bench_compare_reports_every_contender_with_cpu(pg_admin_url: str) -> None:
    # Shorter windows than the other modes' (the later --seconds wins): there are twelve.
    out = _bench(pg_admin_url, "--compare", "--seconds=0.3", "--reps=1", "--replicas=1,2")
    for item in ITEMS:
        assert item.title in out
    rows = _table_rows(out)
    everyone = contenders((1, 2))
    assert len(rows) == len(everyone)
    for cells, contender in zip(rows, everyone, strict=True):
        assert cells[0] == contender.title
        # min, median, max tasks/s; then CPU ms per task and per request of the server
        # (none for pgbench) and of PostgreSQL, each followed by any verdict.
        figures = [cell.split()[0].replace(",", "") for cell in cells[1:4] + cells[6:10]]
        if contender.kind is Kind.RAW:
            assert figures[3:5] == ["-", "-"], cells
            del figures[3:5]
        assert all(float(figure) > 0 for figure in figures), cells
    assert "total run time" in out


def test_bench_compare_measures_a_baseline_checkout(pg_admin_url: str, tmp_path: Path) -> None:
    # A work tree of HEAD: the same migrations as the code under test, whatever its
    # uncommitted changes.
    base = tmp_path / "base"
    _git("worktree", "add", "--detach", str(base), "HEAD")
    try:
        out = _bench(
            pg_admin_url,
            "--compare",
            "--seconds=0.3",
            "--reps=1",
            "--replicas=1",
            f"--baseline={base}",
        )
    finally:
        _git("worktree", "remove", "--force", str(base))
    rev = _git("rev-parse", "--short", "HEAD")
    # The baseline's server imported the checkout's app, not the installed one.
    assert f"baseline: taskmill {rev}, app imported from {base.resolve() / 'app'}" in out
    headers = [line for line in out.splitlines() if line.startswith("┃")]
    assert len(headers) == len(ITEMS)
    assert all("÷ baseline" in header for header in headers)
    rows = _table_rows(out)
    everyone = contenders((1,), rev)
    # A baseline row in every work item's table.
    assert [c.item for c in everyone if c.kind is Kind.BASELINE] == list(ITEMS)
    assert len(rows) == len(everyone)
    for cells, contender in zip(rows, everyone, strict=True):
        assert cells[0] == contender.title
        # After the tasks/s: ÷ raw SQL, ÷ PgQueuer, ÷ baseline, then the CPU figures.
        figures = [cell.split()[0].replace(",", "") if cell else "" for cell in cells[1:]]
        if contender.kind is Kind.TASKMILL:
            assert float(figures[5]) > 0, cells
        else:
            assert figures[5] == "", cells
        if contender.kind is Kind.BASELINE:
            assert cells[0] == f"taskmill {rev} (baseline)"
            # Its rates, its ratios to raw SQL and PgQueuer, and the CPU of its own
            # process and of PostgreSQL.
            del figures[5]
            assert all(float(figure) > 0 for figure in figures), cells
