"""The SDK's readers of the server's answers, checked against openapi/openapi.json.

The SDK keeps the shape of each answer by hand (its models, the worker's lease context).
For every answer it reads, found by the operation it calls, a probe built from that
operation's response schema in the document records each field the SDK looks up:

- every field the SDK reads must be declared there (else it reads only its defaults);
- every field declared there must be read, for the objects the SDK reads field by field
  (each mirror's ``complete``), unless a commented allow-list says why it is left out.

Schemas are resolved generically ($ref, allOf, oneOf, anyOf, several 2xx answers): the
reader runs once per variant of each union, so every variant's fields count. No server.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from taskmill_sdk import Client, Event, TaskContext
from taskmill_sdk._http import Call
from taskmill_sdk._worker import _cancel_directive, _lease_request, _on_lease, _task_status

DOCUMENT = Path(__file__).parents[2] / "openapi" / "openapi.json"

#: The path step of an array's items.
ITEM = "[]"
#: Where a field sits in an answer: property names and ITEM, from the answer's root.
Where = tuple[str, ...]
Document = dict[str, Any]

#: Task fields the SDK's Task leaves out on purpose; each is in ``Task.raw`` as sent.
TASK_LEFT_OUT = {
    # Structured figures that want typed views of their own (not plain dicts bolted on).
    "lease": "the current lease (id, worker, expiry): an operator's detail",
    "children": "the children's counts by status: read them with query(parent_id=...)",
    "retry": "the retry policy as submitted: the submitter knows it",
    "expected_io": "the I/O declared at submit: the submitter knows it",
    "actual_io": "the I/O a worker reported with its completion",
}
#: When a lease or heartbeat ends: the worker keeps its leases alive on its own clock
#: (every heartbeat_seconds), never on the server's, which may differ from its own.
EXPIRY = {"expires_at": "the worker heartbeats on its own clock"}


@dataclass(frozen=True)
class Mirror:
    """One answer the SDK reads: the request it sends, which operation of the document
    that must be, and how the SDK turns the answer's JSON into its values."""

    name: str
    request: tuple[str, str]
    operation: str
    read: Callable[[Any], object]
    #: The objects the SDK reads field by field, each with the fields it leaves out.
    complete: Mapping[Where, Mapping[str, str]] = field(default_factory=dict)
    #: Fields the SDK reads that this answer does not declare, and why that is right.
    foreign: Mapping[Where, Mapping[str, str]] = field(default_factory=dict)


def _of(name: str, call: Call[Any], operation: str, **kw: Any) -> Mirror:
    kw.setdefault("read", call.parse)
    return Mirror(name, (call.method, call.path), operation, **kw)


async def _unused(_: Any) -> Any:
    raise AssertionError("not called while reading a lease")


def _contexts(leases: list[dict[str, Any]]) -> list[TaskContext]:
    # What the worker makes of each lease (TaskContext reads the lease and its task).
    loop = asyncio.new_event_loop()
    try:
        return [
            TaskContext(lease, worker_id="w", loop=loop, submit=_unused, list_children=_unused)
            for lease in leases
        ]
    finally:
        loop.close()


def _mirrors() -> list[Mirror]:
    lease_call = _lease_request({})
    stream = Client.events.build()
    return [
        _of("task", Client.get.build("t"), "get_task", complete={(): TASK_LEFT_OUT}),
        _of("task page", Client.page.build(), "list_tasks", complete={(): {}}),
        _of(
            "submit result",
            Client.submit.build("t"),
            "submit_task",
            complete={(): {}},
            # One reader for a submit's answer and a batch item; only the latter has these
            # (SubmitResult.task_id and .status then come from the task record).
            foreign={(): dict.fromkeys(("existing_task_id", "task_id", "status"), "batch only")},
        ),
        _of(
            "batch submit result",
            Client.submit_batch.build([]),
            "submit_tasks_batch",
            complete={(): {}, ("results", ITEM): {}},
        ),
        _of(
            "aggregate groups",
            Client.aggregate.build(["status"]),
            "aggregate_tasks",
            complete={
                # aggregate() returns the list of groups (its signature predates the field),
                # so a caller cannot tell a cut answer (the server's default limit: 1000).
                (): {"truncated": "aggregate() returns a list of groups"},
                ("groups", ITEM): {},
            },
        ),
        _of("tag keys", Client.tag_keys.build(), "list_tag_keys", complete={(): {}}),
        _of(
            "tag values",
            Client.tag_values.build("k"),
            "list_tag_values",
            complete={(): {}, ("values", ITEM): {}},
        ),
        _of(
            "lease",
            lease_call,
            "lease_tasks",
            read=lambda body: _contexts(lease_call.parse(body)),
            complete={
                (): {},
                ("leases", ITEM): EXPIRY,
                # What the submitter declared is for scheduling, not for the handler.
                ("leases", ITEM, "task"): {"expected_io": "not a handler's concern"},
                ("leases", ITEM, "cancel"): {},
            },
        ),
        _of(
            "heartbeat",
            _on_lease("l", "heartbeat", _cancel_directive),
            "heartbeat_lease",
            complete={(): EXPIRY, ("cancel",): {}},
        ),
        # The worker reads a failure's answer only for the task's status: nothing else
        # need be read, but what it reads must exist.
        _of("failure", _on_lease("l", "fail", _task_status), "fail_lease"),
        Mirror(
            # An event hands its data over whole (Event.data); the SDK reads task_id by name.
            "event",
            ("GET", stream.connect()["url"]),
            "stream_events",
            read=lambda data: Event("1", "task.created", data).task_id,
        ),
    ]


