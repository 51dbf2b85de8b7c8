from tortoise import migrations


class Migration(migrations.Migration):
    dependencies = [("models", "0002_incidents")]

    operations: list = []
