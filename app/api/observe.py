"""Routes for watching the queue: the event stream, the snapshot, Prometheus metrics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response
from sse_starlette import EventSourceResponse

from ..domain.events import EventFilter
from ..domain.metrics import CONTENT_TYPE
from ..schemas.common import Name, TaskType
from ..schemas.events import EventName
from ..schemas.snapshot import Snapshot
from .deps import Service
from .problems import problem_responses
from .tags import TAG_FILTER_DOC, TagPairs

router = APIRouter(tags=["observe"])

EVENT_NAMES = ", ".join(f"`{name}`" for name in get_args(EventName))


@router.get(
    "/events",
    operation_id="stream_events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "An endless `text/event-stream`: `id`, `event`, `data` per "
            "event, and a `:` comment line every `events_keepalive_seconds`. Each `data` "
            "is the JSON of an `Event` (`#/components/schemas/Event`).",
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string"},
                    "x-event-data": {"$ref": "#/components/schemas/Event"},
                }
            },
        },
        **problem_responses(422),
    },
    description="Server-Sent Events of every lifecycle change, from the persisted outbox: "
    f"{EVENT_NAMES}. Each `data` is a JSON object with `id`, `event`, `at`, `task_id`, "
    "`type`, `group`, `tags` and the change's own fields (`status`, `attempt`, …). "
    "Send `Last-Event-ID` (or `last_event_id`) to resume after that event without loss "
    "or repeats (within the retention window); without it the stream starts now. "
    "Filters: `type`, `event`, `task_id` (each repeatable: any of). " + TAG_FILTER_DOC,
)
async def stream_events(
    service: Service,
    tags: TagPairs,
    type: Annotated[list[TaskType] | None, Query(description="any of these task types")] = None,
    event: Annotated[list[EventName] | None, Query(description="any of these events")] = None,
    task_id: Annotated[list[Name] | None, Query(description="any of these tasks")] = None,
    last_event_id: Annotated[
        str | None, Query(max_length=32, description="as the Last-Event-ID header")
    ] = None,
    last_event_id_header: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=32,
            description="the `id` of the last event received: resume after it",
        ),
    ] = None,
) -> EventSourceResponse:
    """Follow the event stream."""
    events = service.events
    after = events.parse_last_id(last_event_id_header or last_event_id)
    flt = EventFilter(
        types=type or (),
        events=event or (),
        task_ids=task_id or (),
        tags=dict(tags),
    )

    async def frames() -> AsyncIterator[dict[str, Any]]:
        async for body in events.stream(flt, after):
            yield {
                "id": str(body["id"]),
                "event": body["event"],
                "data": json.dumps(body, separators=(",", ":"), ensure_ascii=False),
            }

    settings = service.settings
    return EventSourceResponse(
        frames(),
        ping=settings.events_keepalive_seconds,
        send_timeout=settings.events_send_timeout_seconds,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/snapshot",
    operation_id="get_snapshot",
    response_model=Snapshot,
    response_model_exclude_none=True,
    responses=problem_responses(422),
)
async def get_snapshot(
    service: Service,
    by_tag: Annotated[
        str | None,
        Query(max_length=64, description="add per-value stats of this tag key"),
    ] = None,
) -> Snapshot:
    """Counts of every retained task by status, type and group (live counts exact)."""
    return await service.snapshots.snapshot(by_tag)


@router.get(
    "/metrics",
    operation_id="get_metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format 0.0.4",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **problem_responses(503),
    },
)
async def get_metrics(service: Service) -> Response:
    """This replica's counters and histogram, and queue depth read from the database."""
    return Response(await service.metrics.render(), media_type=CONTENT_TYPE)
