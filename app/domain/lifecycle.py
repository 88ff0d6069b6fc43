"""The task lifecycle, in one place: statuses, phases, the transition table, the invariants.

Everything that may happen to a task is a row of :data:`RULES`: an *event* (what happened:
a worker completed, a lease expired, a producer superseded the task…), the *source*
statuses it applies to, a *guard* that picks among rows of one event (first match wins),
the *target* status, the phase it sets, and the events the stream announces.

The table is the single source of three things:

* the SQL: every statement of ``app/store`` that changes a status builds its ``status =``
  and its event names from :func:`status_sql`, :func:`phase_sql` and :func:`events_sql`;
  the triggers of ``app/store/sql/`` (cascades, counters, unblocking) are checked against
  :data:`REACTIONS` and :data:`TRANSITIONS` by tests;
* the model: ``tests/model`` explores every interleaving of small worlds with the Python
  side of the same guards, and checks :data:`INVARIANTS` in every state it reaches;
* the README's diagram, which :func:`mermaid` renders (a test keeps them equal).

This module is pure (no I/O, no imports from the rest of the service), so the store may
use it to write its SQL without depending on the use cases.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Status(StrEnum):
    """Where a task is in its life (SPEC §2)."""

    PENDING = "pending"
    SCHEDULED = "scheduled"
    BLOCKED = "blocked"
    RUNNING = "running"
    WAITING = "waiting"
    PAUSED = "paused"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"
    EXPIRED = "expired"


class Phase(StrEnum):
    """Which hook a lease runs: the handler, its finalize, or its on_cancel."""

    EXECUTE = "execute"
    FINALIZE = "finalize"
    CANCEL = "cancel"


class Reason(StrEnum):
    """Why a task is being cancelled."""

    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"


S = Status

#: Statuses that hold the task's dedup key (SPEC §3): a new submit of the key is a duplicate.
LIVE = frozenset({S.PENDING, S.SCHEDULED, S.BLOCKED, S.RUNNING, S.WAITING, S.PAUSED})
#: A cancel in progress: the key is free, but the task (or a lease on it) is not over.
TRANSITIONAL = frozenset({S.CANCELLING})
TERMINAL = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED, S.SUPERSEDED, S.EXPIRED})
#: Statuses that may hold a lease (``lease_expires_at`` set): a worker may be running it.
LEASABLE_HOLD = frozenset({S.RUNNING, S.CANCELLING})
#: Never leased yet in this run: a cancel ends them at once, a TTL may expire them.
UNSTARTED = frozenset({S.PENDING, S.SCHEDULED, S.PAUSED, S.BLOCKED})
#: In the order of SPEC §2 (the order of every listing of statuses).
ALL = tuple(Status)


def sql_in(column: str, values: Iterable[str]) -> str:
    """``column IN ('a', 'b')`` with the values in a stable order."""
    given = list(dict.fromkeys(str(v) for v in values))
    if set(given) <= set(ALL):  # statuses: always in the order of SPEC §2
        given = [str(v) for v in ALL if v in given]
    return f"{column} IN ({', '.join(repr(v) for v in given)})"


# Predicates shared by index definitions and the queries that must match them (the
# planner uses a partial index only when the query implies its predicate word for word).
LIVE_PREDICATE = sql_in("status", LIVE)
TERMINAL_PREDICATE = sql_in("status", TERMINAL)
NOT_TERMINAL_PREDICATE = sql_in("status", LIVE | TRANSITIONAL)
UNSTARTED_PREDICATE = sql_in("status", UNSTARTED)
#: A lease is held: a worker may be running the task (the group limit counts these). The
#: status test is implied by the lease (a constraint), and lets queries use the indexes on
#: those statuses.
LEASED_PREDICATE = "status IN ('running', 'cancelling') AND lease_expires_at IS NOT NULL"
#: A cancelled task that waits for a lease to run its on_cancel hook (phase ``cancel``),
#: once its children are over.
CANCEL_CLAIMABLE_PREDICATE = (
    "status = 'cancelling' AND lease_expires_at IS NULL AND children_live = 0"
)


# ---------------------------------------------------------------------------------------
# What a guard may look at.


@dataclass(frozen=True, slots=True)
class Facts:
    """What the guards of the table read: a task's columns and the event's inputs.

    The store evaluates the same conditions in SQL over the row (``{t}`` below); the model
    builds a :class:`Facts` from its state.
    """

    status: Status | None  # None: the task does not exist yet (submit)
    phase: Phase = Phase.EXECUTE
    leased: bool = False
    attempt: int = 0
    max_attempts: int = 3
    children_live: int = 0
    children_total: int = 0
    children_failed: int = 0
    fail_fast: bool = True
    cancel_reason: Reason | None = None
    #: run_after lies in the future (after the change, where the event sets it).
    run_after_future: bool = False
    group_paused: bool = False
    #: cancelling tasks of another generation of its key, or of its own key (see BLOCKERS).
    blockers: bool = False
    started: bool = False
    ttl_due: bool = False
    # Inputs of the event.
    retryable: bool = True
    reason: Reason = Reason.CANCELLED


@dataclass(frozen=True, slots=True)
class Guard:
    """A condition in both languages: SQL over the row ``{t}`` and Python over Facts."""

    name: str
    sql: str
    holds: Callable[[Facts], bool]

    def __and__(self, other: Guard) -> Guard:
        return Guard(
            f"{self.name} and {other.name}",
            f"({self.sql}) AND ({other.sql})",
            lambda f: self.holds(f) and other.holds(f),
        )


def _g(name: str, sql: str, holds: Callable[[Facts], bool]) -> Guard:
    return Guard(name, sql, holds)


CHILDREN_LIVE = _g("children live", "{t}.children_live > 0", lambda f: f.children_live > 0)
NO_CHILDREN_LIVE = _g("no children live", "{t}.children_live = 0", lambda f: f.children_live == 0)
CHILD_FAILED = _g(
    "a child failed (fail_fast)",
    "{t}.fail_fast AND {t}.children_failed > 0",
    lambda f: f.fail_fast and f.children_failed > 0,
)
SPAWNED = _g(
    "spawned children (execute phase)",
    "{t}.phase = 'execute' AND {t}.children_total > 0",
    lambda f: f.phase == Phase.EXECUTE and f.children_total > 0,
)
EXECUTE = _g("execute phase", "{t}.phase = 'execute'", lambda f: f.phase == Phase.EXECUTE)
FINALIZE = _g("finalize phase", "{t}.phase = 'finalize'", lambda f: f.phase == Phase.FINALIZE)
CANCEL_PHASE = _g("cancel phase", "{t}.phase = 'cancel'", lambda f: f.phase == Phase.CANCEL)
LEASED = _g("leased", "{t}.lease_expires_at IS NOT NULL", lambda f: f.leased)
UNLEASED = _g("unleased", "{t}.lease_expires_at IS NULL", lambda f: not f.leased)
RETRY = _g(
    "retryable, attempts left",
    "CAST(:retryable AS boolean) AND {t}.attempt < {t}.max_attempts",
    lambda f: f.retryable and f.attempt < f.max_attempts,
)
ATTEMPTS_LEFT = _g(
    "attempts left", "{t}.attempt < {t}.max_attempts", lambda f: f.attempt < f.max_attempts
)
#: Does task ``{o}`` keep ``{t}`` blocked? A cancelling task of another generation of t's
#: key, or of t's own key (the Python side: :func:`is_blocker`).
BLOCKER_SQL = (
    "{o}.status = 'cancelling' AND {o}.id <> {t}.id"
    " AND (({o}.fence_key = {t}.fence_key AND {o}.fence_gen <> {t}.fence_gen)"
    " OR ({o}.type = {t}.type AND {o}.dedup_key = {t}.dedup_key))"
)
_HAS_BLOCKERS = "EXISTS (SELECT 1 FROM tasks o WHERE " + BLOCKER_SQL.replace("{o}", "o") + ")"
BLOCKERS = _g("cancelling predecessors", _HAS_BLOCKERS, lambda f: f.blockers)
NO_BLOCKERS = _g("no cancelling predecessors", f"NOT {_HAS_BLOCKERS}", lambda f: not f.blockers)
TTL_DUE = _g(
    "TTL passed, never started",
    "{t}.ttl_deadline <= now() AND {t}.started_at IS NULL",
    lambda f: f.ttl_due and not f.started,
)


# ---------------------------------------------------------------------------------------
# Targets: a status, or a status picked by the row.


@dataclass(frozen=True, slots=True)
class Target:
    """Where a rule leads: one status, or one of several picked when it fires."""

    name: str
    statuses: frozenset[Status]
    sql: str  # over {t} and the placeholders of status_sql
    pick: Callable[[Facts], Status]


def _to(status: Status) -> Target:
    return Target(str(status), frozenset({status}), repr(str(status)), lambda f: status)


#: Back in the queue: scheduled while run_after is ahead, paused with its group, else pending.
REQUEUE = Target(
    "requeue",
    frozenset({S.SCHEDULED, S.PAUSED, S.PENDING}),
    "CASE WHEN {run_after} > now() THEN 'scheduled'"
    " WHEN EXISTS (SELECT 1 FROM groups g WHERE g.name = {t}.group_name AND g.paused)"
    " THEN 'paused' ELSE 'pending' END",
    lambda f: S.SCHEDULED if f.run_after_future else S.PAUSED if f.group_paused else S.PENDING,
)
#: A revoked task ends as its cancel's reason says.
BY_REASON = Target(
    "by its reason",
    frozenset({S.CANCELLED, S.SUPERSEDED}),
    "CASE WHEN {t}.cancel_reason = 'superseded' THEN 'superseded' ELSE 'cancelled' END",
    lambda f: S.SUPERSEDED if f.cancel_reason == Reason.SUPERSEDED else S.CANCELLED,
)
#: Ended at once by the cancel's own reason (the event's input).
BY_INPUT = Target(
    "by the cancel's reason",
    frozenset({S.CANCELLED, S.SUPERSEDED}),
    "CASE WHEN {reason} = 'superseded' THEN 'superseded' ELSE 'cancelled' END",
    lambda f: S.SUPERSEDED if f.reason == Reason.SUPERSEDED else S.CANCELLED,
)
SAME = Target("unchanged", frozenset(), "{t}.status", lambda f: f.status or S.PENDING)


# ---------------------------------------------------------------------------------------
# The table.


class Event(StrEnum):
    """What can happen to a task. Each is one transaction of one use case."""

    SUBMIT = "submit"
    BLOCK = "block"
    UNBLOCK = "unblock"
    PROMOTE = "promote"
    PAUSE = "pause"
    RESUME = "resume"
    LEASE = "lease"
    HEARTBEAT = "heartbeat"
    COMPLETE = "complete"
    FAIL = "fail"
    RELEASE = "release"
    EXPIRE = "expire"
    ACK = "ack"
    CANCEL = "cancel"
    FORCE = "force"
    CHILD_ENDED = "child_ended"
    TTL = "ttl"


E = Event


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the table: on ``event``, from ``sources`` where ``guard`` holds, go to
    ``target`` (and set ``phase``), announcing ``emits`` per target status."""

    event: Event
    sources: frozenset[Status | None]
    target: Target
    guard: Guard | None = None
    phase: Phase | None = None
    emits: Mapping[Status, tuple[str, ...]] = field(default_factory=dict)
    note: str = ""

    def applies(self, f: Facts) -> bool:
        """True when this rule fires for ``f`` (its source matches and its guard holds)."""
        return f.status in self.sources and (self.guard is None or self.guard.holds(f))


