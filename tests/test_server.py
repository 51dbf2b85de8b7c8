"""The real thing: `opsgraph` as a process, the CLI printing secrets alone, the seed's curl."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.servers import OPSGRAPH, Server, held_call_body, run_server

SEED_CURL = """curl -sS -X POST "http://HOST/events" \\
  -H "Authorization: Bearer $COSTORY_EVENTS_API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '{
    "name": "Deploy complete",
    "timestamp": "2026-03-04T14:25:00Z",
    "category": "TECHNICAL",
    "source": "ci-cd",
    "environment": "prod",
    "service": "api",
    "labels": ["release", "backend"],
    "metadata": {
      "commit": "1b2c3d4",
      "pipeline": "github-actions",
      "url": "https://github.com/acme/api/actions/runs/123"
    }
  }' -w '\\n%{http_code}'"""


def run_cli(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OPSGRAPH, *args], cwd=workdir, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    """`opsgraph serve` on the embedded default in a fresh directory; yields url, dir, admin key."""
    with run_server(tmp_path, {}) as running:
        assert running.admin_key, "the first start prints an admin key"
        yield running.url, tmp_path, running.admin_key


def test_first_start_then_cli_keys_and_the_seed_curl(server: tuple[str, Path, str]) -> None:
    url, workdir, admin_key = server
    assert (workdir / "opsgraph.sqlite3").exists()

    created = run_cli(workdir, "keys", "create", "--name", "github", "--scopes", "events:write")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert created.stdout == key + "\n" and key.startswith("og_")

    routing = run_cli(workdir, "services", "create", "checkout")
    assert routing.returncode == 0 and len(routing.stdout.strip()) == 32

    curl = SEED_CURL.replace("HOST", url.removeprefix("http://"))
    result = subprocess.run(
        ["bash", "-c", curl],
        env={**os.environ, "COSTORY_EVENTS_API_KEY": key},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, status = result.stdout.rsplit("\n", 1)
    assert status == "201", body
    assert '"id":"chg_' in body

    query = '{ timeline(filter: {services: ["api"]}) { edges { node { summary labels } } } }'
    response = httpx.post(
        f"{url}/graphql", json={"query": query}, headers={"Authorization": f"Bearer {admin_key}"}
    )
    edges = response.json()["data"]["timeline"]["edges"]
    assert [edge["node"] for edge in edges] == [
        {"summary": "Deploy complete", "labels": ["release", "backend"]}
    ]
    # Links it hands out go to where it listens (`--port` here): they said 8000 whatever it was.
    assert httpx.get(f"{url}/openapi.json").json()["servers"] == [{"url": url}]
    page = httpx.get(f"{url}/")  # the UI (or, not built, the page that says so)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>Opsgraph</title>" in page.text

    bad = run_cli(workdir, "keys", "create", "--name", "x", "--scopes", "write")
    assert bad.returncode == 2 and bad.stdout == "" and "unknown scope" in bad.stderr

    key_id = run_cli(workdir, "keys", "list").stdout.splitlines()[0].split("\t")[0]
    assert run_cli(workdir, "keys", "revoke", key_id).returncode == 0
    revoked = subprocess.run(
        ["bash", "-c", curl],
        env={**os.environ, "COSTORY_EVENTS_API_KEY": key},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert revoked.stdout.endswith("401"), shlex.quote(revoked.stdout)


def held_call(running: Server, tag: str) -> str:
    """A tool call held for approval on `running`; its approval's id."""
    assert running.admin_key is not None
    running.hold_tool(running.admin_key, tag)
    held = httpx.post(
        f"{running.url}/v1/events",
        json=held_call_body(tag),
        headers={"X-API-Key": running.admin_key},
    ).json()
    assert held["toolCallStatus"] == "awaiting_approval", held
    return str(held["approvalId"])


def stopped_within(running: Server, seconds: float) -> float:
    """SIGTERM the server; how long it took to exit (it must within `seconds`)."""
    started = time.monotonic()
    running.process.terminate()
    running.process.wait(timeout=seconds)
    return time.monotonic() - started


@pytest.mark.slow
def test_a_stopping_server_answers_its_long_polls_at_once(tmp_path: Path) -> None:
    """An agent waiting on GET /v1/approvals/{id}?wait=… gets the approval as it stands
    (pending: it asks again, of another process or the restarted one) instead of holding
    the shutdown for the rest of its wait."""
    with run_server(tmp_path, {}) as running:
        approval_id = held_call(running, "stop")
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(
                httpx.get,
                f"{running.url}/v1/approvals/{approval_id}?wait=30",
                headers={"X-API-Key": running.admin_key or ""},
                timeout=60,
            )
            time.sleep(1.0)  # the agent is waiting
            assert stopped_within(running, 10) < 5
            answer = waiting.result(timeout=5)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "pending"


@pytest.mark.slow
def test_a_long_poll_whose_agent_hung_up_does_not_hold_the_shutdown(tmp_path: Path) -> None:
    with run_server(tmp_path, {}) as running:
        approval_id = held_call(running, "gone")
        with pytest.raises(httpx.ReadTimeout):  # the agent gives up after half a second
            httpx.get(
                f"{running.url}/v1/approvals/{approval_id}?wait=30",
                headers={"X-API-Key": running.admin_key or ""},
                timeout=0.5,
            )
        assert stopped_within(running, 10) < 5  # it took the rest of the 30 s wait before
