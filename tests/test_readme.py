"""The README's curl examples, run in order against the app as a newcomer would run them
(`$OPSGRAPH_KEY` an admin key, `$ROUTING_KEY` the service `api`'s): each answers the status
and the body its `# NNN {…}` comment shows, where `…` in a shown string stands for anything.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from resolvers.auth import Scope
from tests.conftest import Tenant

README = Path(__file__).resolve().parent.parent / "README.md"
ELLIPSIS = "…"


@dataclass(frozen=True)
class Example:
    line: int  # in the README, for the failure message
    method: str
    url: str
    headers: dict[str, str]
    body: str | None
    shown: str | None  # the comment after it: "201 {...}"


def _command(lines: list[str], start: int) -> tuple[list[str], int]:
    """The words of the curl command starting at `lines[start]` (it may go on over several
    lines, by a trailing backslash or inside a quoted body); and the next line's index."""
    end = start + 1
    while True:
        text = "\n".join(lines[start:end]).replace("\\\n", " ")
        try:
            words = shlex.split(text)
        except ValueError:  # a quote still open: the body goes on
            words = []
        if words and not lines[end - 1].endswith("\\"):
            return words, end
        if end >= len(lines):
            raise AssertionError(f"README: the command at {lines[start]!r} never ends")
        end += 1


def examples() -> list[Example]:
    """Every curl command of the README's `sh` blocks, with the answer shown after it."""
    text = README.read_text(encoding="utf-8")
    found = []
    for block in re.finditer(r"```sh\n(.*?)```", text, re.S):
        first_line = text.count("\n", 0, block.start()) + 2
        lines = block.group(1).splitlines()
        index = 0
        while index < len(lines):
            if not lines[index].startswith("curl "):
                index += 1
                continue
            start = index
            words, index = _command(lines, index)
            comment = []
            while index < len(lines) and lines[index].startswith("#"):
                comment.append(lines[index].lstrip("#").strip())
                index += 1
            found.append(_parse(first_line + start, words, " ".join(comment) or None))
    return found


def _parse(line: int, words: list[str], shown: str | None) -> Example:
    method, url, body = "GET", "", None
    headers: dict[str, str] = {}
    rest = iter(words[1:])
    for word in rest:
        if word == "-X":
            method = next(rest)
        elif word == "-H":
            name, _, value = next(rest).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            body = next(rest)
            method = "POST" if method == "GET" else method
        elif word == "-s":
            continue
        elif word.startswith("http"):
            url = word
        else:
            raise AssertionError(f"README line {line}: the test does not know curl's {word}")
    return Example(line, method, url, headers, body, shown)


def matches(shown: Any, actual: Any) -> bool:
    """Whether the README's `shown` value describes `actual`: the same keys, lists of the
    same length, equal values, and a string with `…` the text around it."""
    if isinstance(shown, dict):
        return (
            isinstance(actual, dict)
            and shown.keys() == actual.keys()
            and all(matches(shown[key], actual[key]) for key in shown)
        )
    if isinstance(shown, list):
        return (
            isinstance(actual, list)
            and len(shown) == len(actual)
            and all(map(matches, shown, actual))
        )
    if isinstance(shown, str) and ELLIPSIS in shown:
        head, _, tail = shown.partition(ELLIPSIS)
        tail = tail.rpartition(ELLIPSIS)[2]
        return isinstance(actual, str) and actual.startswith(head) and actual.endswith(tail)
    return type(shown) is type(actual) and shown == actual


def test_the_readme_examples_are_found() -> None:
    found = examples()
    paths = [urlsplit(example.url).path for example in found]
    assert paths[:5] == [
        "/events",
        "/v2/change/enqueue",
        "/api/events",
        "/v2/enqueue",
        "/v1/events",
    ]
    assert "/graphql" in paths
    assert all(example.shown for example in found if urlsplit(example.url).path != "/graphql")


def test_matches_reads_the_ellipsis_as_anything() -> None:
    assert matches({"id": "chg_…", "n": 1}, {"id": "chg_9x", "n": 1})
    assert not matches({"id": "chg_…"}, {"id": "inc_9x"})
    assert not matches({"id": "chg_…"}, {"id": "chg_9x", "extra": True})
    assert not matches({"a": "x … y"}, {"a": "x z"})
    assert not matches({"ok": True}, {"ok": 1})


@pytest.mark.settings(public_url="http://127.0.0.1:8000")  # as `make run` serves
async def test_every_curl_example_answers_as_shown(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    routing_key = await tenant.service("api")
    deciding = await tenant.key(Scope.APPROVALS_DECIDE, name="alice")
    created = await _graphql(
        client,
        tenant.admin,
        'mutation { createPolicy(input: {name: "Require approval for production deploys", '
        'action: REQUIRE_APPROVAL, toolName: "deploy", '
        'inputMatches: [{path: "environment", op: EQ, value: "production"}]}) { id } }',
    )
    assert created["data"]["createPolicy"]["id"]
    approval_id = ""
    for example in examples():
        place = f"README line {example.line}"
        url = urlsplit(example.url.replace("ap_…", approval_id))
        if url.path.startswith("/v1/approvals/"):  # the approval the agent waits for
            decided = await _graphql(
                client,
                deciding,
                f'mutation {{ decideApproval(id: "{approval_id}", decision: APPROVE, '
                f'comment: "ship it") {{ status }} }}',
            )
            assert decided["data"]["decideApproval"]["status"] == "APPROVED", decided
        headers = {
            name: value.replace("$OPSGRAPH_KEY", tenant.admin)
            for name, value in example.headers.items()
        }
        body = example.body
        if body is not None:
            body = body.replace("$ROUTING_KEY", routing_key)
            try:  # the body curl sends as it stands
                json.loads(body)
            except ValueError as exc:
                raise AssertionError(f"{place}: the body is not JSON ({exc})") from None
        response = await client.request(
            example.method,
            url.path + (f"?{url.query}" if url.query else ""),
            headers=headers,
            content=body,
        )
        answer = response.json()
        if example.shown is None:  # GraphQL: data, no errors
            assert response.status_code == 200, (place, answer)
            assert answer.get("data") and not answer.get("errors"), (place, answer)
            continue
        status, _, shown = example.shown.partition(" ")
        assert response.status_code == int(status), (place, answer)
        assert matches(json.loads(shown), answer), (
            f"{place}: shown {shown}, answered {json.dumps(answer)}"
        )
        approval_id = answer.get("approvalId") or approval_id


async def _graphql(client: httpx.AsyncClient, key: str, document: str) -> dict[str, Any]:
    response = await client.post(
        "/graphql", json={"query": document}, headers={"Authorization": f"Bearer {key}"}
    )
    answer: dict[str, Any] = response.json()
    return answer
