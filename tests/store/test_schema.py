"""The migrations create exactly the schema defined in app/store/tables.py."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from app.store.db import Database
from app.store.migrate import readiness
from app.store.tables import metadata


async def test_migrations_match_the_table_definitions(db_url: str) -> None:
    db = Database(db_url)

    def diff(sync_conn: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(sync_conn), metadata))

    try:
        async with db.transaction() as conn:
            assert await conn.run_sync(diff) == []
        assert await readiness(db) == (True, True)
    finally:
        await db.dispose()
