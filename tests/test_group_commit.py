"""Group commit: concurrent writes share one transaction, yet each caller gets its own
change, its own entry and its own failure, and nothing answers before it is stored."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from models.change import Change
from models.timeline import TimelineEntry, TimelineLabel
from opsgraph.settings import Settings
from resolvers import auth, changes
from resolvers.auth import Principal, Scope
from resolvers.changes import RecordedChange, record_change, validate_change
from resolvers.errors import AuthError
from tests.conftest import MakeTenant, Recorder


def principal(workspace_id: str) -> Principal:
    return Principal(
        key_id="key_test",
        workspace_id=workspace_id,
        name="pipeline",
        scopes=frozenset({Scope.EVENTS_WRITE}),
    )


def event(index: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": f"Deploy {index}",
        "timestamp": f"2026-03-04T14:{index % 60:02d}:00Z",
        "category": "TECHNICAL",
        "source": "ci",
        "service": "api",
        "labels": ["release", f"build-{index % 3}", "release"],
        **extra,
    }


async def test_concurrent_writes_share_transactions_and_keep_their_own_rows(
    make_tenant: MakeTenant, settings: Settings, recorder: Recorder
) -> None:
    first, second = await make_tenant(), await make_tenant()
    calls = [
        record_change(
            principal=principal((first if i % 2 else second).workspace_id),
            data=validate_change(event(i), settings=settings),
            publisher=recorder,
        )
        for i in range(40)
    ]
    recorded: list[RecordedChange] = await asyncio.gather(*calls)

    for index, item in enumerate(recorded):
        stored = await TimelineEntry.get(id=item.entry.id)
        assert stored.subject_id == item.change.id
        assert stored.summary == f"Deploy {index}"
        assert stored.labels == ["release", f"build-{index % 3}"]
        # "release" given twice is kept once, by the change as by its entry.
        assert (await Change.get(id=item.change.id)).labels == ["release", f"build-{index % 3}"]
        labels = await TimelineLabel.filter(entry_id=item.entry.id).values_list("label", flat=True)
        assert sorted(labels) == sorted(["release", f"build-{index % 3}"])
    for tenant in (first, second):
        seqs = sorted(
            await TimelineEntry.filter(workspace_id=tenant.workspace_id).values_list(
                "seq", flat=True
            )
        )
        assert seqs == list(range(1, 21))  # no hole, no duplicate
    assert sorted(entry_id for _, entry_id in recorder.announced[-40:]) == sorted(
        item.entry.id for item in recorded
    )


async def test_one_failing_write_fails_alone(
    make_tenant: MakeTenant, settings: Settings, recorder: Recorder
) -> None:
    tenant = await make_tenant()
    data = validate_change(event(1), settings=settings)
    good = [
        record_change(principal=principal(tenant.workspace_id), data=data, publisher=recorder)
        for _ in range(5)
    ]
    bad = record_change(principal=principal("ws_missing"), data=data, publisher=recorder)
    outcomes = await asyncio.gather(*good[:2], bad, *good[2:], return_exceptions=True)

    assert isinstance(outcomes[2], Exception)
    stored = [outcome for outcome in outcomes if isinstance(outcome, RecordedChange)]
    assert len(stored) == 5
    assert await Change.filter(workspace_id=tenant.workspace_id).count() == 5
    assert not await Change.filter(workspace_id="ws_missing").exists()


@pytest.mark.parametrize("limit", [1, 3])
async def test_batches_never_exceed_the_limit(
    make_tenant: MakeTenant, settings: Settings, recorder: Recorder, limit: int
) -> None:
    tenant = await make_tenant()
    sizes: list[int] = []
    store = changes.WRITER._work

    async def counting(writes: Any) -> Any:
        sizes.append(len(writes))
        return await store(writes)

    previous = changes.WRITER.max_items
    changes.WRITER._work, changes.WRITER.max_items = counting, limit
    try:
        data = validate_change(event(2), settings=settings)
        await asyncio.gather(
            *(
                record_change(
                    principal=principal(tenant.workspace_id), data=data, publisher=recorder
                )
                for _ in range(7)
            )
        )
    finally:
        changes.WRITER._work, changes.WRITER.max_items = store, previous
    assert sum(sizes) == 7
    assert max(sizes) <= limit


async def test_key_checks_share_a_query_and_refuse_a_revoked_key_at_once(
    make_tenant: MakeTenant,
) -> None:
    tenant = await make_tenant()
    live = await tenant.key(Scope.EVENTS_WRITE, name="live")
    revoked = await auth.create_api_key(
        workspace_id=tenant.workspace_id, name="gone", scopes=frozenset({Scope.EVENTS_WRITE})
    )
    assert (await auth.authenticate(secret=revoked.secret)).name == "gone"
    await auth.revoke_api_key(workspace_id=tenant.workspace_id, key_id=revoked.key.id)

    outcomes = await asyncio.gather(
        *(auth.authenticate(secret=secret) for secret in (live, revoked.secret, live, "og_nope")),
        return_exceptions=True,
    )
    assert [getattr(outcome, "name", None) for outcome in outcomes] == ["live", None, "live", None]
    assert all(isinstance(outcomes[i], AuthError) for i in (1, 3))
