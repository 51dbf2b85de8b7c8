"""`POST /events` (change events API) and `POST /v2/change/enqueue` (PagerDuty change events)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from resolvers import auth, changes
from resolvers.auth import Principal, Scope
from resolvers.batching import Batcher
from resolvers.errors import FieldError, InvalidInput
from rest_compat.common import (
    Endpoint,
    RestError,
    bearer_secret,
    error_outcome,
    only_known,
    read_json_object,
    render_error,
    render_pagerduty_error,
    require_principal,
)

# One execution for each batch of concurrent requests of one principal (see `_batcher`).
RECORD_CHANGES = """
mutation RecordChanges($inputs: [ChangeInput!]!) {
  recordChanges(inputs: $inputs) {
    __typename
    ... on ChangeRecorded { change { id } entryId }
    ... on InvalidEvent { message }
  }
}
"""

FIELDS = (
    "name",
    "timestamp",
    "category",
    "source",
    "environment",
    "service",
    "labels",
    "metadata",
    "links",
)


@dataclass(frozen=True, slots=True)
class _Item:
    """One request's change, to record as its principal."""

    principal: Principal
    input: dict[str, Any]


async def _record(endpoint: Endpoint, raw: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """Validate as the mutation does (so errors name fields), then record the change."""
    try:
        changes.validate_change(raw, settings=endpoint.settings)
    except InvalidInput as exc:
        raise RestError.invalid(exc) from None
    return await _submit(endpoint, raw, principal)


async def _submit(endpoint: Endpoint, raw: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """Record a validated change with the requests that arrive meanwhile (one mutation call
    per principal); answer once it is committed."""
    return await _batcher(endpoint).submit(_Item(principal, only_known(raw, FIELDS)))


def _batcher(endpoint: Endpoint) -> Batcher[_Item, dict[str, Any]]:
    """The endpoint's batcher of changes: at most as many as one mutation call may carry."""
    batcher = endpoint.batchers.get(RECORD_CHANGES)
    if batcher is None:
        settings = endpoint.settings
        batcher = endpoint.batchers[RECORD_CHANGES] = Batcher(
            partial(_record_batch, endpoint),
            max_items=min(settings.batch_max, settings.max_changes_per_call),
        )
    return batcher


async def _record_batch(
    endpoint: Endpoint, items: Sequence[_Item]
) -> list[dict[str, Any] | BaseException]:
    """One `recordChanges` execution per principal of the batch; each item's own outcome."""
    by_principal: dict[Principal, list[int]] = {}
    for index, item in enumerate(items):
        by_principal.setdefault(item.principal, []).append(index)
    groups = list(by_principal.items())
    results = await asyncio.gather(
        *(
            _record_as(endpoint, principal, [items[i] for i in indexes])
            for principal, indexes in groups
        )
    )
    found = {
        index: outcome
        for (_, indexes), outcomes in zip(groups, results, strict=True)
        for index, outcome in zip(indexes, outcomes, strict=True)
    }
    return [found[index] for index in range(len(items))]


async def _record_as(
    endpoint: Endpoint, principal: Principal, items: Sequence[_Item]
) -> list[dict[str, Any] | BaseException]:
    """Run `recordChanges` for one principal's items: each item's result, RestError or
    exception. Variables the call could not take (it ran nothing): each item alone."""
    inputs = [item.input for item in items]
    result = await endpoint.run(RECORD_CHANGES, {"inputs": inputs}, principal=principal)
    errors = result.errors or []
    refused = [error for error in errors if not error.path]
    if refused and len(items) > 1:
        alone = await asyncio.gather(*(_record_as(endpoint, principal, [item]) for item in items))
        return [outcomes[0] for outcomes in alone]
    whole = refused or [error for error in errors if len(error.path or ()) < 2]
    if whole or result.data is None:  # nothing ran, or the call failed as a whole
        return [error_outcome(whole[0]) if whole else RuntimeError("no result")] * len(items)
    item_errors = {error.path[1]: error for error in errors if error.path}
    outcomes: list[dict[str, Any] | BaseException] = []
    for index, answer in enumerate(result.data["recordChanges"]):
        if index in item_errors:
            outcomes.append(error_outcome(item_errors[index]))
        elif answer is None:
            outcomes.append(RuntimeError("no result and no error"))
        elif answer["__typename"] != "ChangeRecorded":
            outcomes.append(RestError(400, "INVALID_EVENT", answer["message"]))
        else:
            outcomes.append(answer)
    return outcomes


async def post_events(endpoint: Endpoint, request: Request) -> JSONResponse:
    """`POST /events` with `Authorization: Bearer KEY`: 201 with the stored ids."""
    try:
        principal = await require_principal(bearer_secret(request), Scope.EVENTS_WRITE)
        raw = await read_json_object(request, endpoint.settings)
        result = await _record(endpoint, raw, principal)
    except RestError as exc:
        return render_error(exc)
    return JSONResponse(
        {"id": result["change"]["id"], "entryId": result["entryId"], "status": "created"},
        status_code=201,
    )


async def post_pagerduty_change(endpoint: Endpoint, request: Request) -> JSONResponse:
    """`POST /v2/change/enqueue`: the routing key in the body is the credential."""
    try:
        body = await read_json_object(request, endpoint.settings)
        routing_key = body.get("routing_key")
        service = (
            await auth.service_for_routing_key(routing_key=routing_key)
            if isinstance(routing_key, str) and routing_key
            else None
        )
        if service is None:
            raise RestError(400, "INVALID_ROUTING_KEY", "Routing key not found")
        raw = changes.pagerduty_change_to_raw(body)
        raw["service"] = service.name
        if raw.get("timestamp") is None:
            raw["timestamp"] = datetime.now(UTC).isoformat()
        principal = Principal(
            key_id=f"routing:{service.id}",
            workspace_id=service.workspace_id,
            name=f"service:{service.name}",
            scopes=frozenset({Scope.EVENTS_WRITE}),
        )
        try:
            changes.validate_change(raw, settings=endpoint.settings)
        except InvalidInput as exc:
            raise RestError.invalid(InvalidInput([_pd_field(e) for e in exc.errors])) from None
        await _submit(endpoint, raw, principal)
    except RestError as exc:
        return render_pagerduty_error(exc)
    return JSONResponse({"status": "success", "message": "Change event processed"}, status_code=202)


_PD_FIELD_NAMES = {
    "name": "payload.summary",
    "timestamp": "payload.timestamp",
    "source": "payload.source",
    "metadata": "payload.custom_details",
}


def _pd_field(error: FieldError) -> FieldError:
    head, dot, rest = error.field.partition(".")
    mapped = _PD_FIELD_NAMES.get(head, head)
    return FieldError(mapped + dot + rest, error.message)
