"""Which GraphQL errors are the server's fault: only those are logged (with a traceback,
never the query text, which may carry keys inline) and masked in production mode.

Errors meant for the caller are not: parse and validation errors (no path; a scalar's
ValueError for a bad literal or variable included), public errors raised as GraphQLError,
and input no database can take: a value too long for its column, text with a lone
surrogate (both reported as BAD_USER_INPUT). An unreachable database is reported as
UNAVAILABLE (retry shortly), as the REST endpoints answer 503.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator

import strawberry
from asyncpg.exceptions import DataError  # type: ignore[import-untyped]
from graphql import DocumentNode, GraphQLError, parse
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext
from strawberry.types.execution import StreamExecutionResult

from opsgraph.db import database_unavailable
from resolvers.batching import bad_value

log = logging.getLogger("opsgraph.graphql")

_FIELD = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*): ")


# The codes of errors in the request itself, as Apollo Server names them: a clear code for
# clients that branch on `extensions.code`, beside the codes the resolvers give.
PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"


def coded(error: GraphQLError, code: str) -> GraphQLError:
    """`error` with `extensions.code` set to `code` unless it has one (changed in place: the
    same error object may already be in a result being built)."""
    if not (error.extensions or {}).get("code"):
        error.extensions = {**(error.extensions or {}), "code": code}
    return error


def refused(exc: BaseException | None) -> bool:
    """Input the database or its driver refuses (`resolvers.batching.bad_value`). Only the
    caller's input gets here: ours is always valid."""
    return bad_value(exc)


def unexpected(error: GraphQLError) -> bool:
    """An exception raised while resolving a field, not one meant for the caller."""
    original = error.original_error
    return (
        error.path is not None
        and original is not None
        and not isinstance(original, GraphQLError)
        and not refused(original)
        and not database_unavailable(original)
    )


class OpsgraphSchema(strawberry.Schema):
    """A Strawberry schema that logs unexpected errors only, with the parse (and cache) its
    operations are parsed with, for a look at a request's document before execution."""

    parse_document: Callable[..., DocumentNode] = staticmethod(parse)

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            where = ".".join(str(part) for part in error.path or [])
            if unexpected(error):
                log.error("unexpected error in %s", where, exc_info=error.original_error)
            elif error.original_error is not None and database_unavailable(error.original_error):
                log.warning("database unavailable in %s: %s", where, error.original_error)
            elif refused(error.original_error):  # the kind only: the value may be a secret
                kind = type(error.original_error).__name__
                log.warning("input refused by the database in %s (%s)", where, kind)


def refused_message(exc: BaseException | None) -> str:
    """What to tell the caller about a value the database refused (never the value)."""
    if isinstance(exc, UnicodeEncodeError) or isinstance(exc and exc.__cause__, DataError):
        return "a value cannot be used as given (a lone surrogate, NUL or a number out of range)."
    match = _FIELD.match(str(exc))
    field = match.group(1) if match else "a value"
    return f"{field}: the value is too long or not valid here."


def _public(error: GraphQLError, message: str, code: str) -> GraphQLError:
    """The same error, located as it was, with a message and code meant for the caller."""
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={"code": code},
    )


def _for_caller(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    if refused(original):
        return _public(error, refused_message(original), "BAD_USER_INPUT")
    if original is not None and database_unavailable(original):
        return _public(error, "The database is unavailable; retry shortly.", "UNAVAILABLE")
    return error


def _tell_caller(result: object) -> None:
    errors = getattr(result, "errors", None)
    if errors:
        result.errors = [_for_caller(error) for error in errors]  # type: ignore[attr-defined]


class RefusedValues(SchemaExtension):
    """An argument the database refuses for its column (an id longer than any id, say) is
    the caller's input error, not a server fault; an unreachable database is not a fault
    of the query either. Both are told as such, not masked (nor in the driver's words),
    in a query's result and in each event of a subscription. Runs before MaskErrors."""

    def on_execute(self) -> Iterator[None]:
        yield
        _tell_caller(self.execution_context.result)

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        _tell_caller(result)
        yield
