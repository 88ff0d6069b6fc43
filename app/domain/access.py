"""Access rules the use cases enforce for a caller's role (the roles live in app/api/auth.py).

A worker token may submit a task only as a child of a running task: every item must name
a ``parent_id``; that the parent exists and is running (leased) is checked where the child
is inserted, under a lock on the parent, in the submit transaction (``TaskService._adopt``).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..schemas.tasks import TaskSubmit
from .errors import Forbidden


def require_children(items: Sequence[TaskSubmit], batch: bool) -> None:
    """Refuse (403) unless every item is a child (``parent_id`` set)."""
    missing = [i for i, item in enumerate(items) if not item.parent_id]
    if missing:
        fields = [f"tasks[{i}].parent_id" if batch else "parent_id" for i in missing]
        raise Forbidden(
            "a worker token may only submit children of a running task: "
            f"{', '.join(fields)} must name the task it holds a lease on",
            errors=[
                {"field": f, "message": "required for a worker token", "type": "forbidden"}
                for f in fields
            ],
        )
