"""Policies: create, edit, switch dry run, delete; bad input is explained, not stored."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import Server, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

POLICIES = "{ policies { id name action toolName dryRun version inputMatches { path op value } } }"


def stored(server: Server, name: str) -> dict[str, Any] | None:
    policies: list[dict[str, Any]] = server.graphql(POLICIES)["policies"]
    return next((p for p in policies if p["name"] == name), None)


def test_create_edit_dry_run_and_delete_a_policy(page: Page, server: Server) -> None:
    name = f"Block prod SQL {secrets.token_hex(2)}"
    sign_in(page, server.admin, "/policies")

    page.get_by_role("button", name="New policy").click()
    form = page.get_by_role("dialog")
    form.get_by_role("button", name="Create policy").click()
    expect(form.get_by_role("alert")).to_be_visible()  # no name: the server says why
    assert stored(server, "") is None

    form.get_by_label("Name", exact=True).fill(name)
    form.get_by_label("Block").check()
    form.get_by_label("Tool name (glob)").fill("sql_*")
    form.get_by_role("button", name="+ Add a condition").click()
    form.get_by_label("Condition 1 path").fill("rows")
    form.get_by_label("Condition 1 operator").select_option("GT")
    form.get_by_label("Condition 1 value").fill("1000")
    form.get_by_role("button", name="Create policy").click()
    expect(form).to_be_hidden()
    row = page.locator(".policy", has_text=name)
    expect(row).to_contain_text("When tool is sql_* and input rows > 1000")
    policy = stored(server, name)
    assert policy is not None
    assert policy["action"] == "BLOCK"
    assert policy["inputMatches"] == [{"path": "rows", "op": "GT", "value": 1000}]

    switch = row.get_by_role("switch", name=f"Dry run for {name}")
    switch.click()
    expect(switch).to_be_checked()
    expect(row.locator(".tag-dry")).to_be_visible()
    expect(row).to_contain_text("v2")
    assert (stored(server, name) or {}).get("dryRun") is True

    row.get_by_role("button", name="Edit").click()
    form.get_by_label("Tool name (glob)").fill("sql_exec")
    form.get_by_role("button", name="Save policy").click()
    expect(form).to_be_hidden()
    expect(row).to_contain_text("tool is sql_exec")
    expect(row).to_contain_text("v3")
    after_edit = stored(server, name) or {}
    assert after_edit["toolName"] == "sql_exec" and after_edit["dryRun"] is True

    row.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0)
    assert stored(server, name) is None


UPDATE = """
mutation($id: ID!, $input: PolicyInput!) { updatePolicy(id: $id, input: $input) { version } }
"""


def shown_policy(page: Page, server: Server, **definition: str) -> tuple[str, Locator]:
    """A policy created by another admin, then the Policies page showing it: its id and row."""
    created = server.graphql(
        "mutation($p: PolicyInput!) { createPolicy(input: $p) { id } }", p=definition
    )["createPolicy"]
    sign_in(page, server.admin, "/policies")
    row = page.locator(".policy", has_text=definition["name"])
    expect(row).to_contain_text("v1")
    return created["id"], row


def test_a_stale_page_undoes_no_one_s_edit(page: Page, server: Server) -> None:
    """Another admin tightens a policy while this page shows the old one: switching dry run
    here is refused with what happened, the page shows the new version, and the other
    admin's change stands. Switched again, from the version shown, it goes through."""
    name = f"Block rm {secrets.token_hex(2)}"
    policy_id, row = shown_policy(page, server, name=name, action="BLOCK", toolName="rm*")

    server.graphql(UPDATE, id=policy_id, input={"name": name, "action": "BLOCK", "toolName": "*"})
    switch = row.get_by_role("switch", name=f"Dry run for {name}")
    switch.click()
    expect(page.get_by_role("alert")).to_contain_text("has changed since version 1")
    expect(row).to_contain_text("v2")
    expect(row).to_contain_text("When tool is *")
    after = stored(server, name) or {}
    assert after["toolName"] == "*" and after["dryRun"] is False and after["version"] == 2

    switch.click()
    expect(switch).to_be_checked()
    expect(row).to_contain_text("v3")
    after = stored(server, name) or {}
    assert after["toolName"] == "*" and after["dryRun"] is True


