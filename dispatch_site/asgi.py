"""ASGI entry point: HTTP (Django) and WebSocket (Channels) on one Daphne."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dispatch_site.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chat import observe  # noqa: E402
from chat.auth import WebSocketAuthMiddleware, WebSocketOriginValidator  # noqa: E402
from chat.overrides import daphne as daphne_override  # noqa: E402
from chat.startup import on_process_start  # noqa: E402
from dispatch_site.routing import websocket_urlpatterns  # noqa: E402

on_process_start()
daphne_override.install()  # before Daphne builds its first connection

application = ProtocolTypeRouter(
    {
        # /-/metrics in front of Django when enabled; requests traced when OTEL_* say so.
        "http": observe.http_app(django_asgi_app),
        "websocket": WebSocketOriginValidator(
            WebSocketAuthMiddleware(URLRouter(websocket_urlpatterns))
        ),
    }
)
