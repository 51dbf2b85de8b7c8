"""`POST /api/events` (incident events API, Bearer key) and `POST /v2/enqueue` (PagerDuty
Events API v2, the routing key is the credential). Both run `sendIncidentEvents`, for the
requests that arrive together, in arrival order (`rest_compat.batched`)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from resolvers.auth import Principal, Scope
from resolvers.errors import InvalidInput
from resolvers.incident_events import EventAction, IncidentEvent, new_dedup_key, validate_event
from rest_compat import batched
from rest_compat.common import (
    Answer,
    Endpoint,
    RestError,
    bearer_secret,
    read_json_object,
    render_pagerduty_error,
    require_principal,
    routed_principal,
)

# One execution for each batch of concurrent requests of one principal (`rest_compat.batched`).
SEND_INCIDENT_EVENTS = """
mutation SendIncidentEvents($inputs: [IncidentEventInput!]!) {
  sendIncidentEvents(inputs: $inputs) {
    __typename
    ... on IncidentEventAccepted { dedupKey incidentKey }
    ... on InvalidRoutingKey { code message }
    ... on InvalidEvent { message fields { field message } }
  }
}
"""


def _answer(result: dict[str, Any]) -> dict[str, Any] | BaseException:
    """One request's own item of `sendIncidentEvents`."""
    if result["__typename"] == "InvalidRoutingKey":
        return RestError(400, "INVALID_ROUTING_KEY", result["message"])
    if result["__typename"] == "InvalidEvent":
        errors = [f"{item['field']}: {item['message']}" for item in result["fields"]]
        return RestError(400, "INVALID_EVENT", result["message"], errors=errors)
    return result


SEND = batched.ListMutation(
    document=SEND_INCIDENT_EVENTS,
    field="sendIncidentEvents",
    answer=_answer,
    max_items=lambda e: min(e.settings.batch_max, e.settings.max_incident_events_per_call),
    # A routing key names one service; None (a service id): it may be any.
    target=lambda principal, event: event.routing_key,
)


async def post_api_events(endpoint: Endpoint, request: Request) -> JSONResponse:
    """`POST /api/events` with `Authorization: Bearer KEY` (`events:write`): 202."""
    try:
        principal = await require_principal(bearer_secret(request), Scope.EVENTS_WRITE)
        body = await read_json_object(request, endpoint.settings)
        return await _send(endpoint, body, principal)
    except RestError as exc:
        return render_pagerduty_error(exc)


async def post_enqueue(endpoint: Endpoint, request: Request) -> JSONResponse:
    """`POST /v2/enqueue`: no auth header; `dedup_key` is generated for a trigger without one."""
    try:
        body = await read_json_object(request, endpoint.settings)
        _, principal = await routed_principal(body)
        if body.get("event_action") == EventAction.TRIGGER and body.get("dedup_key") is None:
            body = {**body, "dedup_key": new_dedup_key()}
        return await _send(endpoint, body, principal)
    except RestError as exc:
        return render_pagerduty_error(exc)


async def _send(endpoint: Endpoint, body: dict[str, Any], principal: Principal) -> JSONResponse:
    """Validate as the mutation does (so errors name fields), send the event with the
    requests that arrive meanwhile (one mutation call per principal), render 202."""
    try:
        event = validate_event(body, settings=endpoint.settings)
    except InvalidInput as exc:
        raise RestError.invalid(exc) from None
    result = await batched.submit(endpoint, SEND, principal, _input(event), validated=event)
    return Answer(
        {
            "status": "success",
            "message": "Event processed",
            "dedup_key": result["dedupKey"],
            "incident_key": result["incidentKey"],
        },
        status_code=202,
    )


def _input(event: IncidentEvent) -> dict[str, Any]:
    """The mutation's input, built from the validated event."""
    given: dict[str, Any] = {
        "eventAction": event.action.name,
        "dedupKey": event.dedup_key,
        "routingKey": event.routing_key,
        "serviceId": event.service_id,
    }
    alert = event.alert
    if alert is not None:
        given["payload"] = {
            "summary": alert.summary,
            "source": alert.source,
            "severity": alert.severity.name,
            "timestamp": alert.sent_at.isoformat() if alert.sent_at else None,
            "component": alert.component,
            "group": alert.group,
            "class": alert.event_class,
            "customDetails": alert.custom_details,
        }
        given["images"] = alert.images
        given["links"] = alert.links
        given["client"] = alert.client
        given["clientUrl"] = alert.client_url
    return {name: value for name, value in given.items() if value is not None}
