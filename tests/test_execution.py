"""The short path for plain fields gives what graphql-core's own execution gives: the same
data in the same order and the same errors at the same paths, for good values and bad."""

from __future__ import annotations

import enum
import tracemalloc
from typing import Annotated, Any, NewType

import pytest
import strawberry
from graphql import ExecutionResult
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from schema.execution import ExecutionContext


@strawberry.enum
class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


# A scalar that answers None for a value it cannot show (graphql-core's own never do).
Note = NewType("Note", str)
NOTE = strawberry.scalar(name="Note", serialize=lambda value: None if value == "hidden" else value)


@strawberry.type
class Leaf:
    name: str
    count: int
    ratio: float | None
    colour: Colour
    tags: list[str]
    maybe_tags: list[str | None] | None
    note: Note

    @strawberry.field
    def shout(self, times: int = 1) -> str:
        return self.name.upper() * times

    @strawberry.field
    async def later(self) -> str:
        if self.name == "boom":
            raise ValueError("later failed")
        return self.name


@strawberry.type
class Twig:
    length: int


@strawberry.type
class Branch:
    label: str
    leaves: list[Leaf]
    first: Leaf | None
    root: Leaf
    either: Annotated[Leaf | Twig, strawberry.union("Either")] | None = None
    maybe: list[Leaf | None] | None = None


def leaf(**overrides: Any) -> Leaf:
    values: dict[str, Any] = {
        "name": "a", "count": 1, "ratio": 0.5, "colour": Colour.RED,
        "tags": ["x", "y"], "maybe_tags": ["z", None], "note": "n",
    }  # fmt: skip
    values.update(overrides)
    return Leaf(**values)


BRANCHES: dict[str, Branch] = {}


@strawberry.type
class Query:
    @strawberry.field
    def branch(self, key: str) -> Branch | None:
        return BRANCHES[key]


CONFIG = StrawberryConfig(scalar_map={Note: NOTE})
SCHEMAS = {
    "short": strawberry.Schema(
        query=Query, execution_context_class=ExecutionContext, config=CONFIG
    ),
    "usual": strawberry.Schema(
        query=Query, execution_context_class=StrawberryGraphQLCoreExecutionContext, config=CONFIG
    ),
}

EVERY_FIELD = """query($key: String!) {
  branch(key: $key) {
    label
    first { name colour }
    leaves {
      __typename name count ratio colour tags maybeTags note shout(times: 2)
      alias: name
      ... on Leaf { count tags }
      skipped: count @skip(if: true)
    }
  }
}"""


def outcome(result: ExecutionResult) -> tuple[Any, list[tuple[str, list[str | int]]]]:
    errors = [(error.message, list(error.path or [])) for error in result.errors or []]
    return result.data, errors


async def both(key: str, query: str = EVERY_FIELD) -> tuple[Any, Any]:
    results = [await SCHEMAS[name].execute(query, variable_values={"key": key}) for name in SCHEMAS]
    return outcome(results[0]), outcome(results[1])


@pytest.mark.parametrize(
    "leaves",
    [
        pytest.param([leaf(), leaf(name="b", ratio=None, maybe_tags=None)], id="good"),
        pytest.param([leaf(), leaf(name=None)], id="null in a non-null field"),
        pytest.param([leaf(count="many")], id="a value the scalar refuses"),
        pytest.param([leaf(tags=["x", None])], id="null in a list of non-null"),
        pytest.param([leaf(tags="xy")], id="a string where a list belongs"),
        pytest.param([leaf(colour="green")], id="not a member of the enum"),
        pytest.param([leaf(note="hidden")], id="a scalar that shows nothing"),
        pytest.param([leaf(count=ValueError("stored error"))], id="an exception as value"),
        pytest.param([], id="no leaves"),
    ],
)
async def test_same_data_and_errors_as_graphql_core(leaves: list[Leaf]) -> None:
    BRANCHES["k"] = Branch(
        label="top", leaves=leaves, first=leaves[0] if leaves else None, root=leaf()
    )
    short, usual = await both("k")
    assert short == usual
    data, errors = short
    if errors:  # a bad value: the error names its place, the page keeps the rest
        assert errors[0][1][:2] in (["branch", "leaves"], ["branch", "first"])
    elif leaves:
        first_leaf = data["branch"]["leaves"][0]
        assert list(first_leaf) == [
            "__typename", "name", "count", "ratio", "colour", "tags", "maybeTags", "note", "shout",
            "alias",
        ]  # fmt: skip
        assert first_leaf["colour"] == "RED" and first_leaf["shout"] == "AA"


