"""The server unreachable for a while, as a person looking at a page meets it: the page
keeps what it showed, says it is from before, and catches up by itself once the server is
back. Before, the incidents', runs' and their detail pages replaced what they showed with
"Cannot reach the Opsgraph server" at the first failed refresh, and the incident page
stayed so until Retry was clicked.

The outage is played by the browser: its GraphQL requests fail and its WebSockets are
closed before they reach the server, which goes on taking events meanwhile."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import (
    LAPTOP,
    Agent,
    Outage,
    Server,
    open_page,
    sign_in,
    trigger,
    wait_live,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@dataclass
class Scene:
    path: str  # the page looked at
    shown: str  # a text it shows before, during and after the outage
    meanwhile: Callable[[], None]  # what happens during the outage
    after: str  # a text showing that it caught up


def incident_scene(server: Server, on_list: bool) -> Scene:
    service, routing_key = server.service("outage")
    summary = f"Disk full on {service}"
    incident = trigger(server, routing_key, "disk", summary, "critical")
    return Scene(
        path=f"/incidents?service={service}" if on_list else f"/incidents/{incident}",
        shown=summary,
        meanwhile=lambda: trigger(server, routing_key, "disk", summary, "critical") and None,
        after="2 alerts",
    )


def run_scene(server: Server, on_list: bool) -> Scene:
    agent = Agent(server, f"outage-{time.monotonic_ns() % 10**6}")
    task = f"Rotate the keys of {agent.name}"
    agent.send("run.started", task=task)
    agent.call("rotate_keys", version="v1")
    return Scene(
        path=f"/runs?agent={agent.name}" if on_list else f"/runs/{agent.run_id}",
        shown=task,
        meanwhile=lambda: agent.call("restart_service", version="v2") and None,
        after="restart_service",
    )


@pytest.mark.parametrize(
    ("make", "on_list"),
    [(incident_scene, False), (incident_scene, True), (run_scene, False), (run_scene, True)],
    ids=["incident", "incidents", "run", "runs"],
)
def test_a_page_keeps_what_it_showed_through_an_outage_and_catches_up(
    browser: Browser, server: Server, make: Callable[[Server, bool], Scene], on_list: bool
) -> None:
    scene = make(server, on_list)
    page, errors = open_page(browser, server, LAPTOP)
    outage = Outage(page)
    sign_in(page, server.admin, scene.path)
    expect(page.get_by_text(scene.shown).first).to_be_visible()
    wait_live(page)

    outage.begin()
    scene.meanwhile()
    # The live view's resume asks the page to refresh, which fails: what it showed stays.
    note = page.get_by_role("alert")
    expect(note).to_contain_text("Cannot reach the Opsgraph server")
    expect(note).to_contain_text("What is shown is from before.")
    expect(page.get_by_text(scene.shown).first).to_be_visible()

    outage.end()
    page.get_by_role("button", name="Reconnect now").click()
    wait_live(page)
    expect(page.get_by_text(scene.after).first).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)
    page.context.close()
    # The failed requests are the outage's own; nothing else may be logged.
    assert not [e for e in errors.errors if "net::ERR_FAILED" not in e], errors.errors


def test_another_filter_during_an_outage_shows_nothing_from_before(
    browser: Browser, server: Server
) -> None:
    """What a page keeps is for the question it asked: another filter, asked while the
    server cannot be reached, does not show the rows of the one before as its own."""
    scene = incident_scene(server, on_list=True)
    page, errors = open_page(browser, server, LAPTOP)
    outage = Outage(page)
    sign_in(page, server.admin, scene.path)
    expect(page.get_by_text(scene.shown)).to_be_visible()
    outage.begin()
    page.get_by_label("Severity").select_option("INFO")
    expect(page).to_have_url(re.compile(r"severity=info"))
    note = page.get_by_role("alert")
    expect(note).to_contain_text("Cannot reach the Opsgraph server")
    expect(note).not_to_contain_text("from before")
    expect(page.get_by_text(scene.shown)).to_have_count(0)
    page.context.close()
    assert not [e for e in errors.errors if "net::ERR_FAILED" not in e], errors.errors


def test_a_view_that_cannot_go_live_still_backs_off(browser: Browser, server: Server) -> None:
    """An empty timeline starts over from its first page when it resumes (it has no cursor
    to resume after). Where WebSockets never get through (a proxy that drops them) but
    queries do, starting over reset the wait between tries: the first page was asked for
    again about every second, for ever. It backs off as any view does."""
    admin = server.cli("workspaces", "create", "no-ws-" + str(time.monotonic_ns())[-6:])
    page, errors = open_page(browser, server, LAPTOP)
    Outage(page, http=False).begin()  # queries go through, WebSockets never do
    firsts: list[float] = []
    page.on(
        "request",
        lambda request: (
            firsts.append(time.monotonic())
            if "query TimelineStart" in (request.post_data or "")
            else None
        ),
    )
    sign_in(page, admin)
    expect(page.get_by_text("Nothing has happened yet.")).to_be_visible()
    page.wait_for_timeout(9_000)
    # Waits of about 1, 2 and 4 s (each a quarter either way): at most 4 first pages in
    # 9 s, where a second's wait each time asked 7 or more.
    assert 2 <= len(firsts) <= 4, [round(t - firsts[0], 1) for t in firsts]
    page.context.close()
    assert not errors.errors, errors.errors
