"""Incident events posted together: `POST /api/events` and `/v2/enqueue` requests that
queue behind a store in progress run as `sendIncidentEvents` calls, applied in the order
they arrived even when different keys send them, each failing alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from graphql import ExecutionResult, GraphQLError
from starlette.applications import Starlette

from models.incident import Incident
from opsgraph.restlane import RestHttpProtocol
from resolvers import auth, incident_batch, incidents
from rest_compat import batched
from rest_compat.common import Endpoint
from tests.conftest import Tenant
from tests.servers import served
from tests.test_incidents import SEED_ACK, SEED_RESOLVE, SEED_TRIGGER, bearer, event


class Gate:
    """Holds the first incident store until `open()`, so the requests posted meanwhile
    queue in the REST batch in the order they were posted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened = asyncio.Event()
        self.stores = 0
        self.batchers: list[Any] = []
        work, batcher = incident_batch.EVENTS._work, batched.batcher

        async def held(items: Any) -> Any:
            self.stores += 1
            if self.stores == 1:
                await asyncio.wait_for(self.opened.wait(), 20)
            return await work(items)

        def seen(endpoint: Any, mutation: Any) -> Any:
            found = batcher(endpoint, mutation)
            if found not in self.batchers:
                self.batchers.append(found)
            return found

        monkeypatch.setattr(incident_batch.EVENTS, "_work", held)
        monkeypatch.setattr(batched, "batcher", seen)

    def queued(self) -> int:
        return sum(len(found._pending) for found in self.batchers)

    async def until(self, done: Callable[[], bool]) -> None:
        for _ in range(10_000):
            if done():
                return
            await asyncio.sleep(0.001)
        raise AssertionError("timed out")

    async def post(
        self, client: httpx.AsyncClient, path: str, body: dict[str, Any], key: str | None = None
    ) -> asyncio.Task[httpx.Response]:
        """Post, and wait until the request has queued (or been answered)."""
        before = self.queued()
        headers = bearer(key) if key else None
        task = asyncio.create_task(client.post(path, json=body, headers=headers))
        await self.until(lambda: self.queued() > before or task.done())
        return task

    async def plug(self, client: httpx.AsyncClient, routing_key: str) -> asyncio.Task[Any]:
        """A first trigger whose store is held: what is posted next queues behind it."""
        task = asyncio.create_task(
            client.post("/v2/enqueue", json=event(SEED_TRIGGER, routing_key, dedup_key="plug"))
        )
        await self.until(lambda: self.stores == 1)
        return task


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of requests of each list-mutation call the REST batches make, in order."""
    sizes: list[int] = []
    run = batched._run_as

    async def counted(endpoint: Any, mutation: Any, principal: Any, items: Any) -> Any:
        sizes.append(len(items))
        return await run(endpoint, mutation, principal, items)

    monkeypatch.setattr(batched, "_run_as", counted)
    return sizes


async def test_different_keys_events_are_applied_in_arrival_order(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trigger by key, its resolve by routing key, a new trigger by key, an acknowledge of
    it by routing key: one batch, as sent, so the first incident ends resolved and the
    second, opened after it, acknowledged."""
    routing_key = await tenant.service("api")
    gate = Gate(monkeypatch)
    plug = await gate.plug(client, routing_key)
    first = await gate.post(
        client, "/api/events", event(SEED_TRIGGER, routing_key, dedup_key="k"), tenant.writer
    )
    resolved = await gate.post(
        client, "/v2/enqueue", event(SEED_RESOLVE, routing_key, dedup_key="k")
    )
    again = await gate.post(
        client, "/api/events", event(SEED_TRIGGER, routing_key, dedup_key="k"), tenant.writer
    )
    acked = await gate.post(client, "/v2/enqueue", event(SEED_ACK, routing_key, dedup_key="k"))
    gate.opened.set()
    replies = [await task for task in (plug, first, resolved, again, acked)]
    assert [reply.status_code for reply in replies] == [202] * 5
    keys = [reply.json()["incident_key"] for reply in replies[1:]]
    assert keys[0] == keys[1] and keys[2] == keys[3] and keys[0] != keys[2]
    states = {
        row.id: row.status.value
        for row in await Incident.filter(workspace_id=tenant.workspace_id, dedup_key="k")
    }
    assert states == {keys[0]: "resolved", keys[2]: "acknowledged"}


async def test_one_keys_requests_run_as_one_call(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, calls: list[int]
) -> None:
    routing_key = await tenant.service("api")
    gate = Gate(monkeypatch)
    plug = await gate.plug(client, routing_key)
    posted = [
        await gate.post(
            client,
            "/api/events",
            event(SEED_TRIGGER, routing_key, dedup_key=f"k{n}"),
            tenant.writer,
        )
        for n in range(5)
    ]
    gate.opened.set()
    replies = [await task for task in (plug, *posted)]
    assert [reply.status_code for reply in replies] == [202] * 6
    assert calls == [1, 5]  # the plug alone, then the five queued behind it together
    assert await Incident.filter(workspace_id=tenant.workspace_id).count() == 6


