"""End-to-end fixtures: a real `opsgraph serve` with the built UI, and Debian's Chromium.

The server runs once per session in a temporary directory on its own port; tests keep out
of each other's way with their own services, tools and agents. Each test's page collects
console errors and uncaught exceptions and fails the test on any.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    Route,
    WebSocketRoute,
    expect,
    sync_playwright,
)

from tests.servers import OPSGRAPH, free_port

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "frontend" / "dist"
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LAPTOP = {"width": 1366, "height": 850}
PHONE = {"width": 390, "height": 844}

GRAPHQL = re.compile(r"/graphql$")

expect.set_options(timeout=10_000)


@dataclass
class Server:
    """The running server and what the tests need to talk to it as users and machines do."""

    url: str
    workdir: Path
    admin: str
    log: Path
    keys: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPSGRAPH_")}
        done = subprocess.run(
            [OPSGRAPH, *args],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout.strip()

    def key(self, name: str, scopes: str) -> str:
        """A key with these scopes (comma-separated), made once per name."""
        if name not in self.keys:
            self.keys[name] = self.cli("keys", "create", "--name", name, "--scopes", scopes)
        return self.keys[name]

    def service(self, prefix: str) -> tuple[str, str]:
        """A new service with a unique name; returns (name, routing key)."""
        name = f"{prefix}-{secrets.token_hex(3)}"
        return name, self.cli("services", "create", name)

    def graphql(self, query: str, key: str | None = None, **variables: Any) -> dict[str, Any]:
        response = httpx.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {key or self.admin}"},
            timeout=30,
        )
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    def post(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, headers=headers, timeout=30)

    def http_get(self, path: str, headers: dict[str, str]) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=30)

    def post_change(self, key: str, **fields: object) -> None:
        """A change as a pipeline posts it (`POST /events`), timestamped now by default."""
        body = {"timestamp": now_iso(), "category": "TECHNICAL", "source": "ci-cd", **fields}
        response = self.post("/events", body, {"Authorization": f"Bearer {key}"})
        assert response.status_code == 201, response.text


class Agent:
    """An AI agent as seen from the server: posts events, polls its approvals."""

    def __init__(self, server: Server, name: str) -> None:
        self.server = server
        self.name = name
        self.key = server.key(f"agent-{name}", "events:write,read")
        self.run_id = f"run_{secrets.token_hex(4)}"
        self.events = 0

    def send(self, event_type: str, **metadata: Any) -> dict[str, Any]:
        self.events += 1
        body = {
            "eventId": f"{self.run_id}_{self.events}",
            "runId": self.run_id,
            "agentId": self.name,
            "timestamp": now_iso(),
            "eventType": event_type,
            "metadata": metadata,
        }
        response = self.server.post("/v1/events", body, {"X-API-Key": self.key})
        assert response.status_code < 300, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def call(self, tool: str, **payload: Any) -> dict[str, Any]:
        return self.send(
            "tool.called",
            toolCallId=f"tc_{secrets.token_hex(4)}",
            toolName=tool,
            inputPayload=payload,
            actionHint="deploy",
            reason=f"Rolling out {payload.get('version', 'the fix')}",
            agentContext={"goal": "Ship the checkout fix", "reasoning": "Tests pass on staging"},
        )

    def approval(self, approval_id: str) -> dict[str, Any]:
        response = self.server.http_get(f"/v1/approvals/{approval_id}", {"X-API-Key": self.key})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def trigger(server: Server, routing_key: str, dedup_key: str, summary: str, severity: str) -> str:
    body = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": summary,
            "source": "prometheus",
            "severity": severity,
            "custom_details": {"host": "checkout-1", "value": 93.2},
        },
    }
    response = server.post("/api/events", body, {"Authorization": f"Bearer {server.admin}"})
    assert response.status_code == 202, response.text
    incident_key: str = response.json()["incident_key"]
    return incident_key


def now_iso(offset: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) + offset).isoformat(timespec="seconds").replace("+00:00", "Z")


@contextmanager
def serving(workdir: Path, **settings: str) -> Iterator[Server]:
    """`opsgraph serve` of the built UI in `workdir` (its SQLite database), with these
    `OPSGRAPH_*` settings besides the defaults."""
    if not (DIST / "index.html").is_file():
        pytest.fail(f"The UI is not built ({DIST}): run `make ui` (`make test` does).")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSGRAPH_")}
    env |= {"OPSGRAPH_FRONTEND_DIR": str(DIST), "OPSGRAPH_PUBLIC_URL": url}
    env |= {f"OPSGRAPH_{name.upper()}": value for name, value in settings.items()}
    log = workdir / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [OPSGRAPH, "serve", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        admin = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = log.read_text()
            admin = next((w for w in text.split() if w.startswith("og_")), "")
            if "Application startup complete" in text:
                break
            if process.poll() is not None:
                pytest.fail(f"the server exited:\n{text[-3000:]}")
            time.sleep(0.1)
        else:
            pytest.fail(f"the server did not start:\n{log.read_text()[-3000:]}")
        assert admin, "the first start prints an admin key"
        yield Server(url=url, workdir=workdir, admin=admin, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("e2e-server")) as started:
        yield started


# Module scope, not session: while Playwright's sync driver is open it runs an event loop
# in this thread, which the async tests of the rest of the suite must not meet.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (`make test` does).")
    launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


class ConsoleErrors:
    """Console errors and uncaught exceptions of one page."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} ({message.location.get('url')})")

    def exception(self, error: Exception) -> None:
        self.errors.append(f"uncaught: {error}")


class Outage:
    """The server unreachable, as a browser page meets it (the server itself goes on): while
    it lasts, new WebSockets to /graphql are closed before they reach the server and, with
    `http`, GraphQL requests fail. `begin` also drops the sockets open until then."""

    def __init__(self, page: Page, *, http: bool = True) -> None:
        self.down = False
        self.sockets: list[tuple[WebSocketRoute, WebSocketRoute]] = []
        page.route_web_socket(GRAPHQL, self._socket)
        if http:
            page.route(GRAPHQL, self._request)

    def begin(self) -> None:
        self.down = True
        for socket, upstream in self.sockets:
            socket.close(code=1001, reason="going away")
            upstream.close()
        self.sockets.clear()

    def end(self) -> None:
        self.down = False

    def _socket(self, socket: WebSocketRoute) -> None:
        if self.down:
            socket.close(code=1013, reason="try again later")
        else:
            self.sockets.append((socket, socket.connect_to_server()))

    def _request(self, route: Route) -> None:
        if self.down:
            route.abort()
        else:
            route.fallback()


def open_page(
    browser: Browser, server: Server, viewport: dict[str, int]
) -> tuple[Page, ConsoleErrors]:
    context = browser.new_context(viewport=viewport, base_url=server.url)  # type: ignore[arg-type]
    page = context.new_page()
    errors = ConsoleErrors()
    page.on("console", errors.console)
    page.on("pageerror", errors.exception)
    return page, errors


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    """A fresh browser context at laptop width; the test fails on any console error."""
    opened, errors = open_page(browser, server, LAPTOP)
    yield opened
    opened.context.close()
    assert not errors.errors, "console errors:\n" + "\n".join(errors.errors)


def sign_in(page: Page, key: str, path: str = "/timeline") -> None:
    """Sign in through the form, at `path` (the app keeps the URL it was opened at)."""
    page.goto(path)
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def wait_live(page: Page) -> None:
    """Wait until the live connection is up (the header badge says so)."""
    expect(page.locator(".conn")).to_have_attribute("data-state", "up", timeout=15_000)


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot under tests/e2e/screenshots/ (gitignored)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