def _src(*statuses: Status | None) -> frozenset[Status | None]:
    return frozenset(statuses)


def _emit(
    target: Target, name: str | Callable[[Status], tuple[str, ...]]
) -> dict[Status, tuple[str, ...]]:
    if isinstance(name, str):
        return {s: (name,) for s in target.statuses}
    return {s: name(s) for s in target.statuses}


_CANCEL_END: dict[Status, tuple[str, ...]] = {
    S.CANCELLED: ("task.cancelled",),
    S.SUPERSEDED: ("task.superseded",),
}
_QUEUED = (S.PENDING, S.SCHEDULED, S.PAUSED)

RULES: tuple[Rule, ...] = (
    # -- producers --------------------------------------------------------------------
    Rule(E.SUBMIT, _src(None), REQUEUE, emits=_emit(REQUEUE, "task.created")),
    Rule(
        E.BLOCK,
        _src(*_QUEUED),
        _to(S.BLOCKED),
        BLOCKERS,
        emits={S.BLOCKED: ("task.created",)},
        note="the submit's second statement, in its transaction: the key's older generation"
        " is still being cancelled",
    ),
    Rule(
        E.UNBLOCK,
        _src(S.BLOCKED),
        REQUEUE,
        NO_BLOCKERS,
        emits=_emit(REQUEUE, "task.unblocked"),
        note="the last cancelling task of an older generation ended",
    ),
    Rule(E.TTL, _src(*UNSTARTED), _to(S.EXPIRED), TTL_DUE, emits={S.EXPIRED: ("task.expired",)}),
    # -- time and groups ----------------------------------------------------------------
    Rule(
        E.PROMOTE,
        _src(S.SCHEDULED),
        REQUEUE,
        emits=_emit(REQUEUE, "task.due"),
        note="run_after came (the sweeper)",
    ),
    Rule(E.PAUSE, _src(S.PENDING), _to(S.PAUSED), note="announced once per group: group.paused"),
    Rule(E.RESUME, _src(S.PAUSED), _to(S.PENDING), note="announced once: group.resumed"),
    # -- workers ------------------------------------------------------------------------
    Rule(
        E.LEASE,
        _src(S.PENDING),
        _to(S.RUNNING),
        emits={S.RUNNING: ("task.leased",)},
        note="an execute lease counts an attempt, a finalize lease does not",
    ),
    Rule(
        E.LEASE,
        _src(S.CANCELLING),
        SAME,
        UNLEASED & CANCEL_PHASE & NO_CHILDREN_LIVE,
        emits={S.CANCELLING: ("task.leased",)},
        note="the on_cancel run of a task whose execute phase had ended",
    ),
    Rule(E.HEARTBEAT, _src(S.RUNNING), SAME),
    Rule(E.HEARTBEAT, _src(S.CANCELLING), SAME, LEASED, note="never extends past cancel_deadline"),
    Rule(
        E.COMPLETE,
        _src(S.RUNNING),
        _to(S.WAITING),
        CHILDREN_LIVE,
        emits={S.WAITING: ("task.waiting",)},
    ),
    Rule(
        E.COMPLETE, _src(S.RUNNING), _to(S.FAILED), CHILD_FAILED, emits={S.FAILED: ("task.failed",)}
    ),
    Rule(
        E.COMPLETE,
        _src(S.RUNNING),
        REQUEUE,
        SPAWNED,
        phase=Phase.FINALIZE,
        emits=_emit(REQUEUE, "task.finalizing"),
        note="its children all ended before it completed: finalize now",
    ),
    Rule(E.COMPLETE, _src(S.RUNNING), _to(S.COMPLETED), emits={S.COMPLETED: ("task.completed",)}),
    Rule(
        E.FAIL,
        _src(S.RUNNING),
        REQUEUE,
        RETRY,
        emits=_emit(REQUEUE, "task.retrying"),
        note="run_after = now + backoff",
    ),
    Rule(E.FAIL, _src(S.RUNNING), _to(S.FAILED), emits={S.FAILED: ("task.failed",)}),
    Rule(
        E.RELEASE,
        _src(S.RUNNING),
        REQUEUE,
        emits=_emit(REQUEUE, "task.released"),
        note="the attempt is given back",
    ),
    Rule(E.EXPIRE, _src(S.RUNNING), REQUEUE, ATTEMPTS_LEFT, emits=_emit(REQUEUE, "lease.expired")),
    Rule(
        E.EXPIRE, _src(S.RUNNING), _to(S.FAILED), emits={S.FAILED: ("lease.expired", "task.failed")}
    ),
    Rule(
        E.EXPIRE,
        _src(S.CANCELLING),
        BY_REASON,
        LEASED,
        emits={s: ("lease.expired", *names) for s, names in _CANCEL_END.items()},
        note="also when cancel_deadline passed",
    ),
    Rule(
        E.ACK,
        _src(S.CANCELLING),
        BY_REASON,
        LEASED,
        emits=_CANCEL_END,
        note="the worker ran on_cancel",
    ),
    # -- cancel and supersede (reason: the event's input) ---------------------------------
    Rule(
        E.CANCEL,
        _src(*UNSTARTED),
        BY_INPUT,
        EXECUTE,
        emits=_CANCEL_END,
        note="never ran in this phase: ends at once",
    ),
    Rule(
        E.CANCEL,
        _src(*_QUEUED),
        _to(S.CANCELLING),
        FINALIZE,
        phase=Phase.CANCEL,
        emits={S.CANCELLING: ("task.cancelling",)},
        note="its execute phase ended: its on_cancel runs in a cancel-phase lease",
    ),
    Rule(
        E.CANCEL,
        _src(S.RUNNING),
        _to(S.CANCELLING),
        emits={S.CANCELLING: ("task.cancelling",)},
        note="the lease is revoked; it lives at most cancel_grace_seconds more",
    ),
    Rule(
        E.CANCEL,
        _src(S.WAITING),
        _to(S.CANCELLING),
        phase=Phase.CANCEL,
        emits={S.CANCELLING: ("task.cancelling",)},
        note="children cascade; its on_cancel runs once they ended",
    ),
    Rule(
        E.FORCE,
        _src(*LIVE),
        _to(S.CANCELLED),
        emits={S.CANCELLED: ("task.cancelled",)},
        note="an operator's force cancel: the task and its whole subtree end at once",
    ),
    Rule(E.FORCE, _src(S.CANCELLING), BY_REASON, emits=_CANCEL_END),
    # -- reactions of a parent to a child's end (trigger) --------------------------------
    Rule(
        E.CHILD_ENDED,
        _src(S.WAITING),
        _to(S.FAILED),
        CHILD_FAILED,
        emits={S.FAILED: ("task.failed",)},
    ),
    Rule(
        E.CHILD_ENDED,
        _src(S.WAITING),
        REQUEUE,
        NO_CHILDREN_LIVE,
        phase=Phase.FINALIZE,
        emits=_emit(REQUEUE, "task.finalizing"),
    ),
)

