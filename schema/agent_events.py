"""Agent events: the `recordAgentEvent` mutation behind `POST /v1/events` and its result."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import strawberry

from models.agent import ToolCallDecision as ToolCallDecisionModel
from resolvers import agent_events, agent_queries
from resolvers.auth import Scope
from resolvers.errors import InvalidInput
from resolvers.runs import EventConflict
from schema.agent import MatchedPolicy, Run, ToolCall, ToolCallDecision
from schema.common import InvalidEvent
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


@strawberry.type
class AgentMutation:
    @strawberry.mutation(description="Record an agent event (`POST /v1/events` runs this).")
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
