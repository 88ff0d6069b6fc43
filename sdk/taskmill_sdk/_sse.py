"""A minimal Server-Sent Events parser (the subset ``GET /events`` sends)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ._models import Event


@dataclass
class SSEParser:
    """Feed it lines (without their line ending); it returns an event at each blank line."""

    _id: str | None = None
    _event: str = "message"
    _data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> Event | None:
        """One line in; a complete :class:`Event` out when the line ends one."""
        if line == "":
            if not self._data:
                self._event = "message"
                return None
            text = "\n".join(self._data)
            self._data = []
            event, self._event = self._event, "message"
            try:
                data = json.loads(text)
            except ValueError:
                data = {"text": text}
            if not isinstance(data, dict):
                data = {"value": data}
            return Event(id=self._id or str(data.get("id", "")), event=event, data=data)
        if line.startswith(":"):
            return None  # a comment: the server's keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\x00" not in value:
            self._id = value
        return None