def test_a_policy_deleted_elsewhere_leaves_the_page_when_acted_on(
    page: Page, server: Server
) -> None:
    """Switching dry run, or saving an edit, of a policy another admin deleted said so and
    left its row on the page; now the row goes with the message."""
    create = "mutation($p: PolicyInput!) { createPolicy(input: $p) { id } }"
    names = {act: f"Gone {act} {secrets.token_hex(2)}" for act in ("switch", "edit")}
    ids = {
        act: server.graphql(create, p={"name": name, "action": "BLOCK", "toolName": "rm*"})[
            "createPolicy"
        ]["id"]
        for act, name in names.items()
    }
    sign_in(page, server.admin, "/policies")
    for act, name in names.items():
        row = page.locator(".policy", has_text=name)
        expect(row).to_contain_text("v1")
        server.graphql("mutation($id: ID!) { deletePolicy(id: $id) }", id=ids[act])
        if act == "switch":
            row.get_by_role("switch", name=f"Dry run for {name}").click()
            expect(page.get_by_role("alert")).to_contain_text("No policy")
        else:
            row.get_by_role("button", name="Edit").click()
            form = page.get_by_role("dialog")
            form.get_by_label("Tool name (glob)").fill("rm -rf*")
            form.get_by_role("button", name="Save policy").click()
            expect(form.get_by_role("alert")).to_contain_text("No policy")
            page.keyboard.press("Escape")
        expect(row).to_have_count(0)
        assert stored(server, name) is None


def test_an_edit_opened_before_another_admin_s_change_says_so_then_saves(
    page: Page, server: Server
) -> None:
    name = f"Gate deploys {secrets.token_hex(2)}"
    policy_id, row = shown_policy(
        page, server, name=name, action="REQUIRE_APPROVAL", toolName="deploy"
    )
    row.get_by_role("button", name="Edit").click()
    form = page.get_by_role("dialog")
    form.get_by_label("Tool name (glob)").fill("deploy_*")

    changed = {"name": name, "action": "BLOCK", "toolName": "deploy"}
    server.graphql(UPDATE, id=policy_id, input=changed)
    form.get_by_role("button", name="Save policy").click()
    alert = form.get_by_role("alert")
    expect(alert).to_contain_text("has changed since version 1")
    expect(alert).to_contain_text("Saving again replaces version 2 with this form.")
    assert (stored(server, name) or {})["action"] == "BLOCK"  # the other change stands

    form.get_by_role("button", name="Save policy").click()  # knowing it
    expect(form).to_be_hidden()
    expect(row).to_contain_text("v3")
    after = stored(server, name) or {}
    assert after["toolName"] == "deploy_*" and after["action"] == "REQUIRE_APPROVAL"


def test_a_selection_dragged_across_the_backdrop_keeps_the_dialog(
    page: Page, server: Server
) -> None:
    """Only a click that starts and ends on the backdrop closes a dialog: a text selection
    dragged out of a field (or in from the backdrop) keeps what was typed."""
    sign_in(page, server.admin, "/policies")
    page.get_by_role("button", name="New policy").click()
    form = page.get_by_role("dialog")
    name = form.get_by_label("Name", exact=True)
    name.fill("Half typed")
    box = name.bounding_box()
    assert box is not None
    inside = (box["x"] + 5, box["y"] + box["height"] / 2)
    for start, end in ((inside, (3, 3)), ((3, 3), inside)):
        page.mouse.move(*start)
        page.mouse.down()
        page.mouse.move(*end, steps=5)
        page.mouse.up()
        expect(form).to_be_visible()
        expect(name).to_have_value("Half typed")
    page.mouse.click(3, 3)  # a click on the backdrop still closes it
    expect(form).to_be_hidden()
