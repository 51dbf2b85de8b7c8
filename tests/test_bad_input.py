"""Bad input on every REST endpoint and on GraphQL over HTTP: malformed JSON, wrong content
types, huge bodies, deep and wide JSON, NUL bytes, invalid UTF-8 and lone surrogates,
timestamps far in the past or future. Each gets a 4xx in the documented shape, and nothing
is stored; on both databases."""

from __future__ import annotations

import gzip
import json
import secrets
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from tortoise import Tortoise

from resolvers import auth
from tests.conftest import GraphQL, Tenant
from tests.test_changes import SEED_EVENT

NOW = datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Caller:
    """What a valid request to each endpoint needs."""

    tenant: Tenant
    routing_key: str


@dataclass(frozen=True)
class Target:
    path: str
    pagerduty: bool
    headers: Callable[[Caller], dict[str, str]]
    body: Callable[[Caller], dict[str, Any]]
    timestamp: tuple[str, ...]  # where the event's own timestamp sits in the body
    details: tuple[str, ...]  # where its free-form JSON object sits

    def __str__(self) -> str:
        return self.path


def _change(caller: Caller) -> dict[str, Any]:
    return {
        "name": "Deploy complete",
        "timestamp": iso(NOW),
        "category": "TECHNICAL",
        "source": "ci-cd",
        "service": "api",
        "metadata": {"commit": "1b2c3d4"},
    }


def _pd_change(caller: Caller) -> dict[str, Any]:
    payload = {"summary": "deploy", "source": "ci", "timestamp": iso(NOW), "custom_details": {}}
    return {"routing_key": caller.routing_key, "payload": payload}


def _trigger(caller: Caller) -> dict[str, Any]:
    return {
        "routing_key": caller.routing_key,
        "event_action": "trigger",
        "dedup_key": "disk-" + secrets.token_hex(4),
        "payload": {
            "summary": "Disk full",
            "source": "host-1",
            "severity": "critical",
            "timestamp": iso(NOW),
            "custom_details": {"free": "0%"},
        },
    }


def _agent(caller: Caller) -> dict[str, Any]:
    return {
        "eventId": "evt_" + secrets.token_hex(6),
        "runId": "run_" + secrets.token_hex(4),
        "agentId": "my-agent",
        "timestamp": iso(NOW),
        "eventType": "run.started",
        "status": "started",
        "metadata": {"task": "Deploy hotfix"},
    }


def _bearer(caller: Caller) -> dict[str, str]:
    return {"Authorization": f"Bearer {caller.tenant.writer}"}


TARGETS = [
    Target("/events", False, _bearer, _change, ("timestamp",), ("metadata",)),
    Target(
        "/v2/change/enqueue",
        True,
        lambda caller: {},
        _pd_change,
        ("payload", "timestamp"),
        ("payload", "custom_details"),
    ),
    Target(
        "/api/events",
        True,
        _bearer,
        _trigger,
        ("payload", "timestamp"),
        ("payload", "custom_details"),
    ),
    Target(
        "/v2/enqueue",
        True,
        lambda caller: {},
        _trigger,
        ("payload", "timestamp"),
        ("payload", "custom_details"),
    ),
    Target(
        "/v1/events",
        False,
        lambda caller: {"X-API-Key": caller.tenant.writer},
        _agent,
        ("timestamp",),
        ("metadata",),
    ),
]


@pytest.fixture(params=TARGETS, ids=str)
def target(request: pytest.FixtureRequest) -> Target:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def caller(tenant: Tenant) -> Caller:
    return Caller(tenant, await tenant.service("api"))


async def stored(workspace_id: str) -> dict[str, int]:
    """Rows of every table that belongs to the workspace."""
    counts = {}
    for name, model in Tortoise.apps["models"].items():
        if "workspace_id" in model._meta.fields_map:
            counts[name] = await model.filter(workspace_id=workspace_id).count()
    return counts


