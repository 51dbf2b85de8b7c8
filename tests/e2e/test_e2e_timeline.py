"""Signing in, and the live timeline: a change posted by REST appears without a reload."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Browser, Page, Request, WebSocket, WebSocketRoute, expect

from resolvers.timeline import Cursor
from tests.e2e.conftest import LAPTOP, Outage, Server, now_iso, open_page, sign_in, wait_live

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_sign_in_keeps_the_key_and_the_link_and_signs_out(page: Page, server: Server) -> None:
    page.goto("/incidents?status=resolved")
    page.get_by_label("API key").fill("og_not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("unknown or revoked")
    # A zero-width space copied along with the key: it said the server could not be reached.
    page.get_by_label("API key").fill(server.admin + "\u200b")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("holds a character no key has")
    # A pipeline's key (no `read`) is refused at the door, saying why: no page could show
    # it anything.
    page.get_by_label("API key").fill(server.key("pipeline", "events:write"))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("lacks the 'read' scope")

    page.get_by_label("API key").fill(server.admin)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Incidents")).to_be_visible()
    assert page.url.endswith("/incidents?status=resolved")
    expect(page.get_by_role("tab", name=re.compile("Resolved"))).to_have_attribute(
        "aria-selected", "true"
    )

    page.reload()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.locator(".who")).to_have_text("admin")

    # A second tab of the same browser follows, and says why.
    other = page.context.new_page()
    other.goto("/timeline")
    expect(other.get_by_role("button", name="Sign out")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("localStorage.getItem('opsgraph.apiKey')") is None
    expect(other.get_by_label("API key")).to_be_visible()
    expect(other.get_by_role("status")).to_have_text("You signed out in another tab.")
    other.close()


def test_a_script_injected_into_the_page_does_not_run(browser: Browser, server: Server) -> None:
    """The UI's content security policy, enforced by the browser: a signed-in page (live
    connection up, so its own requests pass) runs no inline script, and says so."""
    page, errors = open_page(browser, server, LAPTOP)
    sign_in(page, server.admin)
    wait_live(page)
    ran = page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.injected = true";
            document.body.append(script);
            return window.injected === true;
        }"""
    )
    page.context.close()
    assert ran is False
    (refused,) = errors.errors
    assert "Content Security Policy" in refused


def test_a_change_posted_by_rest_appears_live_and_opens_its_details(
    page: Page, server: Server
) -> None:
    pipeline = server.key("github-actions", "events:write")
    service = "api-" + str(time.monotonic_ns())[-6:]
    sign_in(page, server.admin, f"/timeline?service={service}")
    wait_live(page)
    expect(page.get_by_text("Nothing matches these filters yet.")).to_be_visible()

    server.post_change(
        pipeline,
        name="Deploy complete",
        environment="prod",
        service=service,
        labels=["release", "backend"],
        metadata={"commit": "1b2c3d4", "pipeline": "github-actions", "__typename": "theirs"},
        links=[
            {"href": "https://ci.example/runs/42", "text": "Pipeline run 42"},
            {"href": "javascript:alert(document.cookie)", "text": "Rollback"},
        ],
    )
    server.post_change(pipeline, name="Other service deploy", service=service + "-other")

    entry = page.locator(".entry", has_text="Deploy complete")
    expect(entry).to_be_visible()
    expect(entry).to_contain_text("Change")
    expect(entry).to_contain_text("by github-actions")
    expect(page.locator(".entry")).to_have_count(1)  # the other service is filtered out, live too

    entry.click()
    details = page.get_by_role("dialog")
    expect(details).to_contain_text("Deploy complete")
    payload = details.get_by_label("Change payload", exact=True)
    expect(payload).to_contain_text('"commit": "1b2c3d4"')
    # The payload shows the change's fields without the `__typename` the UI's client adds
    # to each object it reads (the links showed one each); the sender's own metadata is
    # shown as sent, a `__typename` in it included.
    expect(payload).to_contain_text('"href": "https://ci.example/runs/42"')
    expect(payload).to_contain_text('"__typename": "theirs"')
    expect(payload).not_to_contain_text('"Link"')
    link = details.get_by_role("link", name="Pipeline run 42")
    expect(link).to_have_attribute("href", "https://ci.example/runs/42")
    # What is not a web address is shown, not followed: a sender's script never runs here.
    expect(details.get_by_role("link", name=re.compile("Rollback"))).to_have_count(0)
    expect(details.locator(".links")).to_contain_text(
        "Rollback (javascript:alert(document.cookie))"
    )
    page.keyboard.press("Escape")
    expect(details).to_be_hidden()

    # Filters live in the URL: a shared link opens the same view.
    page.get_by_label("Labels", exact=True).fill("release")
    page.get_by_label("Labels", exact=True).press("Enter")
    expect(page).to_have_url(re.compile(r"label=release"))
    expect(page.locator(".entry")).to_have_count(1)


