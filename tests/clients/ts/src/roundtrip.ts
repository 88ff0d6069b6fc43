// A whole round trip through every operation of openapi/openapi.json with openapi-fetch and
// the types openapi-typescript generated, against a live server:
//   node dist/src/roundtrip.js <base url>
// Prints one JSON summary line (the test asserts on it); any failed check exits non-zero.
import assert from "node:assert/strict";
import {
  type Call,
  connect,
  type Equal,
  isEvent,
  isValidationProblem,
  type OperationId,
  type RequestBody,
  type Schemas,
  type ValidationProblem,
} from "./api.js";

type Task = Schemas["Task"];
type Event = Schemas["Event"];

/** The document's operations, each used below (tsc fails on a missing or unknown id, the
 * test on an id whose operation the run did not call). */
const OPERATIONS = {
  submit_task: "POST /tasks",
  submit_tasks_batch: "POST /tasks/batch",
  get_task: "GET /tasks/{task_id}",
  list_tasks: "GET /tasks",
  lease_tasks: "POST /leases",
  heartbeat_lease: "POST /leases/{lease_id}/heartbeat",
  complete_lease: "POST /leases/{lease_id}/complete",
  complete_leases_batch: "POST /leases/complete",
  fail_lease: "POST /leases/{lease_id}/fail",
  release_lease: "POST /leases/{lease_id}/release",
  acknowledge_cancel: "POST /leases/{lease_id}/cancelled",
  update_lease_state: "PATCH /leases/{lease_id}/state",
  cancel_task: "POST /tasks/{task_id}/cancel",
  cancel_tasks: "POST /tasks/cancel",
  aggregate_tasks: "GET /tasks/aggregate",
  list_tag_keys: "GET /tags",
  list_tag_values: "GET /tags/{key}/values",
  put_group: "PUT /groups/{name}",
  list_groups: "GET /groups",
  healthz: "GET /healthz",
  readyz: "GET /readyz",
  stream_events: "GET /events",
  get_snapshot: "GET /snapshot",
  get_metrics: "GET /metrics",
} as const satisfies Record<OperationId, string>;

const baseUrl = process.argv[2] ?? process.env["TASKMILL_URL"];
if (!baseUrl) throw new Error("usage: node roundtrip.js <base url>");
const calls: Call[] = [];
const client = connect(baseUrl, calls);

/** The body of a success answer with exactly this status. */
function ok<D, E>(r: { data?: D; error?: E; response: Response }, status: number, what: string): D {
  assert.equal(r.response.status, status, `${what}: ${r.response.status} ${JSON.stringify(r.error)}`);
  assert.ok(r.data !== undefined, `${what}: no body`);
  return r.data;
}

/** The problem body of an error answer with exactly this status. */
function refused<D, E>(r: { data?: D; error?: E; response: Response }, status: number, what: string): E {
  assert.equal(r.response.status, status, `${what}: ${r.response.status}`);
  assert.ok(r.error !== undefined, `${what}: no problem body`);
  assert.match(r.response.headers.get("content-type") ?? "", /^application\/problem\+json/);
  return r.error;
}

async function leaseOne(type: string): Promise<Schemas["Lease"]> {
  const granted = ok(
    await client.POST("/leases", { body: { worker_id: "ts-worker", types: [type], max_tasks: 1 } }),
    200,
    `lease ${type}`,
  );
  assert.equal(granted.leases.length, 1, `one ${type} lease`);
  const [lease] = granted.leases;
  assert.ok(lease);
  return lease;
}

async function submit(body: RequestBody<"/tasks", "post">): Promise<Task> {
  const answer = ok(await client.POST("/tasks", { body }), 201, `submit ${body.type}`);
  assert.equal(answer.outcome, "created");
  return answer.task;
}

// --- health ---------------------------------------------------------------------------------
const live = ok(await client.GET("/healthz"), 200, "healthz");
assert.equal(live.status, "ok");
const ready = ok(await client.GET("/readyz"), 200, "readyz");
assert.deepEqual([ready.status, ready.database, ready.migrations], ["ok", "ok", "current"]);

