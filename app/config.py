"""Settings, read once from the environment (prefix ``TASKMILL_``) by pydantic-settings."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import platformdirs
from pydantic import AliasChoices, Field
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
    db_pool_size: int = 10
    db_max_overflow: int = 10

    # Limits (SPEC §2, §3, §9).
    max_payload_bytes: int = 1024 * 1024
    max_state_bytes: int = 256 * 1024
    max_body_bytes: int = 16 * 1024 * 1024
    max_batch_size: int = 1000
    max_json_depth: int = 64
    max_page_size: int = 1000
    default_page_size: int = 100

    # Leasing.
    default_lease_seconds: float = 30.0
    max_lease_seconds: float = 3600.0
    max_wait_seconds: float = 60.0
    # How often each replica sweeps expired leases, TTLs and due scheduled tasks.
    sweep_interval_seconds: float = 1.0
    # Long polls re-check the queue this often even without a NOTIFY (a lost
    # notification, e.g. while the listener reconnects, costs at most this much latency).
    poll_fallback_seconds: float = 2.0


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings."""
    return Settings()
