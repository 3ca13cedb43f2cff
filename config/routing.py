"""WebSocket routes (Channels) (docs/delivery.md, "WebSocket")."""

from __future__ import annotations

from typing import Any

from django.urls import re_path

from streaming.transports.websocket import SessionConsumer

websocket_urlpatterns: list[Any] = [
    re_path(r"^ws/v1/sessions/(?P<session_id>[^/]+)/?$", SessionConsumer.as_asgi()),
]