// --- submit: the smallest submit, a partial expected_io, dedup ------------------------------
const minimal = { type: "ts.min" } satisfies RequestBody<"/tasks", "post">;
const first = await submit(minimal);
assert.equal(first.priority, 128, "the default priority");
const io: Schemas["IO-Input"] = { read_bytes: 1 };
const withIo = await submit({ type: "ts.min", expected_io: io });
const fullIo: Schemas["IO-Output"] = withIo.expected_io;
assert.deepEqual(fullIo, { read_bytes: 1, write_bytes: 0, net_rx_bytes: 0, net_tx_bytes: 0 });

const keyed = await submit({ type: "ts.io", dedup_key: "k1", group: "g1", tags: { dst: "s3://a", profile: "dr" }, expected_io: { net_tx_bytes: 100 } });
await submit({ type: "ts.io", tags: { dst: "s3://a", profile: "other" }, expected_io: { net_tx_bytes: 50 } });
const onB = await submit({ type: "ts.io", tags: { dst: "s3://b" }, expected_io: { net_tx_bytes: 7 } });
await submit({ type: "ts.io", tags: { profile: "dr" }, expected_io: { net_tx_bytes: 1 } });

const again = ok(await client.POST("/tasks", { body: { type: "ts.io", dedup_key: "k1" } }), 200, "dedup");
assert.equal(again.outcome, "deduplicated");
assert.equal(again.task.id, keyed.id);

// --- batch: created, rejected, superseded, deduplicated -------------------------------------
const batch = ok(
  await client.POST("/tasks/batch", {
    body: {
      tasks: [
        { type: "ts.io", dedup_key: "b1" },
        { type: "ts.io", dedup_key: "k1", on_duplicate: "reject" },
        { type: "ts.io", dedup_key: "b2" },
        { type: "ts.io", dedup_key: "b2", on_duplicate: "supersede" },
        { type: "ts.io", dedup_key: "b1" },
      ],
    },
  }),
  200,
  "batch",
);
const outcomes = batch.results.map((item) => item.outcome);
assert.deepEqual(outcomes, ["created", "rejected", "created", "superseded", "deduplicated"]);
const [b1, rejected, b2, b2Again, b1Again] = batch.results;
assert.ok(b1 && rejected && b2 && b2Again && b1Again);
assert.ok(rejected.outcome === "rejected" && b2.outcome !== "rejected");
const existing: string = rejected.existing_task_id;
assert.equal(existing, keyed.id);
assert.ok(b2Again.outcome === "superseded");
const replacedInBatch: string = b2Again.replaced_task_id;
assert.equal(replacedInBatch, b2.task_id);
assert.ok(b1.outcome !== "rejected" && b1Again.outcome === "deduplicated");
assert.equal(b1Again.task_id, b1.task_id);
assert.equal(b1.task?.dedup_key, "b1");

// --- tag queries (the repeatable `tag=key:value` form) and aggregates -----------------------
const both = ok(await client.GET("/tasks", { params: { query: { tag: ["dst:s3://a", "profile:dr"] } } }), 200, "tag AND");
assert.deepEqual(both.tasks.map((t) => t.id), [keyed.id]);
const either = ok(
  await client.GET("/tasks", { params: { query: { tag: ["dst:s3://a", "dst:s3://b"], type: ["ts.io"], limit: 10 } } }),
  200,
  "tag OR",
);
assert.equal(either.tasks.length, 3);
assert.ok(either.tasks.some((t) => t.id === onB.id));
const pendingOnly = ok(await client.GET("/tasks", { params: { query: { status: ["pending"], type: ["ts.min"] } } }), 200, "status");
assert.equal(pendingOnly.tasks.length, 2);

const aggregate = ok(
  await client.GET("/tasks/aggregate", {
    params: { query: { group_by: ["tag.dst"], sum: ["expected_io.net_tx_bytes"], type: ["ts.io"] } },
  }),
  200,
  "aggregate",
);
assert.equal(aggregate.truncated, false);
const sums: Record<string, number | null | undefined> = {};
for (const group of aggregate.groups) {
  sums[String(group.key["tag.dst"])] = group.sum["expected_io.net_tx_bytes"];
}

const keys = ok(await client.GET("/tags", { params: { query: { prefix: "" } } }), 200, "tag keys");
assert.deepEqual([...keys.keys].sort(), ["dst", "profile"]);
const values = ok(await client.GET("/tags/{key}/values", { params: { path: { key: "dst" } } }), 200, "tag values");
const valueCounts = Object.fromEntries(values.values.map((v) => [v.value, v.count]));

