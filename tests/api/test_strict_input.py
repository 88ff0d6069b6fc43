"""Strict input: no coercion of booleans or numeric strings into numbers, no unknown query
parameters, and both forms of the tag filter with the same AND/OR rules."""

from __future__ import annotations

import inspect
import types
from typing import Annotated, Any, Union, get_args, get_origin

import httpx
import pytest
from pydantic import BaseModel, Strict

import app.schemas.common
import app.schemas.groups
import app.schemas.leases
import app.schemas.tags
import app.schemas.tasks
from app.schemas.common import Model
from app.schemas.problems import PROBLEM_TYPE_PREFIX, ProblemCode
from app.schemas.tags import MetricField
from app.store.queries import METRIC_COLUMNS
from tests.helpers import lease, submit

MODULES = (app.schemas.common, app.schemas.groups, app.schemas.leases, app.schemas.tags)
REQUEST_MODELS = list(
    dict.fromkeys(
        cls
        for module in (*MODULES, app.schemas.tasks)
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, Model) and cls is not Model
    )
)


def _lax_numbers(annotation: Any, strict: bool = False) -> list[Any]:
    """The int/float/bool types in ``annotation`` that pydantic would validate laxly."""
    if get_origin(annotation) is Annotated:
        base, *meta = get_args(annotation)
        strict = strict or any(isinstance(m, Strict) for m in meta)
        return _lax_numbers(base, strict)
    if get_origin(annotation) in (Union, types.UnionType, list, dict):
        return [t for arg in get_args(annotation) for t in _lax_numbers(arg, strict)]
    if annotation in (int, float, bool) and not strict:
        return [annotation]
    return []


@pytest.mark.parametrize("model", REQUEST_MODELS, ids=lambda m: m.__name__)
def test_request_models_take_no_lax_numbers(model: type[BaseModel]) -> None:
    for name, info in model.model_fields.items():
        annotated = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
        assert not _lax_numbers(annotated), (
            f"{model.__name__}.{name}: use Int, Number or StrictBool"
        )


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/tasks", {"type": "t", "priority": True}, "priority"),
        ("/tasks", {"type": "t", "priority": "5"}, "priority"),
        ("/tasks", {"type": "t", "ttl_seconds": "60"}, "ttl_seconds"),
        ("/tasks", {"type": "t", "expected_io": {"read_bytes": True}}, "expected_io.read_bytes"),
        ("/tasks", {"type": "t", "retry": {"max_attempts": "3"}}, "retry.max_attempts"),
        ("/tasks", {"type": "t", "retry": {"base_seconds": False}}, "retry.base_seconds"),
        ("/tasks/batch", {"tasks": [{"type": "t", "priority": "1"}]}, "tasks[0].priority"),
        ("/leases", {"worker_id": "w", "max_tasks": "5"}, "max_tasks"),
        ("/leases", {"worker_id": "w", "wait_seconds": True}, "wait_seconds"),
    ],
)
async def test_booleans_and_numeric_strings_are_not_numbers(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], field: str
) -> None:
    r = await client.post(path, json=body)
    assert r.status_code == 422, r.text
    assert field in [e["field"] for e in r.json()["errors"]]
    assert (await client.get("/tasks")).json()["tasks"] == []  # and nothing changed


async def test_numbers_of_either_json_kind_are_accepted(client: httpx.AsyncClient) -> None:
    task = await submit(client, type="t", ttl_seconds=60, retry={"base_seconds": 2})
    assert task["retry"]["base_seconds"] == 2.0
    assert (await client.post("/leases", json={"worker_id": "w", "wait_seconds": 0.0})).is_success


@pytest.mark.parametrize(
    ("method", "path", "params", "name"),
    [
        ("get", "/tasks", {"tags.profile": "dr"}, "tags.profile"),  # a typo of tag.profile
        ("get", "/tasks", {"limt": "5"}, "limt"),
        ("get", "/tasks/aggregate", {"groupby": "status"}, "groupby"),
        ("get", "/tags", {"prefx": "a"}, "prefx"),
        ("get", "/snapshot", {"tag.x": "1"}, "tag.x"),  # no tag filter on this route
        ("post", "/leases", {"wait": "1"}, "wait"),
        ("get", "/events", {"evnt": "task.created"}, "evnt"),
    ],
)
async def test_unknown_query_parameters_are_422(
    client: httpx.AsyncClient, method: str, path: str, params: dict[str, str], name: str
) -> None:
    kwargs: dict[str, Any] = {"params": params}
    if method == "post":
        kwargs["json"] = {"worker_id": "w"}
    r = await client.request(method.upper(), path, **kwargs)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in r.json()["errors"]] == [name]
    assert r.json()["errors"][0]["type"] == "extra_forbidden"


