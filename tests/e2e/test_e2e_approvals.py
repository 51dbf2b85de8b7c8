"""The approvals screen: requests appear live, a person decides, the waiting agent sees it.

The policy is made through the Policies page, the tool calls arrive through
`POST /v1/events` as an agent sends them, and the agent reads the decision from
`GET /v1/approvals/{id}`.
"""

from __future__ import annotations

import re
import secrets

import pytest
from playwright.sync_api import Browser, Page, WebSocketRoute, expect

from tests.e2e.conftest import LAPTOP, Agent, Server, open_page, sign_in, wait_live

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def create_policy_in_the_ui(page: Page, name: str, tool: str) -> None:
    page.goto("/policies")
    page.get_by_role("button", name="New policy").click()
    form = page.get_by_role("dialog")
    form.get_by_label("Name", exact=True).fill(name)
    form.get_by_label("Require approval").check()
    form.get_by_label("Tool name (glob)").fill(tool)
    form.get_by_role("button", name="+ Add a condition").click()
    form.get_by_label("Condition 1 path").fill("environment")
    form.get_by_label("Condition 1 value").fill('"production"')
    form.get_by_role("button", name="Create policy").click()
    expect(form).to_be_hidden()
    policy = page.locator(".policy", has_text=name)
    expect(policy).to_contain_text(f"tool is {tool}")
    expect(policy).to_contain_text('input environment equals "production"')


def a_held_call(page: Page, server: Server, agent_name: str) -> tuple[Agent, str, str]:
    """A policy holding a new tool, the page signed in on the live queue, and a call of
    that tool by a new agent waiting there: the agent, the tool and the approval's id."""
    tool = f"deploy_{secrets.token_hex(3)}"
    policy = {"name": f"Hold {tool}", "action": "REQUIRE_APPROVAL", "toolName": tool}
    server.graphql("mutation($p: PolicyInput!) { createPolicy(input: $p) { id } }", p=policy)
    sign_in(page, server.admin, "/approvals")
    wait_live(page)
    agent = Agent(server, f"{agent_name}-{secrets.token_hex(2)}")
    return agent, tool, agent.call(tool, environment="production")["approvalId"]


def test_approve_a_pending_tool_call_and_the_agent_sees_it(page: Page, server: Server) -> None:
    tool = f"deploy_{secrets.token_hex(3)}"
    approver = server.key("alice", "read,approvals:decide")
    sign_in(page, server.admin, "/policies")
    create_policy_in_the_ui(page, f"Hold {tool} in production", tool)

    page.get_by_role("button", name="Sign out").click()
    sign_in(page, approver, "/approvals")
    wait_live(page)

    agent = Agent(server, f"release-bot-{secrets.token_hex(2)}")
    agent.send("run.started", task="Deploy hotfix 2.4.1")
    answer = agent.call(tool, environment="production", service="checkout", version="2.4.1")
    assert answer["toolCallStatus"] == "awaiting_approval"
    approval_id = answer["approvalId"]
    assert answer["approvalUrl"] == f"{server.url}/approvals?focus={approval_id}"

    # The request appears without a reload, with what a person needs to decide.
    card = page.locator(f"[data-approval-id='{approval_id}']")
    expect(card).to_be_visible()
    expect(card).to_contain_text(tool)
    expect(card).to_contain_text(agent.name)
    expect(card).to_contain_text('"version": "2.4.1"')
    expect(card).to_contain_text("Ship the checkout fix")
    expect(card).to_contain_text("Tests pass on staging")
    expect(card).to_contain_text(f"Hold {tool} in production")
    expect(card.locator(".countdown")).to_contain_text("left")
    expect(page.locator(".nav-count")).to_be_visible()

    # The link the agent was given opens and highlights that approval.
    page.goto(answer["approvalUrl"])
    card = page.locator(f"article[data-approval-id='{approval_id}']")
    expect(card).to_have_class("approval approval-focused")
    expect(card).to_contain_text("Linked approval")
    assert agent.approval(approval_id)["status"] == "pending"

    card.get_by_role("button", name="Approve…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Note (optional)").fill("Go ahead")
    dialog.get_by_role("button", name="Approve", exact=True).click()
    expect(card).to_be_hidden()

    decided = agent.approval(approval_id)
    assert decided["status"] == "approved"
    assert decided["decidedBy"] == "alice"
    assert decided["comment"] == "Go ahead"
    recent = page.locator(f".recent [data-approval-id='{approval_id}']")
    expect(recent).to_contain_text("Approved")


def test_reject_with_a_comment_and_decisions_made_elsewhere_disappear(
    page: Page, server: Server
) -> None:
    tool = f"deploy_{secrets.token_hex(3)}"
    policy = {
        "name": f"Hold {tool}",
        "action": "REQUIRE_APPROVAL",
        "toolName": tool,
    }
    server.graphql("mutation($p: PolicyInput!) { createPolicy(input: $p) { id } }", p=policy)
    sign_in(page, server.admin, "/approvals")
    wait_live(page)
    agent = Agent(server, f"janitor-{secrets.token_hex(2)}")
    first = agent.call(tool, environment="production", version="9.9.9")["approvalId"]
    second = agent.call(tool, environment="staging", version="1.0.0")["approvalId"]
    card = page.locator(f"article[data-approval-id='{first}']")
    other = page.locator(f"article[data-approval-id='{second}']")
    expect(card).to_be_visible()
    expect(other).to_be_visible()

    card.get_by_role("button", name="Reject…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Reject", exact=True).click()
    expect(dialog).to_contain_text("Say why")  # a rejection needs a comment
    dialog.get_by_label("Comment (required)").fill("Not during the sale")
    dialog.get_by_role("button", name="Reject", exact=True).click()
    expect(card).to_be_hidden()
    expect(other.locator(":focus")).to_have_count(1)  # the keyboard goes on to the next one
    rejected = agent.approval(first)
    assert rejected["status"] == "rejected"
    assert rejected["comment"] == "Not during the sale"
    assert rejected["toolCallStatus"] == "rejected"

    # Someone else approves the other one (another browser, a script): it leaves this queue.
    server.graphql(
        "mutation($id: ID!) { decideApproval(id: $id, decision: APPROVE) { id } }", id=second
    )
    expect(other).to_be_hidden()
    assert agent.approval(second)["status"] == "approved"

    # A stale link tells what became of it.
    page.goto(f"/approvals?focus={first}")
    expect(page.locator(".focus-outcome")).to_contain_text("Rejected")
    expect(page.locator(".focus-outcome")).to_contain_text("Not during the sale")


