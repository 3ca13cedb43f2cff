"""The reply routes (``streaming.transports.http``): send, cancel, poll, stream, EventSource start (docs/api.md)."""

from django.urls import path

from streaming.transports import http

urlpatterns = [
    path("sessions/<str:session_id>/messages", http.MessageCreateApi.as_view(), name="message-create"),
    path("messages/<str:message_id>", http.message_detail, name="message-detail"),
    path("messages/<str:message_id>/stream", http.message_stream, name="message-stream"),
    path("messages/<str:message_id>/cancel", http.MessageCancelApi.as_view(), name="message-cancel"),
    path("stream", http.stream_start, name="stream-start"),
]