#: Every event name the stream can send (SPEC §8), in the order of the SPEC. The rules'
#: names, and those of changes that are not a task's status: a submit answered by the live
#: holder, a heartbeat's progress, a group paused or resumed (its tasks with it).
EVENT_NAMES = (
    "task.created",
    "task.deduplicated",
    "task.superseded",
    "task.cancelling",
    "task.leased",
    "task.progress",
    "task.completed",
    "task.failed",
    "task.retrying",
    "task.cancelled",
    "task.expired",
    "task.waiting",
    "task.unblocked",
    "task.finalizing",
    "task.released",
    "task.due",
    "lease.expired",
    "group.paused",
    "group.resumed",
)


def rules(event: Event) -> tuple[Rule, ...]:
    """The rows of one event, in the order they are tried."""
    return tuple(r for r in RULES if r.event == event)


def decide(event: Event, f: Facts) -> Rule | None:
    """The rule that fires for ``f`` (first match), or None: the event does not apply."""
    for rule in rules(event):
        if rule.applies(f):
            return rule
    return None


def step(event: Event, f: Facts) -> tuple[Status, Phase, tuple[str, ...]] | None:
    """Status, phase and announced events after ``event`` on ``f`` (None: not allowed)."""
    rule = decide(event, f)
    if rule is None:
        return None
    status = rule.target.pick(f)
    phase = rule.phase or f.phase
    return status, phase, rule.emits.get(status, ())


