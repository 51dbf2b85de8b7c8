from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models.change import ChangeCategory
from models.timeline import TimelineKind
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='Workspace',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=40)),
                ('name', fields.CharField(max_length=200)),
                ('timeline_seq', fields.BigIntField(default=0)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'workspace', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A tenant: everything else belongs to exactly one workspace.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ApiKey',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=40)),
                ('workspace', fields.ForeignKeyField('models.Workspace', source_field='workspace_id', db_constraint=True, to_field='id', related_name='api_keys', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=200)),
                ('prefix', fields.CharField(max_length=16)),
                ('key_hash', fields.CharField(unique=True, max_length=64)),
                ('scopes', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'api_key', 'app': 'models', 'pk_attr': 'id', 'table_description': 'An API key: only its SHA-256 hash and a short visible prefix are stored.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Change',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=40)),
                ('workspace', fields.ForeignKeyField('models.Workspace', source_field='workspace_id', db_constraint=True, to_field='id', related_name='changes', on_delete=OnDelete.CASCADE)),
                ('name', fields.TextField(unique=False)),
                ('occurred_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('category', fields.CharEnumField(description='BUSINESS: BUSINESS\nTECHNICAL: TECHNICAL\nPROVIDER: PROVIDER', enum_type=ChangeCategory, max_length=16)),
                ('source', fields.CharField(max_length=200)),
                ('environment', fields.CharField(null=True, max_length=200)),
                ('service', fields.CharField(null=True, max_length=200)),
                ('labels', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('metadata', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('links', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('actor', fields.CharField(null=True, max_length=200)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'change', 'app': 'models', 'indexes': [Index(fields=['workspace_id', 'service', 'occurred_at'])], 'pk_attr': 'id', 'table_description': 'One change event, as posted to `POST /events` or `POST /v2/change/enqueue`.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Service',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=40)),
                ('workspace', fields.ForeignKeyField('models.Workspace', source_field='workspace_id', db_constraint=True, to_field='id', related_name='services', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=200)),
                ('routing_key_hash', fields.CharField(unique=True, max_length=64)),
                ('routing_key_prefix', fields.CharField(max_length=16)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'service', 'app': 'models', 'unique_together': (('workspace_id', 'name'),), 'pk_attr': 'id', 'table_description': 'A service that incidents and changes attach to, with a hashed routing key.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='TimelineEntry',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('workspace', fields.ForeignKeyField('models.Workspace', source_field='workspace_id', db_constraint=True, to_field='id', related_name='timeline', on_delete=OnDelete.CASCADE)),
                ('seq', fields.BigIntField()),
                ('kind', fields.CharEnumField(description='CHANGE: CHANGE\nINCIDENT_TRIGGERED: INCIDENT_TRIGGERED\nINCIDENT_UPDATED: INCIDENT_UPDATED\nINCIDENT_ACKNOWLEDGED: INCIDENT_ACKNOWLEDGED\nINCIDENT_RESOLVED: INCIDENT_RESOLVED\nINCIDENT_DROPPED: INCIDENT_DROPPED\nINCIDENT_ANNOTATED: INCIDENT_ANNOTATED\nRUN_STARTED: RUN_STARTED\nRUN_COMPLETED: RUN_COMPLETED\nRUN_FAILED: RUN_FAILED\nTOOL_CALLED: TOOL_CALLED\nTOOL_COMPLETED: TOOL_COMPLETED\nTOOL_FAILED: TOOL_FAILED\nAPPROVAL_REQUESTED: APPROVAL_REQUESTED\nAPPROVAL_DECIDED: APPROVAL_DECIDED\nAPPROVAL_EXPIRED: APPROVAL_EXPIRED\nPOLICY_VIOLATION: POLICY_VIOLATION', enum_type=TimelineKind, max_length=32)),
                ('occurred_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('summary', fields.TextField(unique=False)),
                ('service', fields.CharField(null=True, max_length=200)),
                ('environment', fields.CharField(null=True, max_length=200)),
                ('labels', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('actor', fields.CharField(null=True, max_length=200)),
                ('details', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('subject_type', fields.CharField(null=True, max_length=32)),
                ('subject_id', fields.CharField(null=True, max_length=40)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'timeline_entry', 'app': 'models', 'unique_together': (('workspace_id', 'seq'),), 'indexes': [Index(fields=['workspace_id', 'occurred_at', 'id']), Index(fields=['workspace_id', 'service', 'occurred_at', 'id']), Index(fields=['workspace_id', 'kind', 'occurred_at', 'id']), Index(fields=['subject_type', 'subject_id'])], 'pk_attr': 'id', 'table_description': "One happening on a workspace's timeline."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='TimelineLabel',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('entry', fields.ForeignKeyField('models.TimelineEntry', source_field='entry_id', db_constraint=True, to_field='id', related_name='label_rows', on_delete=OnDelete.CASCADE)),
                ('workspace_id', fields.CharField(max_length=40)),
                ('label', fields.CharField(max_length=200)),
            ],
            options={'table': 'timeline_label', 'app': 'models', 'indexes': [Index(fields=['workspace_id', 'label', 'entry_id'])], 'pk_attr': 'id', 'table_description': 'One label of one entry, so label filters use an index instead of scanning JSON.'},
            bases=['Model'],
        ),
    ]
