"""Breadth-first exploration of every interleaving of a small world's steps."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from app.domain.lifecycle import TERMINAL

from .world import Broken, Config, Step, World, apply, problems, start, steps


@dataclass
class Report:
    """What an exploration found: its size, and every broken invariant with a path to it."""

    states: int = 0
    transitions: int = 0
    terminal_states: int = 0
    violations: list[str] = field(default_factory=list)


def _path(parents: dict[int, tuple[int, Step] | None], node: int) -> list[str]:
    out: list[str] = []
    while (back := parents[node]) is not None:
        node, step = back
        out.append(str(step))
    return out[::-1]


def explore(
    config: Config, *, limit: int = 2_000_000, visit: Callable[[World], None] | None = None
) -> Report:
    """Visit every world reachable from the empty one; check the invariants in each, and
    that from each a world where every task is over can still be reached (nothing is
    stuck for ever, whatever happened before)."""
    report = Report()
    ids: dict[World, int] = {}
    worlds: list[World] = []
    parents: dict[int, tuple[int, Step] | None] = {}
    back_edges: list[list[int]] = []
    first = start(config)
    ids[first] = 0
    worlds.append(first)
    parents[0] = None
    back_edges.append([])
    queue = deque([0])
    while queue:
        node = queue.popleft()
        world = worlds[node]
        if visit is not None:
            visit(world)
        for found in problems(world):
            report.violations.append(f"{found} after {_path(parents, node)}")
        try:
            successors = list(steps(world, config))
        except Broken as exc:
            report.violations.append(f"{exc} from {_path(parents, node)}")
            continue
        for step, after in successors:
            report.transitions += 1
            nxt = ids.get(after)
            if nxt is None:
                nxt = len(worlds)
                if nxt >= limit:
                    raise RuntimeError(f"more than {limit} states: make the world smaller")
                ids[after] = nxt
                worlds.append(after)
                parents[nxt] = (node, step)
                back_edges.append([])
                queue.append(nxt)
            back_edges[nxt].append(node)
        if len(report.violations) > 20:
            break
    report.states = len(worlds)
    # Liveness: walk back from the worlds where every task is over.
    done = [i for i, w in enumerate(worlds) if all(t.status in TERMINAL for t in w.tasks)]
    report.terminal_states = len(done)
    can_finish = set(done)
    todo = list(done)
    while todo:
        for prev in back_edges[todo.pop()]:
            if prev not in can_finish:
                can_finish.add(prev)
                todo.append(prev)
    stuck = [i for i in range(len(worlds)) if i not in can_finish]
    for i in stuck[:5]:
        report.violations.append(f"stuck: nothing can end every task after {_path(parents, i)}")
    return report


def replay(config: Config, path: list[Step]) -> World:
    """The world after the given steps (they must all apply)."""
    world = start(config)
    for step in path:
        after = apply(world, step, config)
        if after is None:
            raise ValueError(f"{step} does not apply")
        world = after
    return world