MIRRORS = _mirrors()


# -- the document ---------------------------------------------------------------------


def _target(doc: Document, ref: str) -> dict[str, Any]:
    # The schema a local $ref (a JSON pointer) names: the document's own object.
    target: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    assert isinstance(target, dict), ref
    return target


def _deref(doc: Document, schema: Any) -> dict[str, Any]:
    # Follows $ref, keeping the fields beside it (OpenAPI 3.1 allows them).
    for _ in range(64):
        if not (isinstance(schema, dict) and "$ref" in schema):
            return schema if isinstance(schema, dict) else {}
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**_target(doc, schema["$ref"]), **siblings}
    raise AssertionError("a $ref cycle")


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def _branches(schema: dict[str, Any]) -> list[Any]:
    return [*schema.get("oneOf", []), *schema.get("anyOf", [])]


def _variants(doc: Document, schema: Any) -> list[dict[str, Any]]:
    """The object shapes a schema allows, each as {property: schema}; [] for a
    non-object. allOf merges its parts; oneOf/anyOf give one shape per branch."""
    schema = _deref(doc, schema)
    objectish = "properties" in schema or "object" in _types(schema)
    parts = [_variants(doc, p) for p in schema.get("allOf", [])]
    branches = _branches(schema)
    alternatives = [v for b in branches for v in _variants(doc, b)]
    if not objectish and not any(parts) and not alternatives:
        return []
    shapes: list[dict[str, Any]] = [dict(schema.get("properties", {}))]
    for part in filter(None, parts):
        shapes = [{**a, **b} for a in shapes for b in part]
    if alternatives:
        shapes = [{**a, **b} for a in shapes for b in alternatives]
    return shapes


