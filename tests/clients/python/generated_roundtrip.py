"""A round trip through the client openapi-python-client generates from openapi/openapi.json.

tests/e2e/test_generated_client.py generates the package ``taskmill_generated`` next to a
copy of this file, type-checks both with ``mypy --strict`` and then awaits ``round_trip``
against a live server. Every answer is narrowed by ``isinstance`` on the generated models,
so a schema that lied about a shape would fail to parse or to narrow here.
"""

from __future__ import annotations

from typing import Any

from taskmill_generated import AuthenticatedClient
from taskmill_generated.api.leases import (
    acknowledge_cancel,
    complete_lease,
    heartbeat_lease,
    lease_tasks,
)
from taskmill_generated.api.tags import aggregate_tasks
from taskmill_generated.api.tasks import get_task, list_tasks, submit_task, submit_tasks_batch
from taskmill_generated.models import (
    AggregateResult,
    BatchItemAccepted,
    BatchItemRejected,
    BatchItemSuperseded,
    BatchSubmitResult,
    Complete,
    Heartbeat,
    HeartbeatResult,
    IOInput,
    IOOutput,
    Lease,
    LeaseRequest,
    LeaseResponse,
    Problem,
    ProgressInput,
    SubmitCreated,
    SubmitDeduplicated,
    SubmitSuperseded,
    SupersededDirective,
    Task,
    TaskBatchSubmit,
    TaskList,
    TaskSubmit,
    TaskSubmitTags,
    ValidationProblem,
)


def _tags(**values: str) -> TaskSubmitTags:
    return TaskSubmitTags.from_dict(values)


async def _submit(client: AuthenticatedClient, body: TaskSubmit) -> Task:
    r = await submit_task.asyncio_detailed(client=client, body=body)
    assert r.status_code == 201, r.content
    assert isinstance(r.parsed, SubmitCreated), r.parsed
    return r.parsed.task


async def _lease_one(client: AuthenticatedClient, task_type: str) -> Lease:
    r = await lease_tasks.asyncio_detailed(
        client=client, body=LeaseRequest(worker_id="py-gen", types=[task_type], max_tasks=1)
    )
    assert r.status_code == 200 and isinstance(r.parsed, LeaseResponse), r.content
    (lease,) = r.parsed.leases
    return lease


