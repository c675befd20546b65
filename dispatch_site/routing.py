from django.urls import path

from chat.consumers import ChatConsumer
from chat.ui import UIConsumer

websocket_urlpatterns = [
    path("ws/ui", UIConsumer.as_asgi()),
    path("ws", ChatConsumer.as_asgi()),
    path("", ChatConsumer.as_asgi()),
]
