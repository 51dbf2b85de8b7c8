"""Holding the list-mutation calls REST batches make, to see how requests were grouped."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from resolvers.batching import Batcher
from rest_compat import batched
from rest_compat.common import Endpoint


class Held:
    """The list-mutation calls REST makes (`recordChanges`, `recordAgentEvents`), held
    until `gate` is set; `sizes` are their numbers of inputs, in call order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        self.gate = asyncio.Event()
        self.batchers: list[Batcher[Any, Any]] = []
        run, batcher = Endpoint.run, batched.batcher

        async def held(endpoint: Endpoint, document: str, variables: Any, **kw: Any) -> Any:
            self.sizes.append(len(variables["inputs"]))
            await self.gate.wait()
            return await run(endpoint, document, variables, **kw)

        def seen(endpoint: Endpoint, mutation: batched.ListMutation) -> Batcher[Any, Any]:
            self.batchers.append(batcher(endpoint, mutation))
            return self.batchers[-1]

        monkeypatch.setattr(Endpoint, "run", held)
        monkeypatch.setattr(batched, "batcher", seen)

    async def calls(self, count: int) -> None:
        while len(self.sizes) < count:
            await asyncio.sleep(0)

    async def queued(self, count: int) -> None:
        while not self.batchers or len(self.batchers[-1]._pending) < count:
            await asyncio.sleep(0)
