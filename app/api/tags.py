"""Routes over tags: aggregates, value counts, key discovery, bulk cancel (SPEC §7)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import StringConstraints

from ..domain.tags import TaskFilter, check_tag_filter
from ..schemas.common import Name, TaskType, Text
from ..schemas.tags import (
    AggregateResult,
    CancelMatching,
    CancelMatchingResult,
    GroupByField,
    MetricField,
    TagKeys,
    TagValues,
)
from ..schemas.tasks import Status
from .deps import Service
from .problems import problem_responses

router = APIRouter(tags=["tags"])

TAG_FILTER_DOC = (
    "Tag filters: `?tag=profile:dr&tag=dir:ltr` matches both (AND); repeating one key "
    "(`?tag=dst:a&tag=dst:b`) matches either (OR). The value is what follows the first "
    "`:`. The same filter may be written `?tag.profile=dr&tag.dir=ltr` (one parameter per "
    "key, which generated clients cannot express; keys that contain `:` need this form); "
    "both forms combine by the same rules."
)

MetricFields = Annotated[list[MetricField] | None, Query(description="numeric fields")]


#: ``tag.<key>`` parameters: a route that takes :data:`TagPairs` accepts any such name.
TAG_PARAM_PREFIX = "tag."


def tag_pairs(
    request: Request,
    tag: Annotated[
        list[Annotated[str, StringConstraints(pattern=r"^[^:]+:")]] | None,
        Query(description="`key:value`, repeatable: AND across keys, OR within a key"),
    ] = None,
) -> list[tuple[str, list[str]]]:
    """The tag filter of ``tag=key:value`` and ``tag.<key>=value`` parameters, in the
    order given, validated (a 422 names the parameter)."""
    pairs = []
    for name, value in request.query_params.multi_items():
        if name == "tag":
            key, _, value = value.partition(":")
            pairs.append((key, value))
        elif name.startswith(TAG_PARAM_PREFIX):
            pairs.append((name.removeprefix(TAG_PARAM_PREFIX), value))
    return check_tag_filter(pairs)


TagPairs = Annotated[list[tuple[str, list[str]]], Depends(tag_pairs)]


@router.get(
    "/tasks/aggregate",
    operation_id="aggregate_tasks",
    response_model=AggregateResult,
    responses=problem_responses(422),
    description="Exact counts and sum/min/max/avg of numeric fields per group of the "
    "matching tasks, largest groups first. " + TAG_FILTER_DOC,
)
async def aggregate_tasks(
    service: Service,
    tags: TagPairs,
    group_by: Annotated[
        list[GroupByField] | None,
        Query(description="tag.<key>, status, type or group; repeatable"),
    ] = None,
    sum: MetricFields = None,
    min: MetricFields = None,
    max: MetricFields = None,
    avg: MetricFields = None,
    status: Annotated[list[Status] | None, Query()] = None,
    type: Annotated[list[TaskType] | None, Query()] = None,
    group: Annotated[list[Name] | None, Query()] = None,
    parent_id: Annotated[Name | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="most groups returned")] = 1000,
) -> AggregateResult:
    """Group the matching tasks and aggregate their numeric fields."""
    flt = TaskFilter(
        statuses=status or (),
        types=type or (),
        groups=group or (),
        parent_id=parent_id,
        tags=tags,
    )
    metrics = [
        (function, field)
        for function, fields in (("sum", sum), ("min", min), ("max", max), ("avg", avg))
        for field in dict.fromkeys(fields or ())
    ]
    return await service.tags.aggregate(flt, group_by or [], metrics, limit)


@router.post(
    "/tasks/cancel",
    operation_id="cancel_tasks",
    response_model=CancelMatchingResult,
    responses=problem_responses(422),
)
async def cancel_tasks(body: CancelMatching, service: Service) -> CancelMatchingResult:
    """Cancel every live task matching the filter, in one transaction, with cascades."""
    return await service.tags.cancel_matching(body.filter)


@router.get(
    "/tags",
    operation_id="list_tag_keys",
    response_model=TagKeys,
    responses=problem_responses(422),
)
async def list_tag_keys(
    service: Service,
    prefix: Annotated[Text | None, Query(max_length=64, description="literal prefix")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> TagKeys:
    """Distinct tag keys, sorted; ``%`` and ``_`` in ``prefix`` are plain characters."""
    return await service.tags.keys(prefix, limit)


@router.get(
    # ":path": tag keys may contain "/" (their charset allows it).
    "/tags/{key:path}/values",
    operation_id="list_tag_values",
    response_model=TagValues,
    responses=problem_responses(422),
)
async def list_tag_values(
    key: str,
    service: Service,
    status: Annotated[list[Status] | None, Query()] = None,
    prefix: Annotated[Text | None, Query(max_length=256, description="literal prefix")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> TagValues:
    """Each value of the tag with how many tasks carry it, count descending."""
    return await service.tags.values(key, status or (), prefix, limit)
