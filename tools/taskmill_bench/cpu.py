"""CPU time of the processes under test, read from ``/proc`` (Linux only).

A process's CPU here is its own user + system time plus that of its descendants: the
live ones read from their own ``/proc/<pid>/stat``, the exited ones from the parent's
``cutime``/``cstime`` (which the kernel adds a child's times to when the parent reaps
it). PostgreSQL forks a backend per connection and reaps it on disconnect, so the whole
server's CPU is that of the postmaster's tree: a pgbench run's backends, which are gone
when it ends, are counted too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import asyncpg

_PROC = Path("/proc")
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
#: Without /proc (not Linux) the CPU figures are left out rather than guessed.
AVAILABLE = (_PROC / "self" / "stat").is_file()


@dataclass(frozen=True, slots=True)
class _Stat:
    ppid: int
    #: utime + stime of the process itself, in ticks.
    own: int
    #: cutime + cstime: what its reaped children used, in ticks.
    reaped: int


def _parse(text: str) -> _Stat:
    # The command name (field 2) is in parentheses and may hold spaces or parentheses
    # itself: fields are counted from the last ")".
    fields = text[text.rindex(")") + 2 :].split()
    # After the name: state, ppid, ... utime (field 14), stime, cutime, cstime.
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return _Stat(ppid=int(fields[1]), own=utime + stime, reaped=cutime + cstime)


def _snapshot() -> dict[int, _Stat]:
    """Every process's counters, read once (a process may exit while being read)."""
    stats = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = _parse((entry / "stat").read_text())
            except (FileNotFoundError, ProcessLookupError):
                continue
    return stats


def tree_seconds(roots: Iterable[int]) -> float:
    """CPU seconds used so far by the processes ``roots`` and all their descendants."""
    stats = _snapshot()
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        children.setdefault(stat.ppid, []).append(pid)
    ticks = 0
    pending = [pid for pid in roots if pid in stats]
    while pending:
        pid = pending.pop()
        ticks += stats[pid].own + stats[pid].reaped
        pending += children.get(pid, [])
    return ticks / _TICKS_PER_SECOND


def _command(pid: int) -> str | None:
    try:
        return (_PROC / str(pid) / "comm").read_text().strip()
    except FileNotFoundError:
        return None


async def postmaster_pid(conn: asyncpg.Connection) -> int | None:
    """The PostgreSQL server's main process, if it runs on this machine; else ``None``.

    It is the parent of this connection's backend. A server elsewhere (another host, a
    container's pid namespace) has backend pids that mean nothing here, or name some
    other process: both must be PostgreSQL processes for the answer to stand.
    """
    if not AVAILABLE:
        return None
    backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
    if _command(backend) != "postgres":
        return None
    parent = _parse((_PROC / str(backend) / "stat").read_text()).ppid
    return parent if _command(parent) == "postgres" else None


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds over one measured window; ``None`` where not measured."""

    #: The service's processes: the uvicorn servers, or the bench process itself for a
    #: queue library that runs in it.
    server: float | None
    #: Every PostgreSQL process.
    database: float | None


class CpuWindow:
    """Reads the CPU counters when a window opens and when it closes (a ``Window``).

    ``server_pids`` are the service's processes; with ``in_process`` the bench's own
    process is the service instead (a library measured in it). ``postmaster`` is
    PostgreSQL's main process, or ``None`` when it cannot be read.
    """

    def __init__(
        self, server_pids: Iterable[int], postmaster: int | None, *, in_process: bool = False
    ) -> None:
        self._servers = tuple(server_pids)
        self._postmaster = postmaster
        self._in_process = in_process
        self._opened: tuple[float | None, float | None] | None = None
        self._use: CpuUse | None = None

    def _read(self) -> tuple[float | None, float | None]:
        if self._in_process:
            server: float | None = time.process_time()
        else:
            server = tree_seconds(self._servers) if self._servers and AVAILABLE else None
        database = None if self._postmaster is None else tree_seconds([self._postmaster])
        return server, database

    def opened(self) -> None:
        """Take the opening counters."""
        self._opened = self._read()

    def closed(self) -> None:
        """Take the closing counters; :attr:`use` holds the difference."""
        if self._opened is None:
            raise RuntimeError("the window closed before it opened")
        (server, database), (server_end, database_end) = self._opened, self._read()
        self._use = CpuUse(
            server=_elapsed(server, server_end), database=_elapsed(database, database_end)
        )

    @property
    def use(self) -> CpuUse:
        """The CPU used between opening and closing."""
        if self._use is None:
            raise RuntimeError("the window has not closed")
        return self._use


def _elapsed(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else end - start


@dataclass(frozen=True)
class Sample:
    """One measurement of a contender: its rate, the work counted, and the CPU it took."""

    #: Tasks per second.
    rate: float
    tasks: int
    #: Requests: HTTP requests to taskmill, library calls to PgQueuer, statements of
    #: pgbench.
    requests: int
    cpu: CpuUse
    #: The seeded queue ran dry before the window closed (the rate is over the time
    #: until then).
    drained: bool = False
