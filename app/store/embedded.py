"""The private PostgreSQL used when no DATABASE_URL is given (the ``pgserver`` package)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class EmbeddedPostgres:
    """Starts PostgreSQL in ``data_dir`` (initialising it on first use) and stops it on close."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    def start(self) -> str:
        """Start (or attach to) the server and return its URL."""
        import pgserver  # imported lazily: only the embedded mode needs it

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
        return str(self._server.get_uri())

    def stop(self) -> None:
        """Stop the server if this process was its last user."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
