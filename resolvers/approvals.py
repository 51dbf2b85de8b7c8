"""Approvals: requesting, deciding (once), expiring (never approving) and waiting for them.

Every transition is a conditional UPDATE on the pending row, so of two concurrent
decisions, or a decision racing the expiry sweep, exactly one wins.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from tortoise.transactions import in_transaction

from models.agent import ToolCall, ToolCallStatus
from models.approval import Approval, ApprovalStatus
from models.ids import could_be_stored, new_id
from models.timeline import TimelineEntry, TimelineKind
from opsgraph.db import database_unavailable
from opsgraph.settings import Settings
from resolvers.auth import Principal, Scope
from resolvers.keyset import KeyCursor, KeyPage, page
from resolvers.timeline import Publisher, record_entry
from resolvers.validation import text_problem

log = logging.getLogger(__name__)

MAX_COMMENT = 2000

_waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)


class ApprovalDecision(StrEnum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"


class ApprovalNotFound(Exception):
    """No approval with that id in the workspace."""


class InvalidDecision(Exception):
    """The decision is incomplete: a rejection needs a comment."""


class ApprovalSettled(Exception):
    """The approval was already decided or has expired; decisions are final."""


def _now() -> datetime:
    return datetime.now(UTC)


def clock() -> datetime:
    """The time approvals are judged by (read once for what one event decides)."""
    return _now()


def is_due(approval: Approval, *, at: datetime) -> bool:
    """Whether the approval's time is up at `at` (recorded as expired or not yet)."""
    return approval.expires_at <= at


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def wake(approval_id: str) -> None:
    """Wake this process's waiters on the approval (it was decided or expired)."""
    for event in _waiters.get(approval_id, ()):
        event.set()


def new_approval(*, tool_call: ToolCall, reason: str, settings: Settings) -> Approval:
    """A pending approval for a held tool call, for the caller to store with the call."""
    requested_at = _now()
    return Approval(
        id=new_id("ap"),
        workspace_id=tool_call.workspace_id,
        run_id=tool_call.run_id,
        tool_call_id=tool_call.id,
        status=ApprovalStatus.PENDING,
        reason=reason,
        requested_at=requested_at,
        expires_at=requested_at + timedelta(seconds=settings.approval_expiry_seconds),
    )


def requested_entry(
    approval: Approval, call: ToolCall, *, occurred_at: datetime, actor: str
) -> dict[str, Any]:
    """The APPROVAL_REQUESTED entry's fields, for the caller to record last; `actor` is
    the name of the key that sent the call."""
    return _entry(
        approval,
        call,
        TimelineKind.APPROVAL_REQUESTED,
        f"Approval requested: {approval.reason}",
        occurred_at=occurred_at,
        actor=actor,
        expiresAt=_iso(approval.expires_at),
    )


def _entry(
    approval: Approval,
    call: ToolCall,
    kind: TimelineKind,
    summary: str,
    *,
    occurred_at: datetime,
    actor: str | None,
    **details: Any,
) -> dict[str, Any]:
    return {
        "workspace_id": approval.workspace_id,
        "kind": kind,
        "occurred_at": occurred_at,
        "summary": summary[:1000],
        "service": call.service,
        "environment": call.environment,
        "actor": actor,
        "details": {
            "approvalId": approval.id,
            "status": approval.status.value,
            "toolCallId": call.call_key,
            "toolName": call.tool_name,
            **details,
        },
        "subject_type": "Approval",
        "subject_id": approval.id,
    }


async def _expire(approval_id: str, publisher: Publisher) -> bool:
    """Expire one due approval; False if it was decided or expired meanwhile."""
    now = _now()
    async with in_transaction():
        moved = await Approval.filter(
            id=approval_id, status=ApprovalStatus.PENDING, expires_at__lte=now
        ).update(status=ApprovalStatus.EXPIRED, decided_at=now)
        if not moved:
            return False
        approval = await Approval.get(id=approval_id)
        await ToolCall.filter(
            id=approval.tool_call_id, status=ToolCallStatus.AWAITING_APPROVAL
        ).update(status=ToolCallStatus.EXPIRED)
        call = await ToolCall.get(id=approval.tool_call_id)
        summary = f"Approval for {call.tool_name} expired without a decision"
        entry = await record_entry(
            **_entry(
                approval, call, TimelineKind.APPROVAL_EXPIRED, summary, occurred_at=now, actor=None
            )
        )
    await publisher.entry_committed(workspace_id=approval.workspace_id, entry_id=entry.id)
    wake(approval_id)
    return True


