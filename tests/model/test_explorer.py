"""An exhaustive model check of the lifecycle table.

Every interleaving of the atomic steps of small worlds (one dedup key; two or three
generations; a parent with up to two children; submit, supersede, cancel, force cancel,
lease, complete, fail with and without retry, release, lease expiry, acknowledge, spawn,
finalize, the due retry), with the invariants of app/domain/lifecycle.py checked in every
state reached, and from every state a way to end every task (nothing waits for ever).

The mutation tests at the end break the design on purpose, the way the defects of the
issue broke it, and show that the explorer notices.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from app.domain import lifecycle
from app.domain.lifecycle import BY_INPUT, Event, Phase, Status, TaskView
from tests.model import world as model
from tests.model.explore import explore
from tests.model.world import Config

WORLDS = {
    # three generations of one key, no children: supersede chains, plain submits after a
    # cancel, retries, releases and expiries of each holder
    "3 generations": Config(submits=3, spawns=0),
    # three generations, the first spawns a child
    "3 generations, 1 child": Config(submits=3, spawns=1),
    # two generations, a parent with two children (waiting, finalize, fail_fast, cascades)
    "2 generations, 2 children": Config(submits=2, spawns=2),
}

#: The sizes explored, printed by the test and quoted in the README.
SIZES = {
    "3 generations": 1975,
    "3 generations, 1 child": 84594,
    "2 generations, 2 children": 163633,
}


def _situations(seen: set[str]) -> Callable[[model.World], None]:
    """Notes the situations the issue's defects were found in, as the explorer visits."""

    def visit(w: model.World) -> None:
        ts = w.tasks
        for i, t in enumerate(ts):
            kids = [c for c in ts if c.parent == i]
            if t.status == Status.WAITING and any(c.leased for c in kids):
                seen.add("waiting parent with a leased child")
            if t.status == Status.SCHEDULED and any(c.status == Status.CANCELLING for c in kids):
                seen.add("retried parent with a cancelling child")
            if t.status == Status.CANCELLING and t.phase == Phase.CANCEL and t.leased:
                seen.add("cancel-phase lease")
            if t.status == Status.BLOCKED and any(
                c.status == Status.CANCELLING and c.parent is not None for c in ts
            ):
                seen.add("replacement blocked by an old child")

    return visit


@pytest.mark.parametrize("name", WORLDS)
def test_every_interleaving_keeps_the_invariants(name: str) -> None:
    seen: set[str] = set()
    report = explore(WORLDS[name], visit=_situations(seen))
    print(f"{name}: {report.states} states, {report.transitions} transitions")
    assert report.violations == []
    # The worlds are what they claim: a changed table or model changes their size, and
    # the figure in the README must follow.
    assert report.states == SIZES[name]
    assert report.terminal_states > 0
    if name == "2 generations, 2 children":
        # It holds the situations the defects were found in.
        assert seen == {
            "waiting parent with a leased child",
            "retried parent with a cancelling child",
            "cancel-phase lease",
            "replacement blocked by an old child",
        }


# ---------------------------------------------------------------------------------------
# The explorer can fail: break the design the way the defects did.

SMALL = Config(submits=2, spawns=1)


def test_it_finds_a_replacement_leased_beside_an_old_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 2: a replacement that waits only for the holder, not its descendants."""

    def holder_only(x: TaskView, b: TaskView) -> bool:
        return x.status == Status.CANCELLING and x.own_key is not None and x.id != b.id

    monkeypatch.setattr(model, "is_blocker", holder_only)
    report = explore(SMALL)
    assert any(v.startswith(("fence", "replacement")) for v in report.violations)


def test_it_finds_a_waiting_parent_cancelled_without_its_hook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Defect 4: a waiting parent that ends at once when cancelled."""
    rules = tuple(
        dataclasses.replace(r, target=BY_INPUT, phase=None)
        if r.event == Event.CANCEL and Status.WAITING in r.sources
        else r
        for r in lifecycle.RULES
    )
    monkeypatch.setattr(lifecycle, "RULES", rules)
    report = explore(SMALL)
    assert any(v.startswith("hook") for v in report.violations)


def test_it_finds_a_replacement_that_nothing_releases(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lost wake-up: a blocked replacement that nothing ever releases."""
    rules = tuple(r for r in lifecycle.RULES if r.event != Event.UNBLOCK)
    monkeypatch.setattr(lifecycle, "RULES", rules)
    report = explore(WORLDS["3 generations"])
    assert any(v.startswith("stuck") for v in report.violations)
