"""`GET /openapi.json`: the OpenAPI 3 description of every REST endpoint, built from the
settings so the documented limits are the enforced ones.

Request bodies follow the seeds (change, incident and agent events) and are never stricter
than the server: a body this document calls invalid is refused with a 4xx, but the server
also checks what JSON Schema cannot say (a routing key that exists, a trigger's payload).
Every error is documented in the `{"error": {"code", "message"}}` shape; the PagerDuty
endpoints add PagerDuty's `status`, `message` and `errors[]` beside it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from opsgraph.settings import Settings

JSON = "application/json"
NO_NUL = "^[^\\u0000]*$"
SHORT_TEXT = 200
MAX_URL_LENGTH = 2048
MAX_SOURCE_LENGTH = 255
EVENT_TYPES = ["run.started", "run.completed", "run.failed", "tool.called", "tool.completed"]
EVENT_TYPES += ["tool.failed"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _text(max_length: int = SHORT_TEXT, *, required: bool = False, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "maxLength": max_length, "pattern": NO_NUL}
    if required:
        schema["minLength"] = 1
    return {**schema, **extra}


def _object(
    properties: dict[str, Any], required: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return {**schema, **extra}


def _links(settings: Settings) -> dict[str, Any]:
    link = _object({"href": _text(MAX_URL_LENGTH, required=True), "text": _text(1024)}, ["href"])
    return {"type": "array", "maxItems": settings.max_labels, "items": link}


def _schemas(settings: Settings) -> dict[str, Any]:
    timestamp = {"type": "string", "format": "date-time", "example": "2026-03-04T14:25:00Z"}
    details = {"type": "object", "description": "Any JSON object, at most the metadata limit."}
    error = _object(
        {
            "error": _object(
                {
                    "code": {"type": "string", "example": "INVALID_EVENT"},
                    "message": {"type": "string"},
                },
                ["code", "message"],
            )
        },
        ["error"],
    )
    return {
        "Error": error,
        "PagerDutyError": {
            "allOf": [
                _ref("Error"),
                _object(
                    {
                        "status": {"type": "string", "example": "invalid event"},
                        "message": {"type": "string"},
                        "errors": {"type": "array", "items": {"type": "string"}},
                    },
                    ["status", "message", "errors"],
                ),
            ]
        },
        "ChangeEvent": _object(
            {
                "name": _text(settings.max_name_length, required=True),
                "timestamp": timestamp,
                "category": {"type": "string", "enum": ["BUSINESS", "TECHNICAL", "PROVIDER"]},
                "source": _text(required=True),
                "environment": _text(),
                "service": _text(),
                "labels": {
                    "type": "array",
                    "maxItems": settings.max_labels,
                    "items": _text(settings.max_label_length, required=True),
                },
                "metadata": details,
                "links": _links(settings),
            },
            ["name", "timestamp", "category", "source"],
            example={
                "name": "Deploy complete",
                "timestamp": "2026-03-04T14:25:00Z",
                "category": "TECHNICAL",
                "source": "ci-cd",
                "environment": "prod",
                "service": "api",
                "labels": ["release", "backend"],
                "metadata": {"commit": "1b2c3d4", "pipeline": "github-actions"},
            },
        ),
        "ChangeCreated": _object(
            {
                "id": {"type": "string", "example": "chg_01"},
                "entryId": {"type": "string"},
                "status": {"type": "string", "enum": ["created"]},
            },
            ["id", "entryId", "status"],
        ),
        "PagerDutyChangeEvent": _object(
            {
                "routing_key": _text(64, required=True),
                "payload": _object(
                    {
                        "summary": _text(settings.max_name_length, required=True),
                        "timestamp": timestamp,
                        "source": _text(),
                        "custom_details": details,
                    },
                    ["summary"],
                ),
                "links": _links(settings),
            },
            ["routing_key", "payload"],
        ),
        "PagerDutyAccepted": _object(
            {"status": {"type": "string"}, "message": {"type": "string"}},
            ["status", "message"],
        ),
        "IncidentEvent": _incident_event(settings, timestamp, details, routing_only=False),
        "PagerDutyEvent": _incident_event(settings, timestamp, details, routing_only=True),
        "IncidentAccepted": _object(
            {
                "status": {"type": "string", "enum": ["success"]},
                "message": {"type": "string"},
                "dedup_key": {"type": "string"},
                "incident_key": {
                    "type": "string",
                    "nullable": True,
                    "description": "The incident the event acted on; for an acknowledge "
                    "or resolve of a key with no open incident (recorded as dropped), the "
                    "incident the key last opened, now resolved, or null for a key never "
                    "triggered.",
                },
            },
            ["status", "message", "dedup_key", "incident_key"],
        ),
        "AgentEvent": _object(
            {
                "eventId": _text(required=True),
                "runId": _text(required=True),
                "agentId": _text(required=True),
                "timestamp": timestamp,
                "eventType": {"type": "string", "enum": EVENT_TYPES},
                "status": _text(64),
                "metadata": {
                    "type": "object",
                    "description": "By event type: task/model/reason/agentContext for "
                    "run.started; toolCallId, toolName, inputPayload, actionHint, reason, "
                    "agentContext for tool.called; toolCallId and outputPayload or error "
                    "for tool.completed/tool.failed.",
                },
            },
            ["eventId", "runId", "agentId", "timestamp", "eventType"],
            example={
                "eventId": "evt_001",
                "runId": "run_001",
                "agentId": "my-agent",
                "timestamp": "2026-03-19T10:00:00Z",
                "eventType": "run.started",
                "status": "started",
                "metadata": {"task": "Deploy hotfix"},
            },
        ),
        "MatchedPolicy": _object(
            {
                "policyId": {"type": "string"},
                "policyName": {"type": "string"},
                "action": {"type": "string", "enum": ["allow", "block", "require_approval"]},
                "reason": {"type": "string"},
            },
            ["policyId", "policyName", "action", "reason"],
        ),
        "AgentEventProcessed": _object(
            {
                "eventId": {"type": "string"},
                "runId": {"type": "string"},
                "processed": {"type": "boolean"},
                "toolCallStatus": {
                    "type": "string",
                    "enum": ["allowed", "blocked", "awaiting_approval"],
                    "description": "Only for tool.called events.",
                },
                "reason": {"type": "string", "nullable": True},
                "approvalId": {"type": "string", "nullable": True},
                "approvalUrl": {"type": "string", "nullable": True},
                "matchedPolicies": {"type": "array", "items": _ref("MatchedPolicy")},
            },
            ["eventId", "runId", "processed"],
        ),
        "Approval": _object(
            {
                "approvalId": {"type": "string"},
                "status": {
                    "type": "string",
                    "enum": ["pending", "approved", "rejected", "expired"],
                },
                "runId": {"type": "string"},
                "agentId": {"type": "string"},
                "toolCallId": {"type": "string"},
                "toolName": {"type": "string"},
                "toolCallStatus": {"type": "string"},
                "reason": {"type": "string", "nullable": True},
                "requestedAt": {"type": "string", "format": "date-time"},
                "expiresAt": {"type": "string", "format": "date-time"},
                "decidedAt": {"type": "string", "format": "date-time", "nullable": True},
                "decidedBy": {"type": "string", "nullable": True},
                "comment": {"type": "string", "nullable": True},
                "approvalUrl": {"type": "string"},
            },
            ["approvalId", "status", "runId", "agentId", "toolCallId", "toolName"],
        ),
        "Health": _object(
            {
                "status": {"type": "string", "enum": ["ok", "unavailable"]},
                "database": {"type": "string", "enum": ["ok", "unavailable"]},
                "bus": {"type": "string", "enum": ["ok", "unavailable"]},
            },
            ["status", "database", "bus"],
        ),
    }


def _incident_event(
    settings: Settings, timestamp: dict[str, Any], details: dict[str, Any], *, routing_only: bool
) -> dict[str, Any]:
    """A trigger carries the alert (checked); acknowledge and resolve need only the key, and
    what else they carry is checked the same way, nothing required (then ignored)."""
    image = _object(
        {
            "src": _text(MAX_URL_LENGTH, required=True),
            "href": _text(MAX_URL_LENGTH),
            "alt": _text(MAX_SOURCE_LENGTH),
        },
        ["src"],
    )
    keys: dict[str, Any] = {
        "routing_key": _text(64, required=True),
        "dedup_key": _text(settings.max_dedup_key_length, required=True),
    }
    if not routing_only:
        keys["service_id"] = _text(64, required=True, description="Instead of routing_key.")
    payload = {
        "summary": _text(settings.max_summary_length, required=True),
        "source": _text(MAX_SOURCE_LENGTH, required=True),
        "severity": {"type": "string", "enum": ["critical", "error", "warning", "info"]},
        "timestamp": timestamp,
        "component": _text(MAX_SOURCE_LENGTH),
        "group": _text(MAX_SOURCE_LENGTH),
        "class": _text(MAX_SOURCE_LENGTH),
        "custom_details": details,
    }
    alert = {
        "payload": _object(payload, ["summary", "source", "severity"]),
        "images": {"type": "array", "maxItems": settings.max_labels, "items": image},
        "links": _links(settings),
        "client": _text(MAX_SOURCE_LENGTH),
        "client_url": _text(MAX_URL_LENGTH),
    }
    first = "routing_key" if routing_only else "dedup_key"
    trigger = _object(
        {**keys, "event_action": {"type": "string", "enum": ["trigger"]}, **alert},
        [first, "event_action", "payload"],
    )
    change = _object(
        {
            **keys,
            "event_action": {"type": "string", "enum": ["acknowledge", "resolve"]},
            **alert,
            "payload": _object(payload, []),
        },
        sorted({first, "event_action", "dedup_key"}),
    )
    description = (
        "PagerDuty Events API v2: the routing key is the only credential; `dedup_key` is "
        "generated for a trigger without one."
        if routing_only
        else "`routing_key` or `service_id` names the service."
    )
    return {
        "oneOf": [trigger, change],
        "description": description,
        "example": {
            "routing_key": "R0123456789abcdef0123456789abcde",
            "event_action": "trigger",
            "dedup_key": "server-cpu-high",
            "payload": {"summary": "CPU above 90%", "source": "prometheus", "severity": "critical"},
        },
    }


def _responses(
    success: tuple[int, str, str],
    errors: list[int],
    error_schema: str,
    described: dict[int, str] | None = None,
) -> dict[str, Any]:
    """The responses of an operation: each error described as `ERROR_DESCRIPTIONS` says,
    or as `described` says for this operation."""
    status, description, schema = success
    responses: dict[str, Any] = {
        str(status): {"description": description, "content": {JSON: {"schema": _ref(schema)}}}
    }
    for code in errors:
        response: dict[str, Any] = {
            "description": (described or {}).get(code, ERROR_DESCRIPTIONS[code]),
            "content": {JSON: {"schema": _ref(error_schema)}},
        }
        if code == 429:
            response["headers"] = {
                "Retry-After": {
                    "description": "Whole seconds until the key may send again.",
                    "schema": {"type": "integer", "minimum": 1},
                }
            }
        responses[str(code)] = response
    return responses


ERROR_DESCRIPTIONS = {
    400: "The body or a field is invalid (`INVALID_EVENT`, naming each field), or the routing "
    "key is unknown (`INVALID_ROUTING_KEY`).",
    401: "No key, or an unknown or revoked one (`UNAUTHENTICATED`).",
    403: "The key lacks the scope this endpoint needs (`FORBIDDEN`).",
    404: "No such object in the key's workspace (`NOT_FOUND`).",
    408: "The request's headers and body did not all arrive within the read timeout "
    "(`REQUEST_TIMEOUT`); the connection is closed.",
    409: "The eventId was already used with a different body (`CONFLICT`).",
    413: "The body exceeds the size limit (`PAYLOAD_TOO_LARGE`).",
    415: "The body is not sent as JSON, or in a charset other than UTF-8, or with a "
    "Content-Encoding (`UNSUPPORTED_MEDIA_TYPE`).",
    429: "Too many requests for this key (`RATE_LIMITED`).",
    503: "The database is unavailable; retry (`UNAVAILABLE`).",
}

BODY_ERRORS = [400, 408, 413, 415, 429, 503]


def _post(
    *,
    summary: str,
    body: str,
    success: tuple[int, str, str],
    errors: list[int],
    error_schema: str = "Error",
    security: list[dict[str, list[str]]],
    tag: str,
) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "tags": [tag],
            "security": security,
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref(body)}}},
            "responses": _responses(success, sorted(errors), error_schema),
        }
    }


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.0 document for these settings."""
    bearer: list[dict[str, list[str]]] = [{"bearerAuth": []}]
    api_key: list[dict[str, list[str]]] = [{"apiKeyAuth": []}]
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Opsgraph REST endpoints",
            "version": "0.1.0",
            "description": "The compatibility endpoints for pipelines, monitors and agents; "
            "each runs a GraphQL mutation (GraphQL itself is at /graphql). Errors carry "
            '`{"error": {"code", "message"}}`; the PagerDuty endpoints add `status`, '
            "`message` and `errors[]`. Every keyed request takes a token from its key's "
            "rate-limit bucket (429 with Retry-After).",
        },
        "servers": [{"url": settings.base_url}],
        "tags": [{"name": "changes"}, {"name": "incidents"}, {"name": "agents"}],
        "paths": {
            "/events": _post(
                summary="Record a change event (deploy, build, config, business).",
                body="ChangeEvent",
                success=(201, "Stored; the change and its timeline entry.", "ChangeCreated"),
                errors=BODY_ERRORS + [401, 403],
                security=bearer,
                tag="changes",
            ),
            "/v2/change/enqueue": _post(
                summary="Record a PagerDuty change event; the routing key is the credential.",
                body="PagerDutyChangeEvent",
                success=(202, "Stored.", "PagerDutyAccepted"),
                errors=BODY_ERRORS,
                error_schema="PagerDutyError",
                security=[],
                tag="changes",
            ),
            "/api/events": _post(
                summary="Trigger, acknowledge or resolve an incident (deduplicated).",
                body="IncidentEvent",
                success=(202, "Processed.", "IncidentAccepted"),
                errors=BODY_ERRORS + [401, 403],
                error_schema="PagerDutyError",
                security=bearer,
                tag="incidents",
            ),
            "/v2/enqueue": _post(
                summary="PagerDuty Events API v2: the routing key in the body is the credential.",
                body="PagerDutyEvent",
                success=(202, "Processed.", "IncidentAccepted"),
                errors=BODY_ERRORS,
                error_schema="PagerDutyError",
                security=[],
                tag="incidents",
            ),
            "/v1/events": _post(
                summary="Record an agent event; tool calls are checked against policies.",
                body="AgentEvent",
                success=(200, "Processed (or the first answer, repeated).", "AgentEventProcessed"),
                errors=BODY_ERRORS + [401, 403, 409],
                security=api_key,
                tag="agents",
            ),
            "/v1/approvals/{approval_id}": {
                "get": {
                    "summary": "An approval's state; `wait` long-polls while it is pending.",
                    "tags": ["agents"],
                    "security": [*api_key, *bearer],
                    "parameters": [
                        {
                            "name": "approval_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 64},
                        },
                        {
                            "name": "wait",
                            "in": "query",
                            "required": False,
                            "description": "Seconds to wait for a decision, at most "
                            f"{settings.approval_wait_max_seconds}.",
                            "schema": {"type": "number", "minimum": 0},
                        },
                    ],
                    "responses": _responses(
                        (200, "The approval.", "Approval"),
                        [400, 401, 403, 404, 429, 503],
                        "Error",
                        {
                            400: "`wait` is not a number of seconds, 0 or more "
                            "(`INVALID_REQUEST`).",
                            403: "The key has neither `read` nor `events:write` (`FORBIDDEN`).",
                        },
                    ),
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Health: the database answers and the bus is connected.",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "Up.",
                            "content": {JSON: {"schema": _ref("Health")}},
                        },
                        "503": {
                            "description": "The database or the bus is unavailable (named).",
                            "content": {JSON: {"schema": _ref("Health")}},
                        },
                    },
                }
            },
        },
        "components": {
            "schemas": _schemas(settings),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key: `Authorization: Bearer og_…`.",
                },
                "apiKeyAuth": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Key",
                    "description": "An API key (agent events).",
                },
            },
        },
    }


def openapi_route(settings: Settings) -> Callable[[Request], Awaitable[JSONResponse]]:
    """The `/openapi.json` handler; the document is built once."""
    document = openapi_document(settings)

    async def get_openapi(request: Request) -> JSONResponse:
        return JSONResponse(document)

    return get_openapi
