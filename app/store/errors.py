"""Store-level exceptions: driver errors translated once, by constraint name."""

from __future__ import annotations

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError


class StoreError(Exception):
    """Base of everything the store raises on purpose."""


class DedupConflict(StoreError):
    """A live task already holds this (type, dedup_key)."""


class Invariant(StoreError):
    """The database refused a change that would break the lifecycle's invariants (a fence,
    a transition the table does not have, a lease where none may be). Always a bug in
    the service: it is logged with PostgreSQL's message and answered 500."""


class Unavailable(StoreError):
    """The database could not be reached or stopped answering."""


class Retryable(Unavailable):
    """PostgreSQL aborted the transaction (deadlock, serialization): run it again.

    A subclass of Unavailable: if retries run out, the client is told to retry (503).
    """


_CONSTRAINTS: dict[str, type[StoreError]] = {"uq_tasks_live_dedup": DedupConflict}


# deadlock_detected, serialization_failure: the transaction did nothing and may be re-run.
_RETRYABLE_STATES = {"40P01", "40001"}

# The server is going away or not there yet: admin_shutdown, crash_shutdown,
# cannot_connect_now ("the database system is shutting down / starting up"),
# too_many_connections; and class 08, connection exceptions. The client may retry (503).
_UNAVAILABLE_STATES = {"57P01", "57P02", "57P03", "53300"}


def _by_state(cause: object, message: str) -> Exception | None:
    """The store error for asyncpg's exception ``cause``, by SQLSTATE and constraint name."""
    state = str(getattr(cause, "sqlstate", None) or "")
    if state in _RETRYABLE_STATES:
        return Retryable(message)
    if state.startswith("23"):  # integrity_constraint_violation
        name = getattr(cause, "constraint_name", None)
        if name in _CONSTRAINTS:
            return _CONSTRAINTS[name](name)
        if name is not None and name.startswith(("ex_tasks_", "ck_tasks_", "uq_tasks_leased")):
            return Invariant(f"{name}: {cause}")
    if state in _UNAVAILABLE_STATES or state.startswith("08"):
        return Unavailable(message)
    return None


def translate(exc: DBAPIError) -> Exception:
    """Map an error of SQLAlchemy's layer to a store error where we know its meaning,
    else return it as is."""
    cause = getattr(exc.orig, "__cause__", None)
    if isinstance(cause, asyncpg.InterfaceError | asyncpg.InternalClientError):
        return Unavailable(str(exc.orig))
    known = _by_state(cause, str(exc.orig))
    if known is not None:
        return known
    if exc.connection_invalidated or isinstance(exc, InterfaceError | OperationalError):
        return Unavailable(str(exc.orig))
    return exc


#: What asyncpg raises itself. InternalClientError: the connection's protocol is out of
#: step, e.g. an idle connection got PostgreSQL's "terminating connection" (a fast
#: shutdown) just before its socket closed; the next statement on it is refused before
#: anything is sent.
DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)


def translate_driver(
    exc: asyncpg.PostgresError | asyncpg.InterfaceError | asyncpg.InternalClientError,
) -> Exception:
    """The same mapping for an error raised by asyncpg itself (``Database.autocommit``)."""
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError):
        return Unavailable(str(exc))  # the connection is closed or broken
    known = _by_state(exc, str(exc))
    return exc if known is None else known