def sources(event: Event) -> frozenset[Status]:
    """Every status the event applies to (the WHERE clause of its statement)."""
    return frozenset(s for r in rules(event) for s in r.sources if s is not None)


# ---------------------------------------------------------------------------------------
# SQL written from the table.


def _fill(sql: str, *, t: str, run_after: str | None, reason: str) -> str:
    return sql.format(t=t, run_after=run_after or f"{t}.run_after", reason=reason)


def _case(
    event: Event, t: str, column: str, value: Callable[[Rule], str], fill: Callable[[str], str]
) -> str:
    arms = []
    for rule in rules(event):
        conds = [sql_in(f"{t}.status", [s for s in rule.sources if s is not None])]
        if rule.guard is not None:
            conds.append(fill(rule.guard.sql))
        arms.append(f"WHEN {' AND '.join(f'({c})' for c in conds)} THEN {fill(value(rule))}")
    return "CASE " + " ".join(arms) + f" ELSE {t}.{column} END"


def status_sql(
    event: Event,
    *,
    t: str = "t",
    run_after: str | None = None,
    reason: str = "CAST(:reason AS text)",
) -> str:
    """``CASE`` giving the new status of row ``t`` on ``event`` (first matching row).

    ``run_after`` is the row's run_after after the change (when the statement sets it);
    ``reason`` the cancel's reason (an input of the event).
    """
    fill = functools.partial(_fill, t=t, run_after=run_after, reason=reason)
    return _case(event, t, "status", lambda r: r.target.sql, fill)


