"""Alembic, driven from code so `taskmill migrate` works from an installed package."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

import migrations

from .db import Database, async_url


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the packaged migrations and the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (blocking; call from a thread in async code)."""
    command.upgrade(alembic_config(url), revision)


@functools.lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest migration this process's code ships (read from disk once)."""
    return ScriptDirectory.from_config(alembic_config("postgresql://unused")).get_current_head()


async def is_current(conn: AsyncConnection) -> bool:
    """True when the database is at the newest migration this code knows."""
    head = head_revision()
    exists = await conn.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
    if not exists:
        return False
    current = await conn.scalar(text("SELECT version_num FROM alembic_version"))
    return bool(current == head)


async def readiness(db: Database) -> tuple[bool, bool]:
    """(database reachable, migrations current); never raises."""
    try:
        async with db.transaction() as conn:
            return True, await is_current(conn)
    except Exception:
        return False, False