@dataclass
class Poster:
    client: httpx.AsyncClient
    target: Target
    caller: Caller

    async def raw(
        self,
        content: bytes | Any,
        *,
        content_type: str | None = "application/json",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = self.target.headers(self.caller) | (headers or {})
        if content_type is not None:
            sent["Content-Type"] = content_type
        return await self.client.post(self.target.path, content=content, headers=sent)

    async def json(self, body: dict[str, Any]) -> httpx.Response:
        return await self.raw(json.dumps(body).encode())

    async def refused(
        self, content: bytes | Any, status: int = 400, **options: Any
    ) -> dict[str, Any]:
        """Post, expect a refusal in the documented shape, and that nothing was stored."""
        before = await stored(self.caller.tenant.workspace_id)
        response = await self.raw(content, **options)
        assert response.status_code == status, response.text
        body = assert_documented_error(response, pagerduty=self.target.pagerduty)
        assert await stored(self.caller.tenant.workspace_id) == before, "a refusal stored data"
        return body


def assert_documented_error(response: httpx.Response, *, pagerduty: bool) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"].isupper() and body["error"]["message"]
    assert "Traceback" not in response.text
    if pagerduty:
        assert isinstance(body["status"], str) and body["message"]
        assert body["errors"] and all(isinstance(item, str) for item in body["errors"])
    else:
        assert set(body) == {"error"}
    return body


@pytest.fixture
async def post(client: httpx.AsyncClient, target: Target, caller: Caller) -> AsyncIterator[Poster]:
    yield Poster(client, target, caller)


def with_value(body: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    changed = json.loads(json.dumps(body))
    holder = changed
    for part in path[:-1]:
        holder = holder[part]
    holder[path[-1]] = value
    return changed


async def test_a_valid_body_is_stored(post: Poster) -> None:
    """The baseline the refusals below differ from."""
    before = await stored(post.caller.tenant.workspace_id)
    response = await post.json(post.target.body(post.caller))
    assert response.status_code in (200, 201, 202), response.text
    assert await stored(post.caller.tenant.workspace_id) != before


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{nope",
        b'{"name": "x",}',
        b"null",
        b"[]",
        b'"a string"',
        b"42",
        b"{} {}",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": 1e999}',
    ],
    ids=lambda content: content.decode() or "empty",
)
async def test_malformed_json_is_400(post: Poster, content: bytes) -> None:
    body = await post.refused(content)
    assert body["error"]["code"] == "INVALID_EVENT"


async def test_a_byte_order_mark_is_400_and_named(post: Poster) -> None:
    """RFC 8259 forbids sending one; the refusal says what to take out."""
    event = json.dumps(post.target.body(post.caller)).encode()
    body = await post.refused(b"\xef\xbb\xbf" + event)
    assert body["error"]["code"] == "INVALID_EVENT"
    assert "byte order mark" in body["error"]["message"], body


async def test_non_finite_numbers_inside_a_valid_event_are_400(post: Poster) -> None:
    event = json.dumps(post.target.body(post.caller))
    for constant in ("NaN", "-Infinity", "1e400"):
        text = event.replace('"ci-cd"', constant).replace('"host-1"', constant)
        text = text.replace('"my-agent"', constant).replace('"deploy"', constant)
        body = await post.refused(text.encode())
        assert "not valid JSON" in body["error"]["message"]


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "text/xml"],
)
async def test_wrong_content_type_is_415(post: Poster, content_type: str) -> None:
    content = json.dumps(post.target.body(post.caller)).encode()
    body = await post.refused(content, 415, content_type=content_type)
    assert body["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=utf-8",
        'Application/JSON; Charset="UTF8"',
        "application/json; charset=us-ascii",  # ASCII is UTF-8
    ],
)
async def test_json_media_types_with_parameters_are_accepted(
    post: Poster, content_type: str
) -> None:
    content = json.dumps(post.target.body(post.caller)).encode()
    response = await post.raw(content, content_type=content_type)
    assert response.status_code in (200, 201, 202), response.text


