"""The event log's model now lives in chat (chat 0004); its table and rows stay where they are."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("streaming", "0001_initial"),
        ("chat", "0004_event_moves_to_chat"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="Event")],
            database_operations=[],
        ),
    ]