def _operation(doc: Document, method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The operation a request goes to: the template that matches with the most literal
    segments (``/tasks/aggregate`` before ``/tasks/{task_id}``)."""
    matches = []
    for template, operations in doc["paths"].items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path) and method.lower() in operations:
            literal = sum(1 for part in template.split("/") if not part.startswith("{"))
            matches.append((literal, operations[method.lower()]))
    assert matches, f"{method} {path} is not in the document"
    operation = max(matches, key=lambda m: m[0])[1]
    return str(operation["operationId"]), operation


def _answers(operation: dict[str, Any]) -> list[Any]:
    """The schemas of the operation's successful answers: JSON bodies, and the data of
    each event of an event stream (named by the document's ``x-event-data``)."""
    out = []
    for status, response in operation.get("responses", {}).items():
        if not str(status).startswith("2"):
            continue
        for media, content in (response.get("content") or {}).items():
            if media.endswith("json") and "schema" in content:
                out.append(content["schema"])
            elif media == "text/event-stream" and "x-event-data" in content:
                out.append(content["x-event-data"])
    return out


# -- probes ---------------------------------------------------------------------------


class _Probe(dict[str, Any]):
    """A JSON object of one shape of the document that records the fields looked up."""

    def __init__(self, values: dict[str, Any], declared: frozenset[str], where: Where) -> None:
        super().__init__(values)
        self.declared = declared
        self.where = where
        self.reads: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.reads.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.reads.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.reads.add(key)
        return super().__contains__(key)


@dataclass
class _Sampler:
    """Builds probes; ``pick`` chooses the variant of each union (rotated over runs)."""

    doc: Document
    pick: int
    probes: list[_Probe] = field(default_factory=list)
    most_variants: int = 1

    def object(self, shapes: list[dict[str, Any]], where: Where) -> dict[str, Any]:
        self.most_variants = max(self.most_variants, len(shapes))
        shape = shapes[self.pick % len(shapes)]
        declared = frozenset(name for s in shapes for name in s)
        if not declared:
            return {}  # a map (additionalProperties): any key, none of them declared
        values = {name: self.value(schema, (*where, name)) for name, schema in shape.items()}
        probe = _Probe(values, declared, where)
        self.probes.append(probe)
        return probe

    def value(self, schema: Any, where: Where) -> Any:
        if len(where) > 16:
            return None  # a recursive schema: deep enough
        shapes = _variants(self.doc, schema)
        if shapes:
            return self.object(shapes, where)
        schema = _deref(self.doc, schema)
        if "array" in _types(schema) or "items" in schema:
            return [self.value(schema.get("items", {}), (*where, ITEM))]
        for branch in _branches(schema):
            branch = _deref(self.doc, branch)
            if _types(branch) != ["null"]:
                return self.value(branch, where)
        return _scalar(schema)


def _scalar(schema: dict[str, Any]) -> Any:
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    kinds = [k for k in _types(schema) if k != "null"]
    kind = kinds[0] if kinds else None
    if kind == "string":
        return "2024-05-06T07:08:09Z" if schema.get("format") == "date-time" else "s"
    return {"integer": 1, "number": 0.5, "boolean": True}.get(kind or "")


# -- the check ------------------------------------------------------------------------


def _runs(
    doc: Document, answers: list[Any], read: Callable[[Any], object], failures: list[str]
) -> Iterator[_Probe]:
    # Once per variant of the widest union, so that each variant is read at least once.
    roots = [shape for answer in answers for shape in _variants(doc, answer)]
    pick = 0
    while True:
        sampler = _Sampler(doc, pick)
        body = sampler.object(roots, ())
        try:
            read(body)
        except (KeyError, TypeError, ValueError) as exc:
            # A field the reader requires that this variant lacks (its reads say which).
            failures.append(f"reading variant {pick} failed: {exc!r}")
        yield from sampler.probes
        pick += 1
        if pick >= max(sampler.most_variants, len(roots)):
            return


def problems(doc: Document, mirror: Mirror) -> list[str]:
    """What does not agree between the document and the SDK's reader, in words."""
    found, operation = _operation(doc, *mirror.request)
    if found != mirror.operation:
        return [f"the SDK's {' '.join(mirror.request)} is {found}, not {mirror.operation}"]
    answers = _answers(operation)
    if not answers:
        pytest.skip(f"{mirror.operation}: the document gives no schema of its answer")
    reads: dict[Where, set[str]] = {}
    declared: dict[Where, set[str]] = {}
    failures: list[str] = []
    for probe in _runs(doc, answers, mirror.read, failures):
        reads.setdefault(probe.where, set()).update(probe.reads)
        declared.setdefault(probe.where, set()).update(probe.declared)
    out = [f"{mirror.name}: {failure}" for failure in failures]
    for where in sorted(reads):
        at = "/".join(where) or "the answer"
        foreign = mirror.foreign.get(where, {})
        for name in sorted(reads[where] - declared[where] - set(foreign)):
            out.append(f"{mirror.name}: reads {at}.{name}, which the document does not declare")
    for where, left_out in mirror.complete.items():
        at = "/".join(where) or "the answer"
        if where not in declared:
            out.append(f"{mirror.name}: the document has no object at {at}")
            continue
        for name in sorted(declared[where] - reads[where] - set(left_out)):
            out.append(f"{mirror.name}: does not read {at}.{name} (nor allow-lists it)")
        for name in sorted(set(left_out) & reads[where]):
            out.append(f"{mirror.name}: reads {at}.{name} now: take it off the allow-list")
        for name in sorted(set(left_out) - declared[where]):
            out.append(f"{mirror.name}: allow-lists {at}.{name}, which is not declared")
    for where, names in mirror.foreign.items():
        for name in sorted(set(names) & declared.get(where, set())):
            out.append(f"{mirror.name}: {name} is declared now: take it off `foreign`")
    return out


def _document(path: Path = DOCUMENT) -> Document:
    doc: Document = json.loads(path.read_text())
    return doc


@pytest.mark.parametrize("mirror", MIRRORS, ids=[m.name for m in MIRRORS])
def test_the_sdk_reads_what_the_document_declares(mirror: Mirror) -> None:
    found = problems(_document(), mirror)
    assert not found, "\n".join(found)


def _object_of(doc: Document, schema: dict[str, Any]) -> dict[str, Any] | None:
    # The first schema that declares properties, down $ref, allOf, oneOf and anyOf: the
    # document's own object (not a resolved copy), for the self-test to edit.
    if "$ref" in schema:
        return _object_of(doc, _target(doc, schema["$ref"]))
    if "properties" in schema:
        return schema
    for branch in [*schema.get("allOf", []), *_branches(schema)]:
        if (found := _object_of(doc, branch)) is not None:
            return found
    return None


def test_the_check_sees_a_field_added_to_or_removed_from_task(tmp_path: Path) -> None:
    # A copy of the document where the server's Task gained a field and lost one the SDK
    # reads: the check must name both.
    doc = _document()
    _, get_task = _operation(doc, "GET", "/tasks/t")
    (answer,) = _answers(get_task)
    task = _object_of(doc, answer)
    assert task is not None, answer
    task["properties"]["brand_new_field"] = {"type": "string"}
    del task["properties"]["priority"]
    copy_path = tmp_path / "openapi.json"
    copy_path.write_text(json.dumps(doc))
    (mirror,) = [m for m in MIRRORS if m.operation == "get_task"]
    found = problems(_document(copy_path), mirror)
    assert any("does not read the answer.brand_new_field" in p for p in found), found
    assert any("reads the answer.priority, which the document" in p for p in found), found
