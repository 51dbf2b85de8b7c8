"""`POST /v1/events` (agent events API) and `GET /v1/approvals/{id}` (optionally long-polled)."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from models.timeline import TimelineKind
from opsgraph.live import Hub, LiveError
from resolvers import agent_events, approvals
from resolvers.auth import Principal, Scope, authenticate
from resolvers.errors import AuthError, InvalidInput
from rest_compat import batched
from rest_compat.common import (
    API_KEY_CHALLENGE,
    BEARER_CHALLENGE,
    Answer,
    Endpoint,
    RestError,
    bearer_secret,
    only_known,
    read_json_object,
    render_error,
    require_principal,
)

# One execution for each batch of concurrent requests of one principal (`rest_compat.batched`).
RECORD_AGENT_EVENTS = """
mutation RecordAgentEvents($inputs: [AgentEventInput!]!) {
  recordAgentEvents(inputs: $inputs) {
    __typename
    ... on AgentEventProcessed {
      eventId runId processed eventType toolCallStatus reason approvalId approvalUrl
      matchedPolicies { policyId policyName action reason }
    }
    ... on InvalidEvent { message }
    ... on AgentEventConflict { message }
  }
}
"""

APPROVAL = """
query Approval($id: ID!) {
  approval(id: $id) {
    id status reason requestedAt expiresAt decidedAt decidedBy comment url
    toolCall { toolCallId toolName status run { runId agentId } }
  }
}
"""

FIELDS = ("eventId", "runId", "agentId", "timestamp", "eventType", "status", "metadata")


def _lower(value: str | None) -> str | None:
    return value.lower() if value is not None else None


def render_event(result: dict[str, Any]) -> dict[str, Any]:
    """The documented response: three fields, plus the decision for `tool.called`."""
    body: dict[str, Any] = {
        "eventId": result["eventId"],
        "runId": result["runId"],
        "processed": result["processed"],
    }
    if result["eventType"] == agent_events.EventType.TOOL_CALLED.value:
        body["toolCallStatus"] = _lower(result["toolCallStatus"])
        body["reason"] = result["reason"]
        body["approvalId"] = result["approvalId"]
        body["approvalUrl"] = result["approvalUrl"]
        body["matchedPolicies"] = [
            {
                "policyId": match["policyId"],
                "policyName": match["policyName"],
                "action": _lower(match["action"]),
                "reason": match["reason"],
            }
            for match in result["matchedPolicies"] or []
        ]
    return body


async def post_agent_event(endpoint: Endpoint, request: Request) -> JSONResponse:
    """`POST /v1/events` with `X-API-Key` (scope `events:write`): the documented response."""
    try:
        principal = await require_principal(
            request.headers.get("x-api-key"), Scope.EVENTS_WRITE, challenge=API_KEY_CHALLENGE
        )
        raw = await read_json_object(request, endpoint.settings)
        try:
            data = agent_events.validate_agent_event(raw, settings=endpoint.settings)
        except InvalidInput as exc:
            raise RestError.invalid(exc) from None
        item = only_known(raw, FIELDS)
        result = await batched.submit(endpoint, RECORD, principal, item, validated=data)
    except RestError as exc:
        return render_error(exc)
    return Answer(render_event(result))


def _answer(answer: dict[str, Any]) -> dict[str, Any] | BaseException:
    """One request's own item of `recordAgentEvents`: the event, or its documented error."""
    if answer["__typename"] == "AgentEventConflict":
        return RestError(409, "CONFLICT", answer["message"])
    if answer["__typename"] != "AgentEventProcessed":
        return RestError(400, "INVALID_EVENT", answer["message"])
    return answer


RECORD = batched.ListMutation(
    document=RECORD_AGENT_EVENTS,
    field="recordAgentEvents",
    answer=_answer,
    max_items=lambda e: min(e.settings.batch_max, e.settings.max_agent_events_per_call),
    # A run's events in the order they arrived, whichever of the workspace's keys sent them.
    target=lambda principal, data: (principal.workspace_id, data.run_key),
    lanes=lambda e: e.settings.agent_batches_at_once,
)


SETTLED_KINDS = {TimelineKind.APPROVAL_DECIDED, TimelineKind.APPROVAL_EXPIRED}
EITHER_CHALLENGE = f"{API_KEY_CHALLENGE}, {BEARER_CHALLENGE}"


async def _caller(request: Request) -> Principal:
    """The key from `X-API-Key` (or a bearer key); the `approval` query checks its scopes
    (`read`, or `events:write` for the waiting agent) so the rule lives in one place."""
    secret = request.headers.get("x-api-key") or bearer_secret(request)
    try:
        return await authenticate(secret=secret)
    except AuthError as exc:
        raise RestError.from_auth(exc, challenge=EITHER_CHALLENGE) from None


def _wait_seconds(request: Request, maximum: float) -> float:
    raw = request.query_params.get("wait")
    if raw is None or raw == "":
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise RestError(
            400,
            "INVALID_REQUEST",
            f"wait: must be a number of seconds, 0 or more (a longer wait is cut to {maximum:g}).",
        )
    return min(seconds, maximum)


