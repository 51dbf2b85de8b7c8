"""PostgreSQL going away under a running server: clients get 503 (never 500) meanwhile,
and the server recovers on its own once the database is back, without a restart.

The outage is real: the server reaches PostgreSQL through a TCP relay in this test, and
the relay is shut (every open connection cut, new ones refused), then reopened.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.servers import POSTGRES_ADMIN_URL, free_port, postgres_database, run_server
from tests.test_changes import SEED_EVENT

pytestmark = pytest.mark.slow


class Relay:
    """A TCP relay to PostgreSQL that can be cut and restored, on a fixed port; or whose
    open connections can be silenced (`silence`), as a stopped server's or a network
    dropping packets are, while new ones pass."""

    def __init__(self, port: int, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.port = port
        self.target = target
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.silenced: set[asyncio.StreamWriter] = set()  # what reaches these is dropped
        self.thread.start()

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)  # type: ignore[arg-type]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if writer in self.silenced:
                    continue
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _open(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _cut(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    async def _silence(self) -> None:
        self.silenced |= self.writers

    def open(self) -> None:
        self._call(self._open())

    def silence(self) -> None:
        self._call(self._silence())

    def cut(self) -> None:
        self._call(self._cut())

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@pytest.fixture
def relay() -> Iterator[Relay]:
    relay = Relay(free_port())
    relay.open()
    yield relay
    relay.close()


PROTOCOLS = [("graphql-transport-ws", "connection_init"), ("graphql-ws", "connection_init")]


def post(url: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{url}/events", json=SEED_EVENT, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def graphql(url: str, key: str, document: str) -> dict[str, Any]:
    """A GraphQL answer over HTTP, whatever its status."""
    headers = {"Authorization": f"Bearer {key}"}
    answer = httpx.post(f"{url}/graphql", json={"query": document}, headers=headers, timeout=30)
    body: dict[str, Any] = answer.json()
    return body


def test_outage_answers_503_and_the_server_recovers(tmp_path: Path, relay: Relay) -> None:
    with postgres_database() as direct_url:
        through_relay = direct_url.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}")
        with run_server(tmp_path, {"OPSGRAPH_DATABASE_URL": through_relay}) as server:
            assert server.admin_key
            assert post(server.url, server.admin_key).status_code == 201

            relay.cut()
            during = [post(server.url, server.admin_key) for _ in range(3)]
            assert [r.status_code for r in during] == [503, 503, 503]
            assert during[0].json()["error"]["code"] == "UNAVAILABLE"
            assert during[0].headers["Retry-After"] == "1"
            assert "Traceback" not in during[0].text
            # GraphQL says so too, in its own shape, rather than a masked "Unexpected error."
            answer = graphql(
                server.url, server.admin_key, "{ timeline(first: 1) { edges { node { id } } } }"
            )
            assert answer["errors"][0]["extensions"]["code"] == "UNAVAILABLE", answer
            assert "retry" in answer["errors"][0]["message"]
            # A live view's connection: closed with 1013 (try again later), which clients
            # retry, on both protocols; it was 1011 (or no close at all) with a traceback.
            for protocol, init in PROTOCOLS:
                ws_url = server.url.replace("http://", "ws://") + "/graphql"
                with connect(ws_url, subprotocols=[protocol], open_timeout=10) as ws:
                    auth = {"Authorization": f"Bearer {server.admin_key}"}
                    ws.send(json.dumps({"type": init, "payload": auth}))
                    with pytest.raises(ConnectionClosed) as closed:
                        ws.recv(timeout=30)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013, protocol
            # A load balancer sees it too.
            health = httpx.get(f"{server.url}/healthz", timeout=30)
            assert health.status_code == 503
            assert health.json() == {
                "status": "unavailable",
                "database": "unavailable",
                "bus": "ok",
            }

            relay.open()
            deadline = time.monotonic() + 20
            statuses = []
            while time.monotonic() < deadline:
                response = post(server.url, server.admin_key)
                statuses.append(response.status_code)
                if response.status_code == 201:
                    break
                time.sleep(0.5)
            assert statuses[-1] == 201, statuses
            assert set(statuses) <= {201, 503}, statuses
            health = httpx.get(f"{server.url}/healthz", timeout=30)
            assert health.status_code == 200
            assert health.json() == {"status": "ok", "database": "ok", "bus": "ok"}
            assert server.process.poll() is None  # the same process, never restarted
        assert "Traceback" not in "".join(server.output)


def test_a_database_dropped_under_the_server_is_unavailable_not_an_internal_error(
    tmp_path: Path,
) -> None:
    """A database dropped (or a role refused) is an outage: 503 and `UNAVAILABLE` for
    requests, as `/healthz` says, rather than a 500 and a traceback per request."""
    with postgres_database() as url, run_server(tmp_path, {"OPSGRAPH_DATABASE_URL": url}) as server:
        assert server.admin_key and post(server.url, server.admin_key).status_code == 201
        name = url.rsplit("/", 1)[1]
        subprocess.run(
            ["psql", POSTGRES_ADMIN_URL, "-q", "-c", f'DROP DATABASE "{name}" WITH (FORCE)'],
            check=True,
            capture_output=True,
            timeout=60,
        )
        refused = post(server.url, server.admin_key)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "UNAVAILABLE"
        answer = graphql(server.url, server.admin_key, "{ viewer { name } }")
        assert answer["errors"][0]["extensions"]["code"] == "UNAVAILABLE", answer
        assert health_until(server.url, 503)["database"] == "unavailable"
    assert "Traceback" not in "".join(server.output)


def health_until(url: str, status: int, seconds: float = 20) -> dict[str, str]:
    """/healthz's body once it answers `status` (failing after `seconds`)."""
    deadline = time.monotonic() + seconds
    while True:
        response = httpx.get(f"{url}/healthz", timeout=30)
        if response.status_code == status:
            body: dict[str, str] = response.json()
            return body
        assert time.monotonic() < deadline, (response.status_code, response.text)
        time.sleep(0.2)


