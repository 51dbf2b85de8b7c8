from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models.agent import RunStatus, ToolCallDecision, ToolCallStatus
from models.approval import ApprovalStatus
from models.policy import PolicyAction
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0002_incidents')]

    operations = [
        ops.CreateModel(
            name='AgentEvent',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=40)),
                ('workspace', fields.ForeignKeyField('models.Workspace', source_field='workspace_id', db_constraint=True, to_field='id', related_name='agent_events', on_delete=OnDelete.CASCADE)),
                ('event_id', fields.CharField(max_length=200)),
                ('event_type', fields.CharField(max_length=32)),
                ('body_hash', fields.CharField(max_length=64)),
                ('body', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('response', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('run_ref', fields.CharField(null=True, max_length=40)),
                ('tool_call_ref', fields.CharField(null=True, max_length=40)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'agent_event', 'app': 'models', 'unique_together': (('workspace_id', 'event_id'),), 'pk_attr': 'id', 'table_description': 'One accepted agent event: its body hash and first response make `eventId` idempotent.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Policy',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=40)),
                ('workspace', fields.ForeignKeyField('models.Workspace', source_field='workspace_id', db_constraint=True, to_field='id', related_name='policies', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=200)),
                ('description', fields.TextField(null=True, unique=False)),
                ('action', fields.CharEnumField(description='ALLOW: ALLOW\nBLOCK: BLOCK\nREQUIRE_APPROVAL: REQUIRE_APPROVAL', enum_type=PolicyAction, max_length=24)),
                ('tool_name', fields.CharField(null=True, max_length=200)),
                ('action_hint', fields.CharField(null=True, max_length=200)),
                ('agent_id', fields.CharField(null=True, max_length=200)),
                ('input_matches', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('incident_open_on_service_from', fields.CharField(null=True, max_length=200)),
                ('dry_run', fields.BooleanField(default=False)),
                ('version', fields.IntField(default=1)),
                ('created_by', fields.CharField(null=True, max_length=200)),
                ('updated_by', fields.CharField(null=True, max_length=200)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'agent_policy', 'app': 'models', 'unique_together': (('workspace_id', 'name'),), 'pk_attr': 'id', 'table_description': 'One policy: empty conditions match everything, and `version` grows on each update.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Run',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=40)),
                ('workspace', fields.ForeignKeyField('models.Workspace', source_field='workspace_id', db_constraint=True, to_field='id', related_name='runs', on_delete=OnDelete.CASCADE)),
                ('run_key', fields.CharField(max_length=200)),
                ('agent_id', fields.CharField(max_length=200)),
                ('status', fields.CharEnumField(default=RunStatus.RUNNING, description='RUNNING: RUNNING\nCOMPLETED: COMPLETED\nFAILED: FAILED', enum_type=RunStatus, max_length=16)),
                ('task', fields.TextField(null=True, unique=False)),
                ('model', fields.CharField(null=True, max_length=200)),
                ('reason', fields.TextField(null=True, unique=False)),
                ('agent_context', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('error', fields.TextField(null=True, unique=False)),
                ('service', fields.CharField(null=True, max_length=200)),
                ('environment', fields.CharField(null=True, max_length=200)),
                ('started_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('ended_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'agent_run', 'app': 'models', 'unique_together': (('workspace_id', 'run_key'),), 'indexes': [Index(fields=['workspace_id', 'started_at', 'id']), Index(fields=['workspace_id', 'agent_id'])], 'pk_attr': 'id', 'table_description': "One agent run, known to the agent by its own `run_key` (the wire's `runId`)."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ToolCall',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=40)),
                ('workspace', fields.ForeignKeyField('models.Workspace', source_field='workspace_id', db_constraint=True, to_field='id', related_name='tool_calls', on_delete=OnDelete.CASCADE)),
                ('run', fields.ForeignKeyField('models.Run', source_field='run_id', db_constraint=True, to_field='id', related_name='tool_calls', on_delete=OnDelete.CASCADE)),
                ('call_key', fields.CharField(max_length=200)),
                ('agent_id', fields.CharField(max_length=200)),
                ('tool_name', fields.CharField(max_length=200)),
                ('action_hint', fields.CharField(null=True, max_length=200)),
                ('input_payload', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('output_payload', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('reason', fields.TextField(null=True, unique=False)),
                ('agent_context', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('service', fields.CharField(null=True, max_length=200)),
                ('environment', fields.CharField(null=True, max_length=200)),
                ('decision', fields.CharEnumField(description='ALLOWED: ALLOWED\nBLOCKED: BLOCKED\nAWAITING_APPROVAL: AWAITING_APPROVAL', enum_type=ToolCallDecision, max_length=24)),
                ('decision_reason', fields.TextField(unique=False)),
                ('matched_policies', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('status', fields.CharEnumField(description='ALLOWED: ALLOWED\nBLOCKED: BLOCKED\nAWAITING_APPROVAL: AWAITING_APPROVAL\nAPPROVED: APPROVED\nREJECTED: REJECTED\nEXPIRED: EXPIRED\nCOMPLETED: COMPLETED\nFAILED: FAILED', enum_type=ToolCallStatus, max_length=24)),
                ('violation', fields.TextField(null=True, unique=False)),
                ('error', fields.TextField(null=True, unique=False)),
                ('called_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('ended_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'agent_tool_call', 'app': 'models', 'unique_together': (('run_id', 'call_key'),), 'indexes': [Index(fields=['workspace_id', 'service', 'called_at']), Index(fields=['workspace_id', 'called_at', 'id'])], 'pk_attr': 'id', 'table_description': 'One tool call of a run, with the policy decision taken on it.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Approval',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=40)),
                ('workspace', fields.ForeignKeyField('models.Workspace', source_field='workspace_id', db_constraint=True, to_field='id', related_name='approvals', on_delete=OnDelete.CASCADE)),
                ('run', fields.ForeignKeyField('models.Run', source_field='run_id', db_constraint=True, to_field='id', related_name='approvals', on_delete=OnDelete.CASCADE)),
                ('tool_call', fields.ForeignKeyField('models.ToolCall', source_field='tool_call_id', db_constraint=True, to_field='id', related_name='approvals', on_delete=OnDelete.CASCADE)),
                ('status', fields.CharEnumField(default=ApprovalStatus.PENDING, description='PENDING: PENDING\nAPPROVED: APPROVED\nREJECTED: REJECTED\nEXPIRED: EXPIRED', enum_type=ApprovalStatus, max_length=16)),
                ('reason', fields.TextField(unique=False)),
                ('requested_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('decided_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('decided_by', fields.CharField(null=True, max_length=200)),
                ('comment', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'agent_approval', 'app': 'models', 'indexes': [Index(fields=['workspace_id', 'status', 'requested_at']), Index(fields=['workspace_id', 'requested_at', 'id']), Index(fields=['status', 'expires_at'])], 'pk_attr': 'id', 'table_description': 'One approval request: pending until decided by a person or expired (never approved).'},
            bases=['Model'],
        ),
    ]
