"""The widget's session and message endpoints (docs/api.md). Thin: validate, call a service, serialize."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import selectors, services
from chat.access import SessionScopedAPIView
from chat.models import ChatSession, Delivery, FallbackReason
from chat.serializers import SessionSerializer
from chat.tokens import TokenKind, session_token_issue
from core.errors import ApiError, ErrorCode
from core.limits import Rate, client_ip, rate_check
from core.serializers import TextField, error_responses
from tenants.rollout import SESSION_DELIVERIES
from tenants.selectors import tenant_get_active

_ERRORS = error_responses(400, 401, 404, 409, 429)


class StreamTokenSerializer(serializers.Serializer[Any]):
    token = serializers.CharField(help_text="A short-lived token for URLs (EventSource, WebSocket): ?token=...")
    expires_at = serializers.DateTimeField()


def stream_token_body(session: ChatSession) -> dict[str, Any]:
    token, expires_at = session_token_issue(tenant_id=session.tenant_id, session_id=session.id, kind=TokenKind.STREAM)
    return {"token": token, "expires_at": expires_at}


class SessionCreateApi(APIView):
    """Start a session for a tenant's widget; the response's token opens every session route."""

    class SessionCreateInputSerializer(serializers.Serializer[Any]):
        tenant = TextField(max_length=64, help_text="The tenant's public key (the widget's data-tenant).")
        visitor_id = TextField(max_length=128, required=False, allow_blank=True, default="")

    class SessionCreatedSerializer(serializers.Serializer[Any]):
        id = serializers.UUIDField()
        token = serializers.CharField(help_text="The session token: send it as 'Authorization: Bearer <token>'.")
        token_expires_at = serializers.DateTimeField()
        stream_token = StreamTokenSerializer()
        visitor_id = serializers.CharField()
        delivery = serializers.ChoiceField(
            choices=SESSION_DELIVERIES, help_text="How this session gets replies, decided by the rollout."
        )
        created_at = serializers.DateTimeField()

    @extend_schema(request=SessionCreateInputSerializer, responses={201: SessionCreatedSerializer, **_ERRORS})
    def post(self, request: Request) -> Response:
        data = self.SessionCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tenant = tenant_get_active(public_key=data.validated_data["tenant"])
        if tenant is None:
            raise ApiError(ErrorCode.TENANT_NOT_FOUND, "No active tenant has this key.", status_code=404)
        ip = client_ip(request.META)
        rate_check(Rate("session-create", f"{tenant.pk}:{ip}", tenant.sessions_per_ip_per_minute, "new conversations"))
        session = services.session_create(tenant=tenant, visitor_id=data.validated_data["visitor_id"])
        token, expires_at = session_token_issue(tenant_id=tenant.pk, session_id=session.id)
        body = {
            "id": session.id,
            "token": token,
            "token_expires_at": expires_at,
            "stream_token": stream_token_body(session),
            "visitor_id": session.visitor_id,
            "delivery": session.delivery,
            "created_at": session.created_at,
        }
        return Response(self.SessionCreatedSerializer(body).data, status=status.HTTP_201_CREATED)


class StreamTokenApi(SessionScopedAPIView):
    """A fresh short-lived stream token for the session, for URLs that cannot carry a header."""

    @extend_schema(request=None, responses={201: StreamTokenSerializer, **_ERRORS})
    def post(self, request: Request, session_id: str) -> Response:
        session = self.get_session(session_id)
        return Response(StreamTokenSerializer(stream_token_body(session)).data, status=status.HTTP_201_CREATED)


class FallbackCreateApi(SessionScopedAPIView):
    """The widget reports that it fell back from one transport to another; stored and counted per tenant."""

    class FallbackInputSerializer(serializers.Serializer[Any]):
        reason = serializers.ChoiceField(choices=FallbackReason.choices)
        from_delivery = serializers.ChoiceField(choices=Delivery.choices)
        to_delivery = serializers.ChoiceField(choices=Delivery.choices)
        message_id = TextField(max_length=64, required=False, allow_blank=True, default="")
        detail = TextField(max_length=500, required=False, allow_blank=True, default="")

    class FallbackSerializer(serializers.Serializer[Any]):
        id = serializers.IntegerField()
        code = serializers.CharField(help_text="STREAM_001 … STREAM_005, from the reason.")
        reason = serializers.CharField()
        from_delivery = serializers.CharField()
        to_delivery = serializers.CharField()
        created_at = serializers.DateTimeField()

    @extend_schema(request=FallbackInputSerializer, responses={201: FallbackSerializer, **_ERRORS})
    def post(self, request: Request, session_id: str) -> Response:
        session = self.get_session(session_id)
        data = self.FallbackInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        if fields["from_delivery"] == fields["to_delivery"]:
            raise ApiError(ErrorCode.INVALID_INPUT, "from_delivery and to_delivery must differ.")
        message = None
        if fields["message_id"]:
            message = self.get_message(fields["message_id"])
        report = services.fallback_report(
            session=session,
            reason=FallbackReason(fields["reason"]),
            from_delivery=fields["from_delivery"],
            to_delivery=fields["to_delivery"],
            message=message,
            detail=fields["detail"],
        )
        return Response(self.FallbackSerializer(report).data, status=status.HTTP_201_CREATED)


class SessionDetailApi(SessionScopedAPIView):
    """A session with its whole history, each message with its thought steps."""

    @extend_schema(responses={200: SessionSerializer, **_ERRORS})
    def get(self, request: Request, session_id: str) -> Response:
        session = self.get_session(session_id)
        messages = selectors.session_messages(session=session)
        context = {"messages": messages, "visibility": session.tenant.thought_visibility}
        return Response(SessionSerializer(session, context=context).data)