def render_approval(approval: dict[str, Any]) -> dict[str, Any]:
    """An approval as the waiting agent reads it."""
    call = approval["toolCall"]
    return {
        "approvalId": approval["id"],
        "status": approval["status"].lower(),
        "runId": call["run"]["runId"],
        "agentId": call["run"]["agentId"],
        "toolCallId": call["toolCallId"],
        "toolName": call["toolName"],
        "toolCallStatus": call["status"].lower(),
        "reason": approval["reason"],
        "requestedAt": approval["requestedAt"],
        "expiresAt": approval["expiresAt"],
        "decidedAt": approval["decidedAt"],
        "decidedBy": approval["decidedBy"],
        "comment": approval["comment"],
        "approvalUrl": approval["url"],
    }


@asynccontextmanager
async def _relay_settlement(
    hub: Hub | None, principal: Principal, approval_id: str
) -> AsyncIterator[asyncio.Future[None]]:
    """While in the block, wake this process's waiters on the approval as soon as its
    decision or expiry reaches the hub from any process (without a bus, they poll). Gives a
    future done then, or as soon as the waiting key's revocation reaches the hub (the wait
    then ends at once, to a 401, instead of at its end)."""
    relayed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    if hub is None:
        yield relayed
        return
    try:
        subscriber = await hub.subscribe(
            workspace_id=principal.workspace_id,
            accepts=lambda e: e.kind in SETTLED_KINDS and e.subject_id == approval_id,
            key_id=principal.key_id,
        )
    except LiveError:
        if hub.is_revoked(principal.key_id):
            relayed.set_result(None)  # the key is asked again, to a 401
        yield relayed
        return

    async def relay() -> None:
        try:
            await subscriber.next()
        except LiveError:
            if hub.is_revoked(principal.key_id) and not relayed.done():
                relayed.set_result(None)  # the key is asked again, to a 401
            return  # else the bus is lost: the waiters poll
        approvals.wake(approval_id)
        if not relayed.done():  # `_first_of` cancels it when another wait ends first
            relayed.set_result(None)

    task = asyncio.create_task(relay())
    try:
        yield relayed
    finally:
        task.cancel()
        hub.unsubscribe(subscriber)


@contextlib.contextmanager
def _counted_wait(endpoint: Endpoint, key_id: str) -> Iterator[None]:
    """Count a long poll of `key_id` while in the block; past `approval_waits_per_key`
    held at once in this process, 429 (each holds a task, a hub subscriber and a read every
    `approval_wait_poll_seconds`, and without the rate limit nothing else bounds them)."""
    most = endpoint.settings.approval_waits_per_key
    waits = endpoint.waits
    if waits[key_id] >= most:
        raise RestError(
            429,
            "RATE_LIMITED",
            f"This key already holds {most} approval waits in this process "
            "(OPSGRAPH_APPROVAL_WAITS_PER_KEY); retry after 1 s.",
            retry_after=1,
        )
    waits[key_id] += 1
    try:
        yield
    finally:
        waits[key_id] -= 1
        if not waits[key_id]:
            del waits[key_id]


async def _client_gone(request: Request) -> None:
    """Return once the client has gone (its request's body was read before)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


_HUNG_UP = 1  # what `_first_of` says when `_client_gone` ended the wait


async def _first_of(*waits: Awaitable[object]) -> int:
    """Await the first of `waits` to end (its error raised), cancel the others; its index."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    first = next(index for index, task in enumerate(tasks) if task.done() and not task.cancelled())
    tasks[first].result()
    return first


async def get_approval(endpoint: Endpoint, request: Request) -> Response:
    """`GET /v1/approvals/{id}[?wait=SECONDS]`: the approval, once decided or after the wait."""
    approval_id = request.path_params["approval_id"]
    try:
        principal = await _caller(request)
        data = await endpoint.execute(APPROVAL, {"id": approval_id}, principal=principal)
        wait = _wait_seconds(request, float(endpoint.settings.approval_wait_max_seconds))
        approval = data["approval"]
        if approval is None:
            raise RestError(404, "NOT_FOUND", f"No approval {approval_id!r} in this workspace.")
        if approval["status"] == "PENDING" and wait > 0:
            with _counted_wait(endpoint, principal.key_id):
                async with _relay_settlement(endpoint.hub, principal, approval_id) as relayed:
                    settled = approvals.wait_until_settled(
                        workspace_id=principal.workspace_id,
                        approval_id=approval_id,
                        timeout=wait,
                        poll_seconds=endpoint.settings.approval_wait_poll_seconds,
                    )
                    # Also done when the agent hangs up or the server stops (it answers
                    # what it has, and the agent asks again, of another process): either
                    # would otherwise hold the server's shutdown for the rest of the wait.
                    ended = await _first_of(
                        settled, _client_gone(request), endpoint.draining.wait(), relayed
                    )
            if ended == _HUNG_UP:
                return Response(status_code=204)  # nobody is there to read it
            # The key again: one revoked during the wait gets a 401, not the decision.
            principal = await _caller(request)
            data = await endpoint.execute(APPROVAL, {"id": approval_id}, principal=principal)
            approval = data["approval"]
    except RestError as exc:
        return render_error(exc)
    return Answer(render_approval(approval))