// --- groups ---------------------------------------------------------------------------------
const group = ok(await client.PUT("/groups/{name}", { params: { path: { name: "g1" } }, body: { max_concurrency: 5 } }), 200, "put group");
assert.equal(group.max_concurrency, 5);
const groups = ok(await client.GET("/groups"), 200, "groups");
assert.ok(groups.groups.some((g) => g.name === "g1" && g.max_concurrency === 5 && g.pending === 1));

// --- a lease: heartbeat with progress, state patch, complete --------------------------------
const work = await submit({ type: "ts.work", payload: { n: 1 } });
const lease = await leaseOne("ts.work");
assert.equal(lease.task.id, work.id);
assert.equal(lease.task.attempt, 1);
assert.equal(lease.cancel, null);
const beat = ok(
  await client.POST("/leases/{lease_id}/heartbeat", { params: { path: { lease_id: lease.lease_id } }, body: { progress: { fraction: 0.5 } } }),
  200,
  "heartbeat",
);
assert.equal(beat.cancel, null);
const patched = ok(
  await client.PATCH("/leases/{lease_id}/state", { params: { path: { lease_id: lease.lease_id } }, body: { state: { step: 2 } } }),
  200,
  "state",
);
assert.deepEqual(patched.state, { step: 2 });
const done = ok(
  await client.POST("/leases/{lease_id}/complete", {
    params: { path: { lease_id: lease.lease_id } },
    body: { result: { bytes: 123 }, actual_io: { write_bytes: 123 } },
  }),
  200,
  "complete",
);
assert.equal(done.status, "completed");
const read = ok(await client.GET("/tasks/{task_id}", { params: { path: { task_id: work.id } } }), 200, "get");
assert.deepEqual(read.result, { bytes: 123 });
assert.equal(read.actual_io?.write_bytes, 123);
assert.equal(read.progress?.fraction, 0.5);
const late = refused(
  await client.POST("/leases/{lease_id}/complete", { params: { path: { lease_id: lease.lease_id } }, body: {} }),
  409,
  "complete twice",
);
assert.equal(late.type, "urn:taskmill:problem:lease-conflict");

// --- fail, release, batch completion --------------------------------------------------------
const doomed = await submit({ type: "ts.fail", retry: { max_attempts: 1 } });
const failLease = await leaseOne("ts.fail");
const failed = ok(
  await client.POST("/leases/{lease_id}/fail", { params: { path: { lease_id: failLease.lease_id } }, body: { error: "boom", retryable: false } }),
  200,
  "fail",
);
assert.equal(failed.id, doomed.id);
assert.equal(failed.status, "failed");

const given = await submit({ type: "ts.release" });
const releaseLease = await leaseOne("ts.release");
const released = ok(await client.POST("/leases/{lease_id}/release", { params: { path: { lease_id: releaseLease.lease_id } } }), 200, "release");
assert.equal(released.id, given.id);
assert.equal(released.status, "pending");
assert.equal(released.attempt, 0);

await submit({ type: "ts.many" });
await submit({ type: "ts.many" });
const many = ok(await client.POST("/leases", { body: { worker_id: "ts-worker", types: ["ts.many"], max_tasks: 5 } }), 200, "lease many");
assert.equal(many.leases.length, 2);
const completedBatch = ok(
  await client.POST("/leases/complete", {
    body: { items: [...many.leases.map((l) => ({ lease_id: l.lease_id, result: l.task.id })), { lease_id: "nope" }] },
  }),
  200,
  "complete batch",
);
const batchOk = completedBatch.results.filter((item) => item.ok);
assert.equal(batchOk.length, 2);
for (const item of completedBatch.results) {
  if (item.ok) {
    assert.equal(item.status, "completed");
    assert.equal(item.task?.status, "completed");
  } else {
    const problem: Schemas["Problem"] = item.error;
    assert.equal(item.lease_id, "nope");
    assert.equal(problem.type, "urn:taskmill:problem:not-found");
  }
}

