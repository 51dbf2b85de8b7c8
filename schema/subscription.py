"""Live subscriptions, fed by the process's hub: the timeline (with resume by cursor),
the pending approvals queue, and one approval until it is settled."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from enum import Enum

import strawberry

from models.approval import Approval as ApprovalRow
from models.approval import ApprovalStatus
from models.timeline import TimelineEntry as TimelineEntryRow
from models.timeline import TimelineKind
from opsgraph.live import LiveError, Subscriber
from resolvers import approvals, timeline
from resolvers.auth import Principal, Scope
from resolvers.keyset import KeyCursor
from schema.approval import Approval, reader_or_agent
from schema.common import bounded
from schema.context import Info, public_error
from schema.live_render import LIVE_TARGET, LiveSink
from schema.timeline import TimelineEntry, TimelineFilter, parse_cursor

REPLAY_BATCH = 500
APPROVAL_KINDS = {
    TimelineKind.APPROVAL_REQUESTED,
    TimelineKind.APPROVAL_DECIDED,
    TimelineKind.APPROVAL_EXPIRED,
}


@strawberry.enum
class ApprovalEventKind(Enum):
    REQUESTED = "REQUESTED"
    DECIDED = "DECIDED"
    EXPIRED = "EXPIRED"


EVENT_KIND = {
    TimelineKind.APPROVAL_REQUESTED: ApprovalEventKind.REQUESTED,
    TimelineKind.APPROVAL_DECIDED: ApprovalEventKind.DECIDED,
    TimelineKind.APPROVAL_EXPIRED: ApprovalEventKind.EXPIRED,
}


@strawberry.type(description="A change to the approvals queue.")
class ApprovalEvent:
    kind: ApprovalEventKind
    approval: Approval


async def _subscribe(
    info: Info, principal: Principal, accepts: Callable[[TimelineEntryRow], bool]
) -> Subscriber:
    try:
        return await info.context.require_hub().subscribe(
            workspace_id=principal.workspace_id, accepts=accepts, key_id=principal.key_id
        )
    except LiveError as exc:
        raise public_error(exc.code, str(exc)) from None


def _after(
    seq: int, matches: Callable[[TimelineEntryRow], bool]
) -> Callable[[TimelineEntryRow], bool]:
    """`matches`, for entries committed after `seq` only. A resuming subscriber's cursor
    may name an entry this process's hub has not delivered yet (committed by another
    process, its note on the way): the hub then starts the subscriber before the cursor,
    and would hand it again what the client had."""
    return lambda entry: entry.seq > seq and matches(entry)


async def _check_held(principal: Principal, cursor: timeline.Cursor) -> None:
    """Refuse a cursor whose entry the workspace's timeline does not hold at its `seq`:
    past the end, or from another deployment or workspace, or from before the database
    was restored from an older backup. Resuming from its `seq` would skip, without a word,
    whatever is committed up to it, or what took that `seq` since."""
    if not await timeline.holds(cursor, workspace_id=principal.workspace_id):
        raise public_error(
            "BAD_USER_INPUT",
            "after: this workspace's timeline holds no such entry (a cursor from another "
            "deployment, or from before a database restore?); subscribe without it.",
        )


async def _next(subscriber: Subscriber) -> TimelineEntryRow:
    try:
        return await subscriber.next()
    except LiveError as exc:
        raise public_error(exc.code, str(exc)) from None


async def _approval(
    info: Info, principal: Principal, approval_id: str, entry: TimelineEntryRow | None
) -> ApprovalRow | None:
    """The approval as it stands, read once for every subscriber handed the same entry."""

    async def read() -> ApprovalRow | None:
        return await approvals.get_approval(
            workspace_id=principal.workspace_id,
            approval_id=approval_id,
            publisher=info.context.publisher,
        )

    shared = info.context.shared_reads
    if entry is None or shared is None:
        return await read()
    return await shared.get(("approval", entry.id, approval_id), read)


async def _pending(info: Info, principal: Principal) -> list[Approval]:
    """Every pending approval now, oldest request first."""
    found: list[Approval] = []
    after: KeyCursor | None = None
    while True:
        page = await approvals.list_approvals(
            workspace_id=principal.workspace_id,
            status=ApprovalStatus.PENDING,
            first=REPLAY_BATCH,
            after=after,
            publisher=info.context.publisher,
        )
        found += [Approval.from_row(row) for row in page.rows]
        if not page.has_next_page or page.end_cursor is None:
            return found[::-1]
        after = KeyCursor.decode(page.end_cursor)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="New entries matching the filter, in commit order. With `after`, the "
        "entries after that cursor come first, then live ones: no gap, no duplicate."
    )
    async def timeline(
        self, info: Info, filter: TimelineFilter | None = None, after: str | None = None
    ) -> AsyncGenerator[TimelineEntry, None]:
        principal = await info.context.require(Scope.READ)
        flt = bounded(info.context.settings, filter or TimelineFilter()).to_domain()
        cursor = parse_cursor(after)
        accepts = flt.matches if cursor is None else _after(cursor.seq, flt.matches)
        subscriber = await _subscribe(info, principal, accepts)
        # Over graphql-transport-ws, live entries are rendered once for every subscriber
        # with the same document, variables and key, and sent from here.
        target, renderers = LIVE_TARGET.get(), info.context.renderers
        renderer = None
        if target is not None and renderers is not None:
            renderer = renderers.acquire(
                schema=info.schema._schema,
                target=target,
                context=info.context,
                scope_key=(principal.workspace_id, principal.key_id),
            )
        try:
            if cursor is not None:
                await _check_held(principal, cursor)
                last = cursor.seq
                while last < subscriber.start_seq:
                    rows = await timeline.entries_between(
                        workspace_id=principal.workspace_id,
                        flt=flt,
                        after_seq=last,
                        upto_seq=subscriber.start_seq,
                        limit=REPLAY_BATCH,
                    )
                    for row in rows:
                        yield TimelineEntry.from_row(row)
                    if len(rows) < REPLAY_BATCH:
                        break
                    last = rows[-1].seq
            if renderer is not None and target is not None and target.writer is not None:
                # From now on the hub writes entries to the connection itself while this
                # generator waits; it wakes only for what that path turns back.
                subscriber.sink = LiveSink(renderer, target, target.writer, TimelineEntry.from_row)
            while True:
                row = await _next(subscriber)
                if renderer is not None and target is not None:
                    payload = await renderer.render(row, TimelineEntry.from_row)
                    if payload is not None:
                        await target.send_next(payload)
                        continue
                yield TimelineEntry.from_row(row)
        finally:
            info.context.require_hub().unsubscribe(subscriber)
            if renderer is not None and renderers is not None:
                renderers.release(renderer)

    @strawberry.subscription(
        description="The pending approvals now (as REQUESTED), then every request, "
        "decision and expiry."
    )
    async def pending_approvals(self, info: Info) -> AsyncGenerator[ApprovalEvent, None]:
        principal = await info.context.require(Scope.READ)
        subscriber = await _subscribe(info, principal, lambda e: e.kind in APPROVAL_KINDS)
        try:
            seen: set[str] = set()
            for approval in await _pending(info, principal):
                seen.add(str(approval.id))
                yield ApprovalEvent(kind=ApprovalEventKind.REQUESTED, approval=approval)
            while True:
                entry = await _next(subscriber)
                kind = EVENT_KIND[entry.kind]
                if kind is ApprovalEventKind.REQUESTED and entry.subject_id in seen:
                    continue  # requested while we read the queue: already sent
                row = await _approval(info, principal, entry.subject_id or "", entry)
                if row is not None:
                    yield ApprovalEvent(kind=kind, approval=Approval.from_row(row))
        finally:
            info.context.require_hub().unsubscribe(subscriber)

    @strawberry.subscription(
        description="One approval's state now, then each change; ends once it is decided "
        "or expired."
    )
    async def approval(self, info: Info, id: strawberry.ID) -> AsyncGenerator[Approval, None]:
        principal = await reader_or_agent(info)  # the waiting agent's own key too
        approval_id = str(id)
        subscriber = await _subscribe(
            info,
            principal,
            lambda e: e.kind in APPROVAL_KINDS and e.subject_id == approval_id,
        )
        try:
            entry = None  # the state now first, then as of each entry about it
            while True:
                row = await _approval(info, principal, approval_id, entry)
                if row is None:
                    raise public_error("NOT_FOUND", f"No approval {approval_id}.")
                yield Approval.from_row(row)
                if row.status is not ApprovalStatus.PENDING:
                    return
                entry = await _next(subscriber)
        finally:
            info.context.require_hub().unsubscribe(subscriber)
