"""Fields a mutation's answer can reach that need the `read` scope, checked before the
mutation runs.

A key that only posts events (`events:write`: an agent's, a monitor's) sees what its own
event stored, not a run's other tool calls or an incident's alerts, timeline and suspect
changes (the fields check `read` themselves). Checked only there, a mutation selecting one
would commit and then answer FORBIDDEN with no data (its root field is non-null): a client
retrying it would send the event again. So such a mutation is refused before it runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    OperationDefinitionNode,
    SelectionSetNode,
)
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from resolvers.auth import Scope

# Their names appear on no other type a mutation's answer can reach (Run.toolCalls;
# Incident.alerts, timeline, suspectChanges; Query and Subscription are not reachable).
READ_FIELDS = frozenset({"toolCalls", "alerts", "timeline", "suspectChanges"})


def selects_read_fields(document: DocumentNode) -> bool:
    """Whether any operation or fragment of `document` selects one of READ_FIELDS."""
    sets = [
        definition.selection_set
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode | FragmentDefinitionNode)
    ]
    while sets:
        for selection in sets.pop().selections:
            if isinstance(selection, FieldNode) and selection.name.value in READ_FIELDS:
                return True
            nested = getattr(selection, "selection_set", None)
            if isinstance(nested, SelectionSetNode):
                sets.append(nested)
    return False


class ReadScopedAnswers(SchemaExtension):
    """Refuse, before it runs, a mutation whose answer selects READ_FIELDS for a key
    without `read` (the error the field itself would give)."""

    async def on_execute(self) -> AsyncIterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if (
            document is not None
            and context.operation_type is OperationType.MUTATION
            and selects_read_fields(document)
        ):
            try:
                await context.context.require(Scope.READ)
            except GraphQLError as refused:
                context.result = ExecutionResult(data=None, errors=[refused])
        yield
