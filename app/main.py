"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi

from . import __version__
from .api import auth, groups, health, leases, observe, problems, strict, tags, tasks
from .config import Settings, get_settings
from .domain.service import Taskmill
from .schemas.events import Event
from .schemas.problems import Problem, ValidationProblem
from .serving import drain_on_signals

log = logging.getLogger("taskmill")


def create_app(
    settings: Settings | None = None, database_url: str | None = None, *, sweep: bool = True
) -> FastAPI:
    """Build the app for one replica. ``database_url`` defaults to the settings' URL."""
    settings = settings or get_settings()
    url = database_url or settings.database_url
    if not url:
        raise RuntimeError("no database URL: set DATABASE_URL or use `taskmill serve`")
    tokens = auth.load_tokens(settings)  # ValueError on a malformed entry: refuse to start

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = Taskmill(settings, url)
        await service.start(sweep=sweep)
        app.state.taskmill = service
        if not tokens:
            log.warning("auth is off (no TASKMILL_TOKENS): only loopback clients are served")
        try:
            with drain_on_signals(service.drain):  # SIGTERM: long polls answer at once
                yield
        finally:
            await service.stop()

    app = FastAPI(
        title="taskmill",
        version=__version__,
        summary="HTTP task queue on PostgreSQL: leases, supersede, tags.",
        lifespan=lifespan,
        # Every route checks the caller's role (app/api/auth.py holds the table), and
        # refuses query parameters it does not declare.
        dependencies=[Depends(auth.authorize), Depends(strict.reject_unknown_query)],
    )
    problems.install(app)
    # Routes are matched in order, one by one: the workers' hot /leases routes first;
    # tags before tasks, as its /tasks/aggregate must win over /tasks/{task_id}.
    for module in (leases, tags, tasks, groups, observe, health):
        app.include_router(module.router)
    app.add_middleware(problems.BodyLimit, limit=settings.max_body_bytes)
    # Outermost: no token, no body read.
    app.add_middleware(auth.Authenticate, tokens=tokens)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            # Bodies no route declares as a model: problems (rendered by app/api/problems),
            # and the events' data (an SSE stream has no JSON schema of its own).
            for model in (Problem, ValidationProblem, Event):
                defs = model.model_json_schema(
                    ref_template="#/components/schemas/{model}", mode="serialization"
                )
                components.update(defs.pop("$defs", {}))
                components[model.__name__] = defs
            # FastAPI documents request validation as its own HTTPValidationError body;
            # ours is problem+json, so say that instead.
            (validation,) = problems.problem_responses(422).values()
            for item in schema["paths"].values():
                for operation in item.values():
                    responses = operation.get("responses", {})
                    if "422" in responses:
                        responses["422"] = validation
            # A model used both ways is two schemas, "IO-Input" and "IO-Output", that keep
            # the model's one title; generators name classes by title (openapi-python-client
            # refuses the second "IO"), so each gets its own.
            for name, component in components.items():
                if name.endswith(("-Input", "-Output")):
                    component["title"] = name.replace("-", "")
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
            auth.document(schema)  # bearer scheme, per-operation security, 401/403
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (used by ``taskmill serve --workers N``)."""
    return create_app()


def openapi_document() -> str:
    """The OpenAPI document as committed in ``openapi/openapi.json`` (stable formatting)."""
    import json

    app = create_app(Settings(), database_url="postgresql://unused/unused")
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"
