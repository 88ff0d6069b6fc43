"""Alembic, driven from code so `taskmill migrate` works from an installed package."""

from __future__ import annotations

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


async def is_current(conn: AsyncConnection, url: str) -> bool:
    """True when the database is at the newest migration."""
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    exists = await conn.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
    if not exists:
        return False
    current = await conn.scalar(text("SELECT version_num FROM alembic_version"))
    return bool(current == head)


async def readiness(db: Database) -> tuple[bool, bool]:
    """(database reachable, migrations current); never raises."""
    try:
        async with db.transaction() as conn:
            return True, await is_current(conn, db.url)
    except Exception:
        return False, False