// --- supersede a running task: the cancel directive, then the acknowledgement ---------------
const v1 = await submit({ type: "ts.sup", dedup_key: "sup", payload: { v: 1 } });
const v1Lease = await leaseOne("ts.sup");
assert.equal(v1Lease.task.id, v1.id);
const superseding = ok(
  await client.POST("/tasks", { body: { type: "ts.sup", dedup_key: "sup", on_duplicate: "supersede", payload: { v: 2 } } }),
  201,
  "supersede",
);
assert.equal(superseding.outcome, "superseded");
let replacedTaskId = "";
if (superseding.outcome === "superseded") {
  const replaced = superseding.replaced_task_id;
  const isString: Equal<typeof replaced, string> = true;
  assert.ok(isString);
  replacedTaskId = replaced;
}
assert.equal(replacedTaskId, v1.id);
const v2 = superseding.task;
assert.equal(v2.supersedes, v1.id);
const told = ok(
  await client.POST("/leases/{lease_id}/heartbeat", { params: { path: { lease_id: v1Lease.lease_id } }, body: {} }),
  200,
  "heartbeat after supersede",
);
assert.ok(told.cancel !== null, "a cancel directive");
assert.equal(told.cancel.reason, "superseded");
let supersededBy = "";
if (told.cancel.reason === "superseded") {
  const by: string = told.cancel.superseded_by;
  supersededBy = by;
}
assert.equal(supersededBy, v2.id);
const acked = ok(await client.POST("/leases/{lease_id}/cancelled", { params: { path: { lease_id: v1Lease.lease_id } } }), 200, "ack");
assert.equal(acked.id, v1.id);
assert.equal(acked.status, "superseded");
assert.equal(acked.superseded_by, v2.id);
assert.equal(acked.cancel_reason, "superseded");

// --- cancel one, cancel matching -------------------------------------------------------------
const unwanted = await submit({ type: "ts.cancel" });
const cancelled = ok(await client.POST("/tasks/{task_id}/cancel", { params: { path: { task_id: unwanted.id } } }), 200, "cancel");
assert.equal(cancelled.status, "cancelled");
await submit({ type: "ts.cancel", tags: { wave: "c" } });
await submit({ type: "ts.cancel", tags: { wave: "c" } });
const matching = ok(await client.POST("/tasks/cancel", { body: { filter: { tags: { wave: "c" } } } }), 200, "cancel matching");
assert.deepEqual(matching, { cancelled: 2, cancelling: 0 });

// --- a 422 is a ValidationProblem, a 404 a Problem -------------------------------------------
const invalid = refused(await client.POST("/tasks", { body: { type: "ts.bad", priority: 999 } }), 422, "422");
assert.ok(isValidationProblem(invalid), JSON.stringify(invalid));
const validation: ValidationProblem = invalid;
const invalidFields = validation.errors.map((e) => e.field);
assert.deepEqual(invalidFields, ["priority"]);
const missing = refused(await client.GET("/tasks/{task_id}", { params: { path: { task_id: "nope" } } }), 404, "404");
assert.equal(missing.type, "urn:taskmill:problem:not-found");