OBJECT_FIELDS = """query($key: String!) {
  branch(key: $key) {
    __typename
    root { __typename name count later first: shout }
    label
    first { later name colour tags }
    either { __typename ... on Leaf { name later } ... on Twig { length } }
  }
}"""


@pytest.mark.parametrize(
    ("root", "first", "either"),
    [
        pytest.param(leaf(), leaf(name="b"), Twig(length=3), id="good"),
        pytest.param(leaf(), None, leaf(name="c"), id="a null object where one may be"),
        pytest.param(None, leaf(), None, id="a null object where one must be"),
        pytest.param(leaf(name=None), leaf(), None, id="an error inside a non-null object"),
        pytest.param(leaf(), leaf(count="many"), None, id="an error inside a nullable object"),
        pytest.param(leaf(name="boom"), leaf(), None, id="an awaited field failing, non-null"),
        pytest.param(leaf(), leaf(name="boom"), None, id="an awaited field failing, nullable"),
        pytest.param(leaf(), ValueError("stored"), None, id="an exception in place of an object"),
    ],
)
async def test_object_fields_and_type_names_as_graphql_core_gives_them(
    root: Any, first: Any, either: Any
) -> None:
    BRANCHES["o"] = Branch(label="top", leaves=[], first=first, root=root, either=either)
    short, usual = await both("o", OBJECT_FIELDS)
    assert short == usual
    data, errors = short
    if not errors:
        assert data["branch"]["__typename"] == "Branch"
        assert data["branch"]["root"] == {
            "__typename": "Leaf", "name": "a", "count": 1, "later": "a", "first": "A",
        }  # fmt: skip
    elif root is None or (root.name in (None, "boom")):  # the non-null root nulls the branch
        assert data == {"branch": None} and errors[0][1][:2] == ["branch", "root"]
    else:
        assert data["branch"]["first"] is None and errors[0][1][:2] == ["branch", "first"]


LIST_FIELDS = """query($key: String!) {
  branch(key: $key) {
    leaves { name later colour }
    label
    maybe { __typename name count later }
  }
}"""


@pytest.mark.parametrize(
    ("leaves", "maybe"),
    [
        pytest.param([leaf(), leaf(name="b")], [leaf(), None, leaf(name="c")], id="good"),
        pytest.param((leaf(),), (), id="tuples"),
        pytest.param([leaf(), None], None, id="a null item where one must be"),
        pytest.param([leaf(name=None)], None, id="an error inside an item that must be"),
        pytest.param([leaf()], [leaf(count="x"), leaf()], id="an error inside a nullable item"),
        pytest.param([leaf(name="boom")], None, id="an awaited field failing, item must be"),
        pytest.param([leaf()], [leaf(name="boom")], id="an awaited field failing, nullable"),
        pytest.param([leaf(), ValueError("x")], None, id="an exception in place of an item"),
        pytest.param("not a list", None, id="a string in place of a list"),
    ],
)
async def test_lists_of_objects_as_graphql_core_gives_them(leaves: Any, maybe: Any) -> None:
    BRANCHES["l"] = Branch(label="top", leaves=leaves, first=None, root=leaf(), maybe=maybe)
    short, usual = await both("l", LIST_FIELDS)
    assert short == usual
    data, errors = short
    if not errors:
        assert [item["name"] for item in data["branch"]["leaves"]] == [x.name for x in leaves]
        items = data["branch"]["maybe"]
        assert maybe is None or [item and item["later"] for item in items] == [
            item and item.name for item in maybe
        ]
    else:  # the error names its item; a failing item that must be nulls the branch
        place = errors[0][1]
        assert place[:2] in (["branch", "leaves"], ["branch", "maybe"])
        if place[1] == "leaves":
            assert data == {"branch": None}
        else:
            assert data["branch"]["maybe"][place[2]] is None