async def round_trip(base_url: str) -> dict[str, Any]:
    """Submit, batch, lease, heartbeat, complete, supersede, tag query, aggregate, 422."""
    # The document declares bearer auth; a server without tokens (loopback) ignores it.
    client = AuthenticatedClient(base_url=base_url, token="unused-on-loopback")
    async with client:
        # --- submit: {type} alone, dedup ---------------------------------------------------
        first = await _submit(client, TaskSubmit(type_="py.min"))
        assert first.priority == 128 and first.status == "pending"
        keyed = await _submit(
            client,
            TaskSubmit(
                type_="py.io",
                dedup_key="k1",
                tags=_tags(dst="s3://a", profile="dr"),
                expected_io=IOInput(net_tx_bytes=100),
            ),
        )
        expected: IOOutput = keyed.expected_io
        assert (expected.read_bytes, expected.net_tx_bytes) == (0, 100)
        await _submit(
            client,
            TaskSubmit(
                type_="py.io", tags=_tags(dst="s3://a"), expected_io=IOInput(net_tx_bytes=50)
            ),
        )
        await _submit(
            client,
            TaskSubmit(
                type_="py.io", tags=_tags(dst="s3://b"), expected_io=IOInput(net_tx_bytes=7)
            ),
        )
        dup = await submit_task.asyncio_detailed(
            client=client, body=TaskSubmit(type_="py.io", dedup_key="k1")
        )
        assert dup.status_code == 200 and isinstance(dup.parsed, SubmitDeduplicated), dup.content
        assert dup.parsed.task.id == keyed.id

        # --- batch: created, rejected, superseded ------------------------------------------
        batch = await submit_tasks_batch.asyncio_detailed(
            client=client,
            body=TaskBatchSubmit(
                tasks=[
                    TaskSubmit(type_="py.io", dedup_key="b1"),
                    TaskSubmit(type_="py.io", dedup_key="k1", on_duplicate="reject"),
                    TaskSubmit(type_="py.io", dedup_key="b1", on_duplicate="supersede"),
                ]
            ),
        )
        assert batch.status_code == 200 and isinstance(batch.parsed, BatchSubmitResult)
        created, rejected, superseded = batch.parsed.results
        assert isinstance(created, BatchItemAccepted) and created.outcome == "created"
        assert isinstance(rejected, BatchItemRejected)
        assert rejected.existing_task_id == keyed.id
        assert isinstance(superseded, BatchItemSuperseded)
        assert superseded.replaced_task_id == created.task_id

        # --- tag query (repeatable tag=key:value) and aggregate ----------------------------
        tagged = await list_tasks.asyncio_detailed(client=client, tag=["dst:s3://a", "profile:dr"])
        assert isinstance(tagged.parsed, TaskList), tagged.content
        assert [t.id for t in tagged.parsed.tasks] == [keyed.id]
        either = await list_tasks.asyncio_detailed(client=client, tag=["dst:s3://a", "dst:s3://b"])
        assert isinstance(either.parsed, TaskList) and len(either.parsed.tasks) == 3
        agg = await aggregate_tasks.asyncio_detailed(
            client=client,
            group_by=["tag.dst"],
            sum_=["expected_io.net_tx_bytes"],
            type_=["py.io"],
        )
        assert isinstance(agg.parsed, AggregateResult), agg.content
        sums = {
            str(group.key["tag.dst"]): group.sum_["expected_io.net_tx_bytes"]
            for group in agg.parsed.groups
        }

        # --- lease, heartbeat, complete ------------------------------------------------------
        work = await _submit(client, TaskSubmit(type_="py.work", payload={"n": 1}))
        lease = await _lease_one(client, "py.work")
        assert lease.task.id == work.id and lease.cancel is None
        beat = await heartbeat_lease.asyncio_detailed(
            lease.lease_id, client=client, body=Heartbeat(progress=ProgressInput(fraction=0.5))
        )
        assert isinstance(beat.parsed, HeartbeatResult) and beat.parsed.cancel is None
        done = await complete_lease.asyncio_detailed(
            lease.lease_id, client=client, body=Complete(result={"bytes": 123})
        )
        assert isinstance(done.parsed, Task) and done.parsed.status == "completed", done.content
        read = await get_task.asyncio(work.id, client=client)
        assert isinstance(read, Task) and read.result == {"bytes": 123}
        assert read.progress is not None and read.progress.fraction == 0.5

        # --- supersede a running task: the directive, the acknowledgement -------------------
        v1 = await _submit(client, TaskSubmit(type_="py.sup", dedup_key="sup"))
        v1_lease = await _lease_one(client, "py.sup")
        assert v1_lease.task.id == v1.id
        sup = await submit_task.asyncio_detailed(
            client=client,
            body=TaskSubmit(type_="py.sup", dedup_key="sup", on_duplicate="supersede"),
        )
        assert sup.status_code == 201 and isinstance(sup.parsed, SubmitSuperseded), sup.content
        replaced_task_id: str = sup.parsed.replaced_task_id
        v2 = sup.parsed.task
        told = await heartbeat_lease.asyncio_detailed(
            v1_lease.lease_id, client=client, body=Heartbeat()
        )
        assert isinstance(told.parsed, HeartbeatResult), told.content
        directive = told.parsed.cancel
        assert isinstance(directive, SupersededDirective), directive
        superseded_by: str = directive.superseded_by
        acked = await acknowledge_cancel.asyncio_detailed(v1_lease.lease_id, client=client)
        assert isinstance(acked.parsed, Task), acked.content
        assert acked.parsed.status == "superseded" and acked.parsed.superseded_by == v2.id

        # --- a 422 parsed as ValidationProblem, a 404 as Problem ----------------------------
        bad = await submit_task.asyncio_detailed(
            client=client, body=TaskSubmit(type_="py.bad", priority=999)
        )
        assert bad.status_code == 422 and isinstance(bad.parsed, ValidationProblem), bad.content
        assert bad.parsed.type_ == "urn:taskmill:problem:validation-error"
        fields = [e.field for e in bad.parsed.errors]
        missing = await get_task.asyncio_detailed("nope", client=client)
        assert missing.status_code == 404 and isinstance(missing.parsed, Problem)
        assert missing.parsed.type_ == "urn:taskmill:problem:not-found"

    return {
        "first": first.id,
        "keyed": keyed.id,
        "batch": [created.outcome, rejected.outcome, superseded.outcome],
        "batch_rejected_existing": rejected.existing_task_id,
        "batch_replaced": superseded.replaced_task_id,
        "batch_created": created.task_id,
        "aggregate_sums": sums,
        "work": work.id,
        "superseded": v1.id,
        "superseding": v2.id,
        "replaced_task_id": replaced_task_id,
        "superseded_by": superseded_by,
        "validation_fields": fields,
    }