async def test_a_charset_other_than_utf8_is_415_and_named(post: Poster) -> None:
    """JSON is UTF-8: a Latin-1 body was refused as "not valid UTF-8", as if it were broken."""
    event = json.dumps(post.target.body(post.caller), ensure_ascii=False).replace("ci-cd", "cï")
    latin1 = "application/json; charset=ISO-8859-1"
    body = await post.refused(event.encode("latin-1"), 415, content_type=latin1)
    assert body["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert "charset=iso-8859-1 is not supported" in body["error"]["message"]


@pytest.mark.parametrize("coding", ["gzip", "identity, gzip"])
async def test_a_compressed_body_is_415_and_named(post: Poster, coding: str) -> None:
    """A client that gzips its body hears that it must not, not that its JSON is broken."""
    content = gzip.compress(json.dumps(post.target.body(post.caller)).encode())
    body = await post.refused(content, 415, headers={"Content-Encoding": coding})
    assert body["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert body["error"]["message"] == (
        "Content-Encoding gzip is not supported: send the body uncompressed."
    )


async def test_a_coding_in_a_second_header_is_refused_too(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    content = gzip.compress(json.dumps(SEED_EVENT).encode())
    for path, key in (("/events", tenant.writer), ("/graphql", tenant.reader)):
        headers = [
            ("Authorization", f"Bearer {key}"),
            ("Content-Type", "application/json"),
            ("Content-Encoding", "identity"),
            ("Content-Encoding", "gzip"),
        ]
        response = await client.post(path, content=content, headers=headers)
        assert response.status_code == 415, (path, response.text)
        assert "Content-Encoding gzip" in response.json()["error"]["message"]


async def test_huge_bodies_are_413_declared_or_streamed(post: Poster) -> None:
    limit = 512 * 1024
    event = post.target.body(post.caller)
    huge = json.dumps({**event, "padding": "x" * limit}).encode()
    body = await post.refused(huge, 413)
    assert body["error"]["code"] == "PAYLOAD_TOO_LARGE"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(huge), 64 * 1024):
            yield huge[start : start + 64 * 1024]

    body = await post.refused(chunks(), 413)
    assert body["error"]["code"] == "PAYLOAD_TOO_LARGE"
    # Just under the limit is fine (unknown fields are ignored).
    padding = limit - len(json.dumps({**event, "padding": ""}).encode()) - 1
    response = await post.json({**event, "padding": "x" * padding})
    assert response.status_code in (200, 201, 202), response.text


async def test_deep_json_is_400(post: Poster) -> None:
    body = await post.refused(b"[" * 100_000 + b"]" * 100_000)
    assert "nested" in body["error"]["message"] or "recursion" in body["error"]["message"]
    deep: Any = 1
    for _ in range(100):  # within what Python parses, beyond the configured depth (64)
        deep = {"a": deep}
    event = with_value(post.target.body(post.caller), post.target.details, {"x": 0})
    text = json.dumps(event).replace('{"x": 0}', json.dumps(deep))
    body = await post.refused(text.encode())
    assert "nested deeper than 64 levels" in body["error"]["message"]


async def test_wide_json(post: Poster) -> None:
    event = post.target.body(post.caller)
    # Many unknown fields are ignored...
    wide = {**event, **{f"extra_{number}": number for number in range(20_000)}}
    response = await post.json(wide)
    assert response.status_code in (200, 201, 202), response.text
    # ...but a free-form object over the metadata limit is refused, by name.
    details = {f"k{number}": "v" * 10 for number in range(5_000)}
    body = await post.refused(json.dumps(with_value(event, post.target.details, details)))
    field = ".".join(post.target.details)
    assert f"{field}: must be at most 65536 bytes" in body["error"]["message"]


async def test_nul_bytes(post: Poster) -> None:
    event = post.target.body(post.caller)
    await post.refused(json.dumps(event).encode() + b"\x00")
    await post.refused(b"\x00" + json.dumps(event).encode())
    details = with_value(event, post.target.details, {"note": "a\u0000b"})
    body = await post.refused(json.dumps(details).encode())
    assert "NUL" in body["error"]["message"]
    text_field = {
        "/events": ("name",),
        "/v1/events": ("agentId",),
    }.get(post.target.path, ("payload", "summary"))
    body = await post.refused(json.dumps(with_value(event, text_field, "a\u0000b")).encode())
    assert ".".join(text_field) in body["error"]["message"]
    # A backslash before `u0000` is six characters of text, not a NUL: kept.
    kept = with_value(event, post.target.details, {"note": "\\u0000 and \\\\u0000"})
    response = await post.raw(json.dumps(kept).encode())
    assert response.status_code in (200, 201, 202), response.text


async def test_invalid_utf8_and_lone_surrogates(post: Poster) -> None:
    event = post.target.body(post.caller)
    text = json.dumps(event).encode()
    body = await post.refused(text[:-1] + b', "note": "crit\xffcal \xc3("}')
    assert "UTF-8" in body["error"]["message"] or "not valid" in body["error"]["message"]
    body = await post.refused(b"\xef\xbb\xbf" + text[:1] + b"\xff" + text[1:])
    assert "UTF-8" in body["error"]["message"]
    for lone in ("\ud800", "\udfff", "a\udc00b"):
        body = await post.refused(json.dumps(with_value(event, post.target.details, {lone: 1})))
        assert "lone surrogate" in body["error"]["message"]
    # A pair written as two escapes is one character: fine.
    paired = with_value(event, post.target.details, {"emoji": "\U0001f600"})
    response = await post.raw(json.dumps(paired, ensure_ascii=True).encode())
    assert response.status_code in (200, 201, 202), response.text


async def test_a_number_of_more_digits_than_python_converts_is_400_in_plain_words(
    post: Poster,
) -> None:
    """Python converts at most 4,300 digits to an int; its own refusal named
    `sys.set_int_max_str_digits()`. A negative one counts its digits, not its sign."""
    event = json.dumps(post.target.body(post.caller))
    most = sys.get_int_max_str_digits()
    for number in ("9" * (most + 1), "-" + "1" * (most + 1)):
        text = event.replace('"ci-cd"', number).replace('"host-1"', number)
        text = text.replace('"my-agent"', number).replace('"deploy"', number)
        body = await post.refused(text.encode())
        assert body["error"] == {
            "code": "INVALID_EVENT",
            "message": f"The body is not valid JSON: a number has more than {most} digits.",
        }


@pytest.mark.parametrize(
    "moment",
    [
        "1970-01-01T00:00:00Z",
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59-05:00",
        "2100-01-01T00:00:00Z",
        iso(NOW + timedelta(days=2)),
        iso(NOW - timedelta(days=3651)),
    ],
)
async def test_timestamps_far_in_the_past_or_future_are_400(post: Poster, moment: str) -> None:
    event = with_value(post.target.body(post.caller), post.target.timestamp, moment)
    body = await post.refused(json.dumps(event).encode())
    field = ".".join(post.target.timestamp)
    assert f"{field}: " in body["error"]["message"]
    assert (
        "in the past" in body["error"]["message"]
        or "in the future" in (body["error"]["message"])
        or "out of range" in body["error"]["message"]
    )


@pytest.mark.parametrize(
    "moment", [iso(NOW - timedelta(days=3640)), iso(NOW + timedelta(hours=23))]
)
async def test_timestamps_inside_the_window_are_accepted(post: Poster, moment: str) -> None:
    event = with_value(post.target.body(post.caller), post.target.timestamp, moment)
    response = await post.json(event)
    assert response.status_code in (200, 201, 202), response.text


async def test_approval_lookups_refuse_bad_ids_and_waits(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    headers = {"X-API-Key": tenant.reader}
    for path in ("/v1/approvals/" + "0" * 500, "/v1/approvals/%00", "/v1/approvals/%ED%A0%80"):
        response = await client.get(path, headers=headers)
        assert 400 <= response.status_code < 500, response.text
        assert_documented_error(response, pagerduty=False)
    for wait in ("-1", "nan", "inf", "abc", "1e999"):
        response = await client.get(f"/v1/approvals/ap_x?wait={wait}", headers=headers)
        assert response.status_code in (400, 404), response.text
        assert_documented_error(response, pagerduty=False)


# GraphQL over HTTP: the same strict JSON, and input no database can take is the
# caller's error (never "Unexpected error." or a 5xx).

CREATE_SERVICE = "mutation($n: String!) { createService(name: $n) { name } }"
RECORD = """mutation($input: ChangeInput!) {
  recordChange(input: $input) { __typename ... on InvalidEvent { message } } }"""


@pytest.mark.parametrize(
    "content",
    [b"null", b"42", b'"x"', b"{nope", b"\xff", b'{"query": "{ viewer { name } }", "v": NaN}'],
)
async def test_graphql_refuses_malformed_bodies(
    client: httpx.AsyncClient, tenant: Tenant, content: bytes
) -> None:
    headers = {"Authorization": f"Bearer {tenant.reader}", "Content-Type": "application/json"}
    response = await client.post("/graphql", content=content, headers=headers)
    assert response.status_code == 400, response.text
    assert "Traceback" not in response.text
    body = response.json()  # the documented shape, and GraphQL's `errors` beside it
    assert body["error"]["code"] == "BAD_REQUEST"
    assert body["errors"] == [
        {"message": body["error"]["message"], "extensions": {"code": "BAD_REQUEST"}}
    ]


async def test_graphql_refuses_numbers_of_more_digits_than_python_converts(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """In a variable, the body's JSON is refused; in the document, the literal: each in one
    line, without Python's advice on `sys.set_int_max_str_digits` or the digits echoed."""
    headers = {"Authorization": f"Bearer {tenant.reader}", "Content-Type": "application/json"}
    most = sys.get_int_max_str_digits()
    digits = "9" * (most + 1)
    query = "query($n: Int) { timeline(first: $n) { edges { cursor } } }"
    content = '{"query": ' + json.dumps(query) + ', "variables": {"n": '
    response = await client.post("/graphql", content=content + digits + "}}", headers=headers)
    assert response.status_code == 400, response.text
    message = f"Unable to parse request body as JSON: a number has more than {most} digits"
    assert response.json()["error"] == {"code": "BAD_REQUEST", "message": message}
    for literal in (digits, "-" + digits):
        document = "{ timeline(first: " + literal + ") { edges { cursor } } }"
        response = await client.post("/graphql", json={"query": document}, headers=headers)
        errors = response.json()["errors"]
        assert [error["message"] for error in errors] == [
            f"A number in the document has more than {most} digits."
        ]
        assert errors[0]["locations"] == [{"line": 1, "column": 19}]
    # At the limit it converts, and is refused as Int refuses any number past 32 bits.
    document = "{ timeline(first: " + digits[1:] + ") { edges { cursor } } }"
    response = await client.post("/graphql", json={"query": document}, headers=headers)
    assert "Int cannot represent non 32-bit signed integer" in response.text


async def test_graphql_refuses_deep_variables(client: httpx.AsyncClient, tenant: Tenant) -> None:
    headers = {"Authorization": f"Bearer {tenant.admin}", "Content-Type": "application/json"}
    for depth in (100, 100_000):
        variables = '{"n": ' + "[" * depth + "]" * depth + "}"
        content = '{"query": "' + CREATE_SERVICE.replace('"', '\\"') + '", "variables": '
        response = await client.post("/graphql", content=content + variables + "}", headers=headers)
        assert response.status_code == 400, response.text
        assert "nested deeper than 64 levels" in response.json()["errors"][0]["message"]


async def test_graphql_refuses_a_huge_body_in_both_shapes(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    headers = {"Authorization": f"Bearer {tenant.reader}", "Content-Type": "application/json"}
    padding = "x" * (512 * 1024)
    content = json.dumps({"query": "{ viewer { name } }", "variables": {"p": padding}}).encode()

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(content), 64 * 1024):
            yield content[start : start + 64 * 1024]

    for sent in (content, chunks()):
        response = await client.post("/graphql", content=sent, headers=headers)
        assert response.status_code == 413
        body = response.json()
        assert body["error"]["code"] == "PAYLOAD_TOO_LARGE"
        assert body["errors"][0]["extensions"] == {"code": "PAYLOAD_TOO_LARGE"}


async def test_a_graphql_body_past_the_keyless_limit_needs_a_valid_key_before_it_is_parsed(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a valid key only `__typename` and introspection answer: a body over
    OPSGRAPH_GRAPHQL_KEYLESS_MAX_BODY_BYTES (16 KiB) is refused before it is parsed (even
    when it is not JSON at all), and with a valid key its key is looked up once."""
    most = 16 * 1024
    query = "{ viewer { name } }"

    def body(size: int) -> bytes:  # a document of `size` bytes, padded with spaces
        padding = size - len(json.dumps({"query": query}))
        return json.dumps({"query": query + " " * padding}).encode()

    assert len(body(most)) == most
    json_type = {"Content-Type": "application/json"}
    for key, refused in (
        (None, "A valid API key is required."),
        ("og_" + "x" * 40, "The API key is unknown or revoked."),
        (tenant.reader + "x", "The API key is unknown or revoked."),
    ):
        headers = json_type | ({"Authorization": f"Bearer {key}"} if key else {})
        for content in (body(most + 1), b"{" * (most + 1)):
            response = await client.post("/graphql", content=content, headers=headers)
            assert response.status_code == 401, response.text
            message = f"{refused} A body over {most} bytes needs one."
            assert response.json() == {
                "error": {"code": "UNAUTHENTICATED", "message": message},
                "errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}],
            }
        # Up to the limit the operation runs, and says for itself what the key lacks.
        response = await client.post("/graphql", content=body(most), headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["errors"][0]["message"] == refused
    keyless = await client.post(
        "/graphql", content=body(most).replace(b"viewer { name }", b"__typename     "),
        headers=json_type,
    )  # fmt: skip
    assert keyless.json() == {"data": {"__typename": "Query"}}

    looked_up: list[str] = []
    submit = auth.KEY_LOOKUP.submit

    async def counted(digest: str) -> Any:
        looked_up.append(digest)
        return await submit(digest)

    monkeypatch.setattr(auth.KEY_LOOKUP, "submit", counted)
    headers = json_type | {"Authorization": f"Bearer {tenant.reader}"}
    response = await client.post("/graphql", content=body(most * 4), headers=headers)
    assert response.json() == {"data": {"viewer": {"name": "dashboard"}}}
    assert len(looked_up) == 1


@pytest.mark.parametrize(
    ("headers", "said"),
    [
        ({"Content-Type": "text/plain"}, "Content-Type: application/json"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, "Content-Type: application/json"),
        ({"Content-Type": "application/json; charset=latin-1"}, "charset=latin-1"),
        ({"Content-Encoding": "gzip"}, "Content-Encoding gzip"),
    ],
)
async def test_graphql_refuses_a_body_it_cannot_read_as_json_with_415_as_rest_does(
    client: httpx.AsyncClient, tenant: Tenant, headers: dict[str, str], said: str
) -> None:
    """Another content type, a charset other than UTF-8, a content coding."""
    sent = {"Authorization": f"Bearer {tenant.reader}", "Content-Type": "application/json"}
    response = await client.post(
        "/graphql", content=b'{"query": "{ viewer { name } }"}', headers=sent | headers
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert said in response.json()["error"]["message"]
    assert response.json()["errors"][0]["extensions"] == {"code": "UNSUPPORTED_MEDIA_TYPE"}


@pytest.mark.parametrize(
    "content_type",
    ["APPLICATION/JSON", "Application/Json; charset=UTF-8", "application/vnd.api+json"],
)
async def test_graphql_reads_json_by_its_media_type_in_any_case_as_rest_does(
    client: httpx.AsyncClient, tenant: Tenant, content_type: str
) -> None:
    """Media types are case-insensitive: these were a 415 on /graphql and a 201 on /events."""
    headers = {"Authorization": f"Bearer {tenant.reader}", "Content-Type": content_type}
    response = await client.post(
        "/graphql", content=b'{"query": "{ viewer { name } }"}', headers=headers
    )
    assert response.json() == {"data": {"viewer": {"name": "dashboard"}}}
    event = {**SEED_EVENT, "name": f"sent as {content_type}"}
    headers["Authorization"] = f"Bearer {tenant.writer}"
    posted = await client.post("/events", content=json.dumps(event).encode(), headers=headers)
    assert posted.status_code == 201, posted.text


async def test_graphql_text_no_database_can_store_is_bad_user_input(
    gql: GraphQL, tenant: Tenant
) -> None:
    result = await gql(CREATE_SERVICE, tenant.admin, n="svc-\ud800")
    assert result.errors[0].extensions == {"code": "BAD_USER_INPUT"}
    assert "lone surrogate" in result.errors[0].message
    change = {
        "name": "a\udfffb",
        "timestamp": iso(NOW),
        "category": "TECHNICAL",
        "source": "ci",
        "metadata": {"x": "\ud800"},
    }
    result = await gql(RECORD, tenant.writer, input=change)
    assert result.errors is None, result.errors
    message = result.data["recordChange"]["message"]
    assert "name: must be valid Unicode text" in message and "metadata" in message
    result = await gql(
        RECORD,
        tenant.writer,
        input={**change, "name": "ok", "metadata": None, "timestamp": "1970-01-01T00:00:00Z"},
    )
    assert (
        "timestamp: must be at most 3650 days in the past"
        in (result.data["recordChange"]["message"])
    )


@pytest.mark.parametrize("field", ["incident", "run", "approval"])
@pytest.mark.parametrize("value", ["x" * 5000, "id_\x00"], ids=["5,000 characters", "NUL"])
async def test_an_id_no_row_could_have_finds_nothing(
    gql: GraphQL, tenant: Tenant, field: str, value: str
) -> None:
    """Asked by an id no column could hold, a look-up answers null, as for any unknown id
    (on PostgreSQL the database refused the value: an error naming a field "id")."""
    result = await gql(f"query($id: ID!) {{ {field}(id: $id) {{ id }} }}", tenant.admin, id=value)
    assert result.errors is None, result.errors
    assert result.data == {field: None}