async def close_unanswered(call: ToolCall, *, ended: str, at: datetime) -> dict[str, Any] | None:
    """A call that ended (`ended`: "completed" or "failed") while its approval was pending:
    the approval is closed now, expired without a decision. Nothing can clear a call that
    already ran; it stayed in every approval screen's queue, and could be approved, until
    its time ran out. Runs in the caller's transaction before the call's own update (the
    order a decision and an expiry take: approval, then call). Its entry, for the caller
    to record; None if it was decided or expired meanwhile."""
    moved = await Approval.filter(tool_call_id=call.id, status=ApprovalStatus.PENDING).update(
        status=ApprovalStatus.EXPIRED, decided_at=at
    )
    if not moved:
        return None
    approval = await Approval.get(tool_call_id=call.id)
    if is_due(approval, at=at):  # its time ran out first, as the sweep would have said
        summary = f"Approval for {call.tool_name} expired without a decision"
    else:
        summary = f"Approval for {call.tool_name} closed without a decision: the call {ended} first"
    return _entry(
        approval, call, TimelineKind.APPROVAL_EXPIRED, summary, occurred_at=at, actor=None
    )


async def expire_due_approvals(
    *, publisher: Publisher, workspace_id: str | None = None, limit: int = 500
) -> int:
    """Expire pending approvals past their expiry (one workspace, or all); returns how many."""
    query = Approval.filter(status=ApprovalStatus.PENDING, expires_at__lte=_now())
    if workspace_id is not None:
        query = query.filter(workspace_id=workspace_id)
    due = [
        str(v) for v in await query.order_by("expires_at").limit(limit).values_list("id", flat=True)
    ]
    expired = 0
    for approval_id in due:
        expired += await _expire(approval_id, publisher)
    return expired


async def expire_due_for_call(
    *, workspace_id: str, run_key: str, call_key: str, publisher: Publisher
) -> None:
    """Expire the approval of one tool call (named by the agent's keys) if its time is up."""
    due = await Approval.filter(
        workspace_id=workspace_id,
        tool_call__call_key=call_key,
        run__run_key=run_key,
        status=ApprovalStatus.PENDING,
        expires_at__lte=_now(),
    ).values_list("id", flat=True)
    for approval_id in due:
        await _expire(str(approval_id), publisher)


async def get_approval(
    *, workspace_id: str, approval_id: str, publisher: Publisher
) -> Approval | None:
    """One approval of the workspace, expired first if its time is up."""
    if not could_be_stored(approval_id):
        return None
    approval = await Approval.get_or_none(id=approval_id, workspace_id=workspace_id)
    return await expire_if_due(approval, publisher=publisher) if approval else None


async def expire_if_due(approval: Approval, *, publisher: Publisher) -> Approval:
    """The approval as it stands, expired first if its time is up (lazy expiry on read)."""
    if approval.status is ApprovalStatus.PENDING and approval.expires_at <= _now():
        await _expire(approval.id, publisher)
        await approval.refresh_from_db()
    return approval


async def list_approvals(
    *,
    workspace_id: str,
    status: ApprovalStatus | None,
    first: int,
    after: KeyCursor | None,
    publisher: Publisher,
) -> KeyPage[Approval]:
    """Approvals newest first, optionally of one status (due ones are expired first)."""
    await expire_due_approvals(publisher=publisher, workspace_id=workspace_id)
    query = Approval.filter(workspace_id=workspace_id)
    if status is not None:
        query = query.filter(status=status)
    return await page(query, time_field="requested_at", first=first, after=after)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _settled_message(approval: Approval) -> str:
    """Read by a person who just lost a race to decide: the time to the second, in UTC.
    An expired approval's time is its expiry, not when the expiry was noticed and recorded
    (by a read or the sweep, seconds later; later still if no server ran then)."""
    if approval.status is ApprovalStatus.EXPIRED:
        if approval.decided_at and approval.decided_at < approval.expires_at:  # closed early
            return (
                f"Approval {approval.id} was closed without a decision at "
                f"{_utc(approval.decided_at)}: its tool call ended first; it cannot be decided."
            )
        return (
            f"Approval {approval.id} expired at {_utc(approval.expires_at)} without a "
            "decision; it cannot be decided."
        )
    when = _utc(approval.decided_at) if approval.decided_at else "earlier"
    verb = approval.status.value.lower()
    return (
        f"Approval {approval.id} was already {verb} by {approval.decided_by} at {when}; "
        "a decision is final."
    )


