from tortoise import migrations


class Migration(migrations.Migration):
    dependencies = [("models", "0001_initial")]

    operations: list = []
