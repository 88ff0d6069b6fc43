"""Health answers."""

from __future__ import annotations

from typing import Literal

from .common import Out


class Liveness(Out):
    """``/healthz``: the process is up."""

    status: Literal["ok"]


class Readiness(Out):
    """``/readyz``: ``ok`` (200) only when the database answers and is migrated; else 503."""

    status: Literal["ok", "unavailable"]
    database: Literal["ok", "unreachable"]
    migrations: Literal["current", "pending", "unknown"]