async def test_order_follows_the_query_with_plain_and_resolved_fields_mixed() -> None:
    BRANCHES["k"] = Branch(label="top", leaves=[leaf()], first=None, root=leaf())
    query = """query($key: String!) {
      branch(key: $key) { leaves { shout tags name shout2: shout(times: 3) count } label }
    }"""
    short, usual = await both("k", query)
    assert short == usual
    assert list(short[0]["branch"]) == ["leaves", "label"]
    assert list(short[0]["branch"]["leaves"][0]) == ["shout", "tags", "name", "shout2", "count"]


@strawberry.type
class Ticker:
    @strawberry.subscription
    async def leaves(self, count: int) -> Leaf:
        for number in range(count):
            yield leaf(name=str(number))


async def test_a_long_subscription_keeps_no_memory_per_event() -> None:
    schema = strawberry.Schema(
        query=Query, subscription=Ticker, execution_context_class=ExecutionContext, config=CONFIG
    )
    events = 3000
    stream = await schema.subscribe(
        "subscription($n: Int!) { leaves(count: $n) { name tags colour } }",
        variable_values={"n": events},
    )
    assert not isinstance(stream, ExecutionResult)
    tracemalloc.start()
    try:
        seen = 0
        async for result in stream:
            assert not result.errors and result.data == {
                "leaves": {"name": str(seen), "tags": ["x", "y"], "colour": "RED"}
            }
            seen += 1
            if seen == 500:
                before = tracemalloc.get_traced_memory()[0]
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert seen == events
    # graphql-core's own per-event executors kept about 1 KB for every event.
    assert (after - before) / (events - 500) < 100


@strawberry.type
class Plain:
    name: str
    tags: list[str]


@strawberry.type
class DictQuery:
    @strawberry.field
    def plain(self) -> Plain:
        return {"name": "from a dict", "tags": ["a"]}  # type: ignore[return-value]


async def test_fields_read_by_a_configured_default_resolver_take_it() -> None:
    """Plain fields read as the schema's own default resolver reads them (here, from dicts)."""
    config = StrawberryConfig(default_resolver=lambda source, name: source[name])
    results = [
        await strawberry.Schema(
            query=DictQuery, execution_context_class=context, config=config
        ).execute("{ plain { name tags } }")
        for context in (ExecutionContext, StrawberryGraphQLCoreExecutionContext)
    ]
    assert outcome(results[0]) == outcome(results[1])
    assert results[0].data == {"plain": {"name": "from a dict", "tags": ["a"]}}


class Deny(strawberry.BasePermission):
    message = "denied"

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        return False


@strawberry.type
class Guarded:
    secret: str = strawberry.field(permission_classes=[Deny], default="s3cret")
    inner: Twig | None = strawberry.field(permission_classes=[Deny], default=None)


@strawberry.type
class GuardedQuery:
    @strawberry.field
    def guarded(self) -> Guarded | None:
        return Guarded(inner=Twig(length=1))


async def test_a_plain_field_with_a_permission_class_runs_its_check() -> None:
    results = [
        await strawberry.Schema(query=GuardedQuery, execution_context_class=context).execute(
            "{ guarded { secret inner { length } } }"
        )
        for context in (ExecutionContext, StrawberryGraphQLCoreExecutionContext)
    ]
    assert outcome(results[0]) == outcome(results[1])
    assert results[0].errors and results[0].errors[0].message == "denied"
