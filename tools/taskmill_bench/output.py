"""Output: result tables to stdout, progress to stderr (a redirected stdout holds just
the results), and the formatting of figures."""

from __future__ import annotations

import math

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .measure import Result

#: Caption note for figures marked by :func:`throughput` as cut short.
DRAINED_NOTE = " * The seeded queue ran dry early: rate over the time until then."


def results_console() -> Console:
    """The console the result tables go to (stdout)."""
    return Console()


def progress_bar() -> Progress:
    """A progress display on stderr, removed once it is done."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def throughput(result: Result) -> str:
    """Tasks per second, thousands separated; starred if the queue ran dry early."""
    return f"{result.rate:,.0f}" + (" *" if result.drained else "")


def millis(seconds: float) -> str:
    """A latency in milliseconds (``-`` when there were no samples)."""
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.2f}"
