"""Prometheus metrics of one replica (``GET /metrics``).

Counters count what *this process* did (Prometheus sums replicas); they are fed by
wrapping the use cases' entry points once, at start-up (:func:`instrument`), so the use
cases themselves carry no metrics code. Queue depth is read from the database at scrape
time. No label takes a tag, a task id, a type or a group: every label has a fixed,
small set of values.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..store import snapshot as snapshot_store
from ..store.db import Database
from .errors import DuplicateRejected
from .lifecycle import ALL, TERMINAL

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds from a task being due (submitted, or its run_after) to its lease.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class Metrics:
    """The registry of one app instance (two apps in one process do not mix counts)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.registry = CollectorRegistry()
        r = self.registry
        self.submits = Counter(
            "taskmill_submits",
            "Task submissions by outcome",
            ["outcome"],
            registry=r,
        )
        self.leases = Counter("taskmill_leases", "Leases granted, by phase", ["phase"], registry=r)
        self.completions = Counter(
            "taskmill_completions", "Tasks completed (or waiting on children)", registry=r
        )
        self.failures = Counter("taskmill_failures", "Tasks failed for good", registry=r)
        self.retries = Counter(
            "taskmill_retries", "Failed attempts that will be retried", registry=r
        )
        self.supersedes = Counter(
            "taskmill_supersedes",
            "Tasks replaced by a newer one (on_duplicate=supersede)",
            registry=r,
        )
        self.expirations = Counter(
            "taskmill_expirations",
            "Leases that ran out and tasks whose TTL ran out, by kind",
            ["kind"],
            registry=r,
        )
        self.lease_latency = Histogram(
            "taskmill_lease_latency_seconds",
            "Seconds from a task being due (submitted, run_after or retry time) to its lease",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.depth = Gauge(
            "taskmill_queue_depth",
            "Tasks per non-terminal status (read from the database at scrape time)",
            ["status"],
            registry=r,
        )
        # Every label value exists from the start, so rates work from the first scrape.
        for outcome in ("created", "deduplicated", "superseded", "rejected"):
            self.submits.labels(outcome)
        for phase in ("execute", "finalize"):
            self.leases.labels(phase)
        for kind in ("lease", "ttl"):
            self.expirations.labels(kind)

    # -- observations ----------------------------------------------------------------

    def outcomes(self, outcomes: Sequence[str]) -> None:
        """Count submissions; a superseding one also counts a supersede."""
        for outcome in outcomes:
            self.submits.labels(outcome).inc()
            if outcome == "superseded":
                self.supersedes.inc()

    def ended(self, statuses: Sequence[str]) -> None:
        """Count the statuses reports left tasks in."""
        for status in statuses:
            if status in ("completed", "waiting"):
                self.completions.inc()
            elif status == "failed":
                self.failures.inc()
            elif status in ("scheduled", "pending", "paused"):
                self.retries.inc()

    def granted(self, rows: Sequence[Any]) -> None:
        """Leases just granted (store rows): count them, observe their latency."""
        for row in rows:
            self.leases.labels(row["phase"]).inc()
            if row["phase"] != "execute" or row["lease_expires_at"] is None:
                continue
            granted_at = row["lease_expires_at"] - timedelta(seconds=row["lease_seconds"])
            due = max(row["run_after"], row["created_at"])
            self.lease_latency.observe(max((granted_at - due).total_seconds(), 0.0))

    def swept(self, counts: dict[str, int]) -> None:
        """Count the expirations of one sweeper pass."""
        self.expirations.labels("lease").inc(counts.get("expired_leases", 0))
        self.expirations.labels("ttl").inc(counts.get("expired_ttl", 0))

    async def render(self) -> bytes:
        """The text exposition, with the queue-depth gauges read now."""
        async with self.db.transaction() as conn:
            depth = await snapshot_store.depth(conn)
        for status in (s for s in ALL if s not in TERMINAL):
            self.depth.labels(status).set(depth.get(status, 0))
        return generate_latest(self.registry)


def _wrap(obj: Any, name: str, after: Callable[[Any, tuple[Any, ...]], None]) -> None:
    method = getattr(obj, name, None)
    if method is None:
        return

    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = await method(*args, **kwargs)
        after(result, args)
        return result

    setattr(obj, name, wrapper)


def instrument(metrics: Metrics, *, tasks: Any, leases: Any, sweeper: Any) -> None:
    """Count what the use cases do, by wrapping their entry points on these instances."""
    submit = tasks.submit

    @functools.wraps(submit)
    async def counted_submit(*args: Any, **kwargs: Any) -> Any:
        try:
            result = await submit(*args, **kwargs)
        except DuplicateRejected:
            metrics.outcomes(["rejected"])
            raise
        metrics.outcomes([result.outcome])
        return result

    tasks.submit = counted_submit
    _wrap(tasks, "submit_batch", lambda r, _: metrics.outcomes([i.outcome for i in r.results]))
    _wrap(leases, "complete", lambda r, _: metrics.ended([r.status]))
    _wrap(
        leases,
        "complete_batch",
        lambda r, _: metrics.ended([i.status for i in r.results if i.ok and i.status]),
    )
    _wrap(leases, "fail", lambda r, _: metrics.ended([r.status]))
    _wrap(sweeper, "sweep_once", lambda r, _: metrics.swept(r))
    leases.on_grant = metrics.granted