async def test_keys_acting_on_different_services_run_at_once(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, calls: list[int]
) -> None:
    """Monitors of two services posting at once, interleaved: nothing to keep in order
    between them, so one call per routing key, not one per request."""
    api, db = await tenant.service("api"), await tenant.service("db")
    gate = Gate(monkeypatch)
    plug = await gate.plug(client, api)
    posted = [
        await gate.post(client, "/v2/enqueue", event(SEED_TRIGGER, key, dedup_key=f"k{n}"))
        for n, key in enumerate([api, db, api, db])
    ]
    gate.opened.set()
    replies = [await task for task in (plug, *posted)]
    assert [reply.status_code for reply in replies] == [202] * 5
    assert calls[0] == 1 and sorted(calls[1:]) == [2, 2]


async def test_a_failing_service_lookup_fails_its_own_request_alone(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    routing_key = await tenant.service("api")
    service = await incidents.find_service(
        workspace_id=tenant.workspace_id, routing_key=routing_key, service_id=None
    )
    assert service is not None
    find = incidents.find_service

    async def flaky(*, workspace_id: str, routing_key: str | None, service_id: str | None) -> Any:
        if routing_key is None and service_id == service.id:
            raise RuntimeError("the lookup failed")
        return await find(workspace_id=workspace_id, routing_key=routing_key, service_id=service_id)

    monkeypatch.setattr(incidents, "find_service", flaky)
    gate = Gate(monkeypatch)
    plug = await gate.plug(client, routing_key)
    by_id = {key: value for key, value in SEED_TRIGGER.items() if key != "routing_key"}
    good = event(SEED_TRIGGER, routing_key, dedup_key="a")
    bad = {**by_id, "service_id": service.id, "dedup_key": "b"}
    posted = [
        await gate.post(client, "/api/events", good, tenant.writer),
        await gate.post(client, "/api/events", bad, tenant.writer),
        await gate.post(client, "/api/events", {**good, "dedup_key": "c"}, tenant.writer),
    ]
    gate.opened.set()
    replies = [await task for task in (plug, *posted)]
    assert [reply.status_code for reply in replies] == [202, 202, 500, 202]
    assert replies[2].json() == {"error": {"code": "INTERNAL", "message": "Internal server error."}}
    stored = await Incident.filter(workspace_id=tenant.workspace_id).values_list(
        "dedup_key", flat=True
    )
    assert sorted(stored) == ["a", "c", "plug"]


async def test_a_refused_call_is_run_again_one_event_at_a_time_in_order(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When GraphQL refuses a call's variables as a whole (nothing ran), each request is run
    alone: for incident events, one after the other in arrival order, never at once."""
    routing_key = await tenant.service("api")
    run = Endpoint.run
    alone: list[str] = []

    async def refusing(endpoint: Endpoint, document: str, variables: Any, **kw: Any) -> Any:
        inputs = variables["inputs"]
        if len(inputs) > 1:
            return ExecutionResult(None, [GraphQLError("Variable '$inputs' got invalid value")])
        alone.append(inputs[0]["eventAction"])
        await asyncio.sleep(0.01 if inputs[0]["eventAction"] == "TRIGGER" else 0)
        return await run(endpoint, document, variables, **kw)

    monkeypatch.setattr(Endpoint, "run", refusing)
    gate = Gate(monkeypatch)
    plug = await gate.plug(client, routing_key)
    trigger = await gate.post(
        client, "/api/events", event(SEED_TRIGGER, routing_key, dedup_key="k"), tenant.writer
    )
    ack = await gate.post(
        client, "/api/events", event(SEED_ACK, routing_key, dedup_key="k"), tenant.writer
    )
    gate.opened.set()
    replies = [await task for task in (plug, trigger, ack)]
    assert [reply.status_code for reply in replies] == [202] * 3
    assert alone == ["TRIGGER", "TRIGGER", "ACKNOWLEDGE"]  # the plug, then the two in order
    incident = await Incident.get(workspace_id=tenant.workspace_id, dedup_key="k")
    assert incident.status.value == "acknowledged"


@pytest.fixture
def reading(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Routing keys read slowly (0.2 s a look-up); set once one is being read: a request
    holding one has arrived and waits for its key."""
    started = asyncio.Event()
    read = auth.ROUTING_KEY_LOOKUP._work

    async def slow_read(digests: Any) -> Any:
        started.set()
        await asyncio.sleep(0.2)
        return await read(digests)

    monkeypatch.setattr(auth.ROUTING_KEY_LOOKUP, "_work", slow_read)
    return started


async def test_events_apply_in_the_order_they_arrived_not_the_order_their_keys_were_read(
    client: httpx.AsyncClient, tenant: Tenant, reading: asyncio.Event
) -> None:
    """A trigger through `/v2/enqueue`, then its resolve through `/api/events` before the
    trigger's routing key has been read: the bearer key's look-up is another statement,
    which finished first, so the resolve was applied first, dropped, and the incident
    stayed open for good (Alertmanager triggering, a remediation script resolving)."""
    await trigger_then_resolve(client, reading, tenant)


async def trigger_then_resolve(
    http: httpx.AsyncClient, reading: asyncio.Event, tenant: Tenant
) -> None:
    """A trigger through `/v2/enqueue`; once its routing key is being read, its resolve
    through `/api/events`: the incident ends resolved."""
    routing_key = await tenant.service("api")
    trigger = asyncio.create_task(
        http.post("/v2/enqueue", json=event(SEED_TRIGGER, routing_key, dedup_key="k"))
    )
    await asyncio.wait_for(reading.wait(), 10)  # it has arrived; its key is being read
    resolve = await http.post(
        "/api/events",
        json=event(SEED_RESOLVE, routing_key, dedup_key="k"),
        headers=bearer(tenant.writer),
    )
    triggered = await trigger
    assert triggered.status_code == resolve.status_code == 202
    assert resolve.json()["incident_key"] == triggered.json()["incident_key"] is not None
    incident = await Incident.get(workspace_id=tenant.workspace_id, dedup_key="k")
    assert incident.status.value == "resolved"


async def test_a_request_refused_before_its_turn_holds_up_no_one_and_jumps_no_one(
    client: httpx.AsyncClient, tenant: Tenant, reading: asyncio.Event
) -> None:
    """Behind a trigger whose routing key is being read: a request with an unknown key,
    refused at once, then the resolve. The refused one leaves the line without letting the
    resolve past the trigger."""
    routing_key = await tenant.service("api")
    trigger = asyncio.create_task(
        client.post("/v2/enqueue", json=event(SEED_TRIGGER, routing_key, dedup_key="k"))
    )
    await asyncio.wait_for(reading.wait(), 10)
    refused = await client.post(
        "/api/events",
        json=event(SEED_RESOLVE, routing_key, dedup_key="k"),
        headers=bearer("og_unknown"),
    )
    assert refused.status_code == 401
    resolve = await client.post(
        "/api/events",
        json=event(SEED_RESOLVE, routing_key, dedup_key="k"),
        headers=bearer(tenant.writer),
    )
    assert (await trigger).status_code == resolve.status_code == 202
    incident = await Incident.get(workspace_id=tenant.workspace_id, dedup_key="k")
    assert incident.status.value == "resolved"


async def test_the_order_holds_in_the_rest_lane_too(
    app: Starlette, tenant: Tenant, reading: asyncio.Event
) -> None:
    """The same as the first test of the order, over a socket to `opsgraph serve`'s HTTP
    protocol, whose REST lane has its own stack of the body limit, the line and the rest."""
    async with served(app, http=RestHttpProtocol) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            await trigger_then_resolve(http, reading, tenant)


def posted(
    path: str, body: dict[str, Any], *headers: tuple[bytes, bytes], root_path: str = ""
) -> tuple[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]]]:
    """The ASGI scope and `receive` of a JSON POST of `body` to `path`, as a server hands
    them to the app (for a test that calls the app itself, to hold its `send`)."""
    data = json.dumps(body).encode()
    length = (b"content-length", str(len(data)).encode())
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), length, *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": data, "more_body": False}

    return scope, receive


