"""What every REST endpoint shares: JSON bodies, credentials, running a GraphQL document,
and rendering errors in the documented `{"error": {"code", "message"}}` shape."""

from __future__ import annotations

import asyncio
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from inspect import isawaitable
from itertools import accumulate
from typing import TYPE_CHECKING, Any, TypeGuard, cast

import orjson
import strawberry
from graphql import DocumentNode, ExecutionResult, GraphQLError, execute, parse, validate
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from strawberry.execution import optimized_is_awaitable

from models.incident import ACTOR_LENGTH
from models.workspace import Service
from opsgraph.settings import Settings

if TYPE_CHECKING:
    from opsgraph.live import Hub
from resolvers import auth
from resolvers.auth import SERVICE_ACTOR_PREFIX, Principal, Scope, authenticate
from resolvers.batching import Batcher
from resolvers.errors import AuthError, FieldError, InvalidInput
from resolvers.timeline import Publisher
from schema.context import Context
from schema.errors import refused, refused_message

STATUS_FOR_CODE = {
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "CONFLICT": 409,
    "PAYLOAD_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "RATE_LIMITED": 429,
    "UNAVAILABLE": 503,
}


# What a 401 answers in `WWW-Authenticate` (RFC 9110 requires one): how to present a key.
BEARER_CHALLENGE = 'Bearer realm="opsgraph"'
API_KEY_CHALLENGE = 'ApiKey realm="opsgraph", header="X-API-Key"'


class RestError(Exception):
    """An error answered in the documented shape, with an HTTP status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        errors: list[str] | None = None,
        retry_after: int | None = None,  # seconds, sent as `Retry-After`
        challenge: str | None = None,  # a 401's `WWW-Authenticate`
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors or [message]
        self.retry_after = retry_after
        self.challenge = challenge

    @classmethod
    def invalid(cls, error: InvalidInput) -> RestError:
        return cls(
            400,
            "INVALID_EVENT",
            error.message,
            errors=[field_error.render() for field_error in error.errors],
        )

    @classmethod
    def from_auth(cls, error: AuthError, *, challenge: str) -> RestError:
        """A refused key (401, saying how to present one: `challenge`) or scope (403)."""
        status = STATUS_FOR_CODE.get(error.code, 401)
        return cls(
            status, error.code, error.message, challenge=challenge if status == 401 else None
        )


class Answer(JSONResponse):
    """A JSON answer written by orjson, in 0.1 µs instead of 2.5 for a small object: the
    same bytes as Starlette's `JSONResponse` (compact, UTF-8) for what the endpoints answer,
    strings, booleans, null and integers. What orjson refuses (an integer past 64 bits, a
    datetime or a dataclass, passed through) Starlette writes, or refuses, as before.
    orjson spells some floats its own way (`1.5e-7` for `1.5e-07`) and writes NaN as null
    where Starlette raises; no answer holds a float."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content, option=_REFUSED_BY_JSON)
        except TypeError:  # orjson.JSONEncodeError included
            return super().render(content)


# What orjson would write but the standard library refuses: left to the standard library.
_REFUSED_BY_JSON = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _headers(error: RestError) -> dict[str, str]:
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    if error.challenge is not None:
        headers["WWW-Authenticate"] = error.challenge
    return headers


def render_error(error: RestError) -> JSONResponse:
    return JSONResponse(
        error_body(error.code, error.message), status_code=error.status, headers=_headers(error)
    )


# Endpoints whose errors also carry PagerDuty's `status`/`message`/`errors[]`.
PAGERDUTY_PATHS = frozenset({"/api/events", "/v2/enqueue", "/v2/change/enqueue"})


def pagerduty_error_body(status: int, code: str, message: str, errors: list[str]) -> dict[str, Any]:
    """PagerDuty's `status`/`message`/`errors[]` beside our documented `error` object."""
    return {
        "status": "invalid event" if status == 400 else "error",
        "message": "Event object is invalid" if status == 400 else message,
        "errors": errors,
        **error_body(code, message),
    }


