from django.apps import AppConfig


class StreamingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "streaming"

    def ready(self) -> None:
        from streaming.agents.registry import check_configured  # the app registry is ready only now

        check_configured()  # a BROOK_AGENTS entry that does not import stops the start (docs/agents.md)
