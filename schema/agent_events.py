"""Agent events: the `recordAgentEvent` and `recordAgentEvents` mutations (`POST /v1/events`
runs the latter) and their results."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, cast

import strawberry
from strawberry.types.arguments import InputContext
from strawberry.types.base import get_object_definition

from models.agent import ToolCallDecision as ToolCallDecisionModel
from resolvers import agent_events, agent_queries
from resolvers.auth import Scope
from resolvers.errors import InvalidInput
from resolvers.runs import EventConflict
from schema.agent import MatchedPolicy, Run, ToolCall, ToolCallDecision
from schema.common import InvalidEvent, record_each
from schema.context import Info
from schema.scalars import JSON


@strawberry.input(description="An agent event, as in the agent events API (`POST /v1/events`).")
class AgentEventInput:
    event_id: str
    run_id: str
    agent_id: str
    timestamp: datetime
    event_type: str = strawberry.field(
        description="run.started, run.completed, run.failed, tool.called, tool.completed "
        "or tool.failed."
    )
    status: str | None = None
    metadata: JSON | None = None

    def to_raw(self) -> dict[str, Any]:
        return {
            "eventId": self.event_id,
            "runId": self.run_id,
            "agentId": self.agent_id,
            "timestamp": self.timestamp,
            "eventType": self.event_type,
            "status": self.status,
            "metadata": self.metadata,
        }


def _agent_event_input(cls: type[Any], value: Mapping[str, Any], context: InputContext) -> Any:
    """An AgentEventInput from its input value, as graphql-core coerced it (each field
    already of its type), instead of Strawberry's generic conversion (see `_change_input`)."""
    return cls(
        event_id=value["eventId"],
        run_id=value["runId"],
        agent_id=value["agentId"],
        timestamp=value["timestamp"],
        event_type=value["eventType"],
        status=value.get("status"),
        metadata=value.get("metadata"),
    )


get_object_definition(AgentEventInput, strict=True).from_input = _agent_event_input


@strawberry.type(description="The event was processed (now, or the first time it was sent).")
class AgentEventProcessed:
    outcome: strawberry.Private[agent_events.AgentEventOutcome]
    event_id: str
    run_id: str
    processed: bool
    event_type: str
    duplicate: bool = strawberry.field(description="True when this eventId was seen before.")
    tool_call_status: ToolCallDecision | None  # type: ignore[valid-type]
    reason: str | None
    approval_id: strawberry.ID | None
    approval_url: str | None
    matched_policies: list[MatchedPolicy] | None

    @classmethod
    def from_outcome(cls, outcome: agent_events.AgentEventOutcome) -> AgentEventProcessed:
        response = outcome.response
        status = response.get("toolCallStatus")
        approval_id = response.get("approvalId")
        matched = response.get("matchedPolicies")
        return cls(
            outcome=outcome,
            event_id=response["eventId"],
            run_id=response["runId"],
            processed=response["processed"],
            event_type=outcome.event_type.value,
            duplicate=outcome.duplicate,
            tool_call_status=ToolCallDecisionModel(status.upper()) if status else None,
            reason=response.get("reason"),
            approval_id=strawberry.ID(approval_id) if approval_id else None,
            approval_url=response.get("approvalUrl"),
            matched_policies=None
            if matched is None
            else [MatchedPolicy.from_json(m) for m in matched],
        )

    @strawberry.field
    async def run(self) -> Run | None:
        row = await agent_queries.run_by_id(run_id=self.outcome.run_id)
        return Run.from_row(row) if row else None

    @strawberry.field
    async def tool_call(self) -> ToolCall | None:
        row = await agent_queries.tool_call_by_id(tool_call_id=self.outcome.tool_call_id)
        return ToolCall.from_row(row) if row else None


@strawberry.type(description="The event contradicts what is stored, e.g. a reused eventId.")
class AgentEventConflict:
    code: str
    message: str


AgentEventResult = Annotated[
    AgentEventProcessed | InvalidEvent | AgentEventConflict,
    strawberry.union("AgentEventResult"),
]


def _result(outcome: agent_events.AgentEventOutcome | Exception) -> AgentEventResult | Exception:
    """An event's result in `recordAgentEvents`, as `recordAgentEvent` answers it; an
    unexpected exception stays one (graphql-core reports it at the item's index)."""
    if isinstance(outcome, InvalidInput):
        return InvalidEvent.from_error(outcome)
    if isinstance(outcome, EventConflict):
        return AgentEventConflict(code="CONFLICT", message=str(outcome))
    if isinstance(outcome, Exception):
        return outcome
    return AgentEventProcessed.from_outcome(outcome)


@strawberry.type
class AgentMutation:
    @strawberry.mutation(description="Record an agent event (see `recordAgentEvents` for many).")
    async def record_agent_event(self, info: Info, input: AgentEventInput) -> AgentEventResult:
        principal = await info.context.require(Scope.EVENTS_WRITE)
        context = info.context
        try:
            data = agent_events.validate_agent_event(input.to_raw(), settings=context.settings)
            outcome = await agent_events.record_agent_event(
                principal=principal,
                data=data,
                settings=context.settings,
                publisher=context.publisher,
            )
        except InvalidInput as exc:
            return InvalidEvent.from_error(exc)
        except EventConflict as exc:
            return AgentEventConflict(code="CONFLICT", message=str(exc))
        return AgentEventProcessed.from_outcome(outcome)

    @strawberry.mutation(
        description=(
            "Record many agent events in one call (at most "
            "`OPSGRAPH_MAX_AGENT_EVENTS_PER_CALL`; concurrent `POST /v1/events` requests run "
            "as one such call). Each input has its own result, in order, as if sent alone "
            "after the inputs before it with its eventId or run: an invalid one is "
            "`InvalidEvent`, a conflicting one `AgentEventConflict`, one that fails otherwise "
            "is null with an error at its index."
        )
    )
    async def record_agent_events(
        self, info: Info, inputs: list[AgentEventInput]
    ) -> list[AgentEventResult | None]:
        principal = await info.context.require(Scope.EVENTS_WRITE)
        context = info.context
        settings = context.settings

        async def record(
            items: list[agent_events.AgentEventData],
        ) -> list[agent_events.AgentEventOutcome | Exception]:
            return await agent_events.record_agent_events(
                principal=principal, items=items, settings=settings, publisher=context.publisher
            )

        results = await record_each(
            inputs,
            limit=settings.max_agent_events_per_call,
            noun="events",
            validate=lambda item: agent_events.validate_agent_event(
                item.to_raw(), settings=settings
            ),
            record=record,
            render=_result,
            validated=context.validated,
        )
        return cast(list[AgentEventResult | None], results)