async def test_unknown_event_names_are_422(client: httpx.AsyncClient) -> None:
    r = await client.get("/events", params={"event": "task.bogus"})
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["event[0]"]


async def test_both_tag_filter_forms_match_alike(client: httpx.AsyncClient) -> None:
    tagged = {
        "eu-dr": {"dst": "eu", "profile": "dr"},
        "eu-ltr": {"dst": "eu", "profile": "ltr"},
        "us-dr": {"dst": "us", "profile": "dr"},
        "url": {"dst": "https://x.example:8443/a", "profile": "dr"},
    }
    ids = {label: (await submit(client, tags=tags))["id"] for label, tags in tagged.items()}

    async def listed(params: list[tuple[str, str]]) -> set[str]:
        r = await client.get("/tasks", params=tuple(params))
        assert r.status_code == 200, r.text
        return {t["id"] for t in r.json()["tasks"]}

    cases: list[tuple[list[tuple[str, str]], list[tuple[str, str]], set[str]]] = [
        ([("tag", "dst:eu")], [("tag.dst", "eu")], {"eu-dr", "eu-ltr"}),
        (  # AND across keys
            [("tag", "dst:eu"), ("tag", "profile:dr")],
            [("tag.dst", "eu"), ("tag.profile", "dr")],
            {"eu-dr"},
        ),
        (  # OR within a key
            [("tag", "dst:eu"), ("tag", "dst:us"), ("tag", "profile:dr")],
            [("tag.dst", "eu"), ("tag.dst", "us"), ("tag.profile", "dr")],
            {"eu-dr", "us-dr"},
        ),
        (  # the value is all that follows the first ':'
            [("tag", "dst:https://x.example:8443/a")],
            [("tag.dst", "https://x.example:8443/a")],
            {"url"},
        ),
    ]
    for colon, dotted, expected in cases:
        want = {ids[label] for label in expected}
        assert await listed(colon) == want, colon
        assert await listed(dotted) == want, dotted
        # The forms combine by the same rules.
        assert await listed([colon[0], *dotted[1:]]) == want, (colon, dotted)
    r = await client.get("/tasks/aggregate", params={"tag": "dst:eu", "group_by": "tag.profile"})
    groups = {g["key"]["tag.profile"]: g["count"] for g in r.json()["groups"]}
    assert groups == {"dr": 1, "ltr": 1}


@pytest.mark.parametrize("value", ["dst", ":eu"])
async def test_a_tag_filter_without_key_and_colon_is_422(
    client: httpx.AsyncClient, value: str
) -> None:
    r = await client.get("/tasks", params={"tag": value})
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["tag[0]"]


def test_problem_types_and_metric_fields_have_one_list_each() -> None:
    import app.domain.errors as errors

    codes = set(get_args(ProblemCode))
    raised = {
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.DomainError)
    }
    assert raised <= codes
    assert errors.problem_type("not-found") == PROBLEM_TYPE_PREFIX + "not-found"
    assert set(get_args(MetricField)) == set(METRIC_COLUMNS)


async def test_a_refused_lease_completion_has_no_null_fields(client: httpx.AsyncClient) -> None:
    await submit(client)
    (held,) = await lease(client)
    items = [{"lease_id": held["lease_id"]}, {"lease_id": held["lease_id"]}]
    r = await client.post("/leases/complete", json={"items": items})
    ok, refused = r.json()["results"]
    assert ok["ok"] is True and ok["task"]["status"] == "completed"
    assert refused == {"lease_id": held["lease_id"], "ok": False, "error": refused["error"]}
    assert None not in refused["error"].values()  # absent, never null (the schema says so)