async def test_a_refused_request_whose_answer_is_not_read_holds_up_no_one(
    app: Starlette, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """A client that does not read its answers (uvicorn waits for ever to write them): its
    refused request left its place in the line only once its 401 was written, so every
    incident event behind it waited as long, with no key needed to do it."""
    routing_key = await tenant.service("api")
    body = event(SEED_TRIGGER, routing_key, dedup_key="x")
    scope, receive = posted("/api/events", body, (b"authorization", b"Bearer og_unknown"))
    answering = asyncio.Event()

    async def never_read(message: Any) -> None:
        answering.set()
        await asyncio.Event().wait()  # the answer never leaves

    refused = asyncio.create_task(app(scope, receive, never_read))
    try:
        await asyncio.wait_for(answering.wait(), 10)
        sent = client.post("/v2/enqueue", json=event(SEED_TRIGGER, routing_key, dedup_key="k"))
        response = await asyncio.wait_for(sent, 5)
        assert response.status_code == 202
    finally:
        refused.cancel()


async def test_a_request_handed_on_to_the_app_s_own_stack_keeps_its_one_place(
    app: Starlette, tenant: Tenant
) -> None:
    """The REST lane's stack hands what its routes do not answer (a path behind a root
    path) to the app, whose own stack has the line too: a second place, behind the first,
    would wait for ever."""
    routing_key = await tenant.service("api")
    body = event(SEED_TRIGGER, routing_key, dedup_key="k")
    scope, receive = posted("/v2/enqueue", body, root_path="/behind")
    scope = {**scope, "state": {}, "app": app}
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    await asyncio.wait_for(app.state.rest_lane.app(scope, receive, send), 5)
    assert sent[0]["type"] == "http.response.start"