def render_pagerduty_error(error: RestError) -> JSONResponse:
    body = pagerduty_error_body(error.status, error.code, error.message, error.errors)
    return JSONResponse(body, status_code=error.status, headers=_headers(error))


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What REST endpoints need: the schema to run, settings and the bus."""

    schema: strawberry.Schema
    settings: Settings
    publisher: Publisher
    hub: Hub | None = None  # the process's live hub (absent when a test runs bare)
    prepared: dict[str, DocumentNode] = field(default_factory=dict)
    # Batchers of concurrent requests, by name, made on first use with these settings.
    batchers: dict[str, Batcher[Any, Any]] = field(default_factory=dict)
    # Set once the server stops taking requests (`opsgraph.restlane`): long polls answer
    # what they have instead of holding the shutdown for their whole wait.
    draining: asyncio.Event = field(default_factory=asyncio.Event)
    # `?wait=` long polls each key holds open in this process (`approval_waits_per_key`).
    waits: Counter[str] = field(default_factory=Counter)

    async def execute(
        self, document: str, variables: dict[str, Any], *, principal: Principal
    ) -> dict[str, Any]:
        """Run a fixed GraphQL document as `principal`; raise RestError on GraphQL errors.

        Unexpected errors are raised (a 500), not masked.
        """
        result = await self.run(document, variables, principal=principal)
        if result.errors:
            raise error_outcome(result.errors[0])
        assert result.data is not None
        return result.data

    async def run(
        self,
        document: str,
        variables: dict[str, Any],
        *,
        principal: Principal,
        validated: Sequence[Any] | None = None,
    ) -> ExecutionResult:
        """Run a fixed GraphQL document as `principal`: its data and errors as they are.

        The same schema and resolvers as `/graphql`, but the document is parsed and
        validated once, on first use, and executed without the per-request extensions:
        they exist for documents from clients (caches, limits, masking) and a fixed
        document has nothing for them to do. `validated` is this layer's validation of each
        of a list mutation's `inputs` (see `Context.validated`).
        """
        parsed = self.prepared.get(document)
        if parsed is None:
            parsed = self.prepared[document] = _prepare(self.schema, document)
        context = Context(
            settings=self.settings,
            publisher=self.publisher,
            principal=principal,
            validated=validated,
        )
        result = execute(
            self.schema._schema,
            parsed,
            context_value=context,
            variable_values=variables,
            executor_class=self.schema.execution_context_class,
            is_awaitable=_is_awaitable,
        )
        if isawaitable(result):
            result = await result
        assert isinstance(result, ExecutionResult)
        return result


# What Strawberry's own execute passes: a fast path for the plain values most fields return.
_is_awaitable = cast(Callable[[Any], TypeGuard[Awaitable[Any]]], optimized_is_awaitable)


def _prepare(schema: strawberry.Schema, document: str) -> DocumentNode:
    """Parse and validate one of our fixed documents; an invalid one is a bug."""
    parsed = parse(document)
    errors = validate(schema._schema, parsed)
    if errors:
        raise RuntimeError(f"invalid REST document: {errors[0].message}")
    return parsed


def error_outcome(error: GraphQLError) -> Exception:
    """A GraphQL error as the caller's RestError, or the unexpected exception behind it."""
    code = (error.extensions or {}).get("code")
    if isinstance(code, str) and code in STATUS_FOR_CODE:
        return RestError(STATUS_FOR_CODE[code], code, error.message)
    if isinstance(code, str) and code == "BAD_USER_INPUT":
        return RestError(400, "INVALID_EVENT", error.message)
    if refused(error.original_error):  # e.g. a value too long for its column
        return RestError(400, "INVALID_EVENT", refused_message(error.original_error))
    if error.original_error is not None and not isinstance(error.original_error, GraphQLError):
        return error.original_error
    return RestError(400, "INVALID_EVENT", error.message)


SEND_JSON = "Send the body as JSON with Content-Type: application/json."


# Charsets a JSON body may name: UTF-8, and ASCII (a subset of it).
_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})


def unreadable_body(headers: Mapping[str, str]) -> str | None:
    """Why a body sent with these headers cannot be read as JSON (a 415), or None: another
    content type, a charset other than UTF-8 (JSON is UTF-8, RFC 8259), or a content coding
    (a gzip body would otherwise be refused as "not valid UTF-8"), in any of the headers
    if a client sent several."""
    content_type = headers.get("content-type")
    if content_type is not None:
        if not json_media(content_type):
            return SEND_JSON
        for parameter in content_type.split(";")[1:]:
            name, _, value = parameter.partition("=")
            charset = value.strip().strip('"').lower()
            if name.strip().lower() == "charset" and charset not in _CHARSETS:
                return f"The body must be UTF-8; charset={charset} is not supported."
    if isinstance(headers, Headers):
        codings = headers.getlist("content-encoding")
    else:
        codings = [headers.get("content-encoding") or ""]
    for header in codings:
        for coding in header.split(","):
            if coding.strip().lower() not in ("", "identity"):
                return (
                    f"Content-Encoding {coding.strip()} is not supported:"
                    " send the body uncompressed."
                )
    return None


def json_media(content_type: str) -> bool:
    """Whether a Content-Type names JSON: `application/json` or a `+json` type, in any case
    (media types are case-insensitive), with any parameters."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


# `\uD800`-`\uDFFF` escapes: valid only as a high-low pair (JSON text must be Unicode).
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


class BadJson(ValueError):
    """JSON that is refused: malformed, or valid JSON no store can keep as it is."""


def strict_json(data: str | bytes, *, max_depth: int) -> Any:
    """`json.loads` that refuses NaN and Infinity, numbers beyond float range, lone
    surrogates, a byte order mark and nesting deeper than `max_depth`, with a short reason
    (ValueError; UnicodeDecodeError for bytes that are not UTF-8)."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    if text.startswith("\ufeff"):
        raise BadJson("it starts with a byte order mark (U+FEFF); send UTF-8 without one")
    try:
        parsed = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise BadJson(exc.msg) from None
    except RecursionError:
        raise BadJson(f"nested deeper than {max_depth} levels") from None
    if _ESCAPED_SURROGATE.search(text):  # rare: check that each one is half of a pair
        try:
            json.dumps(parsed, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise BadJson("a string has a lone surrogate") from None
    if text.count("[") + text.count("{") > max_depth and json_depth(text) > max_depth:
        raise BadJson(f"nested deeper than {max_depth} levels")
    return parsed


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_A_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))
_LEVEL_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1, +1, -1, -1 as signed bytes


