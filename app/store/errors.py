"""Store-level exceptions: driver errors translated once, by constraint name."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError


class StoreError(Exception):
    """Base of everything the store raises on purpose."""


class DedupConflict(StoreError):
    """A live task already holds this (type, dedup_key)."""


class Unavailable(StoreError):
    """The database could not be reached or stopped answering."""


_CONSTRAINTS: dict[str, type[StoreError]] = {"uq_tasks_live_dedup": DedupConflict}


def translate(exc: DBAPIError) -> Exception:
    """Map a driver error to a store error where we know its meaning, else return it as is."""
    if isinstance(exc, IntegrityError):
        name = getattr(getattr(exc.orig, "__cause__", None), "constraint_name", None)
        if name in _CONSTRAINTS:
            return _CONSTRAINTS[name](name)
    if exc.connection_invalidated or isinstance(exc, InterfaceError | OperationalError):
        return Unavailable(str(exc.orig))
    return exc
