"""`POST /events` (change events API) and `POST /v2/change/enqueue` (PagerDuty change events)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from resolvers import changes
from resolvers.auth import Principal, Scope
from resolvers.errors import FieldError, InvalidInput
from rest_compat import batched
from rest_compat.common import (
    Answer,
    Endpoint,
    RestError,
    bearer_secret,
    only_known,
    read_json_object,
    render_error,
    render_pagerduty_error,
    require_principal,
    routed_principal,
)

# One execution for each batch of concurrent requests of one principal (`rest_compat.batched`).
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


async def _record(endpoint: Endpoint, raw: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """Validate as the mutation does (so errors name fields), then record the change."""
    try:
        data = changes.validate_change(raw, settings=endpoint.settings)
    except InvalidInput as exc:
        raise RestError.invalid(exc) from None
    return await _submit(endpoint, raw, principal, data)


def _answer(answer: dict[str, Any]) -> dict[str, Any] | BaseException:
    """One request's own item of `recordChanges`."""
    if answer["__typename"] != "ChangeRecorded":
        return RestError(400, "INVALID_EVENT", answer["message"])
    return answer


RECORD = batched.ListMutation(
    document=RECORD_CHANGES,
    field="recordChanges",
    answer=_answer,
    max_items=lambda e: min(e.settings.batch_max, e.settings.max_changes_per_call),
)


async def _submit(
    endpoint: Endpoint, raw: dict[str, Any], principal: Principal, data: changes.ChangeData
) -> dict[str, Any]:
    """Record a validated change (`data`, from `raw`) with the requests that arrive
    meanwhile (one mutation call per principal); answer once it is committed."""
    item = only_known(raw, FIELDS)
    return await batched.submit(endpoint, RECORD, principal, item, validated=data)


async def post_events(endpoint: Endpoint, request: Request) -> JSONResponse:
    """`POST /events` with `Authorization: Bearer KEY`: 201 with the stored ids."""
    try:
        principal = await require_principal(bearer_secret(request), Scope.EVENTS_WRITE)
        raw = await read_json_object(request, endpoint.settings)
        result = await _record(endpoint, raw, principal)
    except RestError as exc:
        return render_error(exc)
    return Answer(
        {"id": result["change"]["id"], "entryId": result["entryId"], "status": "created"},
        status_code=201,
    )


async def post_pagerduty_change(endpoint: Endpoint, request: Request) -> JSONResponse:
    """`POST /v2/change/enqueue`: the routing key in the body is the credential."""
    try:
        body = await read_json_object(request, endpoint.settings)
        service, principal = await routed_principal(body)
        try:
            raw = changes.pagerduty_change_to_raw(body)
            raw["service"] = service.name
            if raw.get("timestamp") is None:
                raw["timestamp"] = datetime.now(UTC).isoformat()
            data = changes.validate_change(raw, settings=endpoint.settings)
        except InvalidInput as exc:
            raise RestError.invalid(InvalidInput([_pd_field(e) for e in exc.errors])) from None
        await _submit(endpoint, raw, principal, data)
    except RestError as exc:
        return render_pagerduty_error(exc)
    return Answer({"status": "success", "message": "Change event processed"}, status_code=202)


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
