"""Incidents: opened by a monitor, acknowledged and resolved by a person with a note."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Server, now_iso, sign_in, trigger, wait_live

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_acknowledge_and_resolve_an_incident_with_notes(page: Page, server: Server) -> None:
    service, routing_key = server.service("checkout")
    oncall = server.key("bob-oncall", "read,events:write")
    server.post_change(
        server.admin,
        name="Deploy checkout 2.4.0",
        service=service,
        environment="prod",
        timestamp=now_iso(-timedelta(minutes=10)),
    )
    sign_in(page, oncall, f"/incidents?service={service}")
    wait_live(page)
    expect(page.get_by_text("No open incidents.")).to_be_visible()

    incident_id = trigger(
        server, routing_key, "cpu-high", "CPU above 90% on checkout-1", "critical"
    )
    trigger(server, routing_key, "cpu-high", "CPU above 95% on checkout-1", "critical")

    # It appears live in the open list, with severity, service and alert count.
    row = page.locator(".incident-row", has_text="CPU above 95% on checkout-1")
    expect(row).to_be_visible()
    expect(row).to_contain_text("Critical")
    expect(row).to_contain_text(service)
    expect(row).to_contain_text("2 alerts")
    expect(page.get_by_role("tab", name=re.compile("Open"))).to_contain_text("1")

    row.click()
    expect(page).to_have_url(re.compile(f"/incidents/{incident_id}$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("CPU above 95% on checkout-1")
    suspects = page.get_by_role("list", name="What changed before it")
    expect(suspects).to_contain_text("Deploy checkout 2.4.0")
    expect(page.locator(".alerts .alert")).to_have_count(2)

    page.get_by_role("button", name="Acknowledge", exact=True).click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Note (optional)").fill("Looking into it, rolling back 2.4.0")
    dialog.get_by_role("button", name="Acknowledge", exact=True).click()
    expect(dialog).to_be_hidden()
    expect(page.locator(".incident-head .status")).to_have_text("Acknowledged")
    expect(page.locator(".facts")).to_contain_text("by bob-oncall")
    expect(page.get_by_role("button", name="Acknowledge", exact=True)).to_have_count(0)

    page.get_by_role("button", name="Resolve", exact=True).click()
    dialog.get_by_label("Note (optional)").fill("Rolled back; CPU is normal")
    dialog.get_by_role("button", name="Resolve", exact=True).click()
    expect(page.locator(".incident-head .status")).to_have_text("Resolved")
    expect(page.get_by_role("button", name="Resolve", exact=True)).to_have_count(0)
    timeline = page.get_by_role("list", name="Incident timeline")
    expect(timeline).to_contain_text("Incident resolved")
    expect(timeline).to_contain_text("Incident acknowledged")
    # The notes given with them are shown on their entries.
    expect(timeline.locator(".entry", has_text="Incident acknowledged")).to_contain_text(
        "“Looking into it, rolling back 2.4.0”"
    )
    expect(timeline.locator(".entry", has_text="Incident resolved")).to_contain_text(
        "“Rolled back; CPU is normal”"
    )

    # A note after the fact goes on the incident's timeline; an empty one is refused.
    page.get_by_role("button", name="Add note", exact=True).click()
    dialog.get_by_role("button", name="Add note", exact=True).click()
    expect(dialog).to_be_visible()  # required: nothing sent
    expect(dialog).to_contain_text("Write a note first.")
    dialog.get_by_label("Comment (required)").fill("Postmortem: log rotation was off")
    dialog.get_by_role("button", name="Add note", exact=True).click()
    expect(dialog).to_be_hidden()
    expect(timeline).to_contain_text("Postmortem: log rotation was off")
    expect(timeline).to_contain_text("Incident note")

    state = server.graphql(
        "query($id: ID!) { incident(id: $id) { status acknowledgedBy resolvedBy } }", id=incident_id
    )
    assert state["incident"] == {
        "status": "RESOLVED",
        "acknowledgedBy": "bob-oncall",
        "resolvedBy": "bob-oncall",
    }

    page.get_by_role("link", name="← Incidents").click()
    page.get_by_role("tab", name=re.compile("Resolved")).click()
    expect(page.locator(".incident-row", has_text="CPU above 95%")).to_contain_text(
        "resolved by bob-oncall"
    )


def test_incidents_filter_by_severity_in_the_url(page: Page, server: Server) -> None:
    service, routing_key = server.service("sev")
    trigger(server, routing_key, "disk", "Disk 97% full", "critical")
    trigger(server, routing_key, "latency", "p99 latency above 1 s", "warning")
    sign_in(page, server.admin, f"/incidents?service={service}")
    rows = page.locator(".incident-row")
    expect(rows).to_have_count(2)
    page.get_by_label("Severity").select_option("CRITICAL")
    expect(page).to_have_url(re.compile(r"severity=critical"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Disk 97% full")
    page.reload()
    expect(rows).to_have_count(1)
    page.get_by_label("Severity").select_option("")
    expect(rows).to_have_count(2)


def test_older_incidents_page_in_past_the_first_hundred(page: Page, server: Server) -> None:
    service, routing_key = server.service("many")
    for n in range(101):
        trigger(server, routing_key, f"key-{n}", f"Alert number {n}", "warning")
    sign_in(page, server.admin, f"/incidents?service={service}")
    rows = page.locator(".incident-row")
    expect(rows).to_have_count(100)
    expect(page.get_by_text("Alert number 0", exact=True)).to_have_count(0)  # the oldest
    tab = page.get_by_role("tab", name=re.compile("Open"))
    expect(tab.locator(".tab-count")).to_have_text("100+")
    page.get_by_role("button", name="Load older incidents").click()
    expect(rows).to_have_count(101)
    expect(page.get_by_text("Alert number 0", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Load older incidents")).to_have_count(0)
    expect(tab.locator(".tab-count")).to_have_text("101")  # it said "100+" with all listed


def test_an_incident_with_a_long_history_says_its_timeline_is_cut(
    page: Page, server: Server
) -> None:
    """51 alerts of one key: its timeline shows the newest 50 entries; it dropped the
    oldest ("Incident triggered") without a word."""
    service, routing_key = server.service("noisy")
    for n in range(51):
        incident_id = trigger(server, routing_key, "flapping", f"Flap {n}", "warning")
    sign_in(page, server.admin, f"/incidents/{incident_id}")
    section = page.get_by_role("region", name="Timeline")
    expect(section.locator(".entry")).to_have_count(50)
    expect(section).to_contain_text("The newest 50 are shown; older ones are on the timeline.")
    section.get_by_role("link", name="timeline").click()
    expect(page).to_have_url(re.compile(rf"/timeline\?service={service}$"))

    # A hand-made link's window the server cannot take showed GraphQL's raw error
    # ("Int cannot represent non 32-bit signed integer value"): the default is used.
    page.goto(f"/incidents/{incident_id}?window=999999999999")
    expect(page.get_by_role("heading", name="What changed before it")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)


@pytest.mark.parametrize("older", [2, 100])
def test_older_incidents_stay_listed_when_new_ones_arrive(
    page: Page, server: Server, older: int
) -> None:
    """Past the first page of 100: with the older ones loaded (a few, or a whole page), two
    new incidents push the first page's last two down into them; every open incident stays
    listed, and there is nothing older to load."""
    service, routing_key = server.service("bulk")
    total = 100 + older
    for n in range(total):
        trigger(server, routing_key, f"bulk-{n:03}", f"Bulk alert {n:03}", "warning")
    sign_in(page, server.admin, f"/incidents?service={service}")
    wait_live(page)
    rows = page.locator(".incident-row")
    expect(rows).to_have_count(100)
    page.get_by_role("button", name="Load older incidents").click()
    expect(rows).to_have_count(total)
    expect(page.get_by_role("button", name="Load older incidents")).to_have_count(0)

    trigger(server, routing_key, "new-a", "Newest alert A", "critical")
    trigger(server, routing_key, "new-b", "Newest alert B", "critical")
    expect(page.locator(".incident-row", has_text="Newest alert B")).to_be_visible()
    expect(rows).to_have_count(total + 2)
    for n in (0, 1, 2, total - 1):  # the oldest, which the new ones pushed further down
        expect(page.locator(".incident-row", has_text=f"Bulk alert {n:03}")).to_have_count(1)
    expect(page.get_by_role("button", name="Load older incidents")).to_have_count(0)


def test_the_way_back_keeps_the_list_s_tab_and_filter(page: Page, server: Server) -> None:
    """ "← Incidents" went to the bare list, Open tab, no filter; the menu's Incidents link
    cleared the filter but left its service in the box."""
    service, routing_key = server.service("back")
    incident = trigger(server, routing_key, "disk", "Disk full on back-1", "warning")
    sign_in(page, server.admin, f"/incidents?service={service}&severity=warning")
    page.locator(".incident-row", has_text="Disk full on back-1").click()
    expect(page.get_by_role("heading", name="Disk full on back-1")).to_be_visible()
    page.get_by_label("Window").select_option(index=0)  # the page's own URL changes
    expect(page).to_have_url(re.compile(r"window="))
    page.get_by_role("link", name="← Incidents").click()
    expect(page).to_have_url(re.compile(rf"/incidents\?service={service}&severity=warning$"))
    expect(page.get_by_label("Service")).to_have_value(service)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Incidents").click()
    expect(page).to_have_url(re.compile(r"/incidents$"))
    expect(page.get_by_label("Service")).to_have_value("")
    # Opened from a shared link, the way back is the whole list.
    page.goto(f"/incidents/{incident}")
    page.get_by_role("link", name="← Incidents").click()
    expect(page).to_have_url(re.compile(r"/incidents$"))


def test_only_web_and_mail_addresses_become_links(page: Page, server: Server) -> None:
    """A monitor's links and client URL are the sender's text: one that is not a web or
    mail address (a script, a page of Opsgraph itself) is shown, never followed."""
    service, routing_key = server.service("links")
    body = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": "disk-full",
        "client": "Grafana",
        "client_url": "javascript:fetch('//evil.example/'+localStorage.key(0))",
        "links": [
            {"href": "https://grafana.example/d/disk", "text": "Disk dashboard"},
            {"href": "mailto:oncall@example.com", "text": "Mail on-call"},
            {"href": "data:text/html,<script>alert(1)</script>", "text": "Runbook"},
            {"href": "/settings", "text": "Settings"},
        ],
        "payload": {"summary": "Disk full on db-1", "source": "grafana", "severity": "error"},
    }
    response = server.post("/api/events", body, {"Authorization": f"Bearer {server.admin}"})
    assert response.status_code == 202, response.text

    sign_in(page, server.admin, f"/incidents/{response.json()['incident_key']}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Disk full on db-1")
    links = page.locator(".links")
    expect(links.get_by_role("link")).to_have_count(2)
    expect(page.get_by_role("link", name="Disk dashboard")).to_have_attribute(
        "href", "https://grafana.example/d/disk"
    )
    expect(page.get_by_role("link", name="Mail on-call")).to_have_attribute(
        "href", "mailto:oncall@example.com"
    )
    expect(links).to_contain_text("Runbook (data:text/html,<script>alert(1)</script>)")
    expect(links).to_contain_text("Settings (/settings)")
    facts = page.locator(".facts")
    expect(facts).to_contain_text("Grafana")
    expect(facts.get_by_role("link", name="Grafana")).to_have_count(0)
