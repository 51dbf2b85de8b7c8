"""Batch loaders for the agent types' relations (a run's tool calls, a call's run and
approval, an approval's call and run): one query per relation for every object resolved in
the same tick, instead of one per object. `context_loader` also serves `schema.subjects`.

Never cached: a WebSocket keeps one context for all its events, and a cached row would go
stale between them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from strawberry.dataloader import DataLoader

from models.agent import Run, ToolCall
from models.approval import Approval
from resolvers import agent_queries
from schema.context import Context

K = TypeVar("K")
V = TypeVar("V")
Load = Callable[[list[K]], Awaitable[list[V]]]


def context_loader(context: Context, name: str, load: Load[K, V]) -> DataLoader[K, V]:
    """The context's cache-less DataLoader called `name`, made on first use."""
    loader: DataLoader[K, V] | None = context.extra.get(name)
    if loader is None:
        loader = context.extra[name] = DataLoader(load_fn=load, cache=False)
    return loader


async def _runs(ids: list[str]) -> list[Run | None]:
    found = await agent_queries.runs_by_ids(run_ids=ids)
    return [found.get(key) for key in ids]


async def _tool_calls(ids: list[str]) -> list[ToolCall | None]:
    found = await agent_queries.tool_calls_by_ids(tool_call_ids=ids)
    return [found.get(key) for key in ids]


def _tool_calls_of_runs(last: int) -> Load[str, list[ToolCall]]:
    async def load(ids: list[str]) -> list[list[ToolCall]]:
        found = await agent_queries.tool_calls_by_runs(run_ids=ids, last=last)
        return [found.get(key, []) for key in ids]

    return load


async def _approvals_of_tool_calls(ids: list[str]) -> list[Approval | None]:
    found = await agent_queries.approvals_by_tool_calls(tool_call_ids=ids)
    return [found.get(key) for key in ids]


async def run(context: Context, run_id: str) -> Run | None:
    """A run by our id (already known to be the caller's)."""
    return await context_loader(context, "runs", _runs).load(run_id)


async def tool_call(context: Context, tool_call_id: str) -> ToolCall | None:
    """A tool call by our id (already known to be the caller's)."""
    return await context_loader(context, "tool_calls", _tool_calls).load(tool_call_id)


async def tool_calls_of_run(context: Context, run_id: str, *, last: int) -> list[ToolCall]:
    """A run's `last` latest tool calls, in the order they were called."""
    name = f"tool_calls_of_run:{last}"  # one loader per page size asked
    return await context_loader(context, name, _tool_calls_of_runs(last)).load(run_id)


async def approval_of_tool_call(context: Context, tool_call_id: str) -> Approval | None:
    """The approval a tool call waited for, if any."""
    loader = context_loader(context, "approval_of_tool_call", _approvals_of_tool_calls)
    return await loader.load(tool_call_id)
