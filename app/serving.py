"""Graceful shutdown: tell the app the moment the server is asked to stop.

uvicorn, on SIGTERM or SIGINT, stops accepting connections, waits for the requests in
flight (up to ``timeout_graceful_shutdown``) and only then runs the lifespan shutdown. A
long poll is a request in flight too: without a word from the server it would hold the
shutdown for up to ``wait_seconds``. ASGI has no "shutdown has begun" event, so while the
app runs it chains a handler in front of the server's own signal handlers that calls
``drain`` (in the event loop) and then hands the signal on unchanged. This works whatever
started the app (``taskmill serve``, ``--workers N``, a plain ``uvicorn`` command).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def drain_on_signals(drain: Callable[[], None]) -> Iterator[None]:
    """While inside, SIGTERM/SIGINT first schedule ``drain()`` in the running loop."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be handled on the main thread (e.g. in-process tests)
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop may be closing already
            loop.call_soon_threadsafe(drain)
        before = previous.get(signum)
        if callable(before):
            before(signum, frame)
        elif before == signal.SIG_DFL:  # nobody handles it: die as the signal says
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    for sig in SIGNALS:
        previous[int(sig)] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for signum, before in previous.items():
            # Put back what was there, unless someone replaced our handler meanwhile.
            if signal.getsignal(signum) is handler:
                signal.signal(signum, before)
