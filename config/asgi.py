"""The ASGI entry point: HTTP through Django, WebSocket through Channels (config/routing.py).

The first request a worker serves also starts its sweeper (streaming/run/sweeper.py).

See docs/operations.md.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from typing import Any

from channels.routing import ProtocolTypeRouter, URLRouter
from django.conf import settings
from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from config.routing import websocket_urlpatterns  # noqa: E402
from streaming.run import sweeper  # noqa: E402

http_app: Any = django_asgi_app
if settings.BROOK_SERVE_STATIC:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    http_app = ASGIStaticFilesHandler(django_asgi_app)

router = ProtocolTypeRouter({"http": http_app, "websocket": URLRouter(websocket_urlpatterns)})


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] in {"http", "websocket"}:
        sweeper.ensure_started()
    await router(scope, receive, send)
