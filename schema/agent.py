"""Agent actions: `Run` and `ToolCall` with their policy decisions, and `runs`/`run`."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, cast

import strawberry

from models.agent import Run as RunRow
from models.agent import RunStatus as RunStatusModel
from models.agent import ToolCall as ToolCallRow
from models.agent import ToolCallDecision as ToolCallDecisionModel
from models.agent import ToolCallStatus as ToolCallStatusModel
from models.approval import Approval as ApprovalRow
from models.approval import ApprovalStatus as ApprovalStatusModel
from models.policy import PolicyAction as PolicyActionModel
from resolvers import agent_queries, approvals
from resolvers.auth import Scope
from resolvers.keyset import KeyCursor
from schema import loaders
from schema.common import PageInfo, bounded, page_size
from schema.context import Info, public_error
from schema.policy import PolicyAction
from schema.scalars import JSON

if TYPE_CHECKING:
    from schema.approval import Approval

RunStatus = strawberry.enum(RunStatusModel, name="RunStatus")
ToolCallDecision = strawberry.enum(
    ToolCallDecisionModel, name="ToolCallDecision", description="The policy decision on a call."
)
ToolCallStatus = strawberry.enum(ToolCallStatusModel, name="ToolCallStatus")


def parse_key_cursor(after: str | None) -> KeyCursor | None:
    """A runs/approvals cursor, or a BAD_USER_INPUT error."""
    if after is None:
        return None
    try:
        return KeyCursor.decode(after)
    except ValueError as exc:
        raise public_error("BAD_USER_INPUT", str(exc)) from None


@strawberry.type(description="A policy that matched a tool call, with its version then.")
class MatchedPolicy:
    policy_id: strawberry.ID
    policy_name: str
    action: PolicyAction  # type: ignore[valid-type]
    reason: str
    version: int
    dry_run: bool

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> MatchedPolicy:
        return cls(
            policy_id=strawberry.ID(value["policyId"]),
            policy_name=value["policyName"],
            action=PolicyActionModel(value["action"].upper()),
            reason=value["reason"],
            version=value.get("version", 1),
            dry_run=value.get("dryRun", False),
        )


@strawberry.type(description="One tool call of a run, with the policy decision taken on it.")
class ToolCall:
    instance: strawberry.Private[ToolCallRow]
    id: strawberry.ID
    tool_call_id: str = strawberry.field(description="The agent's own `toolCallId`.")
    agent_id: str
    tool_name: str
    action_hint: str | None
    input_payload: JSON
    output_payload: JSON | None
    reason: str | None
    agent_context: JSON
    service: str | None
    environment: str | None
    decision: ToolCallDecision  # type: ignore[valid-type]
    decision_reason: str
    matched_policies: list[MatchedPolicy]
    stored_status: strawberry.Private[ToolCallStatusModel]
    violation: str | None = strawberry.field(
        description="Why completing this call broke policy (blocked, rejected, expired or "
        "still pending), or null."
    )
    error: str | None
    called_at: datetime
    ended_at: datetime | None

    @classmethod
    def from_row(cls, row: ToolCallRow) -> ToolCall:
        return cls(
            instance=row,
            id=strawberry.ID(row.id),
            tool_call_id=row.call_key,
            agent_id=row.agent_id,
            tool_name=row.tool_name,
            action_hint=row.action_hint,
            input_payload=cast(JSON, row.input_payload),
            output_payload=cast(JSON, row.output_payload),
            reason=row.reason,
            agent_context=cast(JSON, row.agent_context),
            service=row.service,
            environment=row.environment,
            decision=row.decision,
            decision_reason=row.decision_reason,
            matched_policies=[MatchedPolicy.from_json(m) for m in row.matched_policies],
            stored_status=row.status,
            violation=row.violation,
            error=row.error,
            called_at=row.called_at,
            ended_at=row.ended_at,
        )

    @strawberry.field
    async def status(self, info: Info) -> ToolCallStatus:  # type: ignore[valid-type]
        """A call awaiting an approval whose time is up is expired first (as the approval
        is on read), so that the two never disagree in one answer."""
        if self.stored_status is ToolCallStatusModel.AWAITING_APPROVAL:
            row = await self._approval_row(info)
            if row is not None and row.status is ApprovalStatusModel.EXPIRED:
                return ToolCallStatusModel.EXPIRED
        return self.stored_status

    async def _approval_row(self, info: Info) -> ApprovalRow | None:
        """The approval this call waited for, as it stands (expired first if its time is
        up, as every read of an approval does), or None."""
        row = await loaders.approval_of_tool_call(info.context, self.instance.id)
        if row is None:
            return None
        return await approvals.expire_if_due(row, publisher=info.context.publisher)

    @strawberry.field
    async def run(self, info: Info) -> Run:
        row = await loaders.run(info.context, self.instance.run_id)
        assert row is not None  # a tool call never outlives its run
        return Run.from_row(row)

    @strawberry.field(description="The approval this call waited for, if a policy asked one.")
    async def approval(
        self, info: Info
    ) -> Annotated[Approval, strawberry.lazy("schema.approval")] | None:
        from schema.approval import Approval

        row = await self._approval_row(info)
        return None if row is None else Approval.from_row(row)


@strawberry.type(description="One agent run and its tool calls.")
class Run:
    instance: strawberry.Private[RunRow]
    id: strawberry.ID
    run_id: str = strawberry.field(description="The agent's own `runId`.")
    agent_id: str
    status: RunStatus  # type: ignore[valid-type]
    task: str | None
    model: str | None
    reason: str | None
    agent_context: JSON
    error: str | None
    service: str | None
    environment: str | None
    started_at: datetime
    ended_at: datetime | None

    @classmethod
    def from_row(cls, row: RunRow) -> Run:
        return cls(
            instance=row,
            id=strawberry.ID(row.id),
            run_id=row.run_key,
            agent_id=row.agent_id,
            status=row.status,
            task=row.task,
            model=row.model,
            reason=row.reason,
            agent_context=cast(JSON, row.agent_context),
            error=row.error,
            service=row.service,
            environment=row.environment,
            started_at=row.started_at,
            ended_at=row.ended_at,
        )

    @strawberry.field(
        description="The run's latest `first` tool calls, in the order they were called (a "
        "page, as elsewhere: 1 to the page size's maximum; scope `read`: a key that only "
        "posts events sees what its own event stored, not the run's history)."
    )
    async def tool_calls(self, info: Info, first: int | None = None) -> list[ToolCall]:
        # Bounded like every other list that grows with what is stored: without `first`, a
        # run's calls were counted as 10 by the cost limit whatever their number, and
        # `toolCalls { run { toolCalls { run { toolCalls { id } } } } }` returned 1,000,000
        # objects from a run of 100 calls, holding the server for seconds.
        await info.context.require(Scope.READ)
        settings = info.context.settings
        size = page_size(first, default=settings.page_size_default, maximum=settings.page_size_max)
        rows = await loaders.tool_calls_of_run(info.context, self.instance.id, last=size)
        return [ToolCall.from_row(row) for row in rows]


@strawberry.input(description="Empty fields match every run; times bound `startedAt`.")
class RunFilter:
    statuses: list[RunStatus] | None = None  # type: ignore[valid-type]
    agent_ids: list[str] | None = None
    since: datetime | None = None
    until: datetime | None = None

    def to_domain(self) -> agent_queries.RunFilter:
        return agent_queries.RunFilter(
            statuses=tuple(RunStatusModel(s) for s in self.statuses or ()),
            agent_ids=tuple(self.agent_ids or ()),
            since=self.since,
            until=self.until,
        )


@strawberry.type
class RunEdge:
    cursor: str
    node: Run


@strawberry.type
class RunConnection:
    edges: list[RunEdge]
    page_info: PageInfo

    @strawberry.field
    def nodes(self) -> list[Run]:
        return [edge.node for edge in self.edges]


@strawberry.type
class RunQuery:
    @strawberry.field(
        description=(
            "Runs newest first, by `startedAt`. A `run.started` that arrives after the run's "
            "first event moves its `startedAt` back, and the run with it: a walk through the "
            "pages meanwhile may meet it again, so keep runs by `id`."
        )
    )
    async def runs(
        self,
        info: Info,
        filter: RunFilter | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> RunConnection:
        principal = await info.context.require(Scope.READ)
        settings = info.context.settings
        found = await agent_queries.list_runs(
            workspace_id=principal.workspace_id,
            flt=bounded(info.context.settings, filter or RunFilter()).to_domain(),
            first=page_size(
                first, default=settings.page_size_default, maximum=settings.page_size_max
            ),
            after=parse_key_cursor(after),
        )
        edges = [
            RunEdge(cursor=cursor, node=Run.from_row(row))
            for row, cursor in zip(found.rows, found.cursors, strict=True)
        ]
        return RunConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=found.has_next_page, end_cursor=found.end_cursor),
        )

    @strawberry.field(description="One run by its id or by the agent's own runId.")
    async def run(self, info: Info, id: strawberry.ID) -> Run | None:
        principal = await info.context.require(Scope.READ)
        row = await agent_queries.get_run(workspace_id=principal.workspace_id, run_id=str(id))
        return Run.from_row(row) if row else None
