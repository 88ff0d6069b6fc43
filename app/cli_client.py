"""The CLI commands that talk to a running service over HTTP: ``worker``, ``submit``,
``tasks``. They use the worker SDK (``taskmill_sdk``) and nothing of the server."""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

DEFAULT_URL = "http://127.0.0.1:8000"

Url = Annotated[
    str,
    typer.Option("--url", envvar="TASKMILL_URL", help="The taskmill service.", show_default=True),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="TASKMILL_TOKEN",
        help="Bearer token, when the server has TASKMILL_TOKENS.",
        show_default=False,
    ),
]
Tags = Annotated[
    list[str] | None,
    typer.Option("--tag", "-t", help="Tag KEY=VALUE; repeatable.", metavar="KEY=VALUE"),
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"taskmill: {message}", err=True)
    return typer.Exit(code)


def _explain(exc: Exception) -> typer.Exit:
    from taskmill_sdk import ValidationError

    lines = [str(exc)]
    if isinstance(exc, ValidationError):
        lines += [f"  {e.field}: {e.message}" for e in exc.errors]
    return _fail("\n".join(lines))


def _tags(pairs: list[str] | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--tag")
        out.setdefault(key, []).append(value)
    return out


def _load(target: str) -> Any:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise typer.BadParameter("expected module:object, e.g. myapp.jobs:worker")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like uvicorn: modules of the current directory
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise _fail(f"cannot import {module_name!r}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise _fail(f"{module_name!r} has no attribute {attr!r}") from None
    return obj


def worker(
    target: Annotated[
        str,
        typer.Argument(
            help="The Worker to run, as module:object (a Worker, or a function returning one).",
            metavar="MODULE:OBJECT",
        ),
    ],
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            envvar="TASKMILL_URL",
            help="The taskmill service (default: the Worker's own setting).",
        ),
    ] = None,
    token: Token = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Handlers running at once (default: the Worker's).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Run an SDK worker until SIGTERM or Ctrl-C.

    On stop, tasks in flight get the Worker's shutdown_timeout to finish.

    The rest are released: given back, the attempt not counted. A second Ctrl-C releases at once.

    Example: taskmill worker myapp.jobs:worker --url http://queue:8000
    """
    from taskmill_sdk import Worker

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    obj = _load(target)
    if not isinstance(obj, Worker) and callable(obj):
        obj = obj()
    if not isinstance(obj, Worker):
        raise _fail(f"{target} is not a taskmill_sdk.Worker (got {type(obj).__name__})")
    if url:
        obj.url = url
    if token:
        obj.token = token
    if concurrency:
        obj.concurrency = concurrency
    types = ", ".join(obj.types) or "(none)"
    typer.echo(f"taskmill: worker {obj.worker_id} on {obj.url} for {types}", err=True)
    obj.run()
    typer.echo(f"taskmill: worker stopped ({dict(obj.stats)})", err=True)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    stream = sys.stdin if str(path) == "-" else path.open(encoding="utf-8")
    try:
        for number, line in enumerate(stream, 1):
            if line.strip():
                yield number, line
    finally:
        if stream is not sys.stdin:
            stream.close()


def _bulk(client: Any, path: Path, batch_size: int, quiet: bool) -> Counter[str]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    total = None if str(path) == "-" else sum(1 for _ in _lines(path))
    outcomes: Counter[str] = Counter()
    batch: list[dict[str, Any]] = []
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=quiet,
        transient=False,
    ) as progress:
        bar = progress.add_task("submitting", total=total)

        def flush() -> None:
            if batch:
                for result in client.submit_batch(batch):
                    outcomes[result.outcome] += 1
                progress.advance(bar, len(batch))
                batch.clear()

        for number, line in _lines(path):
            try:
                spec = json.loads(line)
            except ValueError as exc:
                raise _fail(f"{path}:{number}: not JSON ({exc})") from None
            if not isinstance(spec, dict) or "type" not in spec:
                raise _fail(f"{path}:{number}: each line must be a task object with a type")
            batch.append(spec)
            if len(batch) >= batch_size:
                flush()
        flush()
    return outcomes


def submit(
    task_type: Annotated[
        str | None,
        typer.Argument(metavar="TYPE", help="The task type (not with --file)."),
    ] = None,
    payload: Annotated[
        str | None, typer.Argument(metavar="PAYLOAD", help="The payload as JSON.")
    ] = None,
    tag: Tags = None,
    dedup_key: Annotated[str | None, typer.Option(help="Deduplication key (per type).")] = None,
    on_duplicate: Annotated[
        str | None, typer.Option(help="skip (default), supersede or reject.")
    ] = None,
    priority: Annotated[int | None, typer.Option(help="0-255, lower runs first.")] = None,
    group: Annotated[str | None, typer.Option(help="Concurrency group.")] = None,
    label: Annotated[str | None, typer.Option(help="Free text for display.")] = None,
    run_after: Annotated[str | None, typer.Option(help="Not before this RFC 3339 instant.")] = None,
    ttl: Annotated[float | None, typer.Option(help="Expire if not started within SECONDS.")] = None,
    max_attempts: Annotated[int | None, typer.Option(help="Attempts before failing.")] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="Submit every line of this JSON-lines file ('-': stdin), each a task "
            'object as POST /tasks takes ({"type": ..., "payload": ...}), in batches.',
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, max=1000, help="Tasks per request with --file.")
    ] = 500,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Submit one task, or many from a JSON-lines file with a progress bar.

    Examples:

      taskmill submit resize '{"image": "a.png"}' --tag team=media --dedup-key a.png

      taskmill submit --file tasks.jsonl
    """
    from taskmill_sdk import Client, TaskmillError

    if (file is None) == (task_type is None):
        raise typer.BadParameter("give either TYPE (one task) or --file (many)")
    with Client(url, token=token) as client:
        try:
            if file is not None:
                outcomes = _bulk(client, file, batch_size, quiet or as_json)
                summary = dict(sorted(outcomes.items()))
                if as_json:
                    typer.echo(json.dumps(summary))
                else:
                    done = ", ".join(f"{n} {o}" for o, n in summary.items()) or "nothing"
                    typer.echo(f"submitted: {done}")
                return
            assert task_type is not None
            try:
                body = json.loads(payload) if payload is not None else None
            except ValueError as exc:
                raise typer.BadParameter(f"not JSON: {exc}", param_hint="PAYLOAD") from None
            tags = {k: v[-1] for k, v in _tags(tag).items()}
            result = client.submit(
                task_type,
                body,
                tags=tags or None,
                dedup_key=dedup_key,
                on_duplicate=on_duplicate,
                priority=priority,
                group=group,
                label=label,
                run_after=run_after,
                ttl_seconds=ttl,
                retry={"max_attempts": max_attempts} if max_attempts else None,
            )
        except TaskmillError as exc:
            raise _explain(exc) from None
    task = result.task
    assert task is not None
    if as_json:
        typer.echo(json.dumps({"outcome": result.outcome, "task": task.raw}, indent=2))
    else:
        extra = f" (replaces {result.replaced_task_id})" if result.replaced_task_id else ""
        typer.echo(f"{result.outcome} {task.id} {task.status}{extra}")


def tasks(
    status: Annotated[
        list[str] | None, typer.Option("--status", "-s", help="Any of these; repeatable.")
    ] = None,
    task_type: Annotated[
        list[str] | None, typer.Option("--type", help="Any of these types; repeatable.")
    ] = None,
    group: Annotated[list[str] | None, typer.Option(help="Any of these groups.")] = None,
    tag: Tags = None,
    parent_id: Annotated[str | None, typer.Option(help="Children of this task.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 50,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON task per line instead of a table.")
    ] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """List tasks matching every filter, oldest first, as a table.

    Tags: every --tag key must match (AND); a key given twice matches either value (OR).

    Example: taskmill tasks --status pending --status running --tag profile=dr
    """
    from rich.console import Console
    from rich.table import Table
    from taskmill_sdk import Client, TaskmillError

    with Client(url, token=token) as client:
        try:
            found = list(
                client.query(
                    status=status,
                    type=task_type,
                    group=group,
                    tags=_tags(tag),
                    parent_id=parent_id,
                    limit=limit,
                    page_size=min(limit, 500),
                )
            )
        except TaskmillError as exc:
            raise _explain(exc) from None
    if as_json:
        for task in found:
            typer.echo(json.dumps(task.raw))
        return
    table = Table(title=f"{len(found)} task(s)", title_justify="left")
    for column in ("id", "type", "status", "pri", "attempt", "group", "tags", "created"):
        table.add_column(column, no_wrap=column in ("id", "created"))
    for task in found:
        created = task.created_at.strftime("%Y-%m-%d %H:%M:%S") if task.created_at else ""
        table.add_row(
            task.id,
            task.type,
            task.status,
            str(task.priority),
            str(task.attempt),
            task.group or "",
            " ".join(f"{k}={v}" for k, v in sorted(task.tags.items())),
            created,
        )
    Console(width=200 if not sys.stdout.isatty() else None).print(table)


def register(cli: typer.Typer) -> None:
    """Add the client commands to the ``taskmill`` command line."""
    cli.command("worker")(worker)
    cli.command("submit")(submit)
    cli.command("tasks")(tasks)
