"""The ``taskmill`` command line."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from .cli_client import register as register_client_commands
from .config import get_settings

cli = typer.Typer(
    help="taskmill: an HTTP task queue on PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
)


def describe_url(url: str) -> str:
    """A database URL fit to print: its password masked, also one given as the ``password``
    parameter (libpq reads it there too)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:  # its message quotes the whole URL, password and all
        return "DATABASE_URL (not a URL)"
    return parsed.difference_update_query(["password"]).render_as_string(hide_password=True)


@contextmanager
def database(data_dir: Path | None) -> Iterator[str]:
    """DATABASE_URL if set; otherwise a private PostgreSQL in ``data_dir``, stopped on exit."""
    settings = get_settings()
    if settings.database_url:
        typer.echo(f"taskmill: data in {describe_url(settings.database_url)}", err=True)
        yield settings.database_url
        return
    from .store.embedded import EmbeddedPostgres

    embedded = EmbeddedPostgres(data_dir or settings.data_dir)
    if embedded.is_initialised():
        typer.echo(f"taskmill: data in {embedded.data_dir} (embedded PostgreSQL)", err=True)
    else:
        typer.echo(
            f"taskmill: data in {embedded.data_dir} (embedded PostgreSQL, creating it now)",
            err=True,
        )
    url = embedded.start()
    try:
        yield url
    finally:
        embedded.stop()
        typer.echo("taskmill: embedded PostgreSQL stopped", err=True)


DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Embedded PostgreSQL data directory (without DATABASE_URL)."),
]


def check_bind(host: str) -> None:
    """Exit (status 2) on bad token settings, or on a non-loopback address without tokens."""
    from .api.auth import is_loopback_host, load_tokens

    try:
        tokens = load_tokens(get_settings())
    except ValueError as exc:
        typer.echo(f"taskmill: {exc}", err=True)
        raise typer.Exit(2) from None
    if not tokens and not is_loopback_host(host):
        typer.echo(
            f"taskmill: refusing to serve on {host}: auth is off (no TASKMILL_TOKENS or "
            "TASKMILL_TOKENS_FILE), so only loopback addresses (127.0.0.1, ::1) may be "
            "bound. Configure tokens, e.g. TASKMILL_TOKENS='admin=<secret>,worker=<secret>', "
            "or bind 127.0.0.1.",
            err=True,
        )
        raise typer.Exit(2)


#: Loggers that report routine steps at INFO: pgserver every initdb and pg_ctl run with its
#: whole output (some 80 lines on a first start), alembic its migration context and each
#: revision it applies. That is detail for ``--log-level debug``; their warnings and errors
#: are shown as they are.
_CHATTY_LOGGERS = ("pgserver", "alembic.runtime.migration")


def _info_as_debug(record: logging.LogRecord) -> bool:
    if record.levelno == logging.INFO:
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
    # The logger passed the record at INFO, and the handlers do not check levels again.
    return logging.getLogger(record.name).isEnabledFor(record.levelno)


