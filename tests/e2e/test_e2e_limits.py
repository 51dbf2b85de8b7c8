"""A server that takes smaller pages than the UI asks for by default
(`OPSGRAPH_PAGE_SIZE_MAX` below 200): every page still loads, asking no more than it takes.
Before, most pages showed the server's "first must be between 1 and 20." instead."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Request, expect

from tests.e2e.conftest import LAPTOP, Agent, Server, open_page, serving, sign_in, trigger

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LARGEST = 20


@pytest.fixture(scope="module")
def small_pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("e2e-small-pages")
    with serving(workdir, page_size_max=str(LARGEST)) as started:
        yield started


def _firsts(request: Request) -> list[int]:
    """The page sizes a GraphQL request asks for: `first` in its text and its variables."""
    if not request.url.endswith("/graphql") or request.method != "POST":
        return []
    body = json.loads(request.post_data or "{}")
    given = [int(n) for n in re.findall(r"first:\s*(\d+)", body.get("query", ""))]
    variables = body.get("variables") or {}
    return given + [value for value in variables.values() if isinstance(value, int)]


def test_every_page_loads_on_a_server_that_takes_smaller_pages(
    browser: Browser, small_pages: Server
) -> None:
    server = small_pages
    service, routing_key = server.service("checkout")
    for n in range(LARGEST + 5):
        server.post_change(server.admin, name=f"Deploy {n}", service=service)
    for _ in range(LARGEST + 1):  # an entry each on the incident's timeline
        incident = trigger(
            server, routing_key, "cpu-high", "CPU above 90% on checkout-1", "critical"
        )
    agent = Agent(server, "deployer")
    agent.send("run.started", task="Ship the checkout fix")
    for n in range(3):
        agent.call("deploy", version=f"v{n}")

    page, errors = open_page(browser, server, LAPTOP)
    asked: list[int] = []
    page.on("request", lambda request: asked.extend(_firsts(request)))
    sign_in(page, server.admin, f"/timeline?service={service}")
    expect(page.locator(".entry")).to_have_count(LARGEST)
    expect(page.get_by_role("alert")).to_have_count(0)

    page.goto("/incidents")
    expect(page.locator(".incident-row", has_text="CPU above 90%")).to_be_visible()
    page.goto(f"/incidents/{incident}")
    expect(page.get_by_role("heading", name="What changed before it")).to_be_visible()
    section = page.get_by_role("region", name="What changed before it")
    expect(section.locator(".entry")).to_have_count(LARGEST)
    expect(section).to_contain_text(f"The newest {LARGEST} are shown.")
    history = page.get_by_role("region", name="Timeline")
    expect(history.locator(".entry")).to_have_count(LARGEST)
    # No larger page to ask for: whether there are older ones is not known.
    expect(history).to_contain_text(f"The newest {LARGEST} are shown; any older ones are on")
    expect(page.get_by_role("alert")).to_have_count(0)

    page.goto("/runs")
    page.locator(".run-row", has_text="Ship the checkout fix").click()
    expect(page.get_by_role("heading", name="Tool calls (3)")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)

    page.goto("/approvals")
    expect(page.get_by_role("heading", name="Approvals", exact=True)).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)

    assert asked and max(asked) <= LARGEST, sorted(set(asked))
    page.context.close()
    assert not errors.errors, errors.errors
