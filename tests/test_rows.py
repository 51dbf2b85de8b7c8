"""`resolvers.rows.construct`: the instance `Model.construct` makes, for every model the
group commits build rows of, whatever values are given and left out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from tortoise.models import Model

from models.agent import AgentEvent, Run, RunStatus, ToolCall, ToolCallDecision, ToolCallStatus
from models.approval import Approval, ApprovalStatus
from models.change import Change
from models.timeline import TimelineEntry, TimelineKind
from models.workspace import Workspace
from resolvers.rows import construct
from tests.conftest import Tenant

NOW = datetime(2026, 3, 4, 14, 25, tzinfo=UTC)


def rows(workspace_id: str) -> list[tuple[type[Model], dict[str, Any]]]:
    """Values as the group commits give them, some fields left to their defaults."""
    return [
        (Change, {"id": "chg_1", "workspace_id": workspace_id, "name": "Deploy",
                  "occurred_at": NOW, "labels": ["a"], "metadata": {"k": 1}}),
        (TimelineEntry, {"id": 7, "seq": 3, "created_at": NOW, "workspace_id": workspace_id,
                         "kind": TimelineKind.CHANGE, "occurred_at": NOW, "summary": "s",
                         "labels": [], "subject_type": "Change", "subject_id": "chg_1"}),
        (Run, {"id": "run_1", "workspace_id": workspace_id, "run_key": "r1",
               "agent_id": "a", "status": RunStatus.RUNNING, "started_at": NOW}),
        (ToolCall, {"id": "tc_1", "workspace_id": workspace_id, "run_id": "run_1",
                    "call_key": "c1", "agent_id": "a", "tool_name": "deploy",
                    "decision": ToolCallDecision.ALLOWED, "status": ToolCallStatus.ALLOWED}),
        (Approval, {"id": "apr_1", "workspace_id": workspace_id, "tool_call_id": "tc_1",
                    "status": ApprovalStatus.PENDING, "expires_at": NOW}),
        (AgentEvent, {"id": "aev_1", "workspace_id": workspace_id, "event_id": "e1",
                      "event_type": "tool.called", "body_hash": "0" * 64, "body": "{}"}),
    ]  # fmt: skip


def state(row: Model) -> dict[str, Any]:
    """An instance's attributes, a default made per row (a callable's) by its type only."""
    defaults = {
        name: field.default for name, field in row._meta.fields_map.items() if field.default
    }
    return {
        name: type(value) if callable(defaults.get(name)) else value
        for name, value in vars(row).items()
    }


@pytest.mark.parametrize("saved", [False, True])
async def test_the_same_instance_as_model_construct(tenant: Tenant, saved: bool) -> None:
    for model, values in rows(tenant.workspace_id):
        fast = construct(model, dict(values), saved=saved)
        slow = model.construct(_saved_in_db=saved, **values)
        assert type(fast) is model
        assert state(fast) == state(slow), model.__name__
        assert fast._saved_in_db is saved
        assert fast._await_when_save == {} and fast._await_when_save is not slow._await_when_save


async def test_rows_share_no_mutable_state(tenant: Tenant) -> None:
    model, values = rows(tenant.workspace_id)[0]
    first, second = construct(model, dict(values)), construct(model, dict(values))
    first._await_when_save["x"] = 1
    assert second._await_when_save == {}
    first.name = "changed"
    assert second.name == "Deploy"


async def test_a_relation_goes_to_model_construct(tenant: Tenant) -> None:
    """A related instance rather than its id: `Model.construct` sets both, as before."""
    workspace = Workspace.construct(id=tenant.workspace_id, name="w")
    values = {"id": "chg_2", "workspace": workspace, "name": "Deploy", "occurred_at": NOW}
    row = construct(Change, values)
    assert row.workspace_id == tenant.workspace_id and row.workspace is workspace
    assert state(row) == state(Change.construct(**values))