def test_healthz_says_when_the_bus_is_lost_and_back(tmp_path: Path) -> None:
    """Live updates need the bus: its loss is a 503 naming it, and its return a 200."""
    relay = Relay(free_port(), target=("127.0.0.1", 6379))
    relay.open()
    try:
        env = {
            "OPSGRAPH_BROADCAST_URL": f"redis://127.0.0.1:{relay.port}/0",
            "OPSGRAPH_BUS_HEARTBEAT_SECONDS": "0.3",
        }
        with run_server(tmp_path, env) as server:
            assert health_until(server.url, 200)["bus"] == "ok"
            relay.cut()
            lost = health_until(server.url, 503)
            assert lost == {"status": "unavailable", "database": "ok", "bus": "unavailable"}
            time.sleep(1.5)  # several tries to reconnect fail meanwhile
            relay.open()
            assert health_until(server.url, 200) == {"status": "ok", "database": "ok", "bus": "ok"}
            deadline = time.monotonic() + 10  # the line and /healthz go their own ways
            while "connected again" not in "".join(server.output) and time.monotonic() < deadline:
                time.sleep(0.1)
        # The loss is said once, not once per failed try, and the return is said too.
        log = [line for line in "".join(server.output).splitlines() if "live bus" in line]
        assert len(log) == 2, log
        assert "WARNING:  opsgraph.live: live bus lost (" in log[0]
        assert log[1].endswith("INFO:     opsgraph.live: live bus connected again")
    finally:
        relay.close()


LOG_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARNING|ERROR): ")


def test_an_outage_is_logged_in_lines_not_tracebacks(tmp_path: Path, relay: Relay) -> None:
    """Through an outage the log says what is wrong in a line or two, each with its time and
    level: no traceback per retry of the approval sweep or of the pool's reconnection."""
    with postgres_database() as direct_url:
        through_relay = direct_url.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}")
        env = {"OPSGRAPH_DATABASE_URL": through_relay, "OPSGRAPH_APPROVAL_SWEEP_SECONDS": "0.2"}
        with run_server(tmp_path, env) as server:
            relay.cut()
            health_until(server.url, 503)
            time.sleep(1.5)  # the sweep fails several times meanwhile
            relay.open()
            health_until(server.url, 200)
            time.sleep(1)  # and works again
        log = "".join(server.output)
    assert "Traceback" not in log, log
    logged = [line for line in log.splitlines() if re.search(r"(INFO|WARNING|ERROR):", line)]
    assert logged and all(LOG_LINE.match(line) for line in logged), log
    sweep = [line for line in logged if "expiring due approvals" in line]
    assert len(sweep) == 2, log
    assert (
        "WARNING:  resolvers.approvals: expiring due approvals: the database is unreachable ("
        in sweep[0]
    )
    assert sweep[1].endswith(
        "INFO:     resolvers.approvals: expiring due approvals: the database is reachable again"
    )
