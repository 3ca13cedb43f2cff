"""The widget's session and message endpoints (docs/api.md). Thin: validate, call a service, serialize."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import selectors, services
from chat.access import SessionScopedAPIView
from chat.serializers import ErrorSerializer, MessageSerializer, SessionSerializer
from chat.tokens import session_token_issue
from config.errors import ApiError, ErrorCode
from tenants.selectors import tenant_get_active

_ERRORS = {code: OpenApiResponse(ErrorSerializer) for code in (400, 401, 404, 409)}


class SessionCreateApi(APIView):
    """Start a session for a tenant's widget; the response's token opens every session route."""

    class InputSerializer(serializers.Serializer[Any]):
        tenant = serializers.CharField(max_length=64, help_text="The tenant's public key (the widget's data-tenant).")
        visitor_id = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")

    class OutputSerializer(serializers.Serializer[Any]):
        id = serializers.UUIDField()
        token = serializers.CharField()
        token_expires_at = serializers.DateTimeField()
        visitor_id = serializers.CharField()
        created_at = serializers.DateTimeField()

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer, **_ERRORS})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tenant = tenant_get_active(public_key=data.validated_data["tenant"])
        if tenant is None:
            raise ApiError(ErrorCode.TENANT_NOT_FOUND, "No active tenant has this key.", status_code=404)
        session = services.session_create(tenant=tenant, visitor_id=data.validated_data["visitor_id"])
        token, expires_at = session_token_issue(tenant_id=tenant.pk, session_id=session.id)
        body = {
            "id": session.id,
            "token": token,
            "token_expires_at": expires_at,
            "visitor_id": session.visitor_id,
            "created_at": session.created_at,
        }
        return Response(self.OutputSerializer(body).data, status=status.HTTP_201_CREATED)


class SessionDetailApi(SessionScopedAPIView):
    """A session with its whole history, each message with its thought steps."""

    @extend_schema(responses={200: SessionSerializer, **_ERRORS})
    def get(self, request: Request, session_id: str) -> Response:
        session = self.get_session(session_id)
        messages = selectors.session_messages(session=session)
        return Response(SessionSerializer(session, context={"messages": messages}).data)


class MessageCreateApi(SessionScopedAPIView):
    """Send the visitor's message; in ``batch`` mode the response is the finished assistant reply."""

    class InputSerializer(serializers.Serializer[Any]):
        content = serializers.CharField(trim_whitespace=False, allow_blank=True)
        client_message_id = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")
        mode = serializers.ChoiceField(choices=["batch"], default="batch")

    @extend_schema(request=InputSerializer, responses={200: MessageSerializer, **_ERRORS})
    def post(self, request: Request, session_id: str) -> Response:
        session = self.get_session(session_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        reply = services.message_reply_batch(
            session=session,
            content=data.validated_data["content"],
            client_message_id=data.validated_data["client_message_id"] or None,
        )
        return Response(MessageSerializer(reply).data)
