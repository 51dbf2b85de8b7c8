"""The policy cache across real server processes: a policy changed through one process is
honoured by the very next call to another, whose cache held the old policies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent_helpers import tool_called
from tests.servers import postgres_database, run_server

pytestmark = pytest.mark.slow

CREATE_KEY = 'mutation { createApiKey(name: "agent", scopes: [EVENTS_WRITE]) { key } }'
CREATE = "mutation($input: PolicyInput!) { createPolicy(input: $input) { id } }"
UPDATE = "mutation($id: ID!, $input: PolicyInput!) { updatePolicy(id: $id, input: $input) { id } }"
DELETE = "mutation($id: ID!) { deletePolicy(id: $id) }"
BLOCK: dict[str, Any] = {"name": "freeze", "action": "BLOCK", "toolName": "deploy"}


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with postgres_database() as url:
        yield url


def graphql(url: str, admin: str, document: str, **variables: Any) -> dict[str, Any]:
    response = httpx.post(
        url + "/graphql",
        json={"query": document, "variables": variables},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    )
    body: dict[str, Any] = response.json()
    assert response.status_code == 200 and not body.get("errors"), body
    data: dict[str, Any] = body["data"]
    return data


def decide(url: str, key: str, n: int) -> str:
    response = httpx.post(
        url + "/v1/events",
        json=tool_called(f"evt_{n}", f"tc_{n}", run="run_x"),
        headers={"X-API-Key": key},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    status: str = response.json()["toolCallStatus"]
    return status


def test_a_change_through_one_process_is_seen_by_the_next_call_to_another(
    tmp_path: Path, database: str
) -> None:
    env = {"OPSGRAPH_DATABASE_URL": database, "OPSGRAPH_BROADCAST_URL": "memory://"}
    with run_server(tmp_path, env) as first, run_server(tmp_path, env) as second:
        admin = first.admin_key or second.admin_key
        assert admin is not None
        key = graphql(first.url, admin, CREATE_KEY)["createApiKey"]["key"]

        assert decide(first.url, key, 1) == "allowed"  # the first process caches: none
        policy = graphql(second.url, admin, CREATE, input=BLOCK)["createPolicy"]
        assert decide(first.url, key, 2) == "blocked"
        assert decide(second.url, key, 3) == "blocked"

        graphql(second.url, admin, UPDATE, id=policy["id"], input={**BLOCK, "action": "ALLOW"})
        assert decide(first.url, key, 4) == "allowed"
        graphql(second.url, admin, UPDATE, id=policy["id"], input=BLOCK)
        assert decide(first.url, key, 5) == "blocked"
        graphql(second.url, admin, DELETE, id=policy["id"])
        assert decide(first.url, key, 6) == "allowed"