def phase_sql(event: Event, *, t: str = "t") -> str:
    """``CASE`` giving the new phase of row ``t`` on ``event``."""
    if all(r.phase is None for r in rules(event)):
        return f"{t}.phase"
    fill = functools.partial(_fill, t=t, run_after=None, reason="NULL")
    return _case(event, t, "phase", lambda r: f"'{r.phase}'" if r.phase else "{t}.phase", fill)


def events_sql(event: Event, *, new: str = "u") -> str:
    """``text[]`` of the events announced for row ``new`` (its status after the change).

    Within one event, a status reached is announced the same way whichever row led to it
    (:func:`check_table` makes sure), so the names follow from the new status alone.
    """
    names: dict[Status, tuple[str, ...]] = {}
    for rule in rules(event):
        for status, emitted in rule.emits.items():
            names.setdefault(status, emitted)
    arms = " ".join(
        f"WHEN '{s}' THEN ARRAY[{', '.join(repr(n) for n in emitted)}]"
        for s, emitted in sorted(names.items())
    )
    return f"CASE {new}.status {arms} ELSE CAST(ARRAY[] AS text[]) END"


# ---------------------------------------------------------------------------------------
# Reactions: what the database's triggers do whenever any statement changes a status.


@dataclass(frozen=True, slots=True)
class Reaction:
    """A consequence of a status change that the triggers carry out in the same
    transaction, so that no statement can forget it."""

    name: str
    when: str
    does: str