def json_depth(text: str) -> int:
    """How deeply arrays and objects nest in a valid JSON text: its strings taken out,
    the deepest running count of its opening and closing brackets, in passes that run in
    C: walking the parsed value took 30 times as long (0.23 s of CPU for a 500 KB body of
    `{}`s, which `/v2/enqueue` reads before any key is checked: its key is inside)."""
    brackets = _JSON_STRING.sub("", text).encode("ascii", "ignore").translate(None, _NOT_A_BRACKET)
    steps = memoryview(brackets.translate(_LEVEL_STEP)).cast("b")
    return max(accumulate(steps), default=0)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


# Python converts at most this many digits to an int (its guard against quadratic time);
# past it, its own message would reach the caller, naming `sys.set_int_max_str_digits`.
INT_MAX_DIGITS = sys.get_int_max_str_digits()


def _bounded_int(text: str) -> int:
    if INT_MAX_DIGITS and len(text) - text.startswith("-") > INT_MAX_DIGITS:
        raise ValueError(f"a number has more than {INT_MAX_DIGITS} digits")
    return int(text)


# Made once: `json.loads` with these options builds a new decoder (and scanner) per call.
_DECODER = json.JSONDecoder(
    parse_constant=_no_constant, parse_float=_finite_float, parse_int=_bounded_int
)


async def read_json_object(request: Request, settings: Settings) -> dict[str, Any]:
    """The request body as a JSON object; RestError for anything else."""
    if (problem := unreadable_body(request.headers)) is not None:
        raise RestError(415, "UNSUPPORTED_MEDIA_TYPE", problem)
    body = await request.body()
    if len(body) > settings.max_body_bytes:
        raise RestError(
            413, "PAYLOAD_TOO_LARGE", f"The body exceeds {settings.max_body_bytes} bytes."
        )
    try:
        parsed = strict_json(body, max_depth=settings.max_json_depth)
    except UnicodeDecodeError:
        raise RestError(400, "INVALID_EVENT", "The body is not valid UTF-8.") from None
    except ValueError as exc:
        raise RestError(400, "INVALID_EVENT", f"The body is not valid JSON: {exc}.") from None
    if not isinstance(parsed, dict):
        raise RestError(400, "INVALID_EVENT", "The body must be a JSON object.")
    return parsed


def bearer_secret(request: Request) -> str | None:
    """The key from `Authorization: Bearer KEY` (PagerDuty's `Token token=KEY` too)."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "token" and value.strip().startswith("token="):
        return value.strip().removeprefix("token=") or None
    return None


async def require_principal(
    secret: str | None, scope: Scope, *, challenge: str = BEARER_CHALLENGE
) -> Principal:
    """Authenticate a presented key and check its scope, as RestError (401/403)."""
    try:
        return (await authenticate(secret=secret)).require(scope)
    except AuthError as exc:
        raise RestError.from_auth(exc, challenge=challenge) from None


ROUTING_KEY_NOT_FOUND = "Routing key not found"


async def routed_principal(body: Mapping[str, Any]) -> tuple[Service, Principal]:
    """The credential of PagerDuty's enqueue endpoints, the body's `routing_key`: its
    service, and the principal its events are sent as (`events:write` in the service's
    workspace, the actor "service:NAME"). A RestError when it is missing or not a string
    (400 `INVALID_EVENT` naming the field) or no service has it (`INVALID_ROUTING_KEY`)."""
    routing_key = body.get("routing_key")
    if routing_key is None or not isinstance(routing_key, str):
        problem = "is required" if routing_key is None else "must be a string"
        raise RestError.invalid(InvalidInput([FieldError("routing_key", problem)]))
    service = await auth.service_for_routing_key(routing_key=routing_key) if routing_key else None
    if service is None:
        raise RestError(400, "INVALID_ROUTING_KEY", ROUTING_KEY_NOT_FOUND)
    principal = Principal(
        key_id=f"routing:{service.id}",
        workspace_id=service.workspace_id,
        name=_actor(service.name),
        scopes=frozenset({Scope.EVENTS_WRITE}),
    )
    return service, principal


def _actor(service_name: str) -> str:
    """Who sent a routing key's events: "service:" and the service's name, cut to fit the
    actor columns (a name may be as long as they are)."""
    actor = f"{SERVICE_ACTOR_PREFIX}{service_name}"
    if len(actor) <= ACTOR_LENGTH:
        return actor
    return actor[: ACTOR_LENGTH - 1] + "…"


def only_known(raw: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The documented fields of a body, so unknown extras never break the mutation."""
    return {name: raw[name] for name in names if raw.get(name) is not None}
