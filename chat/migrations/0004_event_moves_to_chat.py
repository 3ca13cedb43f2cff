"""The event log's model moves from the streaming app to chat (issue 14), keeping its table ``streaming_event`` and
every row: only Django's state changes. The ``streaming.event`` content type is renamed, so permissions and admin
history that point at it follow the model (content types are created after migrations, so ``chat.event`` cannot exist
yet when this runs on a database that had ``streaming.event``).

Until streaming 0002 runs, the migration state has both models on the one table: a later chat migration that touches
``Event`` must depend on ``("streaming", "0002_event_moves_to_chat")`` too."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


def rename_content_type(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    if ContentType.objects.using(db).filter(app_label="chat", model="event").exists():
        return
    ContentType.objects.using(db).filter(app_label="streaming", model="event").update(app_label="chat")


def restore_content_type(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    if ContentType.objects.using(db).filter(app_label="streaming", model="event").exists():
        return
    ContentType.objects.using(db).filter(app_label="chat", model="event").update(app_label="streaming")


class Migration(migrations.Migration):

    dependencies = [
        ("chat", "0003_message_started_index"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("streaming", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Event",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("seq", models.PositiveIntegerField()),
                        ("type", models.CharField(max_length=32)),
                        ("data", models.JSONField(default=dict)),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                        (
                            "message",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE, related_name="events", to="chat.message"
                            ),
                        ),
                    ],
                    options={
                        "db_table": "streaming_event",
                        "ordering": ["message", "seq"],
                        "constraints": [
                            models.UniqueConstraint(fields=("message", "seq"), name="event_seq_per_message")
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(rename_content_type, restore_content_type),
    ]