REACTIONS: tuple[Reaction, ...] = (
    Reaction(
        "cascade",
        "a task with live children enters a status other than running, waiting, completed",
        f"{E.CANCEL} (reason cancelled) on each live child; at every depth",
    ),
    Reaction(
        "count",
        "a child enters a terminal status",
        "its parent's children counters change; then "
        f"{E.CHILD_ENDED} on the parent (and, for a fail_fast parent whose child failed, "
        f"{E.CANCEL} on the child's live siblings first)",
    ),
    Reaction(
        "unblock",
        "a cancelling task ends",
        f"{E.UNBLOCK} on the blocked tasks of its generation's key and of its own key",
    ),
)

#: The status changes any statement or trigger may make: what the database accepts.
TRANSITIONS: frozenset[tuple[Status, Status]] = frozenset(
    (src, dst)
    for r in RULES
    for src in r.sources
    if src is not None
    for dst in (r.target.statuses or {src})
    if dst != src
)


def check_table() -> None:
    """Refuse a table the SQL cannot be written from (run at import, and by a test)."""
    for event in Event:
        seen: dict[Status, tuple[str, ...]] = {}
        for rule in rules(event):
            for status, emitted in rule.emits.items():
                if seen.setdefault(status, emitted) != emitted:
                    raise ValueError(f"{event}: {status} announced two ways")
    for src, _ in TRANSITIONS:
        if src in TERMINAL:
            raise ValueError(f"a rule leaves the terminal status {src}")
    for rule in RULES:
        for names in rule.emits.values():
            if not set(names) <= set(EVENT_NAMES):
                raise ValueError(f"{rule.event}: {names} not all in EVENT_NAMES")


