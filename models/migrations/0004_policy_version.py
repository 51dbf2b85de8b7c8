from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0003_agents')]

    operations = [
        ops.AddField(
            model_name='Workspace',
            name='policy_version',
            field=fields.BigIntField(default=0, db_default=0),
        ),
    ]
