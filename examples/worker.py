"""An example worker. Run it against a running service:

    taskmill worker examples.worker:worker          # or: python -m examples.worker

then submit work:

    taskmill submit thumbnail '{"image": "cat.png", "sizes": [64, 128, 256]}'
    taskmill submit album '{"images": ["a.png", "b.png"]}'
"""

from __future__ import annotations

import asyncio
from typing import Any

from taskmill_sdk import PermanentError, TaskContext, Worker

# URL and token default to $TASKMILL_URL / $TASKMILL_TOKEN (else http://127.0.0.1:8000).
worker = Worker(concurrency=8, lease_seconds=30)


async def forget_partial_upload(ctx: TaskContext) -> None:
    """on_cancel: the task was superseded or cancelled while it ran; clean up."""
    print(f"{ctx.task_id} cancelled ({ctx.cancel_request}); state was {ctx.state}")


@worker.handler("thumbnail", on_cancel=forget_partial_upload)
async def thumbnail(ctx: TaskContext) -> dict[str, Any]:
    """An async handler: progress and state go out with the heartbeats."""
    image = ctx.payload.get("image")
    if not image:
        raise PermanentError("payload.image is required")  # fails without retrying
    done = list(ctx.state.get("done", []))  # resumes after a retry
    sizes = ctx.payload.get("sizes", [128])
    for i, size in enumerate(sizes, 1):
        if size not in done:
            await asyncio.sleep(0.01)  # the real work would go here
            done.append(size)
            ctx.update_state(done=done)
        ctx.set_progress(i / len(sizes), f"{size}px")
    return {"image": image, "sizes": done}


def sum_sizes(ctx: TaskContext) -> dict[str, Any]:
    """finalize: runs once every child has ended; its return value is the result."""
    children = ctx.children_sync()
    return {"thumbnails": sum(len(c.result["sizes"]) for c in children if c.result)}


@worker.handler("album", finalize=sum_sizes)
def album(ctx: TaskContext) -> str:
    """A sync handler (runs in a thread) that fans out into child tasks."""
    for image in ctx.payload["images"]:
        ctx.spawn_sync("thumbnail", {"image": image, "sizes": [64, 128]})
    return "spawned"


if __name__ == "__main__":
    worker.run()  # until SIGTERM / Ctrl-C