check_table()


# ---------------------------------------------------------------------------------------
# The README's diagram.


def mermaid() -> str:
    """The table as a Mermaid state diagram (the README embeds it; a test compares)."""
    edges: dict[tuple[str, str], list[str]] = {}
    for rule in RULES:
        for src in _ordered(rule.sources):
            for dst in sorted(rule.target.statuses or {src}, key=ALL.index):
                if dst == src and rule.event != E.LEASE:
                    continue  # heartbeats and the like change no status
                label = str(rule.event) + (f" (phase {rule.phase})" if rule.phase else "")
                labels = edges.setdefault(("[*]" if src is None else str(src), str(dst)), [])
                if label not in labels:
                    labels.append(label)
    lines = ["stateDiagram-v2"]
    lines += [f"    {a} --> {b}: {', '.join(labels)}" for (a, b), labels in edges.items()]
    lines += [f"    {status} --> [*]" for status in ALL if status in TERMINAL]
    return "\n".join(lines) + "\n"


def markdown() -> str:
    """The table as a Markdown table, one row per rule (the README embeds it)."""
    lines = [
        "| event | from | when | to | announces |",
        "|---|---|---|---|---|",
    ]
    for rule in RULES:
        src = ", ".join("(new)" if s is None else f"`{s}`" for s in _ordered(rule.sources))
        when = "; ".join(x for x in (rule.guard.name if rule.guard else "", rule.note) if x)
        to = rule.target.name if len(rule.target.statuses) != 1 else f"`{rule.target.name}`"
        if rule.phase is not None:
            to += f", phase `{rule.phase}`"
        names = sorted({n for emitted in rule.emits.values() for n in emitted})
        announced = ", ".join(f"`{n}`" for n in names)
        lines.append(f"| {rule.event} | {src} | {when} | {to} | {announced} |")
    return "\n".join(lines) + "\n"


def _ordered(sources: frozenset[Status | None]) -> list[Status | None]:
    return sorted(sources, key=lambda s: -1 if s is None else ALL.index(s))


# ---------------------------------------------------------------------------------------
# Invariants, over a set of tasks (the model's world, or a snapshot of the table).


@dataclass(frozen=True, slots=True)
class TaskView:
    """What the invariants need to know of one task."""

    id: str
    status: Status
    phase: Phase
    leased: bool
    fence: tuple[str, str] | None  # (key of its generation, generation), None when unkeyed
    own_key: str | None
    parent: str | None
    cancel_reason: Reason | None
    children_total: int
    children_live: int
    children_completed: int
    children_failed: int


def _active(v: TaskView) -> bool:
    return v.status in LIVE and v.status != S.BLOCKED


