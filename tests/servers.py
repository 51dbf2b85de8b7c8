"""Real server processes for tests that need them (several processes, WebSockets, UI)."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from opsgraph.restlane import RestHttpProtocol

OPSGRAPH = str(Path(sys.executable).parent / "opsgraph")
POSTGRES_ADMIN_URL = os.environ.get(
    "OPSGRAPH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def served(app: ASGIApp, **options: Any) -> AsyncIterator[int]:
    """The app under a real uvicorn server on this event loop (its lifespan left to the
    caller, the database already open), HTTP served as `opsgraph serve` does; yields the
    port."""
    options.setdefault("http", RestHttpProtocol)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_level="warning", **options
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]
    admin_key: str | None
    output: list[str]

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/graphql"

    def graphql(self, key: str, document: str, **variables: Any) -> dict[str, Any]:
        """Run a document over HTTP with this key; its data (it must have no errors)."""
        response = httpx.post(
            f"{self.url}/graphql",
            json={"query": document, "variables": variables},
            headers={"Authorization": f"Bearer {key}"},
        )
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        return body["data"]  # type: ignore[no-any-return]

    def hold_tool(self, key: str, tag: str) -> None:
        """A policy holding every call of tool `tool_{tag}` for approval."""
        create = "mutation($i: PolicyInput!) { createPolicy(input: $i) { id } }"
        policy = {"name": f"hold {tag}", "action": "REQUIRE_APPROVAL", "toolName": f"tool_{tag}"}
        self.graphql(key, create, i=policy)


def held_call_body(tag: str, number: int | None = None) -> dict[str, Any]:
    """A `tool.called` of run `r_{tag}` to `tool_{tag}` (which `Server.hold_tool` holds);
    `number` tells the calls of one run apart."""
    call = tag if number is None else f"{tag}_{number}"
    return {
        "eventId": f"e_{call}",
        "runId": f"r_{tag}",
        "agentId": "agent",
        "timestamp": datetime.now(UTC).isoformat(),
        "eventType": "tool.called",
        "metadata": {"toolCallId": f"c_{call}", "toolName": f"tool_{tag}"},
    }


@contextmanager
def run_server(workdir: Path, env: dict[str, str], *, timeout: float = 30) -> Iterator[Server]:
    """Start `opsgraph serve` on a free port and wait until it answers; stop it after.

    The server's output up to then is in `output`, and the rest joins it once it stops."""
    port = free_port()
    clean = {key: value for key, value in os.environ.items() if not key.startswith("OPSGRAPH_")}
    process = subprocess.Popen(
        [OPSGRAPH, "serve", "--port", str(port)],
        cwd=workdir,
        env={**clean, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    admin_key = None
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("server did not start:\n" + "".join(output))
            line = process.stdout.readline()
            output.append(line)
            if line.strip().startswith("og_"):
                admin_key = line.strip()
            if "Uvicorn running on" in line:
                break
        yield Server(f"http://127.0.0.1:{port}", process, admin_key, output)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            output.append(process.stdout.read())  # the rest, for tests that read the log
            process.stdout.close()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database; dropped afterwards."""
    name = "opsgraph_srv_" + secrets.token_hex(4)

    def execute(sql: str) -> None:
        subprocess.run(
            ["psql", POSTGRES_ADMIN_URL, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
            check=True,
            capture_output=True,
            timeout=60,
        )

    execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
