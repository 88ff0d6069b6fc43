"""A model of the task lifecycle: small worlds of tasks that change by atomic steps.

Each step is one transaction of the service (a submit, a lease, a complete, a lease
expiry…). Its status change comes from the lifecycle table itself
(:func:`app.domain.lifecycle.step`), and the reactions that the database's triggers carry
out in the same transaction (cascade, counters, unblock) are modelled here as the
triggers do them (app/store/sql/0005_lifecycle.sql). ``tests/model/test_explorer.py``
explores every interleaving of these steps; ``tests/e2e/test_lifecycle_replay.py`` runs
the same steps against the real service and compares every task after every step, which
is what makes the model a model of the code and not of our intentions.

One dedup key, ``k``: every root task holds it, and its generation is the root's index.
Children are unkeyed and belong to their root's generation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from app.domain.lifecycle import (
    LEASABLE_HOLD,
    LIVE,
    TERMINAL,
    TRANSITIONS,
    UNSTARTED,
    Event,
    Facts,
    Phase,
    Reason,
    Status,
    TaskView,
    blocked_without_blockers,
    decide,
    is_blocker,
    violations,
)

S = Status
KEY = "k"


class Task(NamedTuple):
    """What the model knows of one task (a tuple: worlds are hashed by the million)."""

    status: Status
    parent: int | None = None
    gen: int = 0  # the index of its generation's root
    keyed: bool = False  # holds the dedup key itself (a root)
    phase: Phase = Phase.EXECUTE
    leased: bool = False
    attempt: int = 0
    started: bool = False
    reason: Reason | None = None
    superseded_by: int | None = None
    supersedes: int | None = None
    total: int = 0
    live: int = 0
    completed: int = 0
    failed: int = 0
    #: Saved a state map (``PATCH /leases/{id}/state``); replay worlds only.
    state: bool = False
    #: The task whose chain the lease's previous_state is read from.
    state_from: int | None = None


@dataclass(frozen=True, slots=True)
class Config:
    """How big a world is: what may still be submitted and spawned."""

    submits: int = 3
    spawns: int = 0
    max_attempts: int = 2
    #: Offer ``save_state`` steps (replay worlds; the explorer leaves state out).
    states: bool = False


@dataclass(frozen=True, slots=True)
class World:
    """Every task, and what is left of the budgets."""

    tasks: tuple[Task, ...] = ()
    submits: int = 0
    spawns: int = 0


@dataclass(frozen=True, slots=True)
class Step:
    """One atomic step: an action, on a task (by index) where it takes one."""

    action: str
    task: int | None = None

    def __str__(self) -> str:
        return self.action if self.task is None else f"{self.action}({self.task})"


#: Steps that act on one task, in the order they are tried.
TASK_ACTIONS = (
    "lease",
    "complete",
    "fail_retry",
    "fail",
    "release",
    "expire",
    "ack",
    "promote",
    "cancel",
    "force",
    "spawn",
    "save_state",
)
WORLD_ACTIONS = ("submit", "supersede")


class Broken(AssertionError):
    """A step made a change the table does not allow."""


@dataclass
class _Txn:
    """One step being applied: the tasks, changed in place, and what happened."""

    tasks: list[Task]
    config: Config
    changed: set[int] = field(default_factory=set)
    hookless: list[int] = field(default_factory=list)

    def facts(self, i: int, event: Event | None = None, **inputs: object) -> Facts:
        t = self.tasks[i]
        return Facts(
            status=t.status,
            phase=t.phase,
            leased=t.leased,
            attempt=t.attempt,
            max_attempts=self.config.max_attempts,
            children_live=t.live,
            children_total=t.total,
            children_failed=t.failed,
            cancel_reason=t.reason,
            # Only block and unblock look at blockers: computed for them alone.
            blockers=event in (Event.BLOCK, Event.UNBLOCK) and self.blocked(i),
            started=t.started,
            **inputs,  # type: ignore[arg-type]
        )

    def blocked(self, i: int) -> bool:
        views = [view(j, t) for j, t in enumerate(self.tasks)]
        return any(is_blocker(x, views[i]) for x in views)

    def children(self, i: int) -> list[int]:
        return [j for j, t in enumerate(self.tasks) if t.parent == i]

    def fire(self, event: Event, i: int, **inputs: object) -> bool:
        """Apply ``event`` to task ``i`` if a rule of the table fires; then the reactions."""
        facts = self.facts(i, event, **inputs)
        rule = decide(event, facts)
        if rule is None:
            return False
        old = self.tasks[i]
        status = rule.target.pick(facts)
        new = old._replace(status=status, phase=rule.phase or old.phase)
        if event == Event.CANCEL and status != old.status:
            new = new._replace(reason=inputs.get("reason", Reason.CANCELLED))  # type: ignore[arg-type]
        if event == Event.FORCE and new.reason is None:
            new = new._replace(reason=Reason.CANCELLED)
        self.set(i, new)
        return True

    def set(self, i: int, new: Task) -> None:
        """Replace task ``i`` (the BEFORE trigger's rules), then run the reactions."""
        old = self.tasks[i]
        if new.status != old.status and (old.status, new.status) not in TRANSITIONS:
            raise Broken(f"task {i}: {old.status} -> {new.status} is not in the table")
        if (
            new.status in (S.CANCELLED, S.SUPERSEDED)
            and (old.status == S.WAITING or old.phase != Phase.EXECUTE)
            and not old.leased
        ):
            # Its execute phase had succeeded (it may own resources its children filled):
            # only a lease of its own can have run its on_cancel (a force skips hooks).
            self.hookless.append(i)
        if new.status not in LEASABLE_HOLD:
            new = new._replace(leased=False)
        self.tasks[i] = new
        self.changed.add(i)
        if new.status != old.status:
            self.react(i, old, new)

    def cancel_children(self, i: int) -> None:
        for c in self.children(i):
            if self.tasks[c].status in LIVE:
                self.fire(Event.CANCEL, c, reason=Reason.CANCELLED)

    def react(self, i: int, old: Task, new: Task) -> None:
        """What taskmill_status_changed() does after a status change."""
        # cascade: a run that ended other than by completing takes its live children.
        if new.live > 0 and new.status not in (S.RUNNING, S.WAITING, S.COMPLETED):
            self.cancel_children(i)
        # count: an ended child updates its parent's counters; the parent may move on.
        if new.status in TERMINAL and new.parent is not None:
            p = new.parent
            parent = self.tasks[p]
            self.tasks[p] = parent._replace(
                live=parent.live - 1,
                completed=parent.completed + (new.status == S.COMPLETED),
                failed=parent.failed + (new.status == S.FAILED),
            )
            self.changed.add(p)
            if new.status == S.FAILED:  # every task is fail_fast in the model
                self.cancel_children(p)
            self.fire(Event.CHILD_ENDED, p)
        # unblock: a cancelling task that ended may free blocked tasks of its key.
        if old.status == S.CANCELLING and new.status in TERMINAL:
            for b, t in enumerate(self.tasks):
                if t.status == S.BLOCKED and not self.blocked(b):
                    self.fire(Event.UNBLOCK, b)

    def insert(self, task: Task) -> int:
        """A new task (the submit's INSERT, then its second statement: block)."""
        self.tasks.append(task)
        i = len(self.tasks) - 1
        self.changed.add(i)
        if task.parent is not None:
            p = self.tasks[task.parent]
            self.tasks[task.parent] = p._replace(total=p.total + 1, live=p.live + 1)
        if task.keyed:
            self.fire(Event.BLOCK, i)
        return i


def view(i: int, t: Task) -> TaskView:
    """The invariants' view of a model task."""
    return TaskView(
        id=str(i),
        status=t.status,
        phase=t.phase,
        leased=t.leased,
        fence=(KEY, str(t.gen)),
        own_key=KEY if t.keyed else None,
        parent=None if t.parent is None else str(t.parent),
        cancel_reason=t.reason,
        children_total=t.total,
        children_live=t.live,
        children_completed=t.completed,
        children_failed=t.failed,
    )


def holder(tasks: list[Task] | tuple[Task, ...]) -> int | None:
    """The live task holding the key."""
    for i, t in enumerate(tasks):
        if t.keyed and t.status in LIVE:
            return i
    return None


def start(config: Config) -> World:
    """The empty world."""
    return World((), config.submits, config.spawns)


def apply(world: World, step: Step, config: Config) -> World | None:
    """The world after ``step``, or None when the step does nothing here."""
    txn = _Txn(list(world.tasks), config)
    submits, spawns = world.submits, world.spawns
    i = step.task
    a = step.action
    if a in WORLD_ACTIONS:
        if submits == 0:
            return None
        h = holder(txn.tasks)
        n = len(txn.tasks)
        if a == "submit":
            if h is not None:
                return None  # a duplicate: nothing changes (skip or reject)
            txn.insert(Task(S.PENDING, gen=n, keyed=True))
        else:
            new = Task(S.PENDING, gen=n, keyed=True)
            if h is not None:
                old = txn.tasks[h]
                txn.fire(Event.CANCEL, h, reason=Reason.SUPERSEDED)
                txn.tasks[h] = txn.tasks[h]._replace(superseded_by=n)
                unstarted = old.status in UNSTARTED and old.phase == Phase.EXECUTE
                may_hold = old.state or old.leased or not unstarted
                new = new._replace(supersedes=h, state_from=h if may_hold else old.state_from)
            txn.insert(new)
        submits -= 1
    else:
        assert i is not None
        t = txn.tasks[i]
        if a == "lease":
            if not txn.fire(Event.LEASE, i):
                return None
            u = txn.tasks[i]
            txn.tasks[i] = u._replace(
                leased=True,
                started=True,
                attempt=u.attempt + (t.status == S.PENDING and t.phase == Phase.EXECUTE),
            )
        elif a in ("complete", "fail_retry", "fail", "release"):
            if t.status != S.RUNNING:
                return None
            if a == "complete":
                txn.fire(Event.COMPLETE, i)
            elif a == "fail_retry":
                txn.fire(Event.FAIL, i, retryable=True, run_after_future=True)
            elif a == "fail":
                txn.fire(Event.FAIL, i, retryable=False)
            else:
                u = t
                txn.tasks[i] = u._replace(
                    attempt=max(u.attempt - (u.phase == Phase.EXECUTE), 0),
                    started=u.attempt > 1 and u.started,
                )
                txn.fire(Event.RELEASE, i)
        elif a == "expire":
            if not t.leased or not txn.fire(Event.EXPIRE, i):
                return None
        elif a == "ack":
            if not txn.fire(Event.ACK, i):
                return None
        elif a == "promote":
            if not txn.fire(Event.PROMOTE, i):
                return None
        elif a == "cancel":
            if not txn.fire(Event.CANCEL, i, reason=Reason.CANCELLED):
                return None
        elif a == "force":
            if t.status in TERMINAL:
                return None
            _force(txn, i)
        elif a == "spawn":
            if spawns == 0 or t.status != S.RUNNING:
                return None
            txn.insert(Task(S.PENDING, parent=i, gen=t.gen))
            spawns -= 1
        elif a == "save_state":
            if not config.states or not t.leased or t.state:
                return None
            txn.tasks[i] = t._replace(state=True)
        else:  # pragma: no cover
            raise ValueError(a)
    if txn.hookless:
        raise Broken(f"hook: {txn.hookless} ended cancelled without running on_cancel")
    return World(tuple(txn.tasks), submits, spawns)


def _force(txn: _Txn, root: int) -> None:
    """taskmill_force(): the task and every descendant not over end at once, in one
    statement; then the triggers of each (whose cascades then find nothing live)."""
    subtree = [root]
    for j in subtree:
        subtree += txn.children(j)
    olds = {j: txn.tasks[j] for j in subtree if txn.tasks[j].status not in TERMINAL}
    for j, old in olds.items():
        facts = txn.facts(j)
        rule = decide(Event.FORCE, facts)
        assert rule is not None
        status = rule.target.pick(facts)
        txn.tasks[j] = old._replace(
            status=status, leased=False, reason=old.reason or Reason.CANCELLED
        )
        txn.changed.add(j)
    for j, old in olds.items():
        txn.react(j, old, txn.tasks[j])


def steps(world: World, config: Config) -> Iterator[tuple[Step, World]]:
    """Every step that changes ``world``, with the world it leads to."""
    for a in WORLD_ACTIONS:
        after = apply(world, Step(a), config)
        if after is not None:
            yield Step(a), after
    for i in range(len(world.tasks)):
        if world.tasks[i].status in TERMINAL:
            continue
        for a in TASK_ACTIONS:
            after = apply(world, Step(a, i), config)
            if after is not None:
                yield Step(a, i), after


def problems(world: World) -> list[str]:
    """Every invariant ``world`` breaks."""
    views = [view(i, t) for i, t in enumerate(world.tasks)]
    return violations(views) + blocked_without_blockers(views)


def previous_state(world: World, i: int) -> int | None:
    """The task whose saved state a lease of ``i`` must carry: the newest with a saved
    state up the chain of tasks it replaced (SPEC §4: state handoff)."""
    j = world.tasks[i].state_from
    while j is not None:
        if world.tasks[j].state:
            return j
        j = world.tasks[j].state_from
    return None
