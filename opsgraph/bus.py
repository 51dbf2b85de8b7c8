"""The pub/sub bus: after each commit a small (workspace, entry id) message is published.

broadcaster is the transport only (memory, Redis or PostgreSQL LISTEN/NOTIFY); the
database stays the source of truth, so messages carry ids, never payloads.
"""

from __future__ import annotations

import json
import logging

from broadcaster import Broadcast

log = logging.getLogger(__name__)

CHANNEL = "opsgraph_timeline"


class Bus:
    """Publishes committed timeline entries on the broadcast channel."""

    def __init__(self, url: str) -> None:
        self.url = _broadcast_url(url)
        self._broadcast = Broadcast(self.url)

    async def connect(self) -> None:
        await self._broadcast.connect()

    async def disconnect(self) -> None:
        await self._broadcast.disconnect()

    async def entry_committed(self, *, workspace_id: str, entry_id: int) -> None:
        """Announce a committed entry to every process."""
        message = json.dumps({"w": workspace_id, "e": entry_id}, separators=(",", ":"))
        await self._broadcast.publish(channel=CHANNEL, message=message)


def _broadcast_url(url: str) -> str:
    """broadcaster spells PostgreSQL `postgres://`; accept `postgresql://` too."""
    if url.startswith("postgresql://"):
        return "postgres://" + url.removeprefix("postgresql://")
    return url
