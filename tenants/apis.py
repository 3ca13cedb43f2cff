"""The widget's configuration endpoint (docs/api.md) and the agent API's key check (docs/agents.md)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ApiError, ErrorCode
from core.serializers import ErrorSerializer
from tenants.access import ServerKeyAPIView
from tenants.models import Tenant
from tenants.rollout import SESSION_DELIVERIES, delivery_for, rollout_bucket
from tenants.selectors import tenant_get_active

# Where each way of talking to Brook lives; `{session_id}` and `{message_id}` are filled in by the widget.
ENDPOINT_PATHS = {
    "sessions": "/api/v1/sessions",
    "chat": "/api/v1/sessions/{session_id}/messages",
    "history": "/api/v1/sessions/{session_id}",
    "poll": "/api/v1/messages/{message_id}",
    "stream": "/api/v1/messages/{message_id}/stream",
    "websocket": "/ws/v1/sessions/{session_id}",
}


def widget_config(*, tenant: Tenant, request: Request, visitor_id: str) -> dict[str, Any]:
    """What the widget needs to start: who the tenant is, its features, the delivery this visitor gets (when the
    widget sends its visitor id), where to talk to and its limits."""
    http_base = f"{request.scheme}://{request.get_host()}"
    ws_base = ("wss" if request.is_secure() else "ws") + f"://{request.get_host()}"
    delivery = None
    if visitor_id:
        delivery = delivery_for(tenant=tenant, bucket=rollout_bucket(tenant_id=tenant.pk, visitor_key=visitor_id))
    return {
        "tenant": {"name": tenant.name, "public_key": tenant.public_key},
        "features": {
            "streaming_enabled": tenant.streaming_enabled,
            "streaming_percentage": tenant.streaming_percentage,
            "thought_visibility": tenant.thought_visibility,
        },
        "delivery": delivery,
        "endpoints": {
            name: (ws_base if name == "websocket" else http_base) + path for name, path in ENDPOINT_PATHS.items()
        },
        "limits": {
            "messages_per_minute": tenant.messages_per_minute,
            "max_stream_seconds": tenant.max_stream_seconds,
            "max_message_length": tenant.max_message_length,
            "max_streams_per_session": tenant.max_streams_per_session,
        },
    }


class WidgetConfigApi(APIView):
    """``GET /api/v1/widget/config?tenant=<public key>``: the widget's start-up configuration."""

    class WidgetConfigSerializer(serializers.Serializer[Any]):
        tenant = serializers.DictField()
        features = serializers.DictField()
        delivery = serializers.ChoiceField(
            choices=SESSION_DELIVERIES,
            allow_null=True,
            help_text="The delivery this visitor_id gets (sessions decide it the same way); null without one.",
        )
        endpoints = serializers.DictField(child=serializers.CharField())
        limits = serializers.DictField(child=serializers.IntegerField())

    @extend_schema(
        parameters=[
            OpenApiParameter("tenant", str, required=True, description="The tenant's public key."),
            OpenApiParameter("visitor_id", str, description="The widget's stable per-browser id (≤ 128 characters)."),
        ],
        responses={
            200: WidgetConfigSerializer,
            400: OpenApiResponse(ErrorSerializer),
            404: OpenApiResponse(ErrorSerializer),
        },
    )
    def get(self, request: Request) -> Response:
        key = request.query_params.get("tenant", "")
        if not key:
            raise ApiError(ErrorCode.INVALID_INPUT, "tenant: the tenant's public key is required.")
        visitor_id = request.query_params.get("visitor_id", "")
        if len(visitor_id) > 128:
            raise ApiError(ErrorCode.INVALID_INPUT, "visitor_id: at most 128 characters.")
        tenant = tenant_get_active(public_key=key)
        if tenant is None:
            raise ApiError(ErrorCode.TENANT_NOT_FOUND, "No active tenant has this key.", status_code=404)
        return Response(widget_config(tenant=tenant, request=request, visitor_id=visitor_id))


class ServerKeyApi(ServerKeyAPIView):
    """The key a server is calling with and its tenant: an orchestrator's check that its key works."""

    class ServerKeySerializer(serializers.Serializer[Any]):
        prefix = serializers.CharField(help_text="The key's visible part, bsk_ and 8 characters.")
        name = serializers.CharField()
        created_at = serializers.DateTimeField()
        last_used_at = serializers.DateTimeField(allow_null=True)

    class TenantSummarySerializer(serializers.Serializer[Any]):
        name = serializers.CharField()
        slug = serializers.CharField()
        public_key = serializers.CharField()
        agent = serializers.CharField()

    class ServerKeyInfoSerializer(serializers.Serializer[Any]):
        key = serializers.DictField()
        tenant = serializers.DictField()

    @extend_schema(responses={200: ServerKeyInfoSerializer, 401: OpenApiResponse(ErrorSerializer)})
    def get(self, request: Request) -> Response:
        return Response(
            {
                "key": self.ServerKeySerializer(self.server_key).data,
                "tenant": self.TenantSummarySerializer(self.tenant).data,
            }
        )
