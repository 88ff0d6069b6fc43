// Deliberately wrong uses of the generated types: tsc must refuse every line after a
// `@ts-expect-error` (it reports an unused directive otherwise). The test also compiles a copy
// without the directives and checks that each of those lines fails with the TS error code
// named in its directive, so a line cannot pass by failing for some other reason.
// Type-checked only, never run.
import type { components, RequestBody, Schemas, TaskmillClient } from "./api.js";

declare const client: TaskmillClient;

export async function wrongCalls(): Promise<void> {
  // @ts-expect-error TS2322 "Property 'type' is missing": a submit without `type`
  await client.POST("/tasks", { body: { priority: 5 } });
  // @ts-expect-error TS2322 "Type 'string' is not assignable to type 'number'": `priority: "5"`
  await client.POST("/tasks", { body: { type: "t", priority: "5" } });
  // @ts-expect-error TS2322 "Type '\"replace\"' is not assignable": no `replace` in on_duplicate's enum
  await client.POST("/tasks", { body: { type: "t", on_duplicate: "replace" } });
  // An unknown body field: `satisfies` (openapi-fetch's inline `body` cannot catch it, #1769).
  // @ts-expect-error TS2561 "'on_duplicat' does not exist": an unknown body field
  await client.POST("/tasks", { body: { type: "t", on_duplicat: "reject" } satisfies RequestBody<"/tasks", "post"> });
  // @ts-expect-error TS2561 "'tag' does not exist": an unknown field of a typed TaskSubmit
  const typo: Schemas["TaskSubmit"] = { type: "t", tag: { a: "b" } };
  // @ts-expect-error TS2820 "Did you mean": a status query of `runing`
  await client.GET("/tasks", { params: { query: { status: ["runing"] } } });
  // @ts-expect-error TS2353 "'dst' does not exist in type 'string[]'": `tag` is a list of `key:value`, not a map
  await client.GET("/tasks", { params: { query: { tag: { dst: "a" } } } });
  // @ts-expect-error TS2820 "expected_io.bytes": no `sum` over a field the enum does not name
  await client.GET("/tasks/aggregate", { params: { query: { sum: ["expected_io.bytes"] } } });
  // @ts-expect-error TS2741 "Property 'lease_id' is missing": the lease path needs its lease_id
  await client.POST("/leases/{lease_id}/heartbeat", { params: { path: {} }, body: {} });
  // @ts-expect-error TS2322 "Type 'string' is not assignable to type 'number'": extend_seconds is a number
  await client.POST("/leases/{lease_id}/heartbeat", { params: { path: { lease_id: "l" } }, body: { extend_seconds: "5" } });
  // @ts-expect-error TS2345 "/task/{task_id}": no such path
  await client.GET("/task/{task_id}", { params: { path: { task_id: "x" } } });
  void typo;
}

export function wrongReads(
  submitted: Schemas["SubmitCreated"] | Schemas["SubmitSuperseded"] | Schemas["SubmitDeduplicated"],
  item: Schemas["BatchSubmitResult"]["results"][number],
  snapshot: Schemas["Snapshot"],
  heartbeat: Schemas["HeartbeatResult"],
  done: Schemas["CompleteBatchResult"]["results"][number],
  task: Schemas["Task"],
): unknown[] {
  const read: unknown[] = [];
  // @ts-expect-error TS2339 "Property 'replaced_task_id' does not exist": replaced_task_id without narrowing on outcome === "superseded"
  read.push(submitted.replaced_task_id);
  if (submitted.outcome === "created") {
    // @ts-expect-error TS2339 "Property 'replaced_task_id' does not exist": a created answer has no replaced_task_id
    read.push(submitted.replaced_task_id);
  }
  if (item.outcome !== "rejected") {
    // @ts-expect-error TS2339 "Property 'existing_task_id' does not exist": on a batch item that is not rejected
    read.push(item.existing_task_id);
  } else {
    // @ts-expect-error TS2339 "Property 'task' does not exist": a rejected batch item has no task
    read.push(item.task);
  }
  // @ts-expect-error TS2551 "Property 'runing' does not exist": snapshot.statuses.runing
  read.push(snapshot.statuses.runing);
  if (heartbeat.cancel !== null) {
    // @ts-expect-error TS2339 "Property 'superseded_by' does not exist": superseded_by without narrowing on reason
    read.push(heartbeat.cancel.superseded_by);
  }
  // @ts-expect-error TS18047 "'heartbeat.cancel' is possibly 'null'": cancel may be null
  read.push(heartbeat.cancel.reason);
  if (!done.ok) {
    // @ts-expect-error TS2339 "Property 'task' does not exist": a refused batch completion has no task
    read.push(done.task);
  }
  // @ts-expect-error TS2367 "appears to be unintentional": no `done` status
  read.push(task.status === "done");
  // @ts-expect-error TS18047 "'task.finished_at' is possibly 'null'": finished_at is nullable
  read.push(task.finished_at.length);
  // @ts-expect-error TS2532 "possibly 'undefined'": an optional Event field may be absent
  read.push(({} as Schemas["Event"]).attempt.toFixed());
  return read;
}

export function wrongValues(): unknown[] {
  const problem: components["schemas"]["Problem"] = {
    // @ts-expect-error TS2820 "urn:taskmill:problem:teapot": a Problem type that is not in its enum
    type: "urn:taskmill:problem:teapot",
    title: "t",
    status: 418,
    detail: "d",
  };
  // @ts-expect-error TS2322 "Property 'errors' is missing": a ValidationProblem always has errors
  const validation: Schemas["ValidationProblem"] = { type: "urn:taskmill:problem:validation-error", title: "t", status: 422, detail: "d" };
  // @ts-expect-error TS2739 "net_rx_bytes, net_tx_bytes, write_bytes": an answer's IO has every figure (IO-Output)
  const answerIo: Schemas["IO-Output"] = { read_bytes: 1 };
  // @ts-expect-error TS2322 "linear": no such backoff
  const retry: Schemas["RetryPolicy-Input"] = { backoff: "linear" };
  // @ts-expect-error TS2322 "expired": a cancelled directive's reason is `cancelled`
  const directive: Schemas["CancelledDirective"] = { reason: "expired" };
  // @ts-expect-error TS2741 "Property 'superseded_by' is missing": a superseded directive names its successor
  const superseded: Schemas["SupersededDirective"] = { reason: "superseded" };
  // @ts-expect-error TS2322 "task.started": no such event name
  const event: Schemas["Event"]["event"] = "task.started";
  return [problem, validation, answerIo, retry, directive, superseded, event];
}
