"""Errors in a GraphQL request itself, as a client sees them over HTTP: each carries a code
to branch on (`GRAPHQL_PARSE_FAILED`, `GRAPHQL_VALIDATION_FAILED`, `QUERY_TOO_COMPLEX`,
`BAD_USER_INPUT`), a document of several operations needs the one to run named, and a
subscription sent over HTTP is told where subscriptions are served."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from opsgraph.app import SUBSCRIPTIONS_OVER_WEBSOCKET
from tests.conftest import Tenant
from tests.test_changes import bearer


async def post(client: httpx.AsyncClient, key: str, query: str, **extra: Any) -> httpx.Response:
    return await client.post("/graphql", headers=bearer(key), json={"query": query, **extra})


def codes(response: httpx.Response) -> list[tuple[str, str | None]]:
    return [
        (error["message"], (error.get("extensions") or {}).get("code"))
        for error in response.json()["errors"]
    ]


@pytest.mark.parametrize(
    ("query", "variables", "code"),
    [
        ("{ viewer { name }", None, "GRAPHQL_PARSE_FAILED"),
        ("{ viewer { " + "name " * 5001 + "} }", None, "GRAPHQL_PARSE_FAILED"),
        ("{ viewer { nope } }", None, "GRAPHQL_VALIDATION_FAILED"),
        ('{ timeline(first: "5") { edges { cursor } } }', None, "GRAPHQL_VALIDATION_FAILED"),
        ("{ " + " ".join(f"a{n}: viewer {{ name }}" for n in range(31)) + " }", None,
         "QUERY_TOO_COMPLEX"),
        ("query($n: Int) { timeline(first: $n) { edges { cursor } } }", {"n": "5"},
         "BAD_USER_INPUT"),
        ("query($f: TimelineFilter) { timeline(filter: $f) { edges { cursor } } }",
         {"f": {"kinds": ["NOPE"]}}, "BAD_USER_INPUT"),
    ],
)  # fmt: skip
async def test_every_request_error_has_a_code(
    client: httpx.AsyncClient,
    tenant: Tenant,
    query: str,
    variables: dict[str, Any] | None,
    code: str,
) -> None:
    response = await post(client, tenant.reader, query, variables=variables)
    assert response.status_code in (200, 400)
    found = codes(response)
    assert found and all(found_code == code for _, found_code in found), found


@pytest.mark.settings(graphql_max_depth=2)
async def test_the_depth_limit_has_the_other_limits_code(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    deep = "{ timeline { edges { node { subject { __typename } } } } }"
    for _ in range(2):  # the second from the validation cache
        assert codes(await post(client, tenant.reader, deep)) == [
            ("'anonymous' exceeds maximum operation depth of 2", "QUERY_TOO_COMPLEX")
        ]


async def test_the_limits_keep_their_messages(client: httpx.AsyncClient, tenant: Tenant) -> None:
    aliases = "{ " + " ".join(f"a{n}: viewer {{ name }}" for n in range(31)) + " }"
    assert codes(await post(client, tenant.reader, aliases)) == [
        ("31 aliases found. Allowed: 30", "QUERY_TOO_COMPLEX")
    ]


async def test_several_operations_need_the_one_to_run_named(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    document = "query A { a: viewer { name } } query B { b: viewer { scopes } }"
    unnamed = await post(client, tenant.reader, document)
    assert unnamed.json()["data"] is None
    assert codes(unnamed) == [
        (
            "Must provide operation name if query contains multiple operations.",
            "GRAPHQL_VALIDATION_FAILED",
        )
    ]
    named = await post(client, tenant.reader, document, operationName="B")
    assert named.json() == {"data": {"b": {"scopes": ["READ"]}}}
    one = await post(client, tenant.reader, "query A { a: viewer { name } }")
    assert one.json()["data"]["a"]["name"]


@pytest.mark.parametrize(
    "query",
    [
        "subscription { timeline { id } }",
        "subscription Live { pendingApprovals { __typename } }",
        "query Q { viewer { name } } subscription S { timeline { id } }",
    ],
)
async def test_a_subscription_over_http_is_told_where_they_are_served(
    client: httpx.AsyncClient, tenant: Tenant, query: str, caplog: pytest.LogCaptureFixture
) -> None:
    extra = {"operationName": "S"} if "query Q" in query else {}
    response = await post(client, tenant.reader, query, **extra)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == {"code": "BAD_REQUEST", "message": SUBSCRIPTIONS_OVER_WEBSOCKET}
    assert not [record for record in caplog.records if record.levelname == "ERROR"]
    if extra:  # the same document's query still runs by its name
        query_run = await post(client, tenant.reader, query, operationName="Q")
        assert query_run.json()["data"]["viewer"]["name"]