def test_after_a_network_drop_it_reconnects_and_fills_the_gap(
    browser: Browser, server: Server
) -> None:
    page, errors = open_page(browser, server, LAPTOP)
    sockets: list[WebSocket] = []
    page.on("websocket", lambda socket: sockets.append(socket))
    service = "gap-" + str(time.monotonic_ns())[-6:]
    sign_in(page, server.admin, f"/timeline?service={service}")
    wait_live(page)
    opened = len(sockets)

    page.context.set_offline(True)
    expect(page.locator(".conn")).to_have_text("Offline")
    server.post_change(server.admin, name="Posted while the browser was offline", service=service)
    # Long enough for a keep-alive ping (every 10 s) to go unanswered for 5 s, so the UI
    # gives the socket up: the entry can only arrive through a resume with `after`.
    page.wait_for_timeout(18_000)
    expect(page.get_by_text("Posted while the browser was offline")).to_have_count(0)

    page.context.set_offline(False)
    expect(page.get_by_text("Posted while the browser was offline")).to_be_visible(timeout=20_000)
    wait_live(page)
    assert len(sockets) > opened, "a new WebSocket was opened to resume"
    expect(page.locator(".entry")).to_have_count(1)  # filled once, no duplicate

    page.context.close()
    assert not errors.errors, errors.errors


@pytest.mark.parametrize("how", ["Reconnect now", "the tab shown again"])
def test_a_long_wait_to_reconnect_can_be_cut_short(
    browser: Browser, server: Server, how: str
) -> None:
    """While the server cannot be reached the UI's waits between tries grow (to 15 s). Once
    it is back, nobody has to sit out the rest of a wait: Reconnect now, or coming back to
    the tab, tries at once. The outage is played by the browser's socket: while it lasts
    every new WebSocket is closed before it reaches the server."""
    page, errors = open_page(browser, server, LAPTOP)
    outage = Outage(page, http=False)
    service = "cut-" + str(time.monotonic_ns())[-6:]
    sign_in(page, server.admin, f"/timeline?service={service}")
    wait_live(page)
    expect(page.get_by_role("button", name="Reconnect now")).to_have_count(0)

    outage.begin()
    server.post_change(server.admin, name="Posted during the outage", service=service)
    # Tries after about 1, 2 and 4 s fail; the next wait is 6 to 10 s, then 11 to 19 s.
    badge = page.locator(".conn")
    expect(badge).to_have_text(re.compile(r"Reconnecting in ([6-9]|1\d)s"), timeout=30_000)
    # A screen reader is told the state once, not each second counted down.
    expect(page.locator(".visually-hidden[role=status]")).to_have_text("Reconnecting")

    outage.end()
    if how == "Reconnect now":
        page.get_by_role("button", name="Reconnect now").focus()
        page.keyboard.press("Enter")
        expect(badge).to_be_focused()  # not lost with the button, which goes
    else:
        page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    # At least 5 s of the wait were left: only a try at once is live this soon.
    expect(badge).to_have_attribute("data-state", "up", timeout=3_000)
    expect(page.get_by_text("Posted during the outage")).to_be_visible()
    expect(page.get_by_role("button", name="Reconnect now")).to_have_count(0)
    page.context.close()
    assert not errors.errors, errors.errors


def test_a_drop_before_anything_was_seen_misses_nothing(browser: Browser, server: Server) -> None:
    """A new workspace's timeline is empty, so the UI holds no cursor to resume after: what
    is committed during a drop still arrives when the connection is back."""
    admin = server.cli("workspaces", "create", "empty-" + str(time.monotonic_ns())[-6:])
    page, errors = open_page(browser, server, LAPTOP)
    outage = Outage(page, http=False)
    sign_in(page, admin)
    expect(page.get_by_text("Nothing has happened yet.")).to_be_visible()
    wait_live(page)

    outage.begin()
    server.post_change(admin, name="The workspace's first change", service="api")
    outage.end()
    expect(page.get_by_text("The workspace's first change")).to_be_visible(timeout=15_000)
    wait_live(page)
    expect(page.locator(".entry")).to_have_count(1)
    page.context.close()
    assert not errors.errors, errors.errors