def violations(tasks: Iterable[TaskView]) -> list[str]:
    """Every invariant the tasks break (empty when none): see :data:`INVARIANTS`."""
    views = list(tasks)
    by_id = {v.id: v for v in views}
    out: list[str] = []
    fences: dict[str, list[TaskView]] = {}
    for v in views:
        if v.fence is not None:
            fences.setdefault(v.fence[0], []).append(v)
    for key, members in fences.items():
        leased = {v.fence[1] for v in members if v.leased and v.fence}
        if len(leased) > 1:
            out.append(f"fence: generations {sorted(leased)} of {key!r} hold leases at once")
        active = {v.fence[1] for v in members if _active(v) and v.fence}
        for gen in active:
            stale = [
                v.id
                for v in members
                if v.fence
                and v.fence[1] != gen
                and v.status not in TERMINAL
                and v.status != S.BLOCKED
            ]
            if stale:
                out.append(
                    f"replacement: generation {gen} of {key!r} is active while "
                    f"{stale} of another generation are not over"
                )
    holders: dict[str, list[str]] = {}
    for v in views:
        if v.own_key is not None and v.status in LIVE:
            holders.setdefault(v.own_key, []).append(v.id)
    out += [f"dedup: {ids} all hold {k!r}" for k, ids in holders.items() if len(ids) > 1]
    for v in views:
        kids = [c for c in views if c.parent == v.id]
        counted = (
            len(kids),
            sum(c.status not in TERMINAL for c in kids),
            sum(c.status == S.COMPLETED for c in kids),
            sum(c.status == S.FAILED for c in kids),
        )
        have = (v.children_total, v.children_live, v.children_completed, v.children_failed)
        if counted != have:
            out.append(f"counters: {v.id} says {have}, its children are {counted}")
        if v.status == S.WAITING and v.children_live == 0:
            out.append(f"stuck: {v.id} waits with no live children")
        if v.status == S.RUNNING and not v.leased:
            out.append(f"lease: {v.id} runs without a lease")
        if v.leased and v.status not in LEASABLE_HOLD:
            out.append(f"lease: {v.id} is {v.status} but holds a lease")
        if v.status == S.CANCELLING and v.cancel_reason is None:
            out.append(f"cancel: {v.id} is cancelling without a reason")
        if v.status == S.CANCELLING and not v.leased and v.phase != Phase.CANCEL:
            out.append(f"cancel: {v.id} is cancelling, unleased, outside the cancel phase")
        if v.parent is not None and v.parent in by_id and v.status in LIVE:
            p = by_id[v.parent]
            if p.status in TERMINAL:
                out.append(f"orphan: {v.id} is {v.status} under {p.status} {p.id}")
    return out


def blocked_without_blockers(tasks: Iterable[TaskView]) -> list[str]:
    """Blocked tasks that nothing blocks any more: they would wait for ever."""
    views = list(tasks)
    out = []
    for b in views:
        if b.status != S.BLOCKED:
            continue
        if not any(is_blocker(x, b) for x in views):
            out.append(f"stuck: {b.id} is blocked on nothing")
    return out


def is_blocker(x: TaskView, b: TaskView) -> bool:
    """Does ``x`` keep ``b`` blocked? A cancelling task of another generation of b's key,
    or a cancelling task of b's own key (SQL: ``app/store/tree.py`` BLOCKERS)."""
    if x.status != S.CANCELLING or x.id == b.id:
        return False
    other_generation = (
        x.fence is not None
        and b.fence is not None
        and x.fence[0] == b.fence[0]
        and x.fence[1] != b.fence[1]
    )
    return other_generation or (x.own_key is not None and x.own_key == b.own_key)


#: The invariants, by the name :func:`violations` prefixes its findings with.
INVARIANTS = {
    "fence": "at most one generation of a key holds leases at any moment",
    "replacement": "a generation is active (not blocked, not over) only once every task of "
    "the key's other generations is over: descendants included",
    "dedup": "at most one live task holds a dedup key",
    "counters": "a parent's children counters equal its children",
    "stuck": "nothing waits for ever: a waiting task has live children, a blocked one has "
    "cancelling predecessors",
    "lease": "a running task holds a lease; only running and cancelling tasks do",
    "cancel": "a cancelling task has a reason; unleased, it awaits its cancel-phase lease",
    "orphan": "a live task's parent is not over",
    "terminal": "a terminal task never changes again",
    "hook": "a task whose execute phase succeeded (waiting, or queued for finalize) and is "
    "then cancelled runs its on_cancel in a lease of its own, unless an operator forces it",
}