def configure_logging(level: str) -> None:
    """Log to stderr at ``level``, with the chatty libraries' INFO records as DEBUG."""
    logging.basicConfig(level=level.upper(), format="%(levelname)s %(name)s: %(message)s")
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).addFilter(_info_as_debug)  # once: addFilter skips a repeat


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (uvicorn).")] = 1,
    data_dir: DataDir = None,
    migrate: Annotated[bool, typer.Option(help="Apply migrations before serving.")] = True,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Run the HTTP service (on the embedded PostgreSQL when DATABASE_URL is unset)."""
    import uvicorn

    from .store.migrate import upgrade

    configure_logging(log_level)
    check_bind(host)  # before anything starts: no tokens, no address but loopback
    grace = get_settings().shutdown_grace_seconds
    # uvicorn shuts down gracefully on SIGTERM and then re-raises the signal with the
    # handler it found installed: make that one exit normally, so the embedded
    # PostgreSQL below is stopped cleanly instead of being orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with database(data_dir) as url:
        if migrate:
            upgrade(url)
        if workers > 1:
            os.environ["TASKMILL_DATABASE_URL"] = url
            uvicorn.run(
                "app.main:create_app_from_env",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level=log_level,
                timeout_graceful_shutdown=grace,
            )
        else:
            from .main import create_app

            uvicorn.run(
                create_app(database_url=url),
                host=host,
                port=port,
                log_level=log_level,
                timeout_graceful_shutdown=grace,
            )


@cli.command("migrate")
def migrate_cmd(data_dir: DataDir = None) -> None:
    """Apply database migrations up to the newest."""
    from .store.migrate import upgrade

    with database(data_dir) as url:
        upgrade(url)
    typer.echo("migrations applied")


#: What ``taskmill bench`` needs that an install may lack: the bench (tools/taskmill_bench,
#: not in the Docker image), its load generator aiohttp and the baseline PgQueuer (the
#: ``bench`` extra).
_BENCH_MODULES = frozenset({"taskmill_bench", "aiohttp", "pgqueuer"})


@cli.command()
def bench(
    seconds: Annotated[
        float, typer.Option(min=0.1, help="Measured seconds per scenario and mode.")
    ] = 3.0,
    concurrency: Annotated[int, typer.Option(min=1, help="Concurrent client loops.")] = 8,
    terminal_rows: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Instead of the scenarios: claim-path cost of this many finished tasks "
            "kept in `tasks` vs moved to a history table.",
        ),
    ] = None,
    tags: Annotated[
        int | None,
        typer.Option(
            "--tags",
            min=1,
            help="Instead of the scenarios: tag queries, tagged submits and the two tag "
            "layouts with this many tasks of 5 tags each (issue figure: 1000000).",
        ),
    ] = None,
    fence: Annotated[
        bool,
        typer.Option(
            "--fence",
            help="Instead of the scenarios: what the lifecycle's database guards (the "
            "generation fence, the transition check) cost the claim path.",
        ),
    ] = False,
    compare: Annotated[
        bool,
        typer.Option(
            "--compare",
            help="Instead of the scenarios: taskmill over HTTP against the raw SQL limit "
            "(pgbench on a minimal queue table) and PgQueuer, in the same run, with CPU "
            "per task of the server and of PostgreSQL.",
        ),
    ] = False,
    reps: Annotated[
        int | None,
        typer.Option(
            min=1, help="With --compare: interleaved repetitions of every contender (default 3)."
        ),
    ] = None,
    replicas: Annotated[
        str | None,
        typer.Option(
            help="With --compare: uvicorn process counts to measure taskmill with, e.g. "
            "1,2,4 (default 1)."
        ),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            resolve_path=True,
            help="With --compare: also measure the taskmill of this checkout (e.g. `git "
            "worktree add /tmp/base <rev>`; it must have the same migrations) in one uvicorn "
            "process, and show each taskmill row's median over the baseline's.",
        ),
    ] = None,
    scratch_db: Annotated[
        str,
        typer.Option(
            help="Scratch database, dropped and re-created, dropped again at the end; "
            "its name must start with taskmill_bench."
        ),
    ] = "taskmill_bench",
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Embedded PostgreSQL data directory (without DATABASE_URL; default: a "
            "temporary directory).",
        ),
    ] = None,
) -> None:
    """Measure the hot paths over HTTP and directly, in a scratch database (or, with
    --compare, against raw SQL and PgQueuer)."""
    import tempfile

    try:
        from taskmill_bench import (
            SCRATCH_PREFIX,
            parse_replicas,
            run_compare,
            run_fence,
            run_scenarios,
            run_tags,
            run_terminal_rows,
        )
        from taskmill_bench.server import ServerStartError
    except ModuleNotFoundError as exc:
        # Only the bench itself or its extra missing; any other import error is a bug.
        if (exc.name or "").partition(".")[0] not in _BENCH_MODULES:
            raise
        typer.echo(
            f"taskmill bench needs the bench extra ({exc.name} is not installed): "
            "pip install -e '.[bench]'",
            err=True,
        )
        raise typer.Exit(code=2) from None

    if not scratch_db.startswith(SCRATCH_PREFIX):
        raise typer.BadParameter(
            f"must start with {SCRATCH_PREFIX!r} (the bench drops it)", param_hint="--scratch-db"
        )
    if sum((tags is not None, terminal_rows is not None, fence, compare)) > 1:
        raise typer.BadParameter(
            "give one of --tags, --terminal-rows, --fence, --compare", param_hint="--tags"
        )
    if not compare and (reps is not None or replicas is not None or baseline is not None):
        raise typer.BadParameter("only with --compare", param_hint="--reps/--replicas/--baseline")
    try:
        replica_counts = parse_replicas(replicas or "1")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--replicas") from None
    with (
        tempfile.TemporaryDirectory(prefix="taskmill-bench-") as scratch_dir,
        database(data_dir or Path(scratch_dir)) as url,
    ):
        if compare:
            try:
                run_compare(
                    url,
                    seconds=seconds,
                    concurrency=concurrency,
                    reps=reps or 3,
                    replicas=replica_counts,
                    scratch_db=scratch_db,
                    baseline=baseline,
                )
            except ServerStartError as exc:
                # Most likely a bad --baseline: its message names the checkout, and a
                # traceback would bury it.
                typer.echo(f"taskmill bench: {exc}", err=True)
                raise typer.Exit(code=1) from None
        elif fence:
            run_fence(url, seconds=seconds, concurrency=concurrency, scratch_db=scratch_db)
        elif tags is not None:
            run_tags(
                url, tasks=tags, seconds=seconds, concurrency=concurrency, scratch_db=scratch_db
            )
        elif terminal_rows is None:
            run_scenarios(url, seconds=seconds, concurrency=concurrency, scratch_db=scratch_db)
        else:
            run_terminal_rows(
                url,
                rows=terminal_rows,
                seconds=seconds,
                concurrency=concurrency,
                scratch_db=scratch_db,
            )


@cli.command()
def openapi(
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Print the OpenAPI document the service serves (commit it as openapi/openapi.json)."""
    from .main import openapi_document

    text = openapi_document()
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)


# worker, submit, tasks: HTTP clients of a running service (app/cli_client.py).
register_client_commands(cli)


def main() -> None:
    """Entry point of the ``taskmill`` console script."""
    cli()