def test_a_resume_the_server_refuses_starts_the_timeline_over(
    browser: Browser, server: Server
) -> None:
    """After a database is restored from an older backup, the cursor the UI resumes from is
    past the end of the timeline and the server refuses it. The UI loads the first page
    again and goes on live, instead of asking with that cursor for ever. The restore is
    played by the browser's socket: until the UI asks for a first page again, every
    resume it sends carries a cursor past the end (the server's refusal itself is real)."""
    page, errors = open_page(browser, server, LAPTOP)
    past_the_end = Cursor(occurred_at=datetime.now(UTC), entry_id=10**12, seq=10**12).encode()
    state = {"restored": False, "refused": 0}
    sockets: list[tuple[WebSocketRoute, WebSocketRoute]] = []

    def route(socket: WebSocketRoute) -> None:
        upstream = socket.connect_to_server()
        sockets.append((socket, upstream))

        def to_server(message: str | bytes) -> None:
            if state["restored"] and isinstance(message, str):
                data = json.loads(message)
                payload = data.get("payload") or {}
                variables = payload.get("variables") or {}
                live = "subscription TimelineLive" in payload.get("query", "")
                if data.get("type") == "subscribe" and live and variables.get("after"):
                    variables["after"] = past_the_end
                    state["refused"] += 1
                    message = json.dumps(data)
            upstream.send(message)

        socket.on_message(to_server)
        upstream.on_message(socket.send)

    def first_page_asked(request: Request) -> None:
        if "query TimelineStart" in (request.post_data or ""):
            state["restored"] = False

    page.route_web_socket(re.compile(r"/graphql$"), route)
    page.on("request", first_page_asked)
    service = "restore-" + str(time.monotonic_ns())[-6:]
    sign_in(page, server.admin, f"/timeline?service={service}")
    wait_live(page)
    server.post_change(server.admin, name="Before the restore", service=service)
    expect(page.get_by_text("Before the restore")).to_be_visible()

    state["restored"] = True
    for socket, upstream in sockets:  # the connection drops: the UI resumes
        socket.close(code=1001, reason="going away")
        upstream.close()
    server.post_change(server.admin, name="Committed during the restore", service=service)
    expect(page.get_by_text("Committed during the restore")).to_be_visible(timeout=20_000)
    assert state["refused"] >= 1, "the UI resumed with a cursor, which was refused"
    assert not state["restored"], "the UI asked for the first page again"
    wait_live(page)
    server.post_change(server.admin, name="After the restore", service=service)
    expect(page.get_by_text("After the restore")).to_be_visible()
    expect(page.locator(".entry")).to_have_count(3)  # each once
    page.context.close()
    assert not errors.errors, errors.errors


def test_a_time_range_filters_the_timeline_and_lives_in_the_url(page: Page, server: Server) -> None:
    service = "range-" + str(time.monotonic_ns())[-6:]
    server.post_change(server.admin, name="Two hours ago", service=service,
                       timestamp=now_iso(-timedelta(hours=2)))  # fmt: skip
    server.post_change(server.admin, name="Ten minutes ago", service=service,
                       timestamp=now_iso(-timedelta(minutes=10)))  # fmt: skip
    an_hour_ago = now_iso(-timedelta(hours=1))
    sign_in(page, server.admin, f"/timeline?service={service}&since={an_hour_ago}")
    expect(page.get_by_text("Ten minutes ago")).to_be_visible()
    expect(page.locator(".entry")).to_have_count(1)
    expect(page.get_by_label("From")).not_to_have_value("")

    # The range's end, typed as the browser shows times (its own zone).
    local = page.evaluate(
        "iso => { const d = new Date(iso), minutes = d.getTimezoneOffset();"
        " return new Date(d.getTime() - minutes * 60000).toISOString().slice(0, 16) }",
        now_iso(-timedelta(minutes=30)),
    )
    page.get_by_label("From").fill("")
    page.get_by_label("Until").fill(local)
    expect(page).to_have_url(re.compile(r"until=\d{4}-"))
    expect(page.get_by_text("Two hours ago")).to_be_visible()
    expect(page.locator(".entry")).to_have_count(1)
    page.reload()
    expect(page.get_by_text("Two hours ago")).to_be_visible()
    expect(page.locator(".entry")).to_have_count(1)
    page.get_by_role("button", name="Clear filters").click()
    expect(page).not_to_have_url(re.compile(r"until="))


def test_all_labels_can_be_ticked_before_the_labels_are_typed(page: Page, server: Server) -> None:
    service = "labels-" + str(time.monotonic_ns())[-6:]
    server.post_change(server.admin, name="Both labels", service=service, labels=["a", "b"])
    server.post_change(server.admin, name="One label", service=service, labels=["a"])
    sign_in(page, server.admin, f"/timeline?service={service}")
    expect(page.locator(".entry")).to_have_count(2)
    all_labels = page.get_by_label("All labels")
    all_labels.check()
    expect(all_labels).to_be_checked()
    expect(page).to_have_url(re.compile(r"match=all"))
    page.get_by_role("button", name="Clear filters").click()  # offered for it alone too
    expect(all_labels).not_to_be_checked()
    page.goto(f"{server.url}/timeline?service={service}&match=all")
    expect(all_labels).to_be_checked()
    labels = page.get_by_role("textbox", name="Labels")
    labels.fill("a, b")
    labels.press("Enter")
    expect(page.locator(".entry")).to_have_count(1)
    expect(page.get_by_text("Both labels")).to_be_visible()


