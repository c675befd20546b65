from django.urls import path

from chat.sockets.api import ApiSocket
from chat.sockets.webapp import WebAppSocket

websocket_urlpatterns = [
    path("ws/ui", WebAppSocket.as_asgi()),
    path("ws", ApiSocket.as_asgi()),
    path("", ApiSocket.as_asgi()),
]
