"""The private PostgreSQL used when no DATABASE_URL is given (the ``pgserver`` package)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger("taskmill.embedded")


class EmbeddedPostgres:
    """Starts PostgreSQL in ``data_dir`` (initialising it on first use) and stops it on close."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    def is_initialised(self) -> bool:
        """Whether ``data_dir`` holds a database already (else ``start`` runs initdb)."""
        return (self.data_dir / "PG_VERSION").exists()  # the file pgserver checks too

    def start(self) -> str:
        """Start (or attach to) the server and return its URL."""
        # Importing pgserver picks the runtime directory of its lock file. Without
        # XDG_RUNTIME_DIR (containers, su, CI) platformdirs warns and falls back to a private
        # directory under /tmp, which does for a lock file: detail for the debug log, not a
        # warning every first-time user must puzzle over. Other warnings stay warnings.
        with warnings.catch_warnings(record=True) as caught:
            import pgserver  # imported lazily: only the embedded mode needs it
        for warning in caught:
            if "XDG_RUNTIME_DIR" in str(warning.message):
                log.debug("platformdirs: %s", warning.message)
            else:
                warnings.showwarning(
                    warning.message, warning.category, warning.filename, warning.lineno
                )

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
        return str(self._server.get_uri())

    def stop(self) -> None:
        """Stop the server if this process was its last user."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