async def decide_approval(
    *,
    principal: Principal,
    approval_id: str,
    decision: ApprovalDecision,
    comment: str | None,
    publisher: Publisher,
) -> Approval:
    """Approve or reject a pending approval; the key's name is recorded as the decider."""
    principal.require(Scope.APPROVALS_DECIDE)
    comment = comment.strip() if comment else None
    if decision is ApprovalDecision.REJECT and not comment:
        raise InvalidDecision("comment: is required to reject; say why.")
    if comment and len(comment) > MAX_COMMENT:
        raise InvalidDecision(f"comment: must be at most {MAX_COMMENT} characters.")
    if comment and (problem := text_problem(comment)) is not None:
        raise InvalidDecision(f"comment: {problem}.")
    approval = await get_approval(
        workspace_id=principal.workspace_id, approval_id=approval_id, publisher=publisher
    )
    if approval is None:
        raise ApprovalNotFound(f"No approval {approval_id!r} in this workspace.")
    approved = decision is ApprovalDecision.APPROVE
    status = ApprovalStatus.APPROVED if approved else ApprovalStatus.REJECTED
    now = _now()
    entry: TimelineEntry | None = None
    async with in_transaction():
        moved = await Approval.filter(
            id=approval.id, status=ApprovalStatus.PENDING, expires_at__gt=now
        ).update(status=status, decided_at=now, decided_by=principal.name, comment=comment)
        if moved:
            await ToolCall.filter(
                id=approval.tool_call_id, status=ToolCallStatus.AWAITING_APPROVAL
            ).update(status=ToolCallStatus.APPROVED if approved else ToolCallStatus.REJECTED)
            await approval.refresh_from_db()
            call = await ToolCall.get(id=approval.tool_call_id)
            verb = "approved" if approved else "rejected"
            summary = f"{principal.name} {verb} {call.tool_name} for {call.agent_id}"
            entry = await record_entry(
                **_entry(
                    approval,
                    call,
                    TimelineKind.APPROVAL_DECIDED,
                    summary + (f": {comment}" if comment else ""),
                    occurred_at=now,
                    actor=principal.name,
                    decision=decision.value,
                    comment=comment,
                )
            )
    if entry is None:
        await _expire(approval.id, publisher)  # lost to the clock: record the expiry
        await approval.refresh_from_db()
        raise ApprovalSettled(_settled_message(approval))
    await publisher.entry_committed(workspace_id=approval.workspace_id, entry_id=entry.id)
    wake(approval.id)
    return approval


async def wait_until_settled(
    *, workspace_id: str, approval_id: str, timeout: float, poll_seconds: float
) -> None:
    """Return once the approval is no longer pending, or after `timeout` seconds.

    A decision or expiry wakes the waiter at once when `wake` is called in this process
    (as it is for those taken here, and as the REST edge relays those of other processes
    from the bus); the row is re-read every `poll_seconds` anyway.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    event = asyncio.Event()
    _waiters[approval_id].add(event)
    try:
        while True:
            event.clear()  # before reading, so a decision landing after the read wakes us
            row = await Approval.get_or_none(id=approval_id, workspace_id=workspace_id)
            if row is None or row.status is not ApprovalStatus.PENDING:
                return
            remaining = min(deadline - loop.time(), (row.expires_at - _now()).total_seconds())
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(event.wait(), timeout=min(remaining, poll_seconds))
            except TimeoutError:
                pass
    finally:
        _waiters[approval_id].discard(event)
        if not _waiters[approval_id]:
            del _waiters[approval_id]


async def sweep_forever(*, publisher: Publisher, interval_seconds: float) -> None:
    """Expire due approvals every `interval_seconds` until cancelled (the app's lifespan).

    Nothing ends it. An unreachable database is told once when the sweep first fails and
    once when it works again, not at every try in between."""
    unreachable = False
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            await expire_due_approvals(publisher=publisher)
        except Exception as exc:
            if not database_unavailable(exc):
                log.exception("expiring due approvals failed; retrying in %ss", interval_seconds)
            elif not unreachable:
                unreachable = True
                log.warning(
                    "expiring due approvals: the database is unreachable (%s: %s);"
                    " retrying every %ss",
                    type(exc).__name__,
                    exc,
                    interval_seconds,
                )
            continue
        if unreachable:
            unreachable = False
            log.info("expiring due approvals: the database is reachable again")
