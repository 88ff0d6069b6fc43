"""Everything that speaks of the lifecycle says what app/domain/lifecycle.py says.

The store's statements are written from the table at import; the plpgsql of the newest
versioned file must contain the table's SQL word for word (it was pasted from it), and the
database must run that file's functions; the wire models, the OpenAPI document and the
README must list the same statuses, phases and event names as the table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import get_args

import asyncpg
from sqlalchemy import TextClause

from app.domain import lifecycle as L
from app.domain.lifecycle import Event
from app.schemas.events import EventName
from app.schemas.tasks import Phase, Status
from app.store import events, groups, leases, sql, sweeper, tasks, tree
from app.store.db import Statement

ROOT = Path(__file__).parents[2]
NEWEST = sorted(p.name for p in (ROOT / "app" / "store" / "sql").glob("*.sql"))[-1]

#: What the newest plpgsql must contain, pasted from the table (the aliases it uses).
FRAGMENTS = {
    "cancel: status": L.status_sql(Event.CANCEL, reason="reason"),
    "cancel: phase": L.phase_sql(Event.CANCEL),
    "cancel: events": L.events_sql(Event.CANCEL, new="c"),
    "force: status": L.status_sql(Event.FORCE),
    "force: events": L.events_sql(Event.FORCE, new="c"),
    "unblock: status": L.status_sql(Event.UNBLOCK, t="b"),
    "unblock: blockers": L.NO_BLOCKERS.sql.format(t="b"),
    "unblock: events": L.events_sql(Event.UNBLOCK, new="r"),
    "child ended: status": L.status_sql(Event.CHILD_ENDED, t="w"),
    "child ended: phase": L.phase_sql(Event.CHILD_ENDED, t="w"),
    "child ended: events": L.events_sql(Event.CHILD_ENDED, new="q"),
    "terminal": L.TERMINAL_PREDICATE,
    "live": L.LIVE_PREDICATE,
}


def test_the_newest_plpgsql_is_the_tables_sql() -> None:
    text = sql.text(NEWEST)
    missing = [name for name, fragment in FRAGMENTS.items() if fragment not in text]
    assert not missing, (
        f"{NEWEST} no longer says what the table says about {missing}: write a new version"
        " of the file from lifecycle.status_sql/phase_sql/events_sql and a migration that"
        " loads it"
    )


def test_the_transition_check_allows_exactly_the_tables_transitions() -> None:
    body = sql.text(NEWEST).split("FUNCTION taskmill_transition_allowed", 1)[1]
    body = body.split("$$", 2)[1]
    allowed = set(re.findall(r"'([a-z]+)>([a-z]+)'", body))
    assert allowed == {(str(a), str(b)) for a, b in L.TRANSITIONS}


async def test_the_database_runs_the_newest_functions(db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT proname, prosrc FROM pg_proc WHERE proname LIKE 'taskmill\\_%'"
        )
    finally:
        await conn.close()
    running = {r["proname"]: r["prosrc"] for r in rows}
    text = sql.text(NEWEST)
    for name in (
        "taskmill_cancel",
        "taskmill_force",
        "taskmill_unblock",
        "taskmill_status_changed",
    ):
        assert running[name].strip() in text, name
    # Nothing of an older version is left behind.
    assert not {"taskmill_unblock_for", "taskmill_subtree_clear"} & set(running)


def _store_sql() -> str:
    out = []
    for module in (events, groups, leases, sweeper, tasks, tree):
        for value in vars(module).values():
            for v in value.values() if isinstance(value, dict) else [value]:
                if isinstance(v, Statement):  # the hot statements (app/store/db.py)
                    v = v.clause
                if isinstance(v, TextClause):
                    out.append(v.text)
                elif isinstance(v, str):
                    out.append(v)
    out.append(sql.text(NEWEST))
    # The event names groups.py writes are chosen in Python.
    out.append((ROOT / "app" / "store" / "groups.py").read_text())
    return "\n".join(out)


def test_the_store_sends_exactly_the_listed_events() -> None:
    sent = set(re.findall(r"'((?:task|lease|group)\.[a-z_]+)'", _store_sql()))
    sent |= set(re.findall(r'"((?:task|lease|group)\.[a-z_]+)"', _store_sql()))
    assert sent == set(L.EVENT_NAMES)


def test_the_wire_models_list_the_tables_names() -> None:
    assert get_args(Status) == tuple(str(s) for s in L.ALL)
    assert get_args(Phase) == tuple(str(p) for p in L.Phase)
    assert get_args(EventName) == L.EVENT_NAMES


def test_the_openapi_document_lists_every_event_name() -> None:
    doc = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    (param,) = [p for p in doc["paths"]["/events"]["get"]["parameters"] if p["name"] == "event"]
    schema = param["schema"]["anyOf"][0]["items"]
    assert tuple(schema["enum"]) == L.EVENT_NAMES


def test_the_readme_lists_every_event_and_draws_the_table() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in L.EVENT_NAMES if f"`{name}`" not in readme]
    assert not missing
    assert "```mermaid\n" + L.mermaid() + "```" in readme, (
        "the README's lifecycle diagram is not the table's: paste lifecycle.mermaid()"
    )
    assert L.markdown() in readme, "the README's table is not the lifecycle's: paste markdown()"
