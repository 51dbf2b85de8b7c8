"""REST requests that arrive together, run as one call of a list mutation: `POST /events`
runs `recordChanges`, `POST /v1/events` runs `recordAgentEvents`, `POST /api/events` and
`/v2/enqueue` run `sendIncidentEvents`, once per principal for each batch (once per run of
consecutive requests of one principal where two principals act on one incident service or
agent run), and every request is answered from its own item once the call is done."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from graphql import GraphQLError

from resolvers.auth import Principal
from resolvers.batching import Batcher
from rest_compat.arrivals import PLACE
from rest_compat.common import Endpoint, error_outcome

Outcome = dict[str, Any] | BaseException


@dataclass(frozen=True, slots=True)
class ListMutation:
    """A list mutation (`field(inputs: [...])` in `document`) and how a REST request reads
    its own item's answer (an item that failed with an error of its own never gets here)."""

    document: str
    field: str
    answer: Callable[[dict[str, Any]], Outcome]
    max_items: Callable[[Endpoint], int]
    # What a request (its principal, its validated input) acts on, where requests of
    # different principals acting on the same thing must be applied in arrival order
    # (incident events: a service's routing key and any key of its workspace move its
    # incidents; agent events: any key of a workspace may post to a run); None: not known,
    # so it may be anything. A batch in which two principals act on the same thing runs as
    # consecutive runs of one principal's requests, one call after the other; any other
    # batch, and every batch of a mutation without `target`, as one call per principal,
    # all at once.
    target: Callable[[Principal, Any], Hashable | None] | None = None
    # Batches run at once (see `resolvers.batching`): while one waits for its store, the
    # next is read and decided; requests acting on one `target` still go in arrival order.
    lanes: Callable[[Endpoint], int] = lambda endpoint: 1

    @property
    def ordered(self) -> bool:
        return self.target is not None


@dataclass(frozen=True, slots=True)
class _Item:
    principal: Principal
    input: dict[str, Any]
    validated: Any  # what the mutation's own validation gives for `input`


async def submit(
    endpoint: Endpoint,
    mutation: ListMutation,
    principal: Principal,
    item: dict[str, Any],
    *,
    validated: Any,
) -> dict[str, Any]:
    """Run `item` as `principal` in the next call of `mutation`; its answer (or raise).
    `validated` is `item` as the mutation's validation gives it (the caller ran it, for
    its field-named errors): the mutation takes it instead of validating again."""
    queued = _Item(principal, item, validated)
    place = PLACE.get()
    if place is None:
        answer: dict[str, Any] = await batcher(endpoint, mutation).submit(queued)
        return answer
    await place.turn()  # those that arrived before it have joined (`rest_compat.arrivals`)
    joined = batcher(endpoint, mutation).enqueue(queued)
    place.leave()
    return await joined


def batcher(endpoint: Endpoint, mutation: ListMutation) -> Batcher[_Item, dict[str, Any]]:
    """The endpoint's batcher for `mutation`, made on first use."""
    found = endpoint.batchers.get(mutation.document)
    if found is None:
        target = mutation.target
        found = endpoint.batchers[mutation.document] = Batcher(
            partial(_run_batch, endpoint, mutation),
            max_items=mutation.max_items(endpoint),
            lanes=mutation.lanes(endpoint),
            target=None if target is None else lambda item: target(item.principal, item.validated),
        )
    return found


async def _run_batch(
    endpoint: Endpoint, mutation: ListMutation, items: Sequence[_Item]
) -> list[Outcome]:
    """One call per principal of the batch (per run of one principal's consecutive items,
    one after the other, where two principals act on one target); each item's own outcome,
    in order."""
    groups: list[tuple[Principal, list[int]]] = []
    if _shared_target(mutation, items):
        for index, item in enumerate(items):
            if groups and groups[-1][0] == item.principal:
                groups[-1][1].append(index)
            else:
                groups.append((item.principal, [index]))
        results = [
            await _run_as(endpoint, mutation, principal, [items[i] for i in indexes])
            for principal, indexes in groups
        ]
    else:
        by_principal: dict[Principal, list[int]] = {}
        for index, item in enumerate(items):
            by_principal.setdefault(item.principal, []).append(index)
        groups = list(by_principal.items())
        results = await asyncio.gather(
            *(
                _run_as(endpoint, mutation, principal, [items[i] for i in indexes])
                for principal, indexes in groups
            )
        )
    found = {
        index: outcome
        for (_, indexes), outcomes in zip(groups, results, strict=True)
        for index, outcome in zip(indexes, outcomes, strict=True)
    }
    return [found[index] for index in range(len(items))]


def _shared_target(mutation: ListMutation, items: Sequence[_Item]) -> bool:
    """Whether two principals of the batch act on one target (or may: an unknown one)."""
    if mutation.target is None or len({item.principal for item in items}) < 2:
        return False
    acting: dict[Hashable, Principal] = {}
    for item in items:
        target = mutation.target(item.principal, item.validated)
        if target is None:
            return True
        if acting.setdefault(target, item.principal) != item.principal:
            return True
    return False


async def _run_as(
    endpoint: Endpoint, mutation: ListMutation, principal: Principal, items: Sequence[_Item]
) -> list[Outcome]:
    """One call for one principal's items: each item's answer, RestError or exception.
    Variables the call could not take (it ran nothing): each item alone."""
    inputs = [item.input for item in items]
    validated = [item.validated for item in items]
    result = await endpoint.run(
        mutation.document, {"inputs": inputs}, principal=principal, validated=validated
    )
    errors = result.errors or []
    refused = [error for error in errors if not error.path]
    if refused and len(items) > 1:
        calls = (_run_as(endpoint, mutation, principal, [item]) for item in items)
        if mutation.ordered:  # one after the other, as they arrived
            alone = [await call for call in calls]
        else:
            alone = await asyncio.gather(*calls)
        return [outcomes[0] for outcomes in alone]
    whole = refused or [error for error in errors if len(error.path or ()) < 2]
    if whole or result.data is None:  # nothing ran, or the call failed as a whole
        return [error_outcome(whole[0]) if whole else RuntimeError("no result")] * len(items)
    item_errors: dict[Any, GraphQLError] = {}
    for error in errors:
        if error.path:
            item_errors.setdefault(error.path[1], error)  # an item's first error
    outcomes: list[Outcome] = []
    for index, answer in enumerate(result.data[mutation.field]):
        if index in item_errors:
            outcomes.append(error_outcome(item_errors[index]))
        elif answer is None:  # a null item with no error of its own
            outcomes.append(RuntimeError("no result and no error"))
        else:
            outcomes.append(mutation.answer(answer))
    return outcomes
