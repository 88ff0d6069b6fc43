"""Settings, read once from the environment (prefix ``TASKMILL_``) by pydantic-settings."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import platformdirs
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """Where the embedded PostgreSQL keeps its files when ``--data-dir`` is not given."""
    return Path(platformdirs.user_data_dir("taskmill")) / "pgdata"


class Settings(BaseSettings):
    """Every knob of the service. Environment variables win over defaults."""

    model_config = SettingsConfigDict(env_prefix="TASKMILL_", extra="ignore")

    # DATABASE_URL is the conventional name, so it is accepted without the prefix too.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "TASKMILL_DATABASE_URL")
    )
    data_dir: Path = Field(default_factory=default_data_dir)
    # A fixed pool: connections beyond pool_size ("overflow") are closed as soon as they
    # are returned, so under a steady load above pool_size the pool would open and close
    # backends all the time (at 64 client connections a 10 + 10 pool opened 130 backends
    # in 9 s). Requests beyond the pool wait for a connection instead.
    db_pool_size: int = 20
    db_max_overflow: int = 0

    # Limits (SPEC §2, §3, §9).
    max_payload_bytes: int = 1024 * 1024
    max_state_bytes: int = 256 * 1024
    max_body_bytes: int = 16 * 1024 * 1024
    max_batch_size: int = 1000

    # Auth (SPEC §9): "role=token,role=token" (roles: admin, producer, worker, reader),
    # and/or a file of such entries (commas or lines, `#` comments). None configured:
    # auth is off and only loopback clients are served; `serve` refuses other addresses.
    tokens: SecretStr = SecretStr("")
    tokens_file: Path | None = None

    # Graceful shutdown: after SIGTERM, requests in flight get this long to finish (long
    # polls answer at once) before they are cancelled and their transactions rolled back.
    shutdown_grace_seconds: int = 30

    # Leasing.
    default_lease_seconds: float = 30.0
    max_lease_seconds: float = 3600.0
    max_wait_seconds: float = 60.0
    # A revoked lease (cancel or supersede of a running task) and the lease that runs a
    # cancelled task's on_cancel live at most this long: heartbeats cannot extend them
    # past it, and then the cancel completes without the worker (SPEC §4).
    cancel_grace_seconds: float = Field(default=60.0, gt=0, le=86400)
    # How often each replica sweeps expired leases, TTLs and due scheduled tasks.
    sweep_interval_seconds: float = 1.0
    # Long polls re-check the queue this often even without a NOTIFY (a lost
    # notification, e.g. while the listener reconnects, costs at most this much latency).
    poll_fallback_seconds: float = 2.0

    # Events (GET /events): how often a replica with connected clients probes for newly
    # committed events (the latency of the stream), the keep-alive comment period, rows
    # per query, the id range one query may scan, and how long one send to a client may
    # block before that client is dropped.
    events_poll_seconds: float = 0.2
    events_keepalive_seconds: float = 15.0
    events_batch_size: int = 500
    events_scan_window: int = 10_000
    events_send_timeout_seconds: float = 30.0

    # GET /snapshot: live counts are exact on every call; counts of terminal tasks are
    # reused for up to this long (each refresh scans the terminal tasks once).
    snapshot_terminal_max_age_seconds: float = 10.0

    # Retention: terminal tasks finished longer ago than this (and their events) are
    # deleted, and events older than events_retention_seconds; in batches of
    # retention_batch_size rows, one short transaction each, every
    # retention_interval_seconds on each replica. 0 keeps them forever.
    task_retention_seconds: float = 7 * 86400
    events_retention_seconds: float = 7 * 86400
    retention_interval_seconds: float = 60.0
    retention_batch_size: int = 500


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings."""
    return Settings()