// --- snapshot and metrics ---------------------------------------------------------------------
const snapshot = ok(await client.GET("/snapshot", { params: { query: { by_tag: "dst" } } }), 200, "snapshot");
const statuses: Schemas["StatusCounts"] = snapshot.statuses;
const dstA = snapshot.tags?.["dst"]?.["s3://a"];
assert.ok(dstA, JSON.stringify(snapshot.tags));
const metrics = ok(await client.GET("/metrics", { parseAs: "text" }), 200, "metrics");
assert.equal(typeof metrics, "string");
assert.match(metrics, /^# (HELP|TYPE) /m);

// --- SSE: read from the start, resume after an id with Last-Event-ID ------------------------
class EventStream {
  private readonly abort = new AbortController();
  private readonly queue: Event[] = [];
  private buffer = "";
  private reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  private readonly decoder = new TextDecoder();
  private fields: { id?: string; event?: string; data: string[] } = { data: [] };

  async open(lastEventId: string, type: string): Promise<void> {
    const r = await client.GET("/events", {
      params: { query: { type: [type] }, header: { "Last-Event-ID": lastEventId } },
      parseAs: "stream",
      signal: this.abort.signal,
    });
    const body = ok(r, 200, "events");
    assert.match(r.response.headers.get("content-type") ?? "", /^text\/event-stream/);
    assert.ok(body !== null);
    this.reader = body.getReader();
  }

  /** The next event, within `ms` milliseconds. */
  async next(ms = 15_000): Promise<Event> {
    const deadline = Date.now() + ms;
    while (this.queue.length === 0) {
      const left = deadline - Date.now();
      assert.ok(left > 0, "no event within the deadline");
      assert.ok(this.reader);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no event within ${ms} ms`)), left);
      });
      try {
        const chunk = await Promise.race([this.reader.read(), timeout]);
        assert.ok(!chunk.done, "the server ended the stream");
        this.feed(this.decoder.decode(chunk.value, { stream: true }));
      } finally {
        clearTimeout(timer);
      }
    }
    const event = this.queue.shift();
    assert.ok(event);
    return event;
  }

  close(): void {
    this.abort.abort();
  }

  private feed(text: string): void {
    this.buffer += text;
    let end: number;
    while ((end = this.buffer.search(/\r?\n/)) >= 0) {
      const line = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + (this.buffer[end] === "\r" ? 2 : 1));
      if (line === "") {
        if (this.fields.data.length > 0) {
          const data: unknown = JSON.parse(this.fields.data.join("\n"));
          assert.ok(isEvent(data), `not an Event: ${JSON.stringify(data)}`);
          assert.equal(String(data.id), this.fields.id, "the id: line is the data's id");
          assert.equal(data.event, this.fields.event, "the event: line is the data's event");
          this.queue.push(data);
        }
        this.fields = { data: [] };
      } else if (line.startsWith("id:")) {
        this.fields.id = line.slice(3).trim();
      } else if (line.startsWith("event:")) {
        this.fields.event = line.slice(6).trim();
      } else if (line.startsWith("data:")) {
        this.fields.data.push(line.slice(5).trimStart());
      }
    }
  }
}

const sseTasks: string[] = [];
for (let i = 0; i < 4; i++) sseTasks.push((await submit({ type: "ts.sse", tags: { n: String(i) } })).id);
const fromStart = new EventStream();
await fromStart.open("0", "ts.sse");
const seenFirst: Event[] = [];
for (let i = 0; i < 4; i++) seenFirst.push(await fromStart.next());
fromStart.close();
assert.deepEqual(seenFirst.map((e) => [e.event, e.task_id]), sseTasks.map((id) => ["task.created", id]));
const [, resumeAfter] = seenFirst;
assert.ok(resumeAfter);
const resumed = new EventStream();
await resumed.open(String(resumeAfter.id), "ts.sse");
const seenResumed: Event[] = [await resumed.next(), await resumed.next()];
const liveTask = await submit({ type: "ts.sse", tags: { n: "live" } });
seenResumed.push(await resumed.next());
resumed.close();
const liveEvent = seenResumed[2];
assert.ok(liveEvent);
assert.equal(liveEvent.task_id, liveTask.id);
assert.equal(liveEvent.event, "task.created");
const createdTags: Event["tags"] = liveEvent.tags;
assert.deepEqual(createdTags, { n: "live" });
const resumedIds = seenResumed.map((e) => e.id);
assert.deepEqual(resumedIds.slice(0, 2), seenFirst.slice(2).map((e) => e.id), "resume continues after the id");
assert.ok(resumedIds.every((id, i) => i === 0 || id > (resumedIds[i - 1] ?? Infinity)), "ascending, no repeats");
assert.ok(resumedIds.every((id) => id > resumeAfter.id));

// --- what the test checks ---------------------------------------------------------------------
const summary = {
  operations: OPERATIONS,
  calls,
  ids: {
    first: first.id,
    keyed: keyed.id,
    batch_rejected_existing: existing,
    batch_replaced: replacedInBatch,
    batch_b2: b2.task_id,
    work: work.id,
    failed: doomed.id,
    released: given.id,
    superseded: v1.id,
    superseding: v2.id,
    replaced_task_id: replacedTaskId,
    superseded_by: supersededBy,
    cancelled: unwanted.id,
  },
  batch_outcomes: outcomes,
  tag_and: both.tasks.map((t) => t.id),
  tag_or: either.tasks.length,
  aggregate_sums: sums,
  tag_values: valueCounts,
  snapshot: { pending: statuses.pending, superseded: statuses.superseded, dst_a_net_tx: dstA.expected_io.net_tx_bytes },
  validation_fields: invalidFields,
  sse: {
    first: seenFirst.map((e) => e.id),
    resumed_after: resumeAfter.id,
    resumed: resumedIds,
    live_task: liveTask.id,
  },
};
console.log(JSON.stringify(summary));
