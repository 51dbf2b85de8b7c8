"""Every page at laptop and phone width: screenshots to look at, and no sideways scrolling.

The screenshots land in tests/e2e/screenshots/ (gitignored).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import timedelta

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import (
    LAPTOP,
    PHONE,
    Agent,
    Server,
    now_iso,
    open_page,
    screenshot,
    sign_in,
    trigger,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REFLOW = {"width": 320, "height": 640}


def seed(server: Server) -> dict[str, str]:
    """A little of everything: changes, incidents, a run with a violation, an approval."""
    service, routing_key = server.service("shop")
    for minutes, name, labels in [
        (45, "Deploy shop 3.1.0", ["release", "backend"]),
        (30, "Feature flag new-cart on for 50%", ["flag"]),
        (12, "Config: raise DB pool to 40", ["config"]),
    ]:
        server.post_change(
            server.admin,
            name=name,
            service=service,
            environment="prod",
            labels=labels,
            metadata={"commit": secrets.token_hex(4), "by": "ci"},
            timestamp=now_iso(-timedelta(minutes=minutes)),
        )
    # Long values, as pipelines send them: an image digest as a label (71 characters), a
    # generated service and environment name. They widened every page they were on.
    long_service = "svc-" + "s" * 120
    server.post_change(
        server.admin,
        name="Deploy image shop@sha256",
        service=long_service,
        environment="env-" + "e" * 120,
        labels=["sha256:" + hashlib.sha256(b"shop").hexdigest(), "ok"],
        timestamp=now_iso(-timedelta(minutes=5)),
    )
    incident = trigger(server, routing_key, "latency", "p99 latency above 2s on shop", "error")
    trigger(server, routing_key, "latency", "p99 latency above 3s on shop", "critical")
    trigger(server, routing_key, "disk", "Disk 85% full on db-2", "warning")

    tool = f"shop_deploy_{secrets.token_hex(2)}"
    server.graphql(
        "mutation($p: PolicyInput!) { createPolicy(input: $p) { id } }",
        p={
            "name": "Require approval for production deploys",
            "action": "REQUIRE_APPROVAL",
            "toolName": tool,
            "inputMatches": [{"path": "environment", "op": "EQ", "value": "production"}],
            "description": "A person signs off every production deploy.",
        },
    )
    server.graphql(
        "mutation($p: PolicyInput!) { createPolicy(input: $p) { id } }",
        p={
            "name": "Block dropping tables",
            "action": "BLOCK",
            "toolName": "sql_*",
            "inputMatches": [{"path": "statement", "op": "GLOB", "value": "DROP *"}],
        },
    )
    server.graphql(  # its "dry run: not enforced" tag shows on the janitor's call
        "mutation($p: PolicyInput!) { createPolicy(input: $p) { id } }",
        p={"name": "Watch SQL (dry run)", "action": "BLOCK", "toolName": "sql_*", "dryRun": True},
    )
    janitor = Agent(server, "db-janitor")
    janitor.send("run.started", task="Clean up stale tables", model="claude-sonnet-4")
    janitor.send(
        "tool.called",
        toolCallId="tc_drop",
        toolName="sql_exec",
        inputPayload={"statement": "DROP TABLE sessions_old"},
    )
    janitor.send("tool.completed", toolCallId="tc_drop", outputPayload={"ok": True})
    janitor.send("run.failed", error="stopped by an operator")

    bot = Agent(server, "release-bot")
    bot.send(
        "run.started",
        task="Deploy hotfix 3.1.1 for shop",
        model="claude-sonnet-4",
        agentContext={"goal": "Fix the cart total rounding bug"},
    )
    bot.send(
        "tool.called", toolCallId="tc_tests", toolName="run_tests", inputPayload={"suite": "shop"}
    )
    bot.send("tool.completed", toolCallId="tc_tests", outputPayload={"passed": 412, "failed": 0})
    approval = bot.call(tool, environment="production", service=service, version="3.1.1")
    runs = server.graphql("{ runs(first: 50) { nodes { id runId } } }")["runs"]["nodes"]
    run_id = next(run["id"] for run in runs if run["runId"] == janitor.run_id)
    return {
        "incident": incident,
        "approval": approval["approvalId"],
        "run": run_id,
        "service": service,
        "long_service": long_service,
    }


@pytest.fixture(scope="module")
def seeded(server: Server) -> dict[str, str]:
    return seed(server)


def no_sideways_scroll(page: Page) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow}px"


def test_every_page_at_laptop_and_phone_width(
    browser: Browser, server: Server, seeded: dict[str, str]
) -> None:
    ids = seeded
    pages: list[tuple[str, str, Callable[[Page], None]]] = [
        ("timeline", "/timeline", lambda p: expect(p.locator(".entry").first).to_be_visible()),
        (
            "incidents",
            "/incidents",
            lambda p: expect(p.locator(".incident-row").first).to_be_visible(),
        ),
        (
            "incident",
            f"/incidents/{ids['incident']}",
            lambda p: expect(p.locator(".alerts .alert").first).to_be_visible(),
        ),
        ("runs", "/runs", lambda p: expect(p.locator(".run-row").first).to_be_visible()),
        ("run", f"/runs/{ids['run']}", lambda p: expect(p.locator(".violation")).to_be_visible()),
        (
            "approvals",
            f"/approvals?focus={ids['approval']}",
            lambda p: expect(p.locator(".approval-focused")).to_be_visible(),
        ),
        ("policies", "/policies", lambda p: expect(p.locator(".policy").first).to_be_visible()),
    ]
    # 320 px: the width WCAG's reflow asks pages to fit without scrolling sideways.
    for width, viewport in (("laptop", LAPTOP), ("phone", PHONE), ("reflow", REFLOW)):
        page, errors = open_page(browser, server, viewport)
        page.goto("/")
        expect(page.get_by_label("API key")).to_be_visible()
        screenshot(page, f"signin-{width}")
        no_sideways_scroll(page)
        sign_in(page, server.admin)
        for name, path, ready in pages:
            page.goto(path)
            ready(page)
            page.wait_for_timeout(300)  # let arrival highlights fade in a little
            no_sideways_scroll(page)
            # Laptop: the whole page; phone: the first screen, as a person sees it.
            screenshot(page, f"{name}-{width}", full_page=width == "laptop")

        # Its own service's entries: other tests' entries may fill the first page.
        page.goto(f"/timeline?service={ids['service']}")
        page.locator(".entry", has_text="Deploy shop 3.1.0").click()
        expect(page.get_by_role("dialog")).to_be_visible()
        screenshot(page, f"timeline-details-{width}", full_page=False)
        page.keyboard.press("Escape")

        # Long values are cut in the list (whole in the title) and wrap in the details.
        page.goto(f"/timeline?service={ids['long_service']}")
        entry = page.locator(".entry", has_text="Deploy image shop@sha256")
        expect(entry).to_be_visible()
        no_sideways_scroll(page)
        digest = "sha256:" + hashlib.sha256(b"shop").hexdigest()
        expect(entry.locator(".chip-label").first).to_have_attribute("title", digest)
        entry.click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_contain_text(digest)
        expect(dialog).to_contain_text(ids["long_service"])
        overflow = dialog.evaluate(
            "d => Math.max(...[d, ...d.querySelectorAll('*')].map("
            "e => e.getBoundingClientRect().right)) - d.getBoundingClientRect().right"
        )
        assert overflow <= 1, f"the details run {overflow}px past the dialog's edge"
        no_sideways_scroll(page)
        page.keyboard.press("Escape")

        page.goto("/policies")
        page.get_by_role("button", name="New policy").click()
        expect(page.get_by_role("dialog")).to_be_visible()
        screenshot(page, f"policy-form-{width}", full_page=False)
        page.keyboard.press("Escape")

        page.goto(f"/approvals?focus={ids['approval']}")
        page.locator(".approval-focused").get_by_role("button", name="Reject…").click()
        page.get_by_role("dialog").get_by_role("button", name="Reject", exact=True).click()
        expect(page.get_by_role("dialog")).to_contain_text("Say why")
        screenshot(page, f"reject-dialog-{width}", full_page=False)
        page.keyboard.press("Escape")

        page.context.close()
        assert not errors.errors, errors.errors


# Text whose contrast with what is behind it is under WCAG AA's (4.5:1, or 3:1 at 24 px or
# bold 18.66 px), as "ratio <tag class> text": the colours as computed, each background
# layer (a tint is a colour-mix with transparency) laid over the one below.
LOW_CONTRAST = r"""() => {
  const parse = (c) => {
    const srgb = c.match(/color\(srgb ([^)]+)\)/);
    const parts = srgb ? srgb[1].split(/[ /]+/).filter(Boolean).map(Number)
      : (c.match(/rgba?\(([^)]+)\)/)?.[1].split(/[ ,/]+/).filter(Boolean).map(Number));
    if (!parts) return null;
    const rgb = srgb ? parts.slice(0, 3).map((v) => v * 255) : parts.slice(0, 3);
    return [...rgb, parts.length > 3 ? parts[3] : 1];
  };
  const lum = (c) => c.slice(0, 3).map((v) => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const over = (top, below) => [0, 1, 2].map((i) => top[i] * top[3] + below[i] * (1 - top[3]));
  const behind = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    return layers.reverse().reduce((below, top) => over(top, below), [255, 255, 255]);
  };
  const low = [];
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].filter((n) => n.nodeType === 3)
      .map((n) => n.textContent.trim()).join(" ").trim();
    const style = getComputedStyle(el);
    if (!own || !el.getClientRects().length || style.visibility === "hidden") continue;
    if (el.closest(".visually-hidden")) continue;
    const bg = behind(el), fg = over(parse(style.color), bg);
    const [a, b] = [lum(fg), lum(bg)];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    if (ratio < (size >= 24 || (bold && size >= 18.66) ? 3 : 4.5))
      low.push(`${ratio.toFixed(2)} <${el.tagName.toLowerCase()} ${el.className}> ${own}`);
  }
  return [...new Set(low)];
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_reads_at_aa_contrast_and_each_page_has_its_title(
    browser: Browser, server: Server, seeded: dict[str, str], scheme: str
) -> None:
    """Badges, statuses, buttons and JSON were 2.5 to 4.4:1 against their tints or under
    white text; every page was titled "Opsgraph" alone."""
    ids = seeded
    page, errors = open_page(browser, server, LAPTOP)
    page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
    page.goto("/")
    expect(page).to_have_title("Sign in · Opsgraph")
    sign_in(page, server.admin)
    low: dict[str, list[str]] = {}
    for path, title, ready in [
        (f"/timeline?service={ids['service']}", "Timeline", ".entry"),
        ("/incidents", "Incidents", ".incident-row"),
        (f"/incidents/{ids['incident']}", "p99 latency above 3s on shop", ".alerts .alert"),
        ("/runs", "Runs", ".run-row"),
        (f"/runs/{ids['run']}", "Clean up stale tables", ".violation"),
        (f"/approvals?focus={ids['approval']}", "Approvals", ".approval-focused"),
        ("/policies", "Policies", ".policy"),
    ]:
        page.goto(path)
        expect(page.locator(ready).first).to_be_visible()
        expect(page).to_have_title(f"{title} · Opsgraph")
        page.locator(ready).first.hover()  # a row's hover is a darker panel
        low[path] = page.evaluate(LOW_CONTRAST)
    page.goto(f"/timeline?service={ids['service']}")
    page.locator(".entry", has_text="Deploy shop 3.1.0").click()
    expect(page.get_by_role("dialog")).to_be_visible()
    low["details"] = page.evaluate(LOW_CONTRAST)
    page.context.close()
    assert not {path: found for path, found in low.items() if found}, low
    assert not errors.errors, errors.errors
