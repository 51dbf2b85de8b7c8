"""REST requests that arrive together, run as one call of a list mutation: `POST /events`
runs `recordChanges`, `POST /v1/events` runs `recordAgentEvents`, once per principal for
each batch, and every request is answered from its own item once the call is done."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from resolvers.auth import Principal
from resolvers.batching import Batcher
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
    answer: dict[str, Any] = await batcher(endpoint, mutation).submit(queued)
    return answer


def batcher(endpoint: Endpoint, mutation: ListMutation) -> Batcher[_Item, dict[str, Any]]:
    """The endpoint's batcher for `mutation`, made on first use."""
    found = endpoint.batchers.get(mutation.document)
    if found is None:
        found = endpoint.batchers[mutation.document] = Batcher(
            partial(_run_batch, endpoint, mutation), max_items=mutation.max_items(endpoint)
        )
    return found


async def _run_batch(
    endpoint: Endpoint, mutation: ListMutation, items: Sequence[_Item]
) -> list[Outcome]:
    """One call per principal of the batch; each item's own outcome, in order."""
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
        alone = await asyncio.gather(
            *(_run_as(endpoint, mutation, principal, [item]) for item in items)
        )
        return [outcomes[0] for outcomes in alone]
    whole = refused or [error for error in errors if len(error.path or ()) < 2]
    if whole or result.data is None:  # nothing ran, or the call failed as a whole
        return [error_outcome(whole[0]) if whole else RuntimeError("no result")] * len(items)
    item_errors = {error.path[1]: error for error in errors if error.path}
    outcomes: list[Outcome] = []
    for index, answer in enumerate(result.data[mutation.field]):
        if index in item_errors:
            outcomes.append(error_outcome(item_errors[index]))
        elif answer is None:  # a null item with no error of its own
            outcomes.append(RuntimeError("no result and no error"))
        else:
            outcomes.append(mutation.answer(answer))
    return outcomes
