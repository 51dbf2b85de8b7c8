from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models.incident import IncidentStatus, Severity
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    operations = [
        ops.CreateModel(
            name='Incident',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=40)),
                ('workspace', fields.ForeignKeyField('models.Workspace', source_field='workspace_id', db_constraint=True, to_field='id', related_name='incidents', on_delete=OnDelete.CASCADE)),
                ('service', fields.ForeignKeyField('models.Service', source_field='service_id', db_constraint=True, to_field='id', related_name='incidents', on_delete=OnDelete.CASCADE)),
                ('dedup_key', fields.CharField(max_length=255)),
                ('open_marker', fields.SmallIntField(null=True, default=1)),
                ('status', fields.CharEnumField(default=IncidentStatus.TRIGGERED, description='TRIGGERED: triggered\nACKNOWLEDGED: acknowledged\nRESOLVED: resolved', enum_type=IncidentStatus, max_length=16)),
                ('alert_count', fields.IntField(default=1)),
                ('opened_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('last_seen_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('acknowledged_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('acknowledged_by', fields.CharField(null=True, max_length=200)),
                ('resolved_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('resolved_by', fields.CharField(null=True, max_length=200)),
                ('summary', fields.TextField(unique=False)),
                ('source', fields.CharField(max_length=255)),
                ('severity', fields.CharEnumField(description='CRITICAL: critical\nERROR: error\nWARNING: warning\nINFO: info', enum_type=Severity, max_length=16)),
                ('sent_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('component', fields.CharField(null=True, max_length=255)),
                ('alert_group', fields.CharField(null=True, max_length=255)),
                ('event_class', fields.CharField(null=True, max_length=255)),
                ('custom_details', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('images', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('links', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('client', fields.CharField(null=True, max_length=255)),
                ('client_url', fields.CharField(null=True, max_length=2048)),
            ],
            options={'table': 'incident', 'app': 'models', 'unique_together': (('service_id', 'dedup_key', 'open_marker'),), 'indexes': [Index(fields=['workspace_id', 'opened_at', 'id']), Index(fields=['service_id', 'dedup_key', 'opened_at'])], 'pk_attr': 'id', 'table_description': 'One incident: every trigger with its dedup key on its service while it is open.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='IncidentAlert',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('incident', fields.ForeignKeyField('models.Incident', source_field='incident_id', db_constraint=True, to_field='id', related_name='alerts', on_delete=OnDelete.CASCADE)),
                ('received_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('actor', fields.CharField(null=True, max_length=200)),
                ('summary', fields.TextField(unique=False)),
                ('source', fields.CharField(max_length=255)),
                ('severity', fields.CharEnumField(description='CRITICAL: critical\nERROR: error\nWARNING: warning\nINFO: info', enum_type=Severity, max_length=16)),
                ('sent_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('component', fields.CharField(null=True, max_length=255)),
                ('alert_group', fields.CharField(null=True, max_length=255)),
                ('event_class', fields.CharField(null=True, max_length=255)),
                ('custom_details', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('images', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('links', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('client', fields.CharField(null=True, max_length=255)),
                ('client_url', fields.CharField(null=True, max_length=2048)),
            ],
            options={'table': 'incident_alert', 'app': 'models', 'indexes': [Index(fields=['incident_id', 'received_at', 'id'])], 'pk_attr': 'id', 'table_description': 'One trigger event as received, the alert history of its incident.'},
            bases=['Model'],
        ),
    ]
