"""Approvals: the `Approval` type, `approvals`/`approval` and `decideApproval`."""

from __future__ import annotations

from datetime import datetime

import strawberry
from graphql import GraphQLError

from models.approval import Approval as ApprovalRow
from models.approval import ApprovalStatus as ApprovalStatusModel
from resolvers import approvals
from resolvers.auth import Principal, Scope
from schema import loaders
from schema.agent import Run, ToolCall, parse_key_cursor
from schema.common import PageInfo, page_size
from schema.context import Info, public_error

ApprovalStatus = strawberry.enum(ApprovalStatusModel, name="ApprovalStatus")
ApprovalDecision = strawberry.enum(approvals.ApprovalDecision, name="ApprovalDecision")


@strawberry.type(description="A person's yes or no on a held tool call; expiry never approves.")
class Approval:
    instance: strawberry.Private[ApprovalRow]
    id: strawberry.ID
    status: ApprovalStatus  # type: ignore[valid-type]
    reason: str
    requested_at: datetime
    expires_at: datetime
    decided_at: datetime | None = strawberry.field(description="When decided or expired.")
    decided_by: str | None = strawberry.field(description="The deciding key's name.")
    comment: str | None

    @classmethod
    def from_row(cls, row: ApprovalRow) -> Approval:
        return cls(
            instance=row,
            id=strawberry.ID(row.id),
            status=row.status,
            reason=row.reason,
            requested_at=row.requested_at,
            expires_at=row.expires_at,
            decided_at=row.decided_at,
            decided_by=row.decided_by,
            comment=row.comment,
        )

    @strawberry.field(description="Where a person decides it in the UI.")
    def url(self, info: Info) -> str:
        return info.context.settings.approval_url(self.instance.id)

    @strawberry.field
    async def tool_call(self, info: Info) -> ToolCall:
        row = await loaders.tool_call(info.context, self.instance.tool_call_id)
        assert row is not None
        return ToolCall.from_row(row)

    @strawberry.field
    async def run(self, info: Info) -> Run:
        row = await loaders.run(info.context, self.instance.run_id)
        assert row is not None
        return Run.from_row(row)


@strawberry.type
class ApprovalEdge:
    cursor: str
    node: Approval


@strawberry.type
class ApprovalConnection:
    edges: list[ApprovalEdge]
    page_info: PageInfo

    @strawberry.field
    def nodes(self) -> list[Approval]:
        return [edge.node for edge in self.edges]


async def reader_or_agent(info: Info) -> Principal:
    """`read`, or `events:write`: the waiting agent's own key may ask about its approval.
    Only a missing scope falls back: a key that is unknown or revoked stays refused."""
    try:
        return await info.context.require(Scope.READ)
    except GraphQLError as exc:
        if (exc.extensions or {}).get("code") != "FORBIDDEN":
            raise
    try:
        return await info.context.require(Scope.EVENTS_WRITE)
    except GraphQLError as exc:
        if (exc.extensions or {}).get("code") != "FORBIDDEN":
            raise
    # Named both: "lacks the 'events:write' scope" sent a person with a key that lacks
    # only `read` to look for the wrong scope.
    raise public_error(
        "FORBIDDEN", "This API key has neither the 'read' nor the 'events:write' scope."
    )


@strawberry.type
class ApprovalQuery:
    @strawberry.field(description="Approvals newest first, optionally of one status.")
    async def approvals(
        self,
        info: Info,
        status: ApprovalStatus | None = None,  # type: ignore[valid-type]
        first: int | None = None,
        after: str | None = None,
    ) -> ApprovalConnection:
        principal = await info.context.require(Scope.READ)
        settings = info.context.settings
        found = await approvals.list_approvals(
            workspace_id=principal.workspace_id,
            status=ApprovalStatusModel(status) if status else None,
            first=page_size(
                first, default=settings.page_size_default, maximum=settings.page_size_max
            ),
            after=parse_key_cursor(after),
            publisher=info.context.publisher,
        )
        edges = [
            ApprovalEdge(cursor=cursor, node=Approval.from_row(row))
            for row, cursor in zip(found.rows, found.cursors, strict=True)
        ]
        return ApprovalConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=found.has_next_page, end_cursor=found.end_cursor),
        )

    @strawberry.field(description="One approval (keys with `read` or `events:write`).")
    async def approval(self, info: Info, id: strawberry.ID) -> Approval | None:
        principal = await reader_or_agent(info)
        row = await approvals.get_approval(
            workspace_id=principal.workspace_id,
            approval_id=str(id),
            publisher=info.context.publisher,
        )
        return Approval.from_row(row) if row else None


@strawberry.type
class ApprovalMutation:
    @strawberry.mutation(description="Approve or reject (with a comment) a pending approval.")
    async def decide_approval(
        self,
        info: Info,
        id: strawberry.ID,
        decision: ApprovalDecision,  # type: ignore[valid-type]
        comment: str | None = None,
    ) -> Approval:
        principal = await info.context.require(Scope.APPROVALS_DECIDE)
        try:
            row = await approvals.decide_approval(
                principal=principal,
                approval_id=str(id),
                decision=approvals.ApprovalDecision(decision),
                comment=comment,
                publisher=info.context.publisher,
            )
        except approvals.InvalidDecision as exc:
            raise public_error("BAD_USER_INPUT", str(exc)) from None
        except approvals.ApprovalNotFound as exc:
            raise public_error("NOT_FOUND", str(exc)) from None
        except approvals.ApprovalSettled as exc:
            raise public_error("CONFLICT", str(exc)) from None
        return Approval.from_row(row)