def test_the_comment_box_takes_the_keys_and_a_decision_made_meanwhile_is_final(
    page: Page, server: Server
) -> None:
    agent, tool, approval_id = a_held_call(page, server, "mover")
    card = page.locator(f"article[data-approval-id='{approval_id}']")
    expect(card.locator(".run-ended")).to_have_count(0)
    card.get_by_role("button", name="Approve…").click()
    page.keyboard.type("Ship it")  # straight into the note: it has the focus
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("Note (optional)")).to_have_value("Ship it")

    # A colleague rejects it first: the open dialog says so at once, and offers only Close.
    server.graphql(
        'mutation($id: ID!) { decideApproval(id: $id, decision: REJECT, comment: "no") { id } }',
        id=approval_id,
    )
    expect(dialog.get_by_role("alert")).to_have_text(
        "Meanwhile it was rejected by admin just now: “no”. There is nothing left to decide."
    )
    actions = dialog.locator(".form-actions")
    expect(actions.get_by_role("button", name="Approve", exact=True)).to_have_count(0)
    actions.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    assert agent.approval(approval_id)["status"] == "rejected"

    # A request whose run ends while it waits says so, live: the agent may not be waiting.
    late = agent.call(tool, environment="production")["approvalId"]
    card = page.locator(f"article[data-approval-id='{late}']")
    expect(card).to_be_visible()
    expect(card.locator(".run-ended")).to_have_count(0)
    agent.send("run.failed", error="gave up waiting")
    expect(card.locator(".run-ended")).to_have_text(
        "This run already failed: the agent may no longer be waiting for the answer."
    )


def test_a_decision_made_elsewhere_and_not_yet_seen_here_is_final_when_tried(
    browser: Browser, server: Server
) -> None:
    """The colleague's decision has not reached this page (the live event is held back):
    approving then gets the server's refusal, readably, and only Close."""
    page, errors = open_page(browser, server, LAPTOP)
    holding = {"live": False}

    def route(socket: WebSocketRoute) -> None:
        upstream = socket.connect_to_server()

        def to_page(message: str | bytes) -> None:
            if holding["live"] and isinstance(message, str) and "pendingApprovals" in message:
                return
            socket.send(message)

        upstream.on_message(to_page)

    page.route_web_socket(re.compile(r"/graphql$"), route)
    agent, _, approval_id = a_held_call(page, server, "late")
    card = page.locator(f"article[data-approval-id='{approval_id}']")
    card.get_by_role("button", name="Approve…").click()
    dialog = page.get_by_role("dialog")
    holding["live"] = True
    server.graphql(
        'mutation($id: ID!) { decideApproval(id: $id, decision: REJECT, comment: "no") { id } }',
        id=approval_id,
    )
    dialog.get_by_role("button", name="Approve", exact=True).click()
    expect(dialog).to_contain_text(
        re.compile(r"already rejected by admin at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")
    )
    actions = dialog.locator(".form-actions")
    expect(actions.get_by_role("button", name="Approve", exact=True)).to_have_count(0)
    actions.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    page.context.close()
    assert agent.approval(approval_id)["status"] == "rejected"
    assert not errors.errors, errors.errors


def test_a_reader_sees_the_queue_but_cannot_decide(page: Page, server: Server) -> None:
    tool = f"deploy_{secrets.token_hex(3)}"
    server.graphql(
        "mutation($p: PolicyInput!) { createPolicy(input: $p) { id } }",
        p={"name": f"Hold {tool}", "action": "REQUIRE_APPROVAL", "toolName": tool},
    )
    agent = Agent(server, f"reader-check-{secrets.token_hex(2)}")
    approval_id = agent.call(tool, environment="production")["approvalId"]
    sign_in(page, server.key("dashboard", "read"), "/approvals")
    card = page.locator(f"article[data-approval-id='{approval_id}']")
    expect(card.get_by_role("button", name="Approve…")).to_be_disabled()
    expect(card.get_by_role("button", name="Reject…")).to_be_disabled()
    page.goto("/policies")
    expect(page.get_by_role("button", name="New policy")).to_be_disabled()


def test_the_way_back_from_a_run_keeps_the_runs_filter(page: Page, server: Server) -> None:
    agent = Agent(server, f"back-{secrets.token_hex(3)}")
    agent.send("run.started", task="Tidy the caches")
    sign_in(page, server.admin, f"/runs?agent={agent.name}&status=running")
    page.locator(".run-row", has_text="Tidy the caches").click()
    expect(page.get_by_role("heading", name="Tidy the caches")).to_be_visible()
    page.get_by_role("link", name="← Runs").click()
    expect(page).to_have_url(re.compile(rf"/runs\?agent={agent.name}&status=running$"))