def test_a_timeline_opened_while_the_server_is_unreachable_loads_once_it_is_back(
    browser: Browser, server: Server
) -> None:
    """Its first page failed: the page asks again by itself, and never shows live entries
    alone above "the beginning of the timeline"."""
    page, errors = open_page(browser, server, LAPTOP)
    older = f"Stored first {time.monotonic_ns()}"
    name = f"Stored before the page was opened {time.monotonic_ns()}"
    server.post_change(server.admin, name=older, service="reopened")
    server.post_change(server.admin, name=name, service="reopened")
    sign_in(page, server.admin, "/runs")
    wait_live(page)
    page.context.set_offline(True)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Timeline").click()
    expect(page.get_by_role("alert")).to_be_visible()
    page.wait_for_timeout(3_000)  # a retry or two fail too
    page.context.set_offline(False)
    expect(page.get_by_text(name)).to_be_visible(timeout=30_000)
    expect(page.get_by_role("alert")).to_have_count(0)
    expect(page.get_by_text(older)).to_be_visible()  # the first page, not live entries alone
    page.context.close()
    offline = [e for e in errors.errors if "ERR_INTERNET_DISCONNECTED" in e]
    assert errors.errors == offline, errors.errors


def test_a_filter_the_server_refuses_is_asked_once_and_said_why(page: Page, server: Server) -> None:
    """A search over the server's length limit was sent again every 2 to 15 s, for ever:
    the same question gets the same refusal. It is asked once; Retry is the person's."""
    sign_in(page, server.admin, "/runs")
    asked: list[str] = []
    page.on(
        "request",
        lambda request: (
            asked.append(request.post_data or "")
            if request.url.endswith("/graphql") and "Timeline" in (request.post_data or "")
            else None
        ),
    )
    page.goto(f"{server.url}/timeline?q={'x' * 250}")
    expect(page.get_by_role("alert")).to_contain_text("at most 200 characters")
    page.wait_for_timeout(4_500)  # a retry would have come after 2 s
    assert len(asked) == 1, asked
    expect(page.get_by_role("button", name="Retry")).to_be_visible()


def test_old_entries_page_in_and_new_ones_stay_on_top(page: Page, server: Server) -> None:
    service = "paging-" + str(time.monotonic_ns())[-6:]
    for minutes in range(55, 0, -1):
        server.post_change(
            server.admin,
            name=f"Build {minutes}m ago",
            service=service,
            timestamp=now_iso(-timedelta(minutes=minutes)),
        )
    sign_in(page, server.admin, f"/timeline?service={service}")
    expect(page.locator(".entry")).to_have_count(50)
    expect(page.locator(".entry").first).to_contain_text("Build 1m ago")
    page.get_by_role("button", name="Load older entries").click()
    expect(page.locator(".entry")).to_have_count(55)
    expect(page.locator(".entry").last).to_contain_text("Build 55m ago")
    expect(page.get_by_text("That is the beginning of the timeline.")).to_be_visible()

    wait_live(page)
    server.post_change(server.admin, name="Fresh deploy", service=service)
    expect(page.locator(".entry").first).to_contain_text("Fresh deploy")


def test_the_kinds_picker_closes_on_escape_and_outside(page: Page, server: Server) -> None:
    sign_in(page, server.admin)
    kinds = page.locator("summary", has_text="Kinds")
    panel = page.locator(".picker-panel")
    kinds.click()
    page.get_by_role("checkbox", name="Change", exact=True).check()
    expect(panel).to_be_visible()
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(kinds).to_be_focused()
    expect(kinds).to_have_text("Kinds (1)")  # what was ticked stays
    kinds.click()
    expect(panel).to_be_visible()
    page.get_by_role("heading", name="Timeline").click()  # anywhere else
    expect(panel).to_be_hidden()
    kinds.click()
    page.get_by_label("From").focus()  # focus leaves it: it would cover the field
    expect(panel).to_be_hidden()


def test_a_page_the_app_does_not_have_says_so_with_404(browser: Browser, server: Server) -> None:
    page, errors = open_page(browser, server, LAPTOP)
    sign_in(page, server.admin)
    response = page.goto("/readyz")
    assert response is not None and response.status == 404
    expect(page.get_by_text("No such page.")).to_be_visible()
    expect(page).to_have_title("Not found · Opsgraph")
    expect(page.get_by_role("heading", name="Not found")).to_be_attached()
    page.context.close()
    # The browser reports the 404 itself; nothing else may be logged.
    assert [e for e in errors.errors if "404 (Not Found)" not in e] == [], errors.errors
