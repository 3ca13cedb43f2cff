"""How sessions, messages and thought steps look in the API (shared by every endpoint that returns them).

See docs/api.md.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from chat.models import ChatSession, Message, ThoughtStep
from chat.visibility import redact_message
from core.serializers import ErrorSerializer


class StepSerializer(serializers.ModelSerializer[ThoughtStep]):
    class Meta:
        model = ThoughtStep
        fields = ["index", "kind", "title", "detail", "status", "started_at", "duration_ms", "metadata"]


class UsageSerializer(serializers.Serializer[Any]):
    prompt_tokens = serializers.IntegerField(allow_null=True)
    completion_tokens = serializers.IntegerField(allow_null=True)
    reasoning_tokens = serializers.IntegerField(allow_null=True)


class MessageSerializer(serializers.ModelSerializer[Message]):
    """A message with its thought steps; ``error`` is set only for a failed reply.

    Its context must name the tenant's ``visibility``: what the tenant hides is left out (chat/visibility.py).
    """

    steps = StepSerializer(many=True, read_only=True)
    error = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = [
            "id",
            "role",
            "status",
            "content",
            "reasoning",
            "steps",
            "error",
            "client_message_id",
            "reply_to",
            "model",
            "usage",
            "time_to_first_token_ms",
            "duration_ms",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def to_representation(self, instance: Message) -> dict[str, Any]:
        return redact_message(dict(super().to_representation(instance)), self.context["visibility"])

    @extend_schema_field(ErrorSerializer(allow_null=True))
    def get_error(self, message: Message) -> dict[str, str] | None:
        if not message.error_code:
            return None
        return {"code": message.error_code, "message": message.error_message}

    @extend_schema_field(UsageSerializer)
    def get_usage(self, message: Message) -> dict[str, int | None]:
        return {
            "prompt_tokens": message.prompt_tokens,
            "completion_tokens": message.completion_tokens,
            "reasoning_tokens": message.reasoning_tokens,
        }


class SessionSerializer(serializers.ModelSerializer[ChatSession]):
    """A session and its history, oldest message first."""

    messages = serializers.SerializerMethodField()

    class Meta:
        model = ChatSession
        fields = ["id", "visitor_id", "created_at", "last_activity_at", "messages"]

    @extend_schema_field(MessageSerializer(many=True))
    def get_messages(self, session: ChatSession) -> list[dict[str, Any]]:
        messages = self.context["messages"]
        return list(MessageSerializer(messages, many=True, context={"visibility": self.context["visibility"]}).data)
