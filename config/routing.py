"""WebSocket routes (Channels). The live-delivery consumers are added here by the event-log work."""

from __future__ import annotations

from typing import Any

websocket_urlpatterns: list[Any] = []
