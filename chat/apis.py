"""The widget's session and message endpoints (docs/api.md). Thin: validate, call a service, serialize."""

from __future__ import annotations

from typing import Any

from django.http.response import HttpResponseBase
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import selectors, services
from chat.access import SessionScopedAPIView, require_streaming
from chat.models import ChatSession, Delivery, FallbackReason, Role
from chat.serializers import ErrorSerializer, MessageSerializer, SessionSerializer, TextField
from chat.tokens import TokenKind, session_token_issue
from config.errors import ApiError, ErrorCode
from streaming import runner
from streaming.db import wait_released
from streaming.dispatch import send_message
from streaming.services import CancelOutcome
from streaming.views import sse_response, stream_slot
from tenants.limits import Rate, client_ip, rate_check
from tenants.rollout import SESSION_DELIVERIES
from tenants.selectors import tenant_get_active

_ERRORS = {code: OpenApiResponse(ErrorSerializer) for code in (400, 401, 404, 409, 429)}


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


def message_urls(request: Request, message_id: str) -> dict[str, str]:
    base = f"/api/v1/messages/{message_id}"
    return {
        "poll": request.build_absolute_uri(base),
        "stream": request.build_absolute_uri(f"{base}/stream"),
        "cancel": request.build_absolute_uri(f"{base}/cancel"),
    }


class MessageCreateApi(SessionScopedAPIView):
    """Send the visitor's message. ``batch``: 200 with the finished reply. ``poll``: 202 with where to poll.
    ``stream``: the reply's events as ``text/event-stream`` (fetch streaming)."""

    class MessageCreateInputSerializer(serializers.Serializer[Any]):
        content = TextField(trim_whitespace=False, allow_blank=True)
        client_message_id = TextField(max_length=128, required=False, allow_blank=True, default="")
        mode = serializers.ChoiceField(choices=["batch", "poll", "stream"], default="batch")

    class MessageAcceptedSerializer(serializers.Serializer[Any]):
        id = serializers.UUIDField()
        status = serializers.CharField()
        reply_to = serializers.UUIDField()
        urls = serializers.DictField(child=serializers.URLField())

    @extend_schema(
        request=MessageCreateInputSerializer,
        responses={
            200: MessageSerializer,
            202: MessageAcceptedSerializer,
            **_ERRORS,
            403: OpenApiResponse(ErrorSerializer),
        },
    )
    def post(self, request: Request, session_id: str) -> HttpResponseBase:
        session = self.get_session(session_id)
        data = self.MessageCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        mode = data.validated_data["mode"]
        slot = None
        if mode == Delivery.STREAM:
            require_streaming(session)
            slot = stream_slot(session)  # before anything is stored: a 429 here leaves nothing half-started
        try:
            submitted = wait_released(send_message)(
                session=session,
                content=data.validated_data["content"],
                client_message_id=data.validated_data["client_message_id"] or None,
                delivery=mode,
            )
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        reply = selectors.message_get_with_steps(message_id=submitted.reply.id)
        if mode == Delivery.BATCH:
            return Response(MessageSerializer(reply, context={"visibility": session.tenant.thought_visibility}).data)
        if mode == Delivery.STREAM:
            return wait_released(sse_response)(selectors.message_with_tenant(message_id=reply.id), 0, slot=slot)
        body = {
            "id": reply.id,
            "status": reply.status,
            "reply_to": reply.reply_to_id,
            "urls": message_urls(request, str(reply.id)),
        }
        return Response(self.MessageAcceptedSerializer(body).data, status=status.HTTP_202_ACCEPTED)


class MessageCancelApi(SessionScopedAPIView):
    """Stop a reply, wherever it runs; idempotent. 202 while it stops, 200 once it has ended."""

    class MessageCancelSerializer(serializers.Serializer[Any]):
        id = serializers.UUIDField()
        status = serializers.CharField()
        outcome = serializers.CharField()

    @extend_schema(request=None, responses={200: MessageCancelSerializer, 202: MessageCancelSerializer, **_ERRORS})
    def post(self, request: Request, message_id: str) -> Response:
        message = self.get_message(message_id)
        if message.role != Role.ASSISTANT:
            raise ApiError(ErrorCode.INVALID_INPUT, "Only an assistant reply can be cancelled.")
        outcome = wait_released(runner.cancel)(message.id)
        message.refresh_from_db(fields=["status"])
        body = {"id": message.id, "status": message.status, "outcome": outcome}
        code = status.HTTP_202_ACCEPTED if outcome == CancelOutcome.REQUESTED else status.HTTP_200_OK
        return Response(self.MessageCancelSerializer(body).data, status=code)
