"""The reply routes (``streaming.transports.http``): send, cancel, poll, stream, EventSource start (docs/api.md);
and the agent API (``streaming.transports.agent_api``): claim, push, heartbeat (docs/agents.md)."""

from django.urls import path

from streaming.transports import agent_api, http

urlpatterns = [
    path("sessions/<str:session_id>/messages", http.MessageCreateApi.as_view(), name="message-create"),
    path("messages/<str:message_id>", http.message_detail, name="message-detail"),
    path("messages/<str:message_id>/stream", http.message_stream, name="message-stream"),
    path("messages/<str:message_id>/cancel", http.MessageCancelApi.as_view(), name="message-cancel"),
    path("stream", http.stream_start, name="stream-start"),
    path("agent/claims", agent_api.ClaimApi.as_view(), name="agent-claims"),
    path("agent/replies/<str:reply_id>/events", agent_api.ReplyEventsApi.as_view(), name="agent-events"),
    path("agent/replies/<str:reply_id>/heartbeat", agent_api.ReplyHeartbeatApi.as_view(), name="agent-heartbeat"),
]
