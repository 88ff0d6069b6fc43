"""Access rules the use cases enforce for a caller's role (the roles live in app/api/auth.py).

A worker token may submit a task only as a child of a task it holds a lease on: every item
must name a ``parent_id`` and the ``parent_lease_id`` it holds on it; that this lease is
the parent's current one and the parent is running is checked where the child is
inserted, under a lock on the parent, in the submit transaction (``TaskService._adopt``).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..schemas.tasks import TaskSubmit
from .errors import Forbidden


def require_children(items: Sequence[TaskSubmit], batch: bool) -> None:
    """Refuse (403) unless every item is a child naming the lease held on its parent."""
    fields = [
        f"tasks[{i}].{name}" if batch else name
        for i, item in enumerate(items)
        for name in ("parent_id", "parent_lease_id")
        if not getattr(item, name)
    ]
    if fields:
        raise Forbidden(
            "a worker token may only submit children of a running task: "
            f"{', '.join(fields)} must name the task it holds a lease on",
            errors=[
                {"field": f, "message": "required for a worker token", "type": "forbidden"}
                for f in fields
            ],
        )
